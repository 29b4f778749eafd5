"""The ``twin`` command line.

The CLI is the composition root: its commands import the layers, sample generator and API
inside the command functions, so that importing ``twin`` never pulls in the packages above it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin import db, migrate
from twin.cli_cases import cases_app
from twin.cli_components import components_app
from twin.cli_grid import grid_app
from twin.cli_keys import keys_app
from twin.cli_pipelines import pipelines_app
from twin.cli_raster import raster_app
from twin.cli_report import report
from twin.cli_sensors import sensors_app
from twin.errors import TwinError
from twin.settings import Settings

app = typer.Typer(
    help="citytwin: a GIS digital-twin server for city governance", no_args_is_help=True
)
db_app = typer.Typer(help="The database: embedded PostGIS cluster or TWIN_DATABASE_URL")
sample_app = typer.Typer(help="The sample city")
layers_app = typer.Typer(help="Published layers")
app.add_typer(db_app, name="db")
app.add_typer(sample_app, name="sample")
app.add_typer(layers_app, name="layers")
app.add_typer(grid_app, name="grid")
app.add_typer(components_app, name="components")
app.add_typer(cases_app, name="cases")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(raster_app, name="raster")
app.add_typer(keys_app, name="keys")
app.add_typer(sensors_app, name="sensors")
app.command("report")(report)

console = Console(stderr=True)
out = Console()


def _fail(exc: TwinError) -> None:
    console.print(f"[bold red]error:[/] {exc.message}")
    raise typer.Exit(2)


def _url(settings: Settings) -> str:
    return db.database_url(settings.db, start=True)


# --- db -----------------------------------------------------------------------------------------
@db_app.command("start")
def db_start() -> None:
    """Start the embedded cluster (creating it on first use) and apply migrations."""
    settings = Settings()
    try:
        if settings.db.database_url:
            console.print("TWIN_DATABASE_URL is set: using that database, nothing to start")
            url = settings.db.database_url
        else:
            cluster = db.embedded(settings.db)
            with console.status("starting PostgreSQL + PostGIS..."):
                url = cluster.start()
            console.print(f"embedded PostGIS running in {cluster.data}")
        _migrate(url)
    except TwinError as exc:
        _fail(exc)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    settings = Settings()
    if settings.db.database_url:
        console.print("TWIN_DATABASE_URL is set: the external database is not ours to stop")
        return
    try:
        stopped = db.embedded(settings.db).stop()
    except TwinError as exc:
        _fail(exc)
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the database is up, its PostGIS version and migration level."""
    settings = Settings()
    info: dict = {}
    try:
        if settings.db.database_url:
            info = {"mode": "external"}
            url = settings.db.database_url
        else:
            info = {"mode": "embedded", **db.embedded(settings.db).status()}
            if not info["running"]:
                out.print_json(json.dumps(info))
                raise typer.Exit(1)
            url = db.embedded(settings.db).url()
        with db.connect(url) as conn:
            row = conn.execute("SELECT postgis_full_version() IS NOT NULL, version()").fetchone()
            info["server"] = row[1].split(",")[0] if row else None
            info["migration_level"] = migrate.level(conn)
    except TwinError as exc:
        _fail(exc)
    out.print_json(json.dumps(info))


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (starting the embedded cluster if needed)."""
    try:
        print(_url(Settings()))
    except TwinError as exc:
        _fail(exc)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations (a no-op when up to date)."""
    try:
        _migrate(_url(Settings()))
    except TwinError as exc:
        _fail(exc)


def _migrate(url: str) -> None:
    from cases.classes import sync_case_classes
    from components.classes import sync_classes

    settings = Settings().components
    with db.connect(url) as conn:
        ran = migrate.migrate(conn)
        lvl = migrate.level(conn)
        # Component classes are data (the standard's and any local extension file).
        sync_classes(conn, settings.component_classes_file, width=settings.component_code_width)
        sync_case_classes(conn)  # 事件 classes and 部件 deadlines of the cases
    for m in ran:
        console.print(f"applied migration {m.version:04d} {m.name}")
    console.print(f"schema at migration level {lvl}" + ("" if ran else " (nothing to do)"))


