"""``twin cases``: dispatch rules, case classes and statistics of the grid-management cases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cases.classes import import_local_classes, list_classes
from cases.rules import LIST_SQL, read_rules, save_rules
from cases.stats import case_stats, to_csv
from cli.common import connection, console, fetch_rows, rows_table
from query.plan import run_sync
from twin import audit
from twin.errors import InvalidParameter

cases_app = typer.Typer(help="Cases (案件): dispatch rules, classes, statistics")
rules_app = typer.Typer(help="Dispatch rules: which department handles which cases where")
classes_app = typer.Typer(
    help="Case classes (部件 and 事件) and their deadlines", invoke_without_command=True
)
cases_app.add_typer(rules_app, name="rules")
cases_app.add_typer(classes_app, name="classes")


@rules_app.command("import")
def rules_import(
    ctx: typer.Context,
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
    rules = read_rules(file)
    with connection(ctx) as conn, conn.transaction():
        total = save_rules(conn, rules, replace=replace)
        audit.record_sync(
            conn,
            audit.cli_principal(),
            "cases.rules.import",
            "cases",
            detail={"file": file.name, "rules": len(rules), "replace": replace},
        )
    console.print(f"[green]loaded[/] {len(rules):,} rules from {file.name}; {total:,} in all")


@rules_app.command("list")
def rules_list(ctx: typer.Context) -> None:
    """The dispatch rules in the order they are tried."""
    columns = ("id", "kind", "class", "grid", "priority", "department", "name", "note")
    rows_table("dispatch rules (first match wins)", columns, fetch_rows(ctx, LIST_SQL))


@classes_app.callback()
def classes_list(ctx: typer.Context) -> None:
    """List the case classes with their deadlines (处置时限, hours from 派遣)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = [
        (kind, code, name, major_name, hours, "yes" if local else "")
        for kind, code, _major, name, major_name, hours, local in fetch_rows(ctx, *list_classes())
    ]
    rows_table("case classes", ("kind", "code", "名称", "major", "hours", "local"), rows)


@classes_app.command("import")
def classes_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV of 事件 classes, the packaged columns")],
) -> None:
    """Add the city's own 事件 classes (扩展事件), or change a packaged class's deadline."""
    with connection(ctx) as conn, conn.transaction():
        loaded = import_local_classes(conn, file)
        audit.record_sync(
            conn,
            audit.cli_principal(),
            "cases.classes.import",
            "cases",
            detail={"file": file.name, "classes": len(loaded)},
        )
    console.print(f"[green]loaded[/] {len(loaded):,} 事件 classes from {file.name}")


@cases_app.command("stats")
def cases_stats(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="grid, community, street, district or department")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
    grid: Annotated[str | None, typer.Option(help="Only cases in this grid code prefix")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (YYYY-MM-DD)")] = None,
    until: Annotated[str | None, typer.Option(help="Created before (YYYY-MM-DD)")] = None,
) -> None:
    """Cases per area or department: states, overdue, on-time rate."""
    if format not in ("table", "csv", "json"):
        raise InvalidParameter(f"format {format!r}: use table, csv or json")
    with connection(ctx) as conn:
        data = run_sync(conn, case_stats(by, grid=grid, since=since, until=until))
    if format == "csv":
        sys.stdout.write(to_csv(data).decode("utf-8-sig"))
        return
    if format == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _stats_table(data)


def _stats_table(data: dict) -> None:
    columns = ("code", "name", "total", *data["states"], "overdue", "on_time_rate")
    rows = []
    for row in [*data["rows"], data["total"]]:
        rate = row["on_time_rate"]
        rows.append([*(row[c] for c in columns[:-1]), "—" if rate is None else f"{rate:.1%}"])
    right = set(columns) - {"code", "name"}
    rows_table(f"cases by {data['by']}", columns, rows, right=right)
