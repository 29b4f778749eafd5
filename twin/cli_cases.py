"""``twin cases``: dispatch rules, case classes and statistics of the grid-management cases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin import audit, db
from twin.errors import TwinError
from twin.settings import Settings

cases_app = typer.Typer(help="Cases (案件): dispatch rules, classes, statistics")
rules_app = typer.Typer(help="Dispatch rules: which department handles which cases where")
classes_app = typer.Typer(
    help="Case classes (部件 and 事件) and their deadlines", invoke_without_command=True
)
cases_app.add_typer(rules_app, name="rules")
cases_app.add_typer(classes_app, name="classes")
console = Console(stderr=True)


def _fail(exc: TwinError) -> None:
    console.print(f"[bold red]error:[/] {exc.message}")
    raise typer.Exit(2)


@rules_app.command("import")
def rules_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV: kind, class_prefix, grid_prefix, priority, department_code, "
            "department_name, note"
        ),
    ],
    replace: Annotated[bool, typer.Option(help="Replace every rule (default: upsert)")] = False,
) -> None:
    """Load dispatch rules; every row is checked first, and a bad file loads nothing."""
    from cases.rules import read_rules, save_rules

    settings = Settings()
    try:
        rules = read_rules(file)
        with db.connect(db.database_url(settings.db)) as conn:
            with conn.transaction():
                total = save_rules(conn, rules, replace=replace)
                audit.record_sync(
                    conn,
                    audit.cli_principal(),
                    "cases.rules.import",
                    "cases",
                    detail={"file": file.name, "rules": len(rules), "replace": replace},
                )
    except TwinError as exc:
        _fail(exc)
    console.print(f"[green]loaded[/] {len(rules):,} rules from {file.name}; {total:,} in all")


@rules_app.command("list")
def rules_list() -> None:
    """The dispatch rules in the order they are tried."""
    from cases.rules import LIST_SQL

    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            rows = conn.execute(LIST_SQL).fetchall()
    except TwinError as exc:
        _fail(exc)
    table = Table(title="dispatch rules (first match wins)", title_justify="left")
    for col in ("id", "kind", "class", "grid", "priority", "department", "name", "note"):
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


@classes_app.callback()
def classes_list(ctx: typer.Context) -> None:
    """List the case classes with their deadlines (处置时限, hours from 派遣)."""
    if ctx.invoked_subcommand is not None:
        return
    from cases.classes import list_classes

    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            statement, params = list_classes()
            rows = conn.execute(statement, params).fetchall()
    except TwinError as exc:
        _fail(exc)
    table = Table(title="case classes", title_justify="left")
    for col in ("kind", "code", "名称", "major", "hours", "local"):
        table.add_column(col)
    for kind, code, _major, name, major_name, hours, local in rows:
        table.add_row(kind, code, name, major_name, str(hours), "yes" if local else "")
    Console().print(table)


@classes_app.command("import")
def classes_import(
    file: Annotated[Path, typer.Argument(help="CSV of 事件 classes, the packaged columns")],
) -> None:
    """Add the city's own 事件 classes (扩展事件), or change a packaged class's deadline."""
    from cases.classes import import_local_classes

    settings = Settings()
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            with conn.transaction():
                loaded = import_local_classes(conn, file)
                audit.record_sync(
                    conn,
                    audit.cli_principal(),
                    "cases.classes.import",
                    "cases",
                    detail={"file": file.name, "classes": len(loaded)},
                )
    except TwinError as exc:
        _fail(exc)
    console.print(f"[green]loaded[/] {len(loaded):,} 事件 classes from {file.name}")


@cases_app.command("stats")
def cases_stats(
    by: Annotated[str, typer.Option(help="grid, community, street, district or department")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
    grid: Annotated[str | None, typer.Option(help="Only cases in this grid code prefix")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (YYYY-MM-DD)")] = None,
    until: Annotated[str | None, typer.Option(help="Created before (YYYY-MM-DD)")] = None,
) -> None:
    """Cases per area or department: states, overdue, on-time rate."""
    from cases.stats import case_stats, to_csv
    from query.plan import run_sync

    settings = Settings()
    if format not in ("table", "csv", "json"):
        console.print(f"[bold red]error:[/] format {format!r}: use table, csv or json")
        raise typer.Exit(2)
    try:
        with db.connect(db.database_url(settings.db)) as conn:
            data = run_sync(conn, case_stats(by, grid=grid, since=since, until=until))
    except TwinError as exc:
        _fail(exc)
    if format == "csv":
        sys.stdout.write(to_csv(data).decode("utf-8-sig"))
        return
    if format == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _stats_table(data)


def _stats_table(data: dict) -> None:
    table = Table(title=f"cases by {data['by']}", title_justify="left")
    columns = ("code", "name", "total", *data["states"], "overdue", "on_time_rate")
    for col in columns:
        table.add_column(col, justify="left" if col in ("code", "name") else "right")
    for row in [*data["rows"], data["total"]]:
        rate = row["on_time_rate"]
        cells = [str(row[c]) for c in columns[:-1]]
        table.add_row(*cells, "—" if rate is None else f"{rate:.1%}")
    Console().print(table)
