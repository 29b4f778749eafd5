"""What the command groups share: the consoles, the settings and database of the invocation, and
rows printed as a table."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin import db, migrate
from twin.settings import Settings

console = Console(stderr=True)  # messages, progress, reports: stdout is left for the data
out = Console()


def settings(ctx: typer.Context) -> Settings:
    """The settings the root callback built for this invocation."""
    return ctx.ensure_object(Settings)


def database_url(ctx: typer.Context) -> str:
    """TWIN_DATABASE_URL, or the embedded cluster's (started when it is not running)."""
    return db.database_url(settings(ctx).db, start=True)


@contextmanager
def connection(ctx: typer.Context, *, migrated: bool = False) -> Iterator[psycopg.Connection]:
    """A connection, committed when the block ends without an error; ``migrated`` brings the
    schema up to date first, so that a new database gets it rather than a traceback."""
    with db.connect(database_url(ctx)) as conn:
        if migrated:
            migrate.migrate(conn)
            conn.commit()
        yield conn


def fetch_rows(
    ctx: typer.Context, statement: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> list[tuple]:
    """All the rows of one query."""
    with connection(ctx) as conn:
        return conn.execute(statement, params).fetchall()


def rows_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Collection[str] = (),
    limit: int | None = None,
    more: str = "",
    to: Console | None = None,
) -> None:
    """Print rows under their column names (None as blank), the first ``limit`` of them and how
    many more there are; to stdout unless ``to`` says otherwise."""
    rows = list(rows)
    shown = rows if limit is None else rows[:limit]
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    for row in shown:
        table.add_row(*("" if v is None else str(v) for v in row))
    console_ = to or Console()  # made now, so that it takes the terminal width of now
    console_.print(table)
    if len(rows) > len(shown):
        console_.print(f"... and {len(rows) - len(shown):,} more{more}")


def progress_bar() -> Progress:
    """A bar of rows done, on stderr, gone when the work is."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
