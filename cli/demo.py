"""``twin sample``, ``twin serve`` and ``twin demo``: the sample city, and serving the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, database_url, progress_bar, rows_table, settings
from cli.db import migrate_database
from layers.importer import Progress
from sample_data import generate
from sample_data.load import load_sample_city
from sample_data.simulator import STEP_S, start_simulator
from tiles.maps import load_maps
from twin import db
from twin.errors import InvalidParameter
from twin.settings import Settings

sample_app = typer.Typer(help="The sample city")


@sample_app.command("generate")
def sample_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder")],
    seed: Annotated[int, typer.Option(help="Random seed: same seed, identical files")] = 42,
    scale: Annotated[float, typer.Option(help="Area multiplier (1 = a few km²)")] = 1.0,
) -> None:
    """Write a realistic sample city district (GeoPackages and COG imagery)."""
    if scale <= 0:
        raise InvalidParameter("--scale must be positive")
    _generate(out_dir, seed, scale)


def _generate(out_dir: Path, seed: int, scale: float) -> None:
    with console.status("generating the sample city...") as status:
        summary = generate(out_dir, seed=seed, scale=scale, progress=lambda m: status.update(m))
    rows = [
        (key, f"{value:,}")
        for key, value in summary.items()
        if isinstance(value, int) and not isinstance(value, bool)
    ]
    title = f"sample city in {out_dir}"
    rows_table(title, ("file", "features"), rows, right={"features"}, to=console)


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Serve the API and the viewer (starting the embedded database if needed)."""
    url = database_url(ctx)
    migrate_database(url, settings(ctx))
    _run_server(settings(ctx), url, host, port)


def _run_server(config: Settings, url: str, host: str | None, port: int | None) -> None:
    # The web stack is imported here, not with the other packages: it is most of the start-up
    # time of ``twin`` (seconds), which every other command (and tab completion) would pay.
    import uvicorn

    from api.app import create_app

    config.db.database_url = url
    host = host or config.api.host
    port = port or config.api.port
    console.print(f"serving on http://{host}:{port}/  (viewer: http://{host}:{port}/viewer)")
    for map_id, m in load_maps(config.tiles.maps_dir).items():
        console.print(f"  map {m.title}: http://{host}:{port}/maps/{map_id}/style.json")
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")


def demo(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--data", help="Sample city folder")] = Path(
        "sample-city"
    ),
    seed: int = 42,
    scale: float = 1.0,
    serve_it: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Generate the sample city if absent, start the database, import everything, serve."""
    config = settings(ctx)
    if not (out_dir / "manifest.json").exists():
        _generate(out_dir, seed, scale)
    url = database_url(ctx)
    migrate_database(url, config)
    with db.connect(url) as conn, progress_bar() as bar:
        task = bar.add_task("importing", total=None)

        def on_file(path: Path) -> Progress:
            def progress(stage: str, done: int, total: int) -> None:
                bar.update(
                    task, description=f"{path.name}: {stage}", completed=done, total=total or None
                )

            return progress

        loaded = load_sample_city(conn, out_dir, config, on_file=on_file)
    for g in loaded.grid:
        console.print(f"grid: {g.cells:,} {g.level} cells from {g.file}")
    if loaded.components is not None:
        console.print(f"components: {loaded.components.loaded:,} from components.gpkg")
    for n in loaded.networks:
        console.print(f"pipe network {n.network}: {n.segments:,} pipes, {n.nodes:,} nodes")
    for s in loaded.scenes:
        console.print(f"scene {s.id}: {s.datetime:%Y-%m-%d}, bands {','.join(s.bands)}")
    if loaded.changes:
        kinds = ", ".join(f"{k} {v['count']}" for k, v in loaded.changes["by_kind"].items())
        console.print(f"changes between the two dates: {kinds} (layer raster_changes)")
    for r in loaded.layers:
        console.print(f"imported {r.file} as layer {r.layer}: {r.loaded:,} features")
    if loaded.sensors is not None:
        sl = loaded.sensors
        console.print(
            f"sensors: {sl.sensors:,} ({sl.created:,} registered now), "
            f"{sl.readings:,} readings of the last hours ingested"
        )
    if serve_it:
        _serve_demo(config, url, out_dir)


def _serve_demo(config: Settings, url: str, folder: Path) -> None:
    """Serve, with the simulator feeding the demo sensors beside the server (``twin demo``
    only: ``twin serve`` shows what real sensors send)."""
    feed = start_simulator(url, folder, config.sensors)
    if feed is not None:
        console.print(f"live feed: the demo sensors report every {STEP_S:g} s, with incidents")
    try:
        _run_server(config, url, None, None)
    finally:
        if feed is not None:
            feed.stop()
