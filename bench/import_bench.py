"""Import benchmark: `twin import` against GDAL's ogr2ogr, loading one 1,000,000-point GeoPackage.

Both tools load the same file into the same database, alternating over --repeat runs; each load
is checked by counting the rows it left behind. Wall-clock time of the whole command is measured
(process start-up included for both). Run from anywhere:

    .venv/bin/python bench/import_bench.py [--repeat 3] [--features 1000000]

The database is the embedded cluster (`twin db url` starts it) or TWIN_DATABASE_URL when set.
Results go to the terminal, bench/out/import_bench.json and (with matplotlib) a PNG chart.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyogrio
import shapely
from common import (  # bench/common.py, beside this script
    OUT,
    REPO,
    alternate,
    console,
    database_url,
    print_written,
    pyplot,
    save_figure,
    write_json,
)
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from rich.table import Table

TWIN_LAYER = "bench_points_twin"
OGR_TABLE = "bench_points_ogr"
SOURCE_LAYER = "bench_points"
# Lu'an, Anhui: where the sample city is, so the points land in a realistic place.
AREA = (116.4, 31.7, 116.6, 31.8)
CATEGORIES = np.array(["道路", "绿地", "水域", "建筑", "管线", "other"])
FIRST_DATE = np.datetime64("2020-01-01")


@dataclass
class Run:
    """One timed load by one tool."""

    repetition: int
    tool: str
    seconds: float
    rows: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


# --- the input file ------------------------------------------------------------------------------
def points_table(n: int, seed: int) -> pa.Table:
    """Deterministic points over the Lu'an area with int, float, text and date attributes."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(AREA[0], AREA[2], n)
    lat = rng.uniform(AREA[1], AREA[3], n)
    days = rng.integers(0, 5 * 365, n)
    return pa.table(
        {
            "seq": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "count": pa.array(rng.integers(0, 10_000, n, dtype=np.int32)),
            "value": pa.array(rng.normal(100.0, 25.0, n)),
            "category": pa.array(CATEGORIES[rng.integers(0, len(CATEGORIES), n)]),
            "observed": pa.array(FIRST_DATE + days.astype("timedelta64[D]"), type=pa.date32()),
            "geometry": pa.array(shapely.to_wkb(shapely.points(lon, lat)), type=pa.binary()),
        }
    )


def ensure_points_file(n: int, seed: int) -> Path:
    """The benchmark GeoPackage, generated once and reused while its feature count matches."""
    path = OUT / f"bench_points_{n}_seed{seed}.gpkg"
    if path.exists() and pyogrio.read_info(path, layer=SOURCE_LAYER)["features"] == n:
        console.print(f"input: {path.relative_to(REPO)} (cached)")
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    partial = path.with_name(path.stem + ".partial.gpkg")
    partial.unlink(missing_ok=True)
    pyogrio.write_arrow(
        points_table(n, seed),
        partial,
        layer=SOURCE_LAYER,
        driver="GPKG",
        geometry_name="geometry",
        geometry_type="Point",
        crs="EPSG:4326",
        # GeoPackage 1.3: the newest version older GDALs (Debian's ogr2ogr 3.6) read without a
        # "may only be partially supported" warning.
        dataset_options={"VERSION": "1.3"},
    )
    partial.replace(path)  # an interrupted run never leaves a half-written cache behind
    elapsed = time.perf_counter() - started
    console.print(f"input: wrote {path.relative_to(REPO)} ({n:,} points) in {elapsed:.1f} s")
    return path


# --- the database --------------------------------------------------------------------------------
def twin_command() -> str:
    """The `twin` console script of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "twin"
    found = str(beside) if beside.exists() else shutil.which("twin")
    if not found:
        sys.exit("`twin` not found: install the project (pip install -e .) in this environment")
    return found


def _conninfo_value(value: str) -> str:
    """Quote a libpq key=value value: single quotes, with backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ogr_datasource(url: str) -> str:
    """postgresql://user:pw@host:port/db?opts -> PG:"host=... port=... dbname=... user=..."."""
    params = conninfo_to_dict(url)  # libpq's own parser: percent-decoding, sockets, options
    first = [key for key in ("host", "port", "dbname", "user", "password") if key in params]
    keys = first + [key for key in params if key not in first]
    return "PG:" + " ".join(f"{key}={_conninfo_value(str(params[key]))}" for key in keys)


def redact(datasource: str) -> str:
    """The datasource string as safe to print: the password replaced."""
    params = conninfo_to_dict(datasource.removeprefix("PG:"))
    if "password" in params:
        params["password"] = "***"
    return "PG:" + " ".join(f"{key}={value}" for key, value in params.items())


def twin_table(conn: psycopg.Connection, layer: str) -> sql.Composable:
    """The table `twin import` wrote the layer to, as registered in twin.layers."""
    row = conn.execute(
        "SELECT schema_name, table_name FROM twin.layers WHERE name = %s", (layer,)
    ).fetchone()
    if row is None:
        raise RuntimeError(f"layer {layer} is not in twin.layers after `twin import`")
    return sql.Identifier(row[0], row[1])


def count_rows(url: str, table: sql.Composable) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        query = sql.SQL("SELECT count(*) FROM {}").format(table)
        return conn.execute(query).fetchone()[0]


