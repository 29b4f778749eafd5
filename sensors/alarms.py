"""Alarms: threshold (low, high) and rate-of-change rules, opened, updated and cleared as the
readings of a batch say, with their history; events for the live stream; a likely burst and
its isolation proposed when a water pressure sensor alarms.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from twin.errors import TwinError

log = logging.getLogger(__name__)

RULES = ("low", "high", "rate")
_COLUMN = {"low": "low", "high": "high", "rate": "fast"}
_POINTS_PER_NOTICE = 150  # lon/lat pairs per NOTIFY: its payload is at most 8000 bytes

_SENSOR = """
    SELECT fid, sensor_id, kind, unit, network, node_id, segment_id, department, unit_grid,
           ST_X(geom), ST_Y(geom), threshold_low, threshold_high, threshold_rate
    FROM twin.sensors WHERE fid = ANY(%s)
"""
_OPEN = """
    SELECT id, sensor, rule, peak_value FROM twin.alarms
    WHERE state = 'open' AND sensor = ANY(%s)
"""


_THRESHOLD = {"low": "threshold_low", "high": "threshold_high", "rate": "threshold_rate"}


def _threshold(sensor: dict[str, Any], rule: str) -> float:
    return float(sensor[_THRESHOLD[rule]])


def _worse(rule: str, a: float, b: float) -> float:
    """The value farther past the threshold: lower for low, higher for high, steeper rate."""
    if rule == "low":
        return min(a, b)
    if rule == "high":
        return max(a, b)
    return a if abs(a) >= abs(b) else b


async def apply(
    conn: psycopg.AsyncConnection, rows: list[dict[str, Any]]
) -> tuple[int, int, int, list[tuple[int, dict[str, Any]]]]:
    """Open, update and clear alarms for the evaluated sensors of a batch (the rows of
    ``ingest._EVALUATE``); (opened, updated, cleared, the opened alarms that call for a burst
    proposal)."""
    pending: list[tuple[int, dict[str, Any]]] = []
    if not rows:
        return 0, 0, 0, pending
    fids = [r["sensor"] for r in rows]
    cur = await conn.execute(_SENSOR, [fids])
    cur_open = await conn.execute(_OPEN, [fids])  # in a pipeline, one round trip for both
    keys = (
        "fid", "sensor_id", "kind", "unit", "network", "node_id", "segment_id", "department",
        "unit_grid", "lon", "lat", "threshold_low", "threshold_high", "threshold_rate",
    )  # fmt: skip
    sensors = {r[0]: dict(zip(keys, r, strict=True)) for r in await cur.fetchall()}
    open_ = {(s, rule): (aid, peak) for aid, s, rule, peak in await cur_open.fetchall()}
    # What to do, in order. A batch moves hundreds of alarms, and a statement per step (three
    # per alarm opened or cleared) was most of their cost: the new alarms are inserted first
    # (their ids are needed), then each kind of change is one statement over a JSON array, the
    # history and the events in the order of the steps.
    steps: list[tuple[str, str, dict[str, Any], dict[str, Any], tuple | None]] = []
    for row in rows:
        sensor = sensors[row["sensor"]]
        for rule in RULES:
            col = _COLUMN[rule]
            n, now = int(row[f"{col}_n"] or 0), bool(row[f"{col}_now"])
            current = open_.get((row["sensor"], rule))
            if n:
                steps.append(("open" if current is None else "update", rule, sensor, row, current))
            if (n or current is not None) and not now:
                steps.append(("clear", rule, sensor, row, current))
    new = await _insert_open(conn, [(s, rule, row) for a, rule, s, row, _ in steps if a == "open"])
    moves = _Moves()
    for action, rule, sensor, row, current in steps:
        if action == "open":
            aid = new[(sensor["fid"], rule)]
            moves.opened(aid, sensor, rule, row)
            if rule in ("low", "rate") and sensor["kind"] == "pressure" and sensor["network"]:
                pending.append((aid, sensor))
        elif action == "update":
            moves.updated(current, sensor, rule, row)  # type: ignore[arg-type]
        else:
            aid = current[0] if current is not None else new[(sensor["fid"], rule)]
            moves.cleared(aid, sensor, rule, row)
    await moves.write(conn)
    count = {a: sum(step[0] == a for step in steps) for a in ("open", "update", "clear")}
    return count["open"], count["update"], count["clear"], pending


def _peak(rule: str, row: dict[str, Any]) -> float:
    return float(row[f"{_COLUMN[rule]}_peak"])


async def _event(
    conn: psycopg.AsyncConnection, action: str, aid: int, sensor: dict[str, Any], body: dict
) -> None:
    payload = {
        "alarm": aid,
        "sensor": sensor["sensor_id"],
        "kind": sensor["kind"],
        "unit": sensor["unit"],
    } | body
    await conn.execute(
        "SELECT twin.emit_event('alarm', %s, 'sensors', %s, %s, %s, %s, %s)",
        [
            action,
            sensor["department"],
            sensor["unit_grid"],
            sensor["lon"],
            sensor["lat"],
            Jsonb(payload),
        ],
    )


_INSERT_OPEN = """
    INSERT INTO twin.alarms (sensor, rule, state, opened_at, updated_at, first_value,
                             last_value, peak_value, readings, threshold)
    VALUES (%s, %s, 'open', %s, %s, %s, %s, %s, %s, %s) RETURNING id