# --- import -------------------------------------------------------------------------------------
@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Any OGR-readable vector file, or CSV with lon/lat")],
    layer: Annotated[str | None, typer.Option(help="Layer name (default: the file name)")] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of the coordinates: EPSG code or gcj02")
    ] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Load the good rows, report the bad")] = False,
    replace: Annotated[bool, typer.Option(help="Replace an existing layer")] = False,
    append: Annotated[bool, typer.Option(help="Append to an existing layer")] = False,
    source_layer: Annotated[
        str | None, typer.Option(help="Layer inside a multi-layer file")
    ] = None,
    require: Annotated[list[str] | None, typer.Option(help="A field every row must have")] = None,
    title: Annotated[str | None, typer.Option(help="Human title of the layer")] = None,
    report: Annotated[Path | None, typer.Option(help="Where to write the bad-row report")] = None,
) -> None:
    """Publish a vector file as a layer (served as an OGC collection and vector tiles)."""
    from layers.importer import ImportRejected, import_file

    if replace and append:
        _fail(TwinError("choose --replace or --append, not both"))
    mode = "replace" if replace else "append" if append else "create"
    if layer == "components":
        # The components layer is the GB/T 30428.2 table: same checks as `twin components
        # import`, with the standard field names (ObjID, ObjName, DeptCode1...) recognised.
        from twin.cli_components import components_import

        components_import(file, crs=crs, skip_invalid=skip_invalid, replace=replace)
        return
    try:
        with db.connect(_url(Settings())) as conn, _progress() as bar:
            task = bar.add_task(f"{file.name}: reading", total=None)

            def progress(stage: str, done: int, total: int) -> None:
                bar.update(
                    task, description=f"{file.name}: {stage}", completed=done, total=total or None
                )

            result = import_file(
                conn,
                file,
                layer_name=layer,
                crs=crs,
                skip_invalid=skip_invalid,
                mode=mode,
                source_layer=source_layer,
                require=require or (),
                title=title,
                report_path=report,
                progress=progress,
            )
    except ImportRejected as exc:
        _print_bad_rows(exc.report)
        _fail(exc)
    except TwinError as exc:
        _fail(exc)
    if result.bad_rows:
        _print_bad_rows(result)
    rate = result.loaded / result.seconds if result.seconds else 0
    console.print(
        f"[green]loaded[/] {result.loaded:,} of {result.total:,} features into layer "
        f"[bold]{result.layer}[/] ({result.geometry_type}, from {result.source_crs}) in "
        f"{result.seconds:.1f} s ({rate:,.0f} features/s)"
        + (f"; skipped {len(result.bad_rows):,} bad rows" if result.bad_rows else "")
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _print_bad_rows(report, limit: int = 30) -> None:
    table = Table(title=f"bad rows in {report.file}", title_justify="left")
    table.add_column(report.row_label, justify="right")
    table.add_column("fid")
    table.add_column("reason")
    for b in report.bad_rows[:limit]:
        table.add_row(str(b.row), b.fid or "", b.reason)
    console.print(table)
    if len(report.bad_rows) > limit:
        console.print(f"... and {len(report.bad_rows) - limit:,} more")
    if report.report_path:
        console.print(f"full report: {report.report_path}")


# --- layers -------------------------------------------------------------------------------------
@layers_app.command("list")
def layers_list() -> None:
    """List the published layers."""
    from layers.registry import list_layers

    try:
        with db.connect(_url(Settings())) as conn:
            found = list_layers(conn)
    except TwinError as exc:
        _fail(exc)
    table = Table(title="published layers", title_justify="left")
    for col in ("name", "geometry", "features", "fields"):
        table.add_column(col, justify="right" if col == "features" else "left")
    for layer in found:
        table.add_row(
            layer.name,
            layer.geometry_type,
            f"{layer.feature_count:,}",
            ", ".join(layer.field_names),
        )
    out.print(table)


@layers_app.command("drop")
def layers_drop(name: Annotated[str, typer.Argument(help="Layer to remove")]) -> None:
    """Remove a published layer and its data."""
    from layers.registry import drop_layer

    try:
        with db.connect(_url(Settings())) as conn:
            drop_layer(conn, name)
    except TwinError as exc:
        _fail(exc)
    console.print(f"dropped layer {name}")


@layers_app.command("access")
def layers_access(
    name: Annotated[str, typer.Argument(help="The layer")],
    read: Annotated[str | None, typer.Option(help="public, viewer, editor or admin")] = None,
    edit: Annotated[str | None, typer.Option(help="editor or admin")] = None,
    department: Annotated[
        str | None, typer.Option(help="Only this department's editors edit it")
    ] = None,
    no_department: Annotated[bool, typer.Option(help="Any editor may edit it again")] = False,
) -> None:
    """Who may read and edit a layer (shown when no option is given)."""
    from layers.registry import set_access
    from twin import audit

    try:
        with db.connect(_url(Settings())) as conn:
            migrate.migrate(conn)
            layer = set_access(
                conn,
                name,
                read_role=read,
                edit_role=edit,
                department=department,
                clear_department=no_department,
            )
            if read or edit or department or no_department:
                detail = {
                    "read_role": layer.read_role,
                    "edit_role": layer.edit_role,
                    "department": layer.department,
                }
                audit.record_sync(conn, audit.cli_principal(), "layer.access", name, detail=detail)
            conn.commit()
    except TwinError as exc:
        _fail(exc)
    owner = f", edited by department {layer.department} only" if layer.department else ""
    console.print(
        f"{name}: read by {layer.read_role} and above, edited by {layer.edit_role}{owner}"
    )


# --- sample city --------------------------------------------------------------------------------
@sample_app.command("generate")
def sample_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder")],
    seed: Annotated[int, typer.Option(help="Random seed: same seed, identical files")] = 42,
    scale: Annotated[float, typer.Option(help="Area multiplier (1 = a few km²)")] = 1.0,
) -> None:
    """Write a realistic sample city district (GeoPackages and COG imagery)."""
    from sample_data import generate

    if scale <= 0:
        _fail(TwinError("--scale must be positive"))
    with console.status("generating the sample city...") as status:
        summary = generate(out_dir, seed=seed, scale=scale, progress=lambda m: status.update(m))
    _print_summary(summary, out_dir)


