"""Optimistic concurrency and history for the twin's editable tables.

A versioned table has ``id``, ``version``, an "alive" condition (not deleted / not retired), a
BEFORE UPDATE trigger that copies the old row into its history table and bumps ``version``,
and ``updated_at``. Every change is an UPDATE guarded by the version the client last read: a
stale version changes nothing and is refused, so two edits made from one read leave exactly
one change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from twin.errors import Conflict, NotFound, PreconditionFailed, PreconditionRequired


@dataclass(frozen=True)
class VersionedTable:
    table: str  # e.g. "components" in schema twin
    history: str  # its history table in schema twin
    alive: str  # SQL condition of a current row, e.g. "deleted_at IS NULL"
    label: str  # what a row is called in messages
    scope: str = "TRUE"  # SQL condition of the rows this collection may touch at all

    def ident(self, name: str) -> sql.Identifier:
        return sql.Identifier("twin", name)


def parse_version(if_match: str | None, label: str) -> int:
    """The version in an If-Match header ("3" or W/"3"); editing without one is refused."""
    if not if_match:
        raise PreconditionRequired(
            f"send If-Match with the ETag of the {label} you read (GET .../items/{{id}}), so "
            "an edit never overwrites a change you have not seen"
        )
    digits = if_match.strip().removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise PreconditionFailed(f"If-Match {if_match!r} is not an ETag of this collection")
    return int(digits)


async def scalar(conn: psycopg.AsyncConnection, query: Any, params: list) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0] if row else None


async def guarded_update(
    conn: psycopg.AsyncConnection,
    vt: VersionedTable,
    fid: int,
    version: int,
    sets: sql.Composable,
    params: list,
    *,
    alive: bool = True,
) -> int:
    """UPDATE the row at ``version`` (alive or not, as asked); returns the new version."""
    state = sql.SQL(vt.alive if alive else f"NOT ({vt.alive})")
    query = sql.SQL("UPDATE {} SET {} WHERE id = %s AND version = %s AND {} RETURNING version")
    try:
        new = await scalar(
            conn, query.format(vt.ident(vt.table), sets, state), [*params, fid, version]
        )
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"another {vt.label} has that code already") from None
    if new is not None:
        return int(new)
    current = await scalar(
        conn,
        sql.SQL("SELECT version FROM {} WHERE id = %s AND {}").format(vt.ident(vt.table), state),
        [fid],
    )
    if current is None:
        raise NotFound(f"no {'' if alive else 'deleted '}{vt.label} {fid}")
    raise PreconditionFailed(
        f"{vt.label} {fid} is at version {current}, not {version}: someone changed it since "
        "you read it; read it again, then edit"
    )


async def history(conn: psycopg.AsyncConnection, vt: VersionedTable, fid: int) -> list[dict]:
    """Every replaced state of a row, oldest first, then the current one."""
    cur = await conn.execute(
        sql.SQL(
            "SELECT version, updated_at, to_jsonb(t) - 'geom' - 'geom_3857' || jsonb_build_object("
            "'geom', ST_AsGeoJSON(geom)::jsonb) FROM {} t WHERE id = %s AND {}"
        ).format(vt.ident(vt.table), sql.SQL(vt.scope)),
        [fid],
    )
    now = await cur.fetchone()
    if now is None:  # no such row in this collection (ids of other collections included)
        raise NotFound(f"no {vt.label} {fid}")
    cur = await conn.execute(
        sql.SQL("SELECT version, replaced_at, state FROM {} WHERE id = %s ORDER BY version").format(
            vt.ident(vt.history)
        ),
        [fid],
    )
    rows = await cur.fetchall()
    out = [{"version": v, "replaced_at": t.isoformat(), "state": s} for v, t, s in rows]
    out.append({"version": now[0], "current": True, "since": now[1].isoformat(), "state": now[2]})
    return out


async def prior_state(
    conn: psycopg.AsyncConnection, vt: VersionedTable, fid: int, version: int
) -> dict:
    state = await scalar(
        conn,
        sql.SQL("SELECT state FROM {} WHERE id = %s AND version = %s").format(vt.ident(vt.history)),
        [fid, version],
    )
    if state is None:
        raise NotFound(f"{vt.label} {fid} has no version {version} in its history")
    return dict(state)