"""


async def _insert_open(
    conn: psycopg.AsyncConnection, opening: list[tuple[dict[str, Any], str, dict[str, Any]]]
) -> dict[tuple[int, str], int]:
    """Insert the alarms to open, in order; their ids by (sensor fid, rule)."""
    if not opening:
        return {}
    params = []
    for sensor, rule, row in opening:
        col = _COLUMN[rule]
        params.append(
            [
                sensor["fid"],
                rule,
                row[f"{col}_t"],
                row["last_t"],
                float(row[f"{col}_first"]),
                row["last_value"],
                _peak(rule, row),
                int(row[f"{col}_n"]),
                _threshold(sensor, rule),
            ]
        )
    ids = []
    async with conn.cursor() as cur:
        await cur.executemany(_INSERT_OPEN, params, returning=True)
        while True:
            ids.append(int((await cur.fetchone())[0]))  # type: ignore[index]
            if not cur.nextset():
                break
    return {(s["fid"], rule): aid for (s, rule, _), aid in zip(opening, ids, strict=True)}


# The changes of a batch, one statement a kind, each given a JSON array of records (one
# json.dumps instead of a Python array adaptation per column and value).
_UPDATE = """
    UPDATE twin.alarms a SET updated_at = u.at, last_value = u.value, peak_value = u.peak,
           readings = a.readings + u.n
    FROM jsonb_to_recordset(%s::jsonb)
         AS u(id bigint, at timestamptz, value float8, peak float8, n int)
    WHERE a.id = u.id
"""
_CLEAR = """
    UPDATE twin.alarms a SET state = 'cleared', cleared_at = c.at, updated_at = c.at,
           last_value = c.value
    FROM jsonb_to_recordset(%s::jsonb) AS c(id bigint, at timestamptz, value float8)
    WHERE a.id = c.id
"""
_HISTORY = """
    INSERT INTO twin.alarm_history (alarm, at, action, value)
    SELECT h.alarm, h.at, h.action, h.value
    FROM ROWS FROM (jsonb_to_recordset(%s::jsonb)
                    AS (alarm bigint, at timestamptz, action text, value float8))
         WITH ORDINALITY AS h(alarm, at, action, value, i)
    ORDER BY h.i
