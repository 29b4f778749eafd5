"""``twin grid``: import, generate and locate on the unified grid (GB/T 30428.1)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import geopandas as gpd
import psycopg
import shapely
import typer

from cli.common import connection, console, rows_table, settings
from grid.generate import Community, generate_units
from grid.store import GridRejected, codes_and_names, import_grid
from layers.importer import source_crs
from layers.readers import read_source
from twin.crs import to_wgs84_xy
from twin.errors import InvalidParameter

grid_app = typer.Typer(help="The unified management grid: import, generate, locate")


def print_findings(findings: list, title: str, limit: int = 40) -> None:
    """The problems found in grid cells, fatal ones in red."""
    rows = []
    for f in findings:
        where = f"{f.lon:.6f}, {f.lat:.6f}" if f.lon is not None else ""
        area = f"{f.area_m2:,.1f}" if f.area_m2 is not None else ""
        style = "red" if f.fatal else "yellow"
        rows.append((f.code, f"[{style}]{f.kind}[/]", where, area, f.message))
    columns = ("code", "check", "where (lon, lat)", "area m²", "message")
    rows_table(title, columns, rows, limit=limit, to=console)


@grid_app.command("import")
def grid_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Polygons of one level with a code field")],
    level: Annotated[str, typer.Option(help="district, street, community or unit")],
    crs: Annotated[str | None, typer.Option(help="CRS of the file when it does not say")] = None,
    allow_gaps: Annotated[bool, typer.Option(help="Report gaps as warnings, load anyway")] = False,
) -> None:
    """Load real grid cells of one level, checked against the standard and their parents."""
    try:
        with connection(ctx) as conn, console.status("importing grid cells...") as status:
            report = import_grid(
                conn,
                file,
                level,
                settings(ctx).grid,
                crs=crs,
                allow_gaps=allow_gaps,
                progress=status.update,
            )
    except GridRejected as exc:
        print_findings(exc.report.findings, f"problems in {file.name}")
        raise
    if report.findings:
        print_findings(report.findings, f"notes on {file.name}")
    console.print(
        f"[green]loaded[/] {report.cells:,} {level} cells from {file.name}"
        + (f" (replacing {report.retired:,}, kept in history)" if report.retired else "")
    )


@grid_app.command("generate")
def grid_generate(
    ctx: typer.Context,
    area: Annotated[str, typer.Option(help="Community polygons file, or a grid code in the DB")],
    size: Annotated[float, typer.Option(help="Square size in metres (100 gives ~10,000 m²)")],
    out: Annotated[Path | None, typer.Option(help="Write a GeoPackage instead of loading")] = None,
) -> None:
    """Build regular unit grids for communities that have none, coded per the standard."""
    config = settings(ctx).grid
    try:
        with connection(ctx) as conn:
            communities = _communities(conn, area)
            cells = generate_units(communities, size, config.grid_unit_code_width)
            frame = gpd.GeoDataFrame(
                {"code": [c.code for c in cells], "name": [c.name for c in cells]},
                geometry=[c.geom for c in cells],
                crs=4326,
            )
            if out is not None:
                frame.to_file(out, engine="pyogrio")
                console.print(f"wrote {len(cells):,} unit cells to {out}")
                return
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "generated_units.gpkg"
                frame.to_file(path, engine="pyogrio")
                report = import_grid(conn, path, "unit", config)
    except GridRejected as exc:
        print_findings(exc.report.findings, "problems in the generated grid")
        raise
    console.print(f"[green]generated and loaded[/] {report.cells:,} unit cells of ~{size:.0f} m")


def _communities(conn: psycopg.Connection, area: str) -> list[Community]:
    """Communities from a file (code + polygon) or the current cells under a code."""
    if Path(area).exists():
        src = read_source(Path(area))
        ref, _ = source_crs(src, None)
        geoms = shapely.transform(shapely.from_wkb(src.wkb), lambda xy: to_wgs84_xy(xy, ref))
        codes, names = codes_and_names(src.attributes, Path(area).name)
        return [Community(c, n, g) for c, n, g in zip(codes, names, geoms, strict=True)]
    rows = conn.execute(
        "SELECT code, name, ST_AsBinary(geom) FROM twin.grid_cells "
        "WHERE level = 'community' AND valid_to IS NULL AND code LIKE %s ORDER BY code",
        (area + "%",),
    ).fetchall()
    if not rows:
        raise InvalidParameter(
            f"no community under {area!r}: give a community polygon file or a "
            "district/street/community code already imported"
        )
    return [Community(r[0], r[1], shapely.from_wkb(bytes(r[2]))) for r in rows]
