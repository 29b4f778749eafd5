"""Point-to-grid location: citytwin's POST /grid/locate against geopandas' sjoin.

Both sides get the same CSV of points (default 1,000,000) over the sample city's unit grid and
write a CSV with each point's unit-grid code; I/O is included on both sides:

- citytwin: curl sends the CSV to a running `twin serve` (started here on a free port) and
  writes the streamed CSV answer to disk;
- geopandas: the CSV is read with pandas, the grid is read from the same PostGIS with
  read_postgis, `sjoin(predicate="intersects")` pairs them, and the result is written to disk.

Runs alternate over --repeat rounds; medians and the ratio are printed, and the two answers
are compared point by point.

    .venv/bin/python bench/locate_bench.py [--points 1000000] [--scale 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
from common import (  # bench/common.py, beside this script
    OUT,
    alternate,
    console,
    database_url,
    ensure_city,
    twin_serve,
)
from rich.table import Table


def city_with_grid(scale: float, url: str) -> Path:
    """The sample city at this scale, with its grid in the grid tables."""
    from grid.store import import_grid_folder
    from twin.settings import GridSettings

    folder = ensure_city(scale, seed=42)
    with psycopg.connect(url) as conn:
        import_grid_folder(conn, folder, GridSettings())
    return folder


def ensure_points(n: int, folder: Path) -> Path:
    path = OUT / f"locate_points_{n}.csv"
    if path.exists():
        return path
    bounds = gpd.read_file(folder / "grid_unit.gpkg").total_bounds
    rng = np.random.default_rng(20241122)
    # 95% inside the grid's extent, 5% around it (outside every cell)
    lon = rng.uniform(bounds[0] - 0.002, bounds[2] + 0.002, n)
    lat = rng.uniform(bounds[1] - 0.002, bounds[3] + 0.002, n)
    pd.DataFrame({"id": np.arange(n), "lon": lon.round(7), "lat": lat.round(7)}).to_csv(
        path, index=False
    )
    return path


def run_twin(base: str, points: Path, out: Path) -> float:
    """Upload the file and save the streamed answer with curl, a plain HTTP client."""
    start = time.perf_counter()
    subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "-X",
            "POST",
            "-H",
            "Content-Type: text/csv",
            "--data-binary",
            f"@{points}",
            "-o",
            str(out),
            f"{base}/grid/locate",
        ],
        check=True,
    )
    return time.perf_counter() - start


def run_geopandas(url: str, points: Path, out: Path) -> float:
    start = time.perf_counter()
    frame = pd.read_csv(points)
    pts = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame.lon, frame.lat), crs=4326)
    with psycopg.connect(url) as conn:
        cells = gpd.read_postgis(
            "SELECT code AS unit_code, geom FROM twin.grid_cells "
            "WHERE level = 'unit' AND valid_to IS NULL",
            conn,
            geom_col="geom",
        )
    joined = gpd.sjoin(pts, cells, how="left", predicate="intersects")
    joined = joined[~joined.index.duplicated(keep="first")]  # points on shared edges
    joined[["id", "lon", "lat", "unit_code"]].to_csv(out, index=False)
    return time.perf_counter() - start


def agreement(ours: Path, theirs: Path) -> float:
    a = pd.read_csv(ours, dtype={"unit_code": str}).set_index("id")["unit_code"].fillna("")
    b = pd.read_csv(theirs, dtype={"unit_code": str}).set_index("id")["unit_code"].fillna("")
    return float((a.sort_index() == b.sort_index()).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    url = database_url()
    folder = city_with_grid(args.scale, url)
    points = ensure_points(args.points, folder)
    cells = gpd.read_file(folder / "grid_unit.gpkg").shape[0]
    console.print(f"{args.points:,} points, {cells:,} unit cells (scale {args.scale:g})")
    server = twin_serve(url, dict(os.environ))
    times: dict[str, list[float]] = {"citytwin": [], "geopandas sjoin": []}
    try:
        for i in range(args.repeat):
            for tool in alternate(["citytwin", "geopandas sjoin"], i):
                out = OUT / f"located_{tool.split()[0]}.csv"
                t = (
                    run_twin(server.base, points, out)
                    if tool == "citytwin"
                    else run_geopandas(url, points, out)
                )
                times[tool].append(t)
                console.print(
                    f"run {i + 1} {tool:16} {t:6.2f} s  {args.points / t:12,.0f} points/s"
                )
    finally:
        server.stop()
    same = agreement(OUT / "located_citytwin.csv", OUT / "located_geopandas.csv")
    table = Table(title=f"locate {args.points:,} points (I/O included)")
    for col in ("tool", "median s", "points/s"):
        table.add_column(col, justify="right" if col != "tool" else "left")
    med = {tool: statistics.median(ts) for tool, ts in times.items()}
    for tool, m in med.items():
        table.add_row(tool, f"{m:.2f}", f"{args.points / m:,.0f}")
    console.print(table)
    ratio = med["geopandas sjoin"] / med["citytwin"]
    console.print(
        f"citytwin/geopandas rate ratio = {ratio:.2f}x ({args.repeat} runs each); "
        f"answers agree on {same:.4%} of points"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
