"""``twin components``: city management components (GB/T 30428.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin import db
from twin.errors import TwinError
from twin.settings import Settings

components_app = typer.Typer(help="City management components: import survey files, classes")
console = Console(stderr=True)


def _fail(exc: TwinError) -> None:
    console.print(f"[bold red]error:[/] {exc.message}")
    raise typer.Exit(2)


def _rows(title: str, label: str, rows: list, limit: int = 30) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column(label, justify="right")
    table.add_column("reason")
    for b in rows[:limit]:
        table.add_row(str(b.row), b.reason)
    console.print(table)
    if len(rows) > limit:
        console.print(f"... and {len(rows) - limit:,} more")


@components_app.command("import")
def components_import(
    file: Annotated[
        Path, typer.Argument(help="Points with ObjID/ObjName/DeptCode1.. or our names")
    ],
    crs: Annotated[str | None, typer.Option(help="CRS when the file does not say")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Load the good rows, report the bad")] = False,
    replace: Annotated[bool, typer.Option(help="Replace every component")] = False,
) -> None:
    """Load components from a survey file; codes are checked, or generated when absent."""
    from layers.components.importer import ComponentsRejected, import_components

    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            with console.status("importing components..."):
                report = import_components(
                    conn,
                    file,
                    settings.components,
                    crs=crs,
                    skip_invalid=skip_invalid,
                    mode="replace" if replace else "append",
                )
    except ComponentsRejected as exc:
        _rows(f"bad rows in {file.name}", exc.report.row_label, exc.report.bad_rows)
        _fail(exc)
    except TwinError as exc:
        _fail(exc)
    if report.bad_rows:
        _rows(f"skipped rows of {file.name}", report.row_label, report.bad_rows)
    if report.warnings:
        _rows(f"notes on {file.name}", report.row_label, report.warnings)
    console.print(
        f"[green]loaded[/] {report.loaded:,} components from {file.name} "
        f"({report.generated:,} codes generated) in {report.seconds:.1f} s"
    )


@components_app.command("classes")
def components_classes() -> None:
    """List the component classes (the standard's and local extensions)."""
    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            rows = conn.execute(
                "SELECT class_code, name_zh, name_en, major_name_zh, local "
                "FROM twin.component_classes ORDER BY class_code"
            ).fetchall()
    except TwinError as exc:
        _fail(exc)
    table = Table(title="component classes (GB/T 30428.2)", title_justify="left")
    for col in ("code", "名称", "name", "major", "local"):
        table.add_column(col)
    for code, zh, en, major, local in rows:
        table.add_row(code, zh, en, major, "yes" if local else "")
    Console().print(table)
