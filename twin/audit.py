"""The audit log: every write and admin action, who did it, when, and the versions around it.

Rows are written in the same transaction as the change they describe, so a change is never
without its row and a row never without its change.
"""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from twin.auth import Principal

INSERT = """
    INSERT INTO twin.audit_log (actor, role, department, action, target, feature_id,
                                version_before, version_after, detail)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


def _row(
    who: Principal,
    action: str,
    target: str | None,
    feature_id: int | None,
    before: int | None,
    after: int | None,
    detail: dict[str, Any] | None,
) -> list[Any]:
    return [
        who.subject,
        who.role,
        who.department,
        action,
        target,
        feature_id,
        before,
        after,
        Jsonb(detail or {}),
    ]


async def record(
    conn: psycopg.AsyncConnection,
    who: Principal,
    action: str,
    target: str | None = None,
    *,
    feature_id: int | None = None,
    before: int | None = None,
    after: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(INSERT, _row(who, action, target, feature_id, before, after, detail))


def record_sync(
    conn: psycopg.Connection,
    who: Principal,
    action: str,
    target: str | None = None,
    *,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(INSERT, _row(who, action, target, None, None, None, detail))


def cli_principal() -> Principal:
    """The operator at the command line: the database is theirs, so they act as admin."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(f"cli:{user}", "admin")


async def query(
    conn: psycopg.AsyncConnection,
    *,
    actor: str | None = None,
    target: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first, filtered by whatever is given."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT id, at, actor, role, department, action, target, feature_id,
                   version_before, version_after, detail
            FROM twin.audit_log
            WHERE (%(actor)s::text IS NULL OR actor = %(actor)s)
              AND (%(target)s::text IS NULL OR target = %(target)s)
              AND (%(action)s::text IS NULL OR action = %(action)s)
              AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
            ORDER BY id DESC LIMIT %(limit)s
            """,
            {"actor": actor, "target": target, "action": action, "since": since, "limit": limit},
        )
        return await cur.fetchall()
