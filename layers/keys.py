"""API keys in the database, for the admin API: listed (never their secrets), created and
revoked. The SQL and the key format are twin.auth's; this is their asynchronous store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from twin.auth import INSERT_KEY, KEY_COLUMNS, REVOKE_KEY_SQL, new_key
from twin.errors import NotFound

_LIST_KEYS = f"SELECT {KEY_COLUMNS} FROM twin.api_keys ORDER BY created_at"  # noqa: S608


async def list_keys(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every key's row, oldest first (the digest is not among the columns)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LIST_KEYS)
        return await cur.fetchall()


async def create_key(
    conn: psycopg.AsyncConnection,
    role: str,
    name: str,
    department: str | None,
    layers: list[str] | None,
    expires_at: datetime | None,
) -> tuple[str, str]:
    """Store a new key; its id and its token (shown once: only its digest is kept)."""
    key, digest = new_key()
    await conn.execute(INSERT_KEY, [key.id, digest, name, role, department, layers, expires_at])
    return key.id, key.token


async def revoke_key(conn: psycopg.AsyncConnection, key_id: str) -> None:
    """Revoke a key at once; an unknown id is a 404."""
    cur = await conn.execute(REVOKE_KEY_SQL, [key_id])
    if await cur.fetchone() is None:
        raise NotFound(f"no API key with id {key_id!r}")
