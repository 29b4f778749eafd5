"""Time series of one sensor: raw readings, or mean/min/max/count per bucket, computed in SQL."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import psycopg

from layers.features import parse_datetime
from twin.errors import InvalidParameter, LimitExceeded, NotFound

MAX_POINTS = 10_000
_RESOLUTION = re.compile(r"^\s*(\d+)\s*(s|sec|min|m|h|hour|d|day)s?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_resolution(text: str) -> dt.timedelta:
    """``5min``, ``15s``, ``1h``, ``1d`` as a bucket width."""
    m = _RESOLUTION.match(text)
    if not m or int(m.group(1)) == 0:
        raise InvalidParameter(
            f"resolution {text!r} is not understood: use a number and a unit, such as 30s, "
            "5min, 1h or 1d"
        )
    return dt.timedelta(seconds=int(m.group(1)) * _UNIT_S[m.group(2).lower()])


async def readings(
    conn: psycopg.AsyncConnection,
    sensor_id: str,
    datetime: str | None,
    resolution: str | None,
    limit: int = MAX_POINTS,
) -> dict[str, Any]:
    """The sensor's readings in the interval (default: the last day), bucketed when asked."""
    cur = await conn.execute(
        "SELECT fid, unit, kind FROM twin.sensors WHERE sensor_id = %s", [sensor_id]
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no sensor {sensor_id!r}; see /collections/sensors/items")
    fid, unit, kind = row
    now = dt.datetime.now(dt.UTC)
    start, end = parse_datetime(datetime) if datetime else (None, None)
    start = start or (end or now) - dt.timedelta(days=1)
    end = end or now
    if end < start:
        raise InvalidParameter("datetime: the interval ends before it starts")
    body: dict[str, Any] = {
        "sensor": sensor_id,
        "kind": kind,
        "unit": unit,
        "datetime": f"{start.isoformat()}/{end.isoformat()}",
    }
    if resolution:
        width = parse_resolution(resolution)
        buckets = (end - start) / width
        if buckets > limit:
            raise LimitExceeded(
                f"{int(buckets):,} buckets of {resolution} is over the limit of {limit:,}; "
                "choose a coarser resolution or a shorter interval"
            )
        cur = await conn.execute(
            """
            SELECT date_bin(%(w)s, t, '2000-01-01T00:00:00Z') AS b, avg(value), min(value),
                   max(value), count(*)
            FROM twin.readings
            WHERE sensor = %(fid)s AND t >= %(start)s AND t < %(end)s
            GROUP BY b ORDER BY b
            """,
            {"w": width, "fid": fid, "start": start, "end": end},
        )
        body["resolution"] = resolution
        body["points"] = [
            {"time": b.isoformat(), "mean": mean, "min": lo, "max": hi, "count": n}
            for b, mean, lo, hi, n in await cur.fetchall()
        ]
        return body
    cur = await conn.execute(
        """
        SELECT t, value FROM twin.readings
        WHERE sensor = %s AND t >= %s AND t < %s ORDER BY t LIMIT %s
        """,
        [fid, start, end, limit + 1],
    )
    points = await cur.fetchall()
    if len(points) > limit:
        raise LimitExceeded(
            f"more than {limit:,} readings in the interval: ask for a resolution (such as "
            "5min) or a shorter interval"
        )
    body["points"] = [{"time": t.isoformat(), "value": v} for t, v in points]
    return body