"""
# What twin.emit_event (migration 0011) does for one event, for all of the batch's, in their
# order, with one notification: the listeners read every event after the last one they sent
# (api/live.py), the id only wakes them, and an id a notification made each server process
# query the events once per event of the batch.
_EVENTS = """
    WITH e AS (
        INSERT INTO twin.events (kind, action, target, department, unit_grid, lon, lat, payload)
        SELECT 'alarm', e.action, 'sensors', e.department, e.unit_grid, e.lon, e.lat, e.payload
        FROM ROWS FROM (jsonb_to_recordset(%s::jsonb)
                        AS (action text, department text, unit_grid text, lon float8,
                            lat float8, payload jsonb))
             WITH ORDINALITY AS e(action, department, unit_grid, lon, lat, payload, i)
        ORDER BY e.i
        RETURNING id)
    SELECT pg_notify('twin_events', max(id)::text) FROM e
"""


class _Moves:
    """The changes of a batch's alarms, gathered in order and written as one statement per
    kind: updates, clearances, history rows, events."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.clears: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def event(self, action: str, aid: int, sensor: dict[str, Any], body: dict) -> None:
        payload = {
            "alarm": aid,
            "sensor": sensor["sensor_id"],
            "kind": sensor["kind"],
            "unit": sensor["unit"],
        } | body
        where = {k: sensor[k] for k in ("department", "unit_grid", "lon", "lat")}
        self.events.append({"action": action, **where, "payload": payload})

    def opened(self, aid: int, sensor: dict[str, Any], rule: str, row: dict) -> None:
        col = _COLUMN[rule]
        first = float(row[f"{col}_first"])
        at = row[f"{col}_t"].isoformat()
        self.history.append({"alarm": aid, "at": at, "action": "opened", "value": first})
        self.event(
            "opened",
            aid,
            sensor,
            {
                "rule": rule,
                "value": first,
                "peak": _peak(rule, row),
                "threshold": _threshold(sensor, rule),
                "at": at,
            },
        )

    def updated(
        self, current: tuple[int, float], sensor: dict[str, Any], rule: str, row: dict
    ) -> None:
        aid, old_peak = current
        peak = _worse(rule, float(old_peak), _peak(rule, row))
        at, value = row["last_t"].isoformat(), row["last_value"]
        n = int(row[f"{_COLUMN[rule]}_n"])
        self.updates.append({"id": aid, "at": at, "value": value, "peak": peak, "n": n})
        self.history.append({"alarm": aid, "at": at, "action": "updated", "value": value})
        if peak != old_peak:  # the stream hears of an alarm getting worse, not of every reading
            self.event(
                "updated", aid, sensor, {"rule": rule, "value": value, "peak": peak, "at": at}
            )

    def cleared(self, aid: int, sensor: dict[str, Any], rule: str, row: dict) -> None:
        at, value = row["last_t"].isoformat(), row["last_value"]
        self.clears.append({"id": aid, "at": at, "value": value})
        self.history.append({"alarm": aid, "at": at, "action": "cleared", "value": value})
        self.event("cleared", aid, sensor, {"rule": rule, "value": value, "at": at})

    async def write(self, conn: psycopg.AsyncConnection) -> None:
        # an alarm updated and cleared by the same batch: the update first, as the steps say
        kinds = [(_UPDATE, self.updates), (_CLEAR, self.clears)]
        kinds += [(_HISTORY, self.history), (_EVENTS, self.events)]
        for query, records in kinds:
            if records:
                await conn.execute(query, [json.dumps(records, separators=(",", ":"))])


# The likely burst: the pipe of the network nearest the centre of the pressure sensors in
# alarm there now, each weighted by how far below its threshold it fell (a burst pulls the
# pressure down most near it); the alarmed sensor's own pipe when it is attached to one.
_LIKELY_BURST = """
WITH a AS (
    SELECT s.geom, greatest(coalesce(s.threshold_low - a.peak_value, 0), 0) + 1e-3 AS w
    FROM twin.alarms a JOIN twin.sensors s ON s.fid = a.sensor
    WHERE a.state = 'open' AND a.rule IN ('low', 'rate') AND s.kind = 'pressure'
      AND s.network = %(network)s
),
c AS (
    SELECT ST_SetSRID(ST_MakePoint(sum(ST_X(geom) * w) / sum(w), sum(ST_Y(geom) * w) / sum(w)),
                      4326) AS g, count(*) AS n
    FROM a
)
SELECT p.pipe_id, c.n, round(ST_Distance(p.geom::geography, c.g::geography)::numeric, 1)
FROM twin.pipe_segments p, c
WHERE p.network = %(network)s AND p.deleted_at IS NULL AND c.n > 0
ORDER BY p.geom <-> c.g
LIMIT 1
"""


