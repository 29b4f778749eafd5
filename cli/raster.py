"""``twin raster``: the scene catalog and change detection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rasterio.crs import CRS

from cli.common import connection, console, fetch_rows, rows_table, settings
from rasters.catalog import SET_READ_ROLE_SQL, add_scene
from rasters.changes import run_change_detection
from rasters.sources import resolution_text, resolution_unit
from twin import audit
from twin.auth import ROLES, check_role
from twin.errors import NotFound

raster_app = typer.Typer(help="Remote sensing: register scenes, list them, detect changes")


@raster_app.command("add")
def add(
    ctx: typer.Context,
    files: Annotated[
        list[str],
        typer.Argument(
            help="One multi-band file, or one file per band; NETCDF:file.nc:var for one "
            "variable of a netCDF file"
        ),
    ],
    collection: Annotated[str, typer.Option(help="Collection id")] = "scenes",
    datetime: Annotated[
        str | None, typer.Option("--datetime", help="Acquisition date, e.g. 2024-08-20")
    ] = None,
    sensor: Annotated[str | None, typer.Option(help="e.g. landsat-8, sentinel-2")] = None,
    bands: Annotated[
        str | None, typer.Option(help="Band names in file order, e.g. blue,green,red,nir")
    ] = None,
    scene_id: Annotated[str | None, typer.Option("--id", help="Scene id (default: name)")] = None,
    scale: Annotated[float | None, typer.Option(help="Raw value × scale = reflectance")] = None,
    replace: Annotated[bool, typer.Option(help="Register an existing id again")] = False,
    crs: Annotated[
        str | None,
        typer.Option(
            help="CRS of files that state none (EPSG:4326, EPSG:32650, WKT, PROJ); a file's "
            "own different CRS is refused, nothing is reprojected"
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="Read only with this GDAL driver: GTiff, JP2OpenJPEG, netCDF"
        ),
    ] = None,
) -> None:
    """Register a scene: converted to a Cloud Optimized GeoTIFF unless it is one already."""
    with connection(ctx) as conn:
        with console.status(f"registering {Path(files[0]).name}..."):
            report = add_scene(
                conn,
                files,
                settings(ctx).raster_dir,
                scene_id=scene_id,
                collection=collection,
                when=datetime,
                sensor=sensor,
                bands=[b.strip() for b in bands.split(",")] if bands else None,
                scale=scale,
                replace=replace,
                crs=crs,
                fmt=fmt,
            )
        conn.commit()
    if report.stale_file:  # the replaced scene's own COG, no longer referenced
        Path(report.stale_file).unlink(missing_ok=True)
    how = "converted to COG" if report.converted else "already a COG, referenced in place"
    console.print(
        f"[green]registered[/] scene {report.id} in {report.collection}: "
        f"{report.datetime:%Y-%m-%d}, {report.sensor or 'sensor unknown'}, bands "
        f"{','.join(report.bands)}, {report.width}×{report.height} px at "
        f"{resolution_text(report.resolution, report.resolution_unit)}, {report.crs} "
        f"({how}, {report.seconds:.1f} s)"
    )


@raster_app.command("list")
def list_scenes(ctx: typer.Context) -> None:
    """The registered scenes."""
    rows = [
        (
            sid,
            coll,
            f"{when:%Y-%m-%d}",
            sensor,
            ",".join(bands),
            resolution_text(res, resolution_unit(CRS.from_wkt(wkt))),  # degrees or a length
            f"{w}×{h}",
        )
        for sid, coll, when, sensor, bands, res, wkt, w, h in fetch_rows(
            ctx,
            "SELECT id, collection, datetime, sensor, bands, resolution, crs_wkt, width, "
            "height FROM twin.raster_scenes ORDER BY collection, datetime",
        )
    ]
    columns = ("id", "collection", "date", "sensor", "bands", "pixel", "size")
    rows_table("scenes", columns, rows)


@raster_app.command("changes")
def changes(
    ctx: typer.Context,
    before: Annotated[str, typer.Argument(help="Scene id of the earlier date")],
    after: Annotated[str, typer.Argument(help="Scene id of the later date")],
    name: Annotated[str | None, typer.Option(help="Change set name")] = None,
) -> None:
    """Detect changes between two scenes into the raster_changes layer."""
    with connection(ctx) as conn:
        with console.status("detecting changes..."):
            summary = run_change_detection(conn, before, after, name)
        conn.commit()
    console.print(
        f"[green]change set[/] {summary['change_set']}: "
        + ", ".join(
            f"{k} {v['count']} ({v['area_m2']:,.0f} m²)" for k, v in summary["by_kind"].items()
        )
        + f" in {summary['seconds']:.1f} s (layer raster_changes)"
    )


@raster_app.command("access")
def access(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="Raster collection id")],
    read: Annotated[str, typer.Option(help="public, viewer, editor or admin")],
) -> None:
    """Who may read a raster collection's scenes, tiles and files."""
    check_role(read, ROLES)
    with connection(ctx) as conn:
        row = conn.execute(SET_READ_ROLE_SQL, [read, collection]).fetchone()
        if row is None:
            raise NotFound(f"no raster collection {collection!r}; see twin raster list")
        detail = {"read_role": read}
        audit.record_sync(conn, audit.cli_principal(), "raster.access", collection, detail=detail)
        conn.commit()
    console.print(f"{collection}: read by {read} and above")
