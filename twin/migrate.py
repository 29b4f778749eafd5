"""Versioned SQL migrations (``twin/migrations/NNNN_name.sql``) recorded in a table.

Each file runs in its own transaction under an advisory lock, so two processes migrating at
once do not race; a version already recorded is skipped, so migrating twice is a no-op. A file
whose content changed after it was applied is reported, not silently re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from twin.errors import SetupError

_LOCK_KEY = 0x7477696E  # "twin"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("twin.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS twin;
CREATE TABLE IF NOT EXISTS twin.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def applied(conn: psycopg.Connection) -> dict[int, str]:
    exists = conn.execute("SELECT to_regclass('twin.schema_migrations')").fetchone()
    if not exists or exists[0] is None:
        return {}
    rows = conn.execute("SELECT version, checksum FROM twin.schema_migrations").fetchall()
    return {int(v): str(c) for v, c in rows}


def level(conn: psycopg.Connection) -> int:
    done = applied(conn)
    return max(done) if done else 0


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply pending migrations; returns those applied now."""
    ran: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(_BOOKKEEPING)
        done = applied(conn)
        for mig in available():
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise SetupError(
                        f"migration {mig.version:04d}_{mig.name} changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            with conn.transaction():
                conn.execute(mig.sql)
                conn.execute(
                    "INSERT INTO twin.schema_migrations (version, name, checksum) "
                    "VALUES (%s, %s, %s)",
                    (mig.version, mig.name, mig.checksum),
                )
            ran.append(mig)
    return ran
