"""``twin grid``: import, generate and locate on the unified grid (GB/T 30428.1)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin import db
from twin.errors import InvalidParameter, TwinError
from twin.settings import Settings

grid_app = typer.Typer(help="The unified management grid: import, generate, locate")
console = Console(stderr=True)


def _fail(exc: TwinError) -> None:
    console.print(f"[bold red]error:[/] {exc.message}")
    raise typer.Exit(2)


def print_findings(findings: list, title: str, limit: int = 40) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("code", "check", "where (lon, lat)", "area m²", "message"):
        table.add_column(col)
    for f in findings[:limit]:
        where = f"{f.lon:.6f}, {f.lat:.6f}" if f.lon is not None else ""
        area = f"{f.area_m2:,.1f}" if f.area_m2 is not None else ""
        style = "red" if f.fatal else "yellow"
        table.add_row(f.code, f"[{style}]{f.kind}[/]", where, area, f.message)
    console.print(table)
    if len(findings) > limit:
        console.print(f"... and {len(findings) - limit} more")


@grid_app.command("import")
def grid_import(
    file: Annotated[Path, typer.Argument(help="Polygons of one level with a code field")],
    level: Annotated[str, typer.Option(help="district, street, community or unit")],
    crs: Annotated[str | None, typer.Option(help="CRS of the file when it does not say")] = None,
    allow_gaps: Annotated[bool, typer.Option(help="Report gaps as warnings, load anyway")] = False,
) -> None:
    """Load real grid cells of one level, checked against the standard and their parents."""
    from grid.store import GridRejected, import_grid

    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            with console.status("importing grid cells...") as status:
                report = import_grid(
                    conn,
                    file,
                    level,
                    settings.grid,
                    crs=crs,
                    allow_gaps=allow_gaps,
                    progress=status.update,
                )
    except GridRejected as exc:
        print_findings(exc.report.findings, f"problems in {file.name}")
        _fail(exc)
    except TwinError as exc:
        _fail(exc)
    if report.findings:
        print_findings(report.findings, f"notes on {file.name}")
    console.print(
        f"[green]loaded[/] {report.cells:,} {level} cells from {file.name}"
        + (f" (replacing {report.retired:,}, kept in history)" if report.retired else "")
    )


@grid_app.command("generate")
def grid_generate(
    area: Annotated[str, typer.Option(help="Community polygons file, or a grid code in the DB")],
    size: Annotated[float, typer.Option(help="Square size in metres (100 gives ~10,000 m²)")],
    out: Annotated[Path | None, typer.Option(help="Write a GeoPackage instead of loading")] = None,
) -> None:
    """Build regular unit grids for communities that have none, coded per the standard."""
    import geopandas as gpd

    from grid.generate import generate_units
    from grid.store import GridRejected, import_grid

    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            communities = _communities(conn, area)
            cells = generate_units(communities, size, settings.grid.grid_unit_code_width)
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
                report = import_grid(conn, path, "unit", settings.grid)
    except GridRejected as exc:
        print_findings(exc.report.findings, "problems in the generated grid")
        _fail(exc)
    except TwinError as exc:
        _fail(exc)
    console.print(f"[green]generated and loaded[/] {report.cells:,} unit cells of ~{size:.0f} m")


def _communities(conn, area: str) -> list:
    """Communities from a file (code + polygon) or the current cells under a code."""
    import shapely

    from grid.generate import Community

    if Path(area).exists():
        from grid.store import codes_and_names
        from layers.importer import source_crs
        from layers.readers import read_source
        from twin.crs import to_wgs84_xy

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
