"""Alarms as the API lists them: newest first, or one with its history."""

from __future__ import annotations

from typing import Any

import psycopg

from twin.errors import NotFound

_ALARM_COLUMNS = """
    a.id, s.sensor_id, s.kind, s.unit, a.rule, a.state, a.opened_at, a.updated_at, a.cleared_at,
    a.first_value, a.last_value, a.peak_value, a.readings, a.threshold, a.proposal, a.case_code,
    s.unit_grid, s.department, ST_X(s.geom), ST_Y(s.geom)
"""
_ALARM_KEYS = (
    "id", "sensor", "kind", "unit", "rule", "state", "opened_at", "updated_at", "cleared_at",
    "first_value", "last_value", "peak_value", "readings", "threshold", "proposal", "case_code",
    "unit_grid", "department", "lon", "lat",
)  # fmt: skip
_LIST = f"""
        SELECT {_ALARM_COLUMNS} FROM twin.alarms a JOIN twin.sensors s ON s.fid = a.sensor
        WHERE (%(state)s::text IS NULL OR a.state = %(state)s)
          AND (%(sensor)s::text IS NULL OR s.sensor_id = %(sensor)s)
        ORDER BY a.opened_at DESC, a.id DESC LIMIT %(limit)s
        """  # noqa: S608 - constant column list; values are bound
_ONE = (
    f"SELECT {_ALARM_COLUMNS} FROM twin.alarms a "  # noqa: S608 - constant columns
    "JOIN twin.sensors s ON s.fid = a.sensor WHERE a.id = %s"
)
_HISTORY = "SELECT at, action, value FROM twin.alarm_history WHERE alarm = %s ORDER BY at, id"


def _alarm(row: tuple) -> dict[str, Any]:
    out = dict(zip(_ALARM_KEYS, row, strict=True))
    for k in ("opened_at", "updated_at", "cleared_at"):
        out[k] = out[k].isoformat() if out[k] else None
    return out


async def list_alarms(
    conn: psycopg.AsyncConnection, state: str | None, sensor: str | None, limit: int
) -> list[dict[str, Any]]:
    """Alarms newest first, of one state and one sensor when given."""
    cur = await conn.execute(_LIST, {"state": state, "sensor": sensor, "limit": limit})
    return [_alarm(r) for r in await cur.fetchall()]


async def alarm_with_history(conn: psycopg.AsyncConnection, alarm_id: int) -> dict[str, Any]:
    """One alarm and every action on it, oldest first; an unknown one is a 404."""
    cur = await conn.execute(_ONE, [alarm_id])
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no alarm {alarm_id}; see /alarms")
    body = _alarm(row)
    cur = await conn.execute(_HISTORY, [alarm_id])
    body["history"] = [
        {"at": at.isoformat(), "action": action, "value": value}
        for at, action, value in await cur.fetchall()
    ]
    return body
