"""``twin components``: city management components (GB/T 30428.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import connection, console, fetch_rows, rows_table, settings
from components.importer import ComponentImport, ComponentsRejected, import_components

components_app = typer.Typer(help="City management components: import survey files, classes")
# In the current folder, like the reports of `twin import` (LAYER.import-report.csv).
REPORT = "components.import-report.csv"


def _rows(title: str, label: str, rows: list, limit: int = 30) -> None:
    found = [(b.row, b.reason) for b in rows]
    rows_table(title, (label, "reason"), found, right={label}, limit=limit, to=console)


@components_app.command("import")
def components_import(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="Points with ObjID/ObjName/DeptCode1.. or our names")
    ],
    crs: Annotated[str | None, typer.Option(help="CRS when the file does not say")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Load the good rows, report the bad")] = False,
    replace: Annotated[bool, typer.Option(help="Replace every component")] = False,
    allow_outside: Annotated[
        bool,
        typer.Option(
            help="Load rows however far from the district (TWIN_COMPONENT_MAX_OUTSIDE_KM)"
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Where to write the import report (default: " + REPORT + ")"),
    ] = None,
) -> None:
    """Load components from a survey file; codes are checked, or generated when absent."""
    report_path = report or Path(REPORT)
    try:
        with connection(ctx) as conn, console.status("importing components..."):
            result = import_components(
                conn,
                file,
                settings(ctx).components,
                crs=crs,
                skip_invalid=skip_invalid,
                allow_outside=allow_outside,
                mode="replace" if replace else "append",
                report_path=report_path,
            )
    except ComponentsRejected as exc:
        _rows(f"bad rows in {file.name}", exc.report.row_label, exc.report.bad_rows)
        _grid_warnings(exc.report, loaded=False)
        _report_path(exc.report)
        raise
    if result.bad_rows:
        _rows(f"skipped rows of {file.name}", result.row_label, result.bad_rows)
    if result.warnings:
        _rows(f"notes on {file.name}", result.row_label, result.warnings)
    _grid_warnings(result, loaded=True)
    console.print(
        f"[green]loaded[/] {result.loaded:,} components from {file.name} "
        f"({result.generated:,} codes generated) in {result.seconds:.1f} s"
    )
    _report_path(result)


def _grid_warnings(result: ComponentImport, loaded: bool, limit: int = 10) -> None:
    """Notes about the grid, and how many rows are outside every unit grid, with the first."""
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if not result.outside:
        return
    n, what = len(result.outside), "loaded" if loaded else "to load once the bad rows are fixed"
    console.print(
        f"[yellow]warning:[/] {n:,} of {result.total:,} rows are outside every unit grid "
        f"({what}; distances from {result.measured_from})"
    )
    rows = [
        (
            o.row,
            o.code or "(generated)",
            f"{o.lon:.6f}",
            f"{o.lat:.6f}",
            f"{o.distance_m / 1000:,.2f}",
        )
        for o in result.outside
    ]
    columns = (result.row_label, "code", "lon", "lat", "km")
    right = set(columns) - {"code"}
    rows_table(None, columns, rows, right=right, limit=limit, more=" in the report", to=console)


def _report_path(result: ComponentImport) -> None:
    if result.report_path is not None:
        console.print(f"report: {result.report_path}")


@components_app.command("classes")
def components_classes(ctx: typer.Context) -> None:
    """List the component classes (the standard's and local extensions)."""
    rows = fetch_rows(
        ctx,
        "SELECT class_code, name_zh, name_en, major_name_zh, local "
        "FROM twin.component_classes ORDER BY class_code",
    )
    rows = [(*row[:4], "yes" if row[4] else "") for row in rows]
    rows_table("component classes (GB/T 30428.2)", ("code", "名称", "name", "major", "local"), rows)
