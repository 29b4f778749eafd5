"""What /healthz reports: the database's versions, its migration level and what each published
layer holds now."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql

from layers.registry import Layer

_VERSIONS = "SELECT postgis_lib_version(), current_setting('server_version')"
_MIGRATION_LEVEL = "SELECT coalesce(max(version), 0) FROM twin.schema_migrations"


async def database_versions(
    conn: psycopg.AsyncConnection,
) -> tuple[str | None, str | None, int]:
    """PostGIS's and PostgreSQL's versions, and the migration level of the schema."""
    cur = await conn.execute(_VERSIONS)
    row = await cur.fetchone()
    cur = await conn.execute(_MIGRATION_LEVEL)
    level = await cur.fetchone()
    return (
        row[0] if row else None,
        row[1] if row else None,
        int(level[0]) if level else 0,
    )


async def feature_counts(
    conn: psycopg.AsyncConnection, layers: Iterable[Layer]
) -> dict[str, int | None]:
    """The rows of each layer's table now; None for one being replaced or dropped."""
    counts: dict[str, int | None] = {}
    for layer in layers:
        try:
            cur = await conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(layer.schema_name, layer.table_name)
                )
            )
            n = await cur.fetchone()
            counts[layer.name] = int(n[0]) if n else 0
        except psycopg.errors.UndefinedTable:  # being replaced or dropped right now
            counts[layer.name] = None
    return counts