async def propose(
    conn: psycopg.AsyncConnection, aid: int, sensor: dict[str, Any], graphs: Any
) -> None:
    """Store on the alarm the likely burst pipe and what isolating it takes; a network that
    cannot be isolated (gravity, unknown) is said in the proposal, not raised. Runs after the
    ingest committed: the analysis reads the network in a snapshot transaction of its own."""
    from pipelines import analysis
    from pipelines.graph import GraphCache

    network = sensor["network"]
    proposal: dict[str, Any] = {"network": network}
    if sensor["segment_id"]:
        pipe, basis = sensor["segment_id"], "the pipe the sensor is attached to"
    else:
        cur = await conn.execute(_LIKELY_BURST, {"network": network})
        found = await cur.fetchone()
        if found is None:
            proposal["error"] = f"network {network!r} has no pipes"
            await _save_proposal(conn, aid, sensor, proposal)
            await conn.commit()
            return
        pipe = found[0]
        basis = (
            f"the pipe nearest the pressure-weighted centre of {found[1]} pressure sensor(s) "
            f"in alarm in this network ({found[2]} m away)"
        )
    proposal |= {"segment": pipe, "basis": basis}
    try:
        answer = await analysis.isolate(
            conn, graphs or GraphCache(), {"segment": pipe}, network, [], False
        )
        proposal["isolation"] = {k: v for k, v in answer.items() if k not in ("features", "type")}
    except TwinError as exc:
        proposal["error"] = exc.message
    await _save_proposal(conn, aid, sensor, proposal)
    await conn.commit()


async def _save_proposal(
    conn: psycopg.AsyncConnection, aid: int, sensor: dict[str, Any], proposal: dict
) -> None:
    body = json.loads(json.dumps(proposal, default=str))
    await conn.execute("UPDATE twin.alarms SET proposal = %s WHERE id = %s", [Jsonb(body), aid])
    summary = {k: body[k] for k in ("network", "segment", "basis", "error") if k in body}
    valves = body.get("isolation", {}).get("valves_to_close")
    if valves is not None:
        summary["valves_to_close"] = valves
    await _event(conn, "proposal", aid, sensor, summary)


async def notify_tiles(conn: psycopg.AsyncConnection, points: list[tuple[float, float]]) -> None:
    """Tell every server process which sensor tiles to drop (on commit): each keeps its own
    tile cache, and the change may come from another process (an MQTT consumer, a replica)."""
    for i in range(0, len(points), _POINTS_PER_NOTICE):
        chunk = [[round(x, 6), round(y, 6)] for x, y in points[i : i + _POINTS_PER_NOTICE]]
        body = json.dumps({"collection": "sensors", "points": chunk}, separators=(",", ":"))
        await conn.execute("SELECT pg_notify('twin_tiles', %s)", [body])


async def sweep_stale(conn: psycopg.AsyncConnection) -> int:
    """Mark sensors silent for longer than their ``stale_after_s`` as stale; how many."""
    async with conn.transaction():
        cur = await conn.execute(
            """
            UPDATE twin.sensors SET state = 'stale', state_since = now()
            WHERE state <> 'stale'
              AND (last_time IS NULL OR last_time < now() - stale_after_s * interval '1 second')
            RETURNING ST_X(geom), ST_Y(geom)
            """
        )
        points = [(float(x), float(y)) for x, y in await cur.fetchall()]
        await notify_tiles(conn, points)
    return len(points)
