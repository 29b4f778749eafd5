"""``twin report``: a planners' report of one management area, as a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import connection, console, settings
from query.plan import run_sync
from reports import check_format, check_level, file_name
from reports.data import collect
from reports.render import render


def report(
    ctx: typer.Context,
    level: Annotated[str, typer.Argument(help="grid (unit grid), community, street or district")],
    code: Annotated[str, typer.Argument(help="The area's code, e.g. 341502001001")],
    format: Annotated[str, typer.Option("--format", "-f", help="html, pdf, csv or xlsx")] = "html",
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default report-LEVEL-CODE.FORMAT)")
    ] = None,
) -> None:
    """Write the report of a management area: summary, map and tables."""
    grid_level, fmt = check_level(level), check_format(format)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("connecting...", total=None)

        def step(label: str) -> None:
            progress.update(task, description=label + "...")

        # a new database gets its schema, not a traceback
        with connection(ctx, migrated=True) as conn:
            data = run_sync(conn, collect(grid_level, code, settings(ctx).query), step)
        step(f"writing {fmt}")
        body = render(data, fmt)
    path = out or Path(file_name(grid_level, data.cell["code"], fmt))
    path.write_bytes(body)
    _print_summary(data.summary, data.cell, path)


def _print_summary(summary: dict, cell: dict, path: Path) -> None:
    table = Table(title=f"{cell['name']} {cell['code']}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    pipes, comps, blds = summary["pipes"], summary["components"], summary["buildings"]
    table.add_row("area", f"{summary['area']['area_m2']:,.0f} m²")
    table.add_row("unit grids", f"{summary['unit_grids']['count']:,}")
    broken = sum(r["count"] for r in comps["by_status"] if r["status"] != "完好")
    table.add_row("components", f"{comps['total']:,} ({broken:,} not intact)")
    table.add_row("pipes", f"{pipes['total_length_m'] / 1000:,.2f} km")
    if blds["available"]:
        table.add_row("buildings", f"{blds['count']:,}")
    changes = sum(c["area_m2"] for c in summary["imagery"]["changes"])
    table.add_row("imagery changes", f"{changes:,.0f} m²")
    console.print(table)
    console.print(f"report written to [bold]{path}[/]")
