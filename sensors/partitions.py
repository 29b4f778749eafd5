"""Daily partitions of ``twin.readings``: made ahead of the data, dropped past the retention.

Native declarative partitioning: an old day goes with one ``DROP TABLE`` instead of a long
``DELETE``, and a query for a time range reads only the days it covers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import psycopg
from psycopg import sql

_LOCK = 0x72656164  # "read": one session at a time changes the partitions
_EXISTING = """
    SELECT c.relname FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'twin.readings'::regclass
"""


def partition_name(day: dt.date) -> str:
    return f"readings_{day:%Y%m%d}"


def day_of(name: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(name.removeprefix("readings_"), "%Y%m%d").date()
    except ValueError:
        return None


class Partitions:
    """What partitions exist, remembered per process so a batch of known days costs nothing."""

    def __init__(self) -> None:
        self._known: set[dt.date] = set()

    async def ensure(self, conn: psycopg.AsyncConnection, days: Iterable[dt.date]) -> int:
        """Make the partitions of ``days`` that are missing, in a transaction of their own (so
        they exist for every concurrent ingest); the number made."""
        wanted = set(days) - self._known
        if not wanted:
            return 0
        made = 0
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
            cur = await conn.execute(_EXISTING)
            existing = {day_of(r[0]) for r in await cur.fetchall()}
            for day in sorted(wanted - existing):
                nxt = day + dt.timedelta(days=1)
                await conn.execute(
                    sql.SQL(
                        "CREATE TABLE twin.{} PARTITION OF twin.readings "
                        "FOR VALUES FROM ({}) TO ({})"
                    ).format(
                        sql.Identifier(partition_name(day)),
                        sql.Literal(f"{day.isoformat()} 00:00:00+00"),
                        sql.Literal(f"{nxt.isoformat()} 00:00:00+00"),
                    )
                )
                made += 1
        self._known |= wanted
        return made

    def forget(self, days: Iterable[dt.date]) -> None:
        self._known -= set(days)


async def maintain(
    conn: psycopg.AsyncConnection,
    partitions: Partitions,
    retention_days: int,
    ahead_days: int,
    today: dt.date | None = None,
) -> dict[str, int]:
    """Make today's and the next days' partitions; drop those wholly past the retention."""
    today = today or dt.datetime.now(dt.UTC).date()
    made = await partitions.ensure(
        conn, (today + dt.timedelta(days=i) for i in range(ahead_days + 1))
    )
    oldest = today - dt.timedelta(days=retention_days)
    dropped = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        cur = await conn.execute(_EXISTING)
        for (name,) in await cur.fetchall():
            day = day_of(name)
            # a day partition ends at day + 1: it is wholly past when that is before the cut
            if day is not None and day + dt.timedelta(days=1) <= oldest:
                await conn.execute(sql.SQL("DROP TABLE twin.{}").format(sql.Identifier(name)))
                dropped.append(day)
    partitions.forget(dropped)
    return {"made": made, "dropped": len(dropped)}
