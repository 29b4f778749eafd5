"""Raster tiles: citytwin's GET /raster/scenes/{id}/tiles against titiler's TilerFactory.

Both servers get the same Cloud Optimized GeoTIFF (the sample city's ``imagery_2023.tif``, a
4-band UInt16 COG in EPSG:4548 at 2 m), the same fixed list of WebMercatorQuad tiles (z14-z17,
a fixed-seed sample per zoom) and the same three styles, each asked of both in its own words:

- ``truecolor``: ours ``?preset=truecolor`` (red, green, blue stretched with the scene's stored
  2nd-98th percentiles) against titiler ``?bidx=3&bidx=2&bidx=1&rescale=..`` with those ranges,
  read from our STAC item (``citytwin:statistics``);
- ``ndvi``: ``(nir-red)/(nir+red)`` rescaled -1,1 with the ``rdylgn`` colormap (titiler:
  ``(b4-b3)/(b4+b3)``);
- ``gray``: the near-infrared band alone, stretched with its percentiles, no colormap.

Every request is new (no If-None-Match) and neither server caches tiles; GDAL's block cache
belongs to each server process, and both open the file anew per tile, so each is warmed with
the same short list first (imports, the OS page cache), then measured. Each style runs at
each client concurrency (default 1 and 4), the two servers alternating which goes first.
A few tiles per style are decoded from both servers and compared pixel by pixel.

citytwin runs as `twin serve` against a scratch embedded PostGIS under bench/out/; titiler as a
minimal FastAPI app with ``TilerFactory()`` mounted at /cog, under uvicorn, one process each,
on free loopback ports. Both are stopped at the end, on errors too. Results: the terminal,
bench/out/raster.json and, with matplotlib, bench/out/raster.png.

    .venv/bin/python bench/raster_bench.py [--scale 10] [--per-zoom 60] [--concurrency 1,4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from common import (  # bench/common.py, beside this script
    OUT,
    REPO,
    ScratchDatabase,
    ServerProcess,
    console,
    ensure_city,
    free_port,
    machine,
    median_or_nan,
    p95,
    package_versions,
    parse_zooms,
    print_written,
    pyplot,
    save_figure,
    start_scratch,
    tile_list,
    twin_serve,
    write_json,
)
from rich.table import Table

COLLECTION = "bench"
TMS = "WebMercatorQuad"
SERVERS = ("citytwin", "titiler")

# The peer: titiler's TilerFactory, nothing else, on one uvicorn process as `twin serve` is.
TITILER_APP = '''\
"""titiler's TilerFactory over local files (written and started by bench/raster_bench.py)."""

import sys

import uvicorn
from fastapi import FastAPI
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

