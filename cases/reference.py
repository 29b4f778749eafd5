"""The case classes and dispatch rules as the API lists them (reference tables)."""

from __future__ import annotations

from typing import Any

import psycopg

from cases.classes import list_classes
from cases.rules import COLUMNS, LIST_SQL

_RULE_KEYS = ("id", *COLUMNS)  # the columns LIST_SQL reads


async def classes(conn: psycopg.AsyncConnection, kind: str | None) -> list[dict[str, Any]]:
    """The classes a case may have (of one kind, or both), with their deadlines."""
    statement, params = list_classes(kind)
    cur = await conn.execute(statement, params)
    return [
        {
            "kind": k,
            "class_code": c,
            "major": m,
            "name": n,
            "major_name": mn,
            "deadline_hours": float(h) if h is not None else None,
            "local": loc,
        }
        for k, c, m, n, mn, h, loc in await cur.fetchall()
    ]


async def rules(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """The dispatch rules, in the order they are tried."""
    cur = await conn.execute(LIST_SQL)
    return [dict(zip(_RULE_KEYS, r, strict=True)) for r in await cur.fetchall()]