def _print_summary(summary: dict, out_dir: Path) -> None:
    table = Table(title=f"sample city in {out_dir}", title_justify="left")
    table.add_column("file")
    table.add_column("features", justify="right")
    for key, value in summary.items():
        if isinstance(value, int) and not isinstance(value, bool):
            table.add_row(key, f"{value:,}")
    console.print(table)


# --- serving ------------------------------------------------------------------------------------
@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Serve the API and the viewer (starting the embedded database if needed)."""
    settings = Settings()
    try:
        url = _url(settings)
        _migrate(url)
    except TwinError as exc:
        _fail(exc)
    _run_server(settings, url, host, port)


def _run_server(settings: Settings, url: str, host: str | None, port: int | None) -> None:
    import uvicorn

    from api.app import create_app

    settings.db.database_url = url
    host = host or settings.api.host
    port = port or settings.api.port
    console.print(f"serving on http://{host}:{port}/  (viewer: http://{host}:{port}/viewer)")
    from tiles.maps import load_maps

    for map_id, m in load_maps(settings.tiles.maps_dir).items():
        console.print(f"  map {m.title}: http://{host}:{port}/maps/{map_id}/style.json")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command("demo")
def demo(
    out_dir: Annotated[Path, typer.Option("--data", help="Sample city folder")] = Path(
        "sample-city"
    ),
    seed: int = 42,
    scale: float = 1.0,
    serve_it: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Generate the sample city if absent, start the database, import everything, serve."""
    from sample_data import generate
    from sample_data.load import load_sample_city

    settings = Settings()
    if not (out_dir / "manifest.json").exists():
        with console.status("generating the sample city...") as status:
            summary = generate(out_dir, seed=seed, scale=scale, progress=lambda m: status.update(m))
        _print_summary(summary, out_dir)
    try:
        url = _url(settings)
        _migrate(url)
        with db.connect(url) as conn, _progress() as bar:
            task = bar.add_task("importing", total=None)

            def on_file(path: Path):
                def progress(stage: str, done: int, total: int) -> None:
                    bar.update(
                        task,
                        description=f"{path.name}: {stage}",
                        completed=done,
                        total=total or None,
                    )

                return progress

            loaded = load_sample_city(conn, out_dir, settings, on_file=on_file)
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
    except TwinError as exc:
        _fail(exc)
    if serve_it:
        _serve_demo(settings, url, out_dir)


def _serve_demo(settings: Settings, url: str, folder: Path) -> None:
    """Serve, with the simulator feeding the demo sensors beside the server (``twin demo``
    only: ``twin serve`` shows what real sensors send)."""
    from sample_data.simulator import STEP_S, start_simulator

    feed = start_simulator(url, folder, settings.sensors)
    if feed is not None:
        console.print(f"live feed: the demo sensors report every {STEP_S:g} s, with incidents")
    try:
        _run_server(settings, url, None, None)
    finally:
        if feed is not None:
            feed.stop()


def main() -> None:  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    sys.exit(app())