app = FastAPI(title="titiler (raster bench peer)")
cog = TilerFactory(router_prefix="/cog")
app.include_router(cog.router, prefix="/cog")
add_exception_handlers(app, DEFAULT_STATUS_CODES)


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
'''


# --- the COG and what the catalog says about it -------------------------------------------------
def register(db: ScratchDatabase, cog: Path, scene_id: str) -> None:
    """The COG as a scene of collection `bench` (a valid COG is referenced where it is)."""
    with psycopg.connect(db.url) as conn:
        row = conn.execute(
            "SELECT cog_path FROM twin.raster_scenes WHERE id = %s", [scene_id]
        ).fetchone()
    if row is not None and Path(row[0]) == cog.resolve():
        console.print(f"  scene {scene_id}: already registered")
        return
    args = ["raster", "add", str(cog), "--collection", COLLECTION, "--id", scene_id]
    started = time.perf_counter()
    db.twin(*args, *(["--replace"] if row is not None else []))
    console.print(
        f"  scene {scene_id}: registered with `twin raster add` in "
        f"{time.perf_counter() - started:.1f} s"
    )


# --- the styles, asked of each server in its own words ------------------------------------------
@dataclass(frozen=True)
class Style:
    name: str
    label: str
    ours: list[tuple[str, str]]
    titiler: list[tuple[str, str]]


def fmt(value: float) -> str:
    return repr(float(value))


def styles_for(item: dict[str, Any], grey: str) -> list[Style]:
    bands: list[str] = [b["name"] for b in item["properties"]["eo:bands"]]
    stats: dict[str, dict[str, float]] = item["properties"]["citytwin:statistics"]

    def stretch(band: str) -> str:
        lo, hi = float(stats[band]["p2"]), float(stats[band]["p98"])
        return f"{fmt(lo)},{fmt(hi if hi > lo else lo + 1.0)}"  # as our render._stretch

    def bidx(band: str) -> str:
        return str(bands.index(band) + 1)

    rgb = ("red", "green", "blue")
    return [
        Style(
            "truecolor",
            "true colour (r,g,b, p2-p98 per band)",
            [("preset", "truecolor")],
            [("bidx", bidx(b)) for b in rgb] + [("rescale", stretch(b)) for b in rgb],
        ),
        Style(
            "ndvi",
            "NDVI, rescale -1,1, rdylgn",
            [
                ("expression", "(nir-red)/(nir+red)"),
                ("rescale", "-1,1"),
                ("colormap_name", "rdylgn"),
            ],
            [
                ("expression", f"(b{bidx('nir')}-b{bidx('red')})/(b{bidx('nir')}+b{bidx('red')})"),
                ("rescale", "-1,1"),
                ("colormap_name", "rdylgn"),
            ],
        ),
        Style(
            "gray",
            f"one band grayscale ({grey}, p2-p98)",
            [("bands", grey)],
            [("bidx", bidx(grey)), ("rescale", stretch(grey))],
        ),
    ]


@dataclass
class Target:
    """How to ask one server for tile z/x/y of one style."""

    name: str
    base: str
    path: str  # with {z} {x} {y}
    common: list[tuple[str, str]]  # parameters on every request of this server

    def request(self, style: Style, z: int, x: int, y: int) -> tuple[str, httpx.QueryParams]:
        wanted = style.ours if self.name == "citytwin" else style.titiler
        return self.path.format(z=z, x=x, y=y), httpx.QueryParams([*self.common, *wanted])


# --- measuring ----------------------------------------------------------------------------------
@dataclass
class Run:
    server: str
    style: str
    concurrency: int
    requests: int = 0
    wall_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    zooms: list[int] = field(default_factory=list)  # of each timed request, in the same order
    bytes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first: bool = False  # this server went first for this style and concurrency

    @property
    def rate(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    @property
    def median_ms(self) -> float:
        return median_or_nan(self.latency_ms)

    @property
    def p95_ms(self) -> float:
        return p95(self.latency_ms) if self.latency_ms else float("nan")

    def median_by_zoom(self) -> dict[int, float]:
        by: dict[int, list[float]] = {}
        for z, ms in zip(self.zooms, self.latency_ms, strict=True):
            by.setdefault(z, []).append(ms)
        return {z: round(statistics.median(v), 3) for z, v in sorted(by.items())}

    def summary(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "style": self.style,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "wall_s": round(self.wall_s, 4),
            "tiles_per_s": round(self.rate, 3),
            "latency_ms_median": round(self.median_ms, 3),
            "latency_ms_p95": round(self.p95_ms, 3),
            "latency_ms_mean": round(statistics.fmean(self.latency_ms), 3),
            "latency_ms_median_by_zoom": self.median_by_zoom(),
            "bytes_median": int(statistics.median(self.bytes)) if self.bytes else 0,
            "errors": self.errors[:20],
            "error_count": len(self.errors),
            "went_first": self.first,
            "latency_ms": [round(v, 3) for v in self.latency_ms],
        }


def find(runs: list[Run], style: str, concurrency: int, server: str) -> Run:
    return next(
        r for r in runs if r.style == style and r.concurrency == concurrency and r.server == server
    )


def sample(
    rng: np.random.Generator, tiles: list[tuple[int, int, int]], n: int
) -> list[tuple[int, int, int]]:
    """n tiles of the list, drawn without replacement, in the list's order."""
    picked = sorted(rng.choice(len(tiles), min(n, len(tiles)), replace=False))
    return [tiles[i] for i in picked]


async def fetch_all(
    target: Target, style: Style, tiles: list[tuple[int, int, int]], concurrency: int
) -> Run:
    """`concurrency` clients, each taking the next tile of the list until none is left."""
    run = Run(target.name, style.name, concurrency)
    queue: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
    for t in tiles:
        queue.put_nowait(t)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while True:
            try:
                z, x, y = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            path, params = target.request(style, z, x, y)
            sent = time.perf_counter()
            try:
                response = await client.get(path, params=params)
                ms = (time.perf_counter() - sent) * 1000
            except httpx.HTTPError as exc:
                run.errors.append(f"{z}/{x}/{y}: {type(exc).__name__}")
                continue
            if response.status_code != 200 or response.headers.get("content-type") != "image/png":
                run.errors.append(f"{z}/{x}/{y}: {response.status_code} {response.text[:120]!r}")
                continue
            run.latency_ms.append(ms)
            run.zooms.append(z)
            run.bytes.append(len(response.content))

    async with httpx.AsyncClient(base_url=target.base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        run.wall_s = time.perf_counter() - started
    run.requests = len(run.latency_ms)
    return run


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA" if img.mode in ("RGB", "RGBA", "P") else "LA"))


def compare_pixels(
    targets: list[Target], style: Style, tiles: list[tuple[int, int, int]]
) -> dict[str, Any]:
    """Both servers' PNGs of the same tiles, decoded: band count, mask and values compared."""
    ours, theirs = targets
    worst = 0
    differing = 0
    pixels = 0
    mask_differs = 0
    modes: set[str] = set()
    per_tile: list[dict[str, Any]] = []
    with httpx.Client(timeout=120) as client:
        for z, x, y in tiles:
            images = []
            for target in (ours, theirs):
                path, params = target.request(style, z, x, y)
                response = client.get(target.base + path, params=params)
                response.raise_for_status()
                images.append(decode_png(response.content))
            a, b = images
            modes.add(f"{a.shape[-1]}/{b.shape[-1]} channels")
            if a.shape != b.shape:
                per_tile.append({"tile": f"{z}/{x}/{y}", "shapes": [a.shape, b.shape]})
                worst = 255
                continue
            alpha_a, alpha_b = a[..., -1] > 0, b[..., -1] > 0
            both = alpha_a & alpha_b
            mask_differs += int((alpha_a != alpha_b).sum())
            diff = np.abs(a[..., :-1].astype(int) - b[..., :-1].astype(int)).max(axis=-1)
            diff = np.where(both, diff, 0)
            tile_max = int(diff.max()) if diff.size else 0
            worst = max(worst, tile_max)
            differing += int((diff > 0).sum())
            pixels += int(both.sum())
            per_tile.append(
                {
                    "tile": f"{z}/{x}/{y}",
                    "max_abs_diff": tile_max,
                    "valid_pixels": int(both.sum()),
                    "mask_differs": int((alpha_a != alpha_b).sum()),
                }
            )
    return {
        "tiles": len(tiles),
        "max_abs_diff": worst,
        "pixels_compared": pixels,
        "pixels_differing": differing,
        "mask_pixels_differing": mask_differs,
        "channels": sorted(modes),
        "per_tile": per_tile,
    }


def titiler_kwargs(style: Style) -> dict[str, Any]:
    """The style's titiler query as the arguments its factory passes on."""
    from rio_tiler.colormap import cmap

    params: dict[str, list[str]] = {}
    for k, v in style.titiler:
        params.setdefault(k, []).append(v)
    return {
        "indexes": [int(v) for v in params.get("bidx", [])] or None,
        "expression": params.get("expression", [None])[0],
        "rescale": [tuple(float(p) for p in r.split(",")) for r in params.get("rescale", [])],
        "colormap": cmap.get(params["colormap_name"][0]) if "colormap_name" in params else None,
    }


def titiler_tile(path: str, z: int, x: int, y: int, size: int, kw: dict[str, Any]) -> bytes:
    """What TilerFactory's tile endpoint does between parsing the query and answering."""
    from rio_tiler.io import Reader
    from titiler.core.resources.enums import ImageType
    from titiler.core.utils import render_image

    with Reader(path) as src:
        img = src.tile(x, y, z, tilesize=size, indexes=kw["indexes"], expression=kw["expression"])
    content, _ = render_image(
        img, colormap=kw["colormap"], output_format=ImageType.png, rescale=kw["rescale"]
    )
    return content


# Functions of rasterio and rio-tiler that one of our tiles spends its time in (cProfile).
STAGES = {
    "transform_bounds": ("rasterio/warp.py", "transform_bounds"),
    "calculate_default_transform": ("rasterio/warp.py", "calculate_default_transform"),
    "warped read": ("rio_tiler/reader.py", "read"),
    "PNG encode": ("rio_tiler/utils.py", "render"),
}


def inprocess(
    url: str, scene_id: str, styles: list[Style], tiles: list[tuple[int, int, int]], size: int
) -> dict[str, Any]:
    """Where the time goes, without HTTP: our render.tile against titiler's calls, per style.

    Ours: `render.style_for` + `render.tile` (open the COG, rio-tiler's tile, rescale, PNG),
    the scene read from the catalog once. titiler's: `Reader(path).tile` and
    `titiler.core.utils.render_image` with the arguments its factory passes. Then one more
    pass of ours under cProfile, for the share of a few rasterio and rio-tiler functions.
    """
    import cProfile
    import pstats
    from functools import partial

    from rasters import render
    from rasters.catalog import get_scene_sync

    with psycopg.connect(url) as conn:
        scene = get_scene_sync(conn, scene_id)
    out: dict[str, Any] = {"median_ms": {}, "profile_share": {}}
    for style in styles:
        q = dict(style.ours)
        ours_style = render.style_for(
            scene,
            preset=q.get("preset"),
            bands=q.get("bands"),
            expression=q.get("expression"),
            rescale=q.get("rescale"),
            colormap_name=q.get("colormap_name"),
        )
        kw = titiler_kwargs(style)
        calls: dict[str, Callable[[int, int, int], bytes]] = {
            "citytwin": partial(render.tile, scene, style=ours_style, fmt="png", size=size),
            "titiler": partial(titiler_tile, scene.cog_path, size=size, kw=kw),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for z, x, y in tiles[:3]:  # warm both paths
            for call in calls.values():
                call(z, x, y)
        for z, x, y in tiles:
            for name, call in calls.items():
                started = time.perf_counter()
                call(z, x, y)
                times[name].append((time.perf_counter() - started) * 1000)
        out["median_ms"][style.name] = {k: round(statistics.median(v), 3) for k, v in times.items()}

        profile = cProfile.Profile()
        profile.enable()
        for z, x, y in tiles:
            calls["citytwin"](z, x, y)
        profile.disable()
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        total = sum(tt for _, _, tt, _, _ in stats.values())
        share = {}
        for label, (suffix, func) in STAGES.items():
            cumulative = sum(
                ct for (file, _, name), (_, _, _, ct, _) in stats.items()
                if name == func and file.replace(os.sep, "/").endswith(suffix)
            )  # fmt: skip
            share[label] = round(cumulative / total, 3) if total else 0.0
        out["profile_share"][style.name] = share
    return out


# --- report -------------------------------------------------------------------------------------
def print_table(runs: list[Run], styles: list[Style], concurrencies: list[int]) -> None:
    table = Table(title="Raster tiles: citytwin vs titiler TilerFactory (same COG, same run)")
    for column, justify in [
        ("style", "left"), ("clients", "right"), ("tiles", "right"),
        ("citytwin\ntiles/s", "right"), ("titiler\ntiles/s", "right"), ("ours /\ntitiler", "right"),
        ("citytwin\nmedian ms", "right"), ("citytwin\np95 ms", "right"),
        ("titiler\nmedian ms", "right"), ("titiler\np95 ms", "right"), ("errors", "right"),
    ]:  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for style in styles:
        for c in concurrencies:
            ours = find(runs, style.name, c, "citytwin")
            peer = find(runs, style.name, c, "titiler")
            ratio = ours.rate / peer.rate if peer.rate else float("nan")
            colour = "green" if ratio >= 1.0 else "red"
            table.add_row(
                style.name,
                str(c),
                str(ours.requests),
                f"{ours.rate:.1f}",
                f"{peer.rate:.1f}",
                f"[{colour}]{ratio:.2f}x[/]",
                f"{ours.median_ms:.1f}",
                f"{ours.p95_ms:.1f}",
                f"{peer.median_ms:.1f}",
                f"{peer.p95_ms:.1f}",
                str(len(ours.errors) + len(peer.errors)),
            )
    console.print(table)


def check_all_pixels(
    targets: list[Target], styles: list[Style], check: list[tuple[int, int, int]]
) -> dict[str, Any]:
    pixels: dict[str, Any] = {}
    for style in styles:
        pixels[style.name] = p = compare_pixels(targets, style, check)
        colour = "green" if p["max_abs_diff"] <= 1 and not p["mask_pixels_differing"] else "red"
        console.print(
            f"  pixels, {style.name}: {p['tiles']} tiles, {p['pixels_compared']:,} valid "
            f"pixels, max |diff| [{colour}]{p['max_abs_diff']}[/], "
            f"{p['pixels_differing']:,} differ, mask differs on "
            f"{p['mask_pixels_differing']:,} ({', '.join(p['channels'])})"
        )
    return pixels


def measure(
    targets: list[Target],
    styles: list[Style],
    tiles: list[tuple[int, int, int]],
    warm: list[tuple[int, int, int]],
    concurrencies: list[int],
) -> list[Run]:
    """Warm both servers on the same short list, then time every style at every concurrency,
    the two servers taking turns at going first."""
    with console.status("warming both servers..."):
        for style in styles:
            for target in targets:
                asyncio.run(fetch_all(target, style, warm, 1))
    console.print(f"  warm-up: {len(warm)} tiles per style on each server (not timed)")
    runs: list[Run] = []
    step = 0
    for c in concurrencies:
        for style in styles:
            order = targets if step % 2 == 0 else targets[::-1]
            step += 1
            for i, target in enumerate(order):
                with console.status(f"{style.name}, {c} client(s): {target.name}..."):
                    run = asyncio.run(fetch_all(target, style, tiles, c))
                run.first = i == 0
                runs.append(run)
                console.print(
                    f"  {style.name:<9} {c} client(s) {target.name:<8} "
                    f"{run.rate:7.1f} tiles/s  median {run.median_ms:6.1f} ms  p95 "
                    f"{run.p95_ms:6.1f} ms  ({run.requests} tiles in {run.wall_s:.1f} s"
                    + (f", [red]{len(run.errors)} errors[/]" if run.errors else "")
                    + ")"
                )
                for err in run.errors[:3]:
                    console.print(f"    [red]{err}[/]", markup=True)
    return runs


def print_details(
    runs: list[Run],
    styles: list[Style],
    one: int,
    in_process: dict[str, Any],
    timed_in_process: int,
    warmed: int,
) -> None:
    for style in styles:
        zoomed = {name: find(runs, style.name, one, name).median_by_zoom() for name in SERVERS}
        console.print(
            f"{style.name}, {one} client(s), median ms by zoom: "
            + "; ".join(
                f"{name} " + ", ".join(f"z{z} {ms:.0f}" for z, ms in by.items())
                for name, by in zoomed.items()
            )
        )
    for style in styles:
        ip = in_process["median_ms"][style.name]
        share = in_process["profile_share"][style.name]
        console.print(
            f"{style.name}: {style.label}; in process (no HTTP), median of {timed_in_process} "
            f"tiles: citytwin render.tile {ip['citytwin']:.1f} ms, titiler's Reader.tile + "
            f"render_image {ip['titiler']:.1f} ms; of ours (cProfile): "
            + ", ".join(f"{k} {v:.0%}" for k, v in share.items())
        )
    console.print(
        "Uncached: every request is new (no If-None-Match) and neither server caches tiles; "
        "GDAL's block cache is per process and both open the COG per tile, so what stays warm "
        f"after the warm-up ({warmed} tiles per style) is the OS page cache and each "
        "process's imports. tiles/s = tiles / wall clock of the run; latency = request sent to "
        "body received, over loopback."
    )


def write_chart(runs: list[Run], styles: list[Style], concurrencies: list[int]) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(concurrencies), figsize=(4 * len(concurrencies), 3.5), dpi=120)
    axes = np.atleast_1d(axes)
    x = np.arange(len(styles))
    for ax, c in zip(axes, concurrencies, strict=True):
        for offset, server in ((-0.2, "citytwin"), (0.2, "titiler")):
            rates = [find(runs, s.name, c, server).rate for s in styles]
            ax.bar(x + offset, rates, 0.4, label=server)
        ax.set_xticks(x, [s.name for s in styles])
        ax.set_ylabel("tiles/s (uncached)")
        ax.set_title(f"{c} concurrent client{'s' if c > 1 else ''}")
        ax.legend(fontsize=7)
    return save_figure(plt, fig, "raster.png")


def versions() -> dict[str, str]:
    import rasterio

    dists = ("titiler.core", "rio-tiler", "rasterio", "fastapi", "starlette", "uvicorn", "httpx",
             "numpy", "numexpr")  # fmt: skip
    return {**package_versions(dists), "gdal": rasterio.__gdal_version__, "machine": machine()}


# --- entry point --------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="sample city scale (10)")
    parser.add_argument("--city-seed", type=int, default=42, help="sample city seed (42)")
    parser.add_argument("--zooms", default="14-17", help="zoom levels, e.g. 14-17 or 15,16")
    parser.add_argument("--per-zoom", type=int, default=80, help="tiles sampled per zoom (80)")
    parser.add_argument("--warmup", type=int, default=12, help="warm-up tiles per style (12)")
    parser.add_argument("--concurrency", default="1,4", help="concurrent clients, e.g. 1,4")
    parser.add_argument("--check", type=int, default=8, help="tiles per style compared (8)")
    parser.add_argument("--inprocess", type=int, default=24, help="tiles timed in process (24)")
    parser.add_argument("--seed", type=int, default=20241205, help="tile sample seed")
    parser.add_argument("--grey-band", default="nir", help="band of the grayscale style (nir)")
    parser.add_argument("--keep-db", action="store_true", help="leave the scratch PostGIS up")
    args = parser.parse_args(argv)
    args.zoom_list = parse_zooms(args.zooms)
    args.concurrency_list = [int(v) for v in args.concurrency.split(",")]
    if min(args.per_zoom, *args.concurrency_list) < 1 or min(args.warmup, args.check) < 0:
        parser.error("--per-zoom and --concurrency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import titiler.core  # noqa: F401
    except ImportError:
        sys.exit("titiler.core is not installed: make bench-raster installs the pinned version")
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folder = ensure_city(args.scale, args.city_seed, needs=("imagery_2023.tif",))
    cog = (folder / "imagery_2023.tif").resolve()
    scene_id = f"imagery_2023_scale{args.scale:g}"
    db = ScratchDatabase(OUT / "raster-db")
    app_file = OUT / "raster_titiler_app.py"
    app_file.write_text(TITILER_APP)
    servers: list[ServerProcess] = []
    report: dict[str, Any] = {"arguments": {k: v for k, v in vars(args).items()}}
    try:
        url = start_scratch(db)
        register(db, cog, scene_id)
        with console.status("starting twin serve and titiler..."):
            ours_proc = twin_serve(url, db.env)
            servers.append(ours_proc)
            peer_env = {k: v for k, v in db.env.items() if not k.startswith("TWIN_")}
            peer_proc = ServerProcess(
                "titiler",
                [sys.executable, str(app_file), str(port := free_port())],
                peer_env,
                port,
            )
            servers.append(peer_proc)
        console.print(
            f"twin serve on {ours_proc.base} (pid {ours_proc.pid}); titiler.core TilerFactory "
            f"on {peer_proc.base} (pid {peer_proc.pid}); one process each"
        )
        item = httpx.get(f"{ours_proc.base}/raster/scenes/{scene_id}", timeout=30).json()
        tilejson = httpx.get(
            f"{ours_proc.base}/raster/scenes/{scene_id}/tiles/{TMS}/tilejson.json", timeout=30
        ).json()
        size = int(tilejson["tileSize"])
        props = item["properties"]
        console.print(
            f"COG: {cog.relative_to(REPO)}: {props.get('proj:shape', '')} "
            f"{', '.join(b['name'] for b in props['eo:bands'])}; our tileSize {size}, "
            f"titiler asked for tilesize={size}"
        )
        xyz = f"tiles/{TMS}/{{z}}/{{x}}/{{y}}.png"
        targets = [
            Target("citytwin", ours_proc.base, f"/raster/scenes/{scene_id}/{xyz}", []),
            Target(
                "titiler",
                peer_proc.base,
                f"/cog/{xyz}",
                [("url", str(cog)), ("tilesize", str(size))],
            ),
        ]
        styles = styles_for(item, args.grey_band)
        by_zoom = tile_list(item["bbox"], args.zoom_list, args.per_zoom, args.seed)
        tiles = [t for z in args.zoom_list for t in by_zoom[z]]
        counts = {z: len(v) for z, v in by_zoom.items()}
        console.print(
            f"tiles: {len(tiles)} ({', '.join(f'z{z} {n}' for z, n in counts.items())}; a fixed "
            f"sample of at most {args.per_zoom} per zoom, seed {args.seed}), same list for both"
        )
        rng = np.random.default_rng(args.seed + 1)
        warm = sample(rng, tiles, args.warmup)
        check = sample(rng, tiles, args.check)

        # Correctness first: the speed of two servers drawing different pictures means little.
        pixels = check_all_pixels(targets, styles, check)
        runs = measure(targets, styles, tiles, warm, args.concurrency_list)
        with console.status("timing both rendering paths in process (no HTTP)..."):
            sub = sample(rng, tiles, args.inprocess)
            in_process = inprocess(url, scene_id, styles, sub, size)
        report.update(
            {
                "scene": {"id": scene_id, "cog": str(cog.relative_to(REPO)), "tile_size": size},
                "tiles_per_zoom": counts,
                "warmup_tiles": len(warm),
                "pixel_check": pixels,
                "in_process": in_process,
            }
        )
    finally:
        for server in reversed(servers):
            server.stop()
        if not args.keep_db:
            db.stop()

    print_table(runs, styles, args.concurrency_list)
    print_details(runs, styles, min(args.concurrency_list), in_process, len(sub), len(warm))
    report["versions"] = versions()
    report["styles"] = [asdict(s) for s in styles]
    report["runs"] = [r.summary() for r in runs]
    report["ratios"] = {
        f"{s.name}@{c}": round(
            find(runs, s.name, c, "citytwin").rate / find(runs, s.name, c, "titiler").rate, 3
        )
        for s in styles
        for c in args.concurrency_list
    }
    print_written(
        write_json("raster.json", report), write_chart(runs, styles, args.concurrency_list)
    )
    console.print(f"total {time.perf_counter() - started:.0f} s")
    bad = [s for s, p in report["pixel_check"].items() if p["max_abs_diff"] > 1]
    errors = sum(len(r.errors) for r in runs)
    if bad or errors:
        console.print(
            f"[red]pixels differ on {', '.join(bad) or 'no style'}; {errors} failed requests[/]"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