def drop_tables(url: str) -> None:
    """Remove both benchmark tables, and the twin layer's registry entry with its table."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("public", OGR_TABLE)))
        has_registry = conn.execute("SELECT to_regclass('twin.layers') IS NOT NULL").fetchone()[0]
        if has_registry:
            found = conn.execute(
                "SELECT schema_name, table_name FROM twin.layers WHERE name = %s", (TWIN_LAYER,)
            ).fetchone()
            if found:
                table = sql.Identifier(*found)
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            conn.execute("DELETE FROM twin.layers WHERE name = %s", (TWIN_LAYER,))
    console.print(f"dropped {OGR_TABLE} and layer {TWIN_LAYER}")


# --- the two loaders -----------------------------------------------------------------------------
def run_timed(command: list[str], label: str) -> float:
    """Run a loader to completion; its output is kept quiet unless it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        console.print(f"[red]{label} failed (exit {done.returncode})[/]")
        console.print(done.stdout[-4000:], done.stderr[-4000:], markup=False)
        raise RuntimeError(f"{label} failed")
    return elapsed


def load_with_twin(twin: str, url: str, path: Path) -> tuple[float, int]:
    command = [twin, "import", str(path), "--layer", TWIN_LAYER, "--replace"]
    seconds = run_timed(command, "twin import")
    with psycopg.connect(url, autocommit=True) as conn:
        table = twin_table(conn, TWIN_LAYER)
    return seconds, count_rows(url, table)


def load_with_ogr2ogr(datasource: str, url: str, path: Path) -> tuple[float, int]:
    command = [
        "ogr2ogr", "-f", "PostgreSQL", datasource, str(path),
        "-nln", OGR_TABLE, "-overwrite", "-lco", "SPATIAL_INDEX=GIST",
    ]  # fmt: skip
    seconds = run_timed(command, "ogr2ogr")
    return seconds, count_rows(url, sql.Identifier("public", OGR_TABLE))


def benchmark(twin: str, url: str, path: Path, n: int, repeat: int) -> list[Run]:
    """Alternate the tools (twin first on even repetitions, ogr2ogr first on odd ones)."""
    datasource = ogr_datasource(url)
    console.print(f"ogr2ogr datasource: {redact(datasource)}")
    loaders = {
        "twin import": lambda: load_with_twin(twin, url, path),
        "ogr2ogr": lambda: load_with_ogr2ogr(datasource, url, path),
    }
    runs: list[Run] = []
    for rep in range(1, repeat + 1):
        for tool in alternate(list(loaders), rep - 1):
            seconds, rows = loaders[tool]()
            run = Run(rep, tool, seconds, rows)
            console.print(
                f"run {rep} {tool:<11} {seconds:7.2f} s  {run.rate:>10,.0f} features/s  "
                f"rows {rows:,}"
            )
            if rows != n:
                raise RuntimeError(f"{tool} left {rows:,} rows, expected {n:,}")
            runs.append(run)
    return runs


# --- reporting -----------------------------------------------------------------------------------
def median_rates(runs: list[Run]) -> dict[str, float]:
    tools = dict.fromkeys(run.tool for run in runs)
    return {tool: statistics.median(r.rate for r in runs if r.tool == tool) for tool in tools}


def print_report(runs: list[Run], n: int) -> dict[str, float]:
    table = Table(title=f"Import of {n:,} points (GeoPackage -> PostGIS)")
    for column, justify in [("run", "right"), ("tool", "left"), ("seconds", "right"),
                            ("features/s", "right"), ("rows", "right")]:  # fmt: skip
        table.add_column(column, justify=justify)
    for run in runs:
        table.add_row(
            str(run.repetition), run.tool, f"{run.seconds:.2f}", f"{run.rate:,.0f}", f"{run.rows:,}"
        )
    console.print(table)
    medians = median_rates(runs)
    ratio = medians["twin import"] / medians["ogr2ogr"]
    console.print(
        f"median rate: twin import {medians['twin import']:,.0f} features/s, "
        f"ogr2ogr {medians['ogr2ogr']:,.0f} features/s; twin/ogr2ogr = {ratio:.2f}x "
        f"({len(runs) // 2} runs each)"
    )
    return medians


def write_results(runs: list[Run], medians: dict[str, float], n: int) -> Path:
    return write_json(
        "import_bench.json",
        {
            "features": n,
            "runs": [asdict(run) | {"rate": run.rate} for run in runs],
            "median_rate": medians,
            "ratio_twin_over_ogr2ogr": medians["twin import"] / medians["ogr2ogr"],
        },
    )


def write_chart(runs: list[Run], medians: dict[str, float], n: int) -> Path | None:
    """A bar per tool (median rate) with each run as a dot; skipped without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    tools = list(medians)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.bar(tools, [medians[t] for t in tools], color=["#2b8cbe", "#999999"][: len(tools)])
    for i, tool in enumerate(tools):
        rates = [r.rate for r in runs if r.tool == tool]
        ax.plot([i] * len(rates), rates, "o", color="black", markersize=3)
    ax.set_ylabel("features / s (median, dots = runs)")
    ax.set_title(f"GeoPackage -> PostGIS, {n:,} points")
    return save_figure(plt, fig, "import_bench.png")


# --- entry point ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (default 3)")
    parser.add_argument("--features", type=int, default=1_000_000, help="points in the file")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed of the file")
    parser.add_argument("--keep", action="store_true", help="leave the loaded tables in place")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.features < 1:
        parser.error("--repeat and --features must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("ogr2ogr"):
        sys.exit("ogr2ogr not found: apt-get install gdal-bin")
    path = ensure_points_file(args.features, args.seed)
    twin = twin_command()
    url = database_url(twin)
    try:
        runs = benchmark(twin, url, path, args.features, args.repeat)
    except RuntimeError as exc:
        console.print(f"[red]benchmark stopped:[/] {exc}")
        return 1
    finally:
        if not args.keep:
            drop_tables(url)
    medians = print_report(runs, args.features)
    print_written(
        write_results(runs, medians, args.features), write_chart(runs, medians, args.features)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
