"""Ingest of sensor readings: parse a batch (CSV or JSON lines), check every row, store the good
ones idempotently on (sensor, time), and move sensor states and alarms in the same transaction.

The happy path is vectorised (Arrow parses, numpy checks, binary COPY loads); only a batch with
bad rows is walked row by row, to name each one.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal, cast

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from layers.pgcopy import HEADER, TRAILER
from sensors import alarms
from sensors.partitions import Partitions
from sensors.registry import sensor_ids
from twin.errors import InvalidData, LimitExceeded
from twin.settings import SensorSettings

Format = Literal["csv", "jsonl"]
_US_PER_DAY = 86_400_000_000
_SHOWN = 20  # bad rows named in a refusal's message

_STAGE = """
    CREATE TEMP TABLE IF NOT EXISTS readings_in (
        sensor bigint, t timestamptz, value double precision) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS readings_new (
        sensor bigint, t timestamptz, value double precision) ON COMMIT DELETE ROWS;
"""

# Only readings newer than a sensor's latest move its state: a late reading is stored, but
# the present is what the latest one says. Rates come from consecutive readings, the first
# new one measured against the stored latest. One window pass (sorted by sensor and time) rates
# every reading and marks each sensor's latest; the ordered aggregates of the breaches run on
# the few readings past a threshold only; the state before comes with the thresholds, from the
# statement's snapshot. {source} is the table of the readings just stored.
_EVALUATE = """
WITH fresh AS (
    SELECT n.sensor, n.t, n.value, s.last_time, s.last_value, s.state,
           s.threshold_low AS lo, s.threshold_high AS hi, s.threshold_rate AS rt
    FROM {source} n JOIN twin.sensors s ON s.fid = n.sensor
    WHERE s.last_time IS NULL OR n.t > s.last_time
),
rated AS (
    SELECT sensor, t, value, state, lo, hi, rt,
           (value - coalesce(lag(value) OVER w, last_value))
             / NULLIF(extract(epoch FROM t - coalesce(lag(t) OVER w, last_time)) / 60.0, 0)
             AS rate,
           lead(t) OVER w IS NULL AS latest
    FROM fresh WINDOW w AS (PARTITION BY sensor ORDER BY t)
),
flagged AS (
    SELECT sensor, t, value, state, rate, latest,
           coalesce(value < lo, false) AS low,
           coalesce(value > hi, false) AS high,
           coalesce(abs(rate) > rt, false) AS fast
    FROM rated
),
breach AS (
    SELECT sensor,
           count(*) FILTER (WHERE low) AS low_n, count(*) FILTER (WHERE high) AS high_n,
           count(*) FILTER (WHERE fast) AS fast_n,
           min(t) FILTER (WHERE low) AS low_t, min(t) FILTER (WHERE high) AS high_t,
           min(t) FILTER (WHERE fast) AS fast_t,
           (array_agg(value ORDER BY t) FILTER (WHERE low))[1] AS low_first,
           (array_agg(value ORDER BY t) FILTER (WHERE high))[1] AS high_first,
           (array_agg(value ORDER BY t) FILTER (WHERE fast))[1] AS fast_first,
           min(value) FILTER (WHERE low) AS low_peak,
           max(value) FILTER (WHERE high) AS high_peak,
           (array_agg(rate ORDER BY abs(rate) DESC) FILTER (WHERE fast))[1] AS fast_peak
    FROM flagged WHERE low OR high OR fast GROUP BY sensor
),
agg AS (
    SELECT f.sensor, f.t AS last_t, f.value AS last_value, f.low OR f.high OR f.fast AS alarm_now,
           f.low AS low_now, f.high AS high_now, f.fast AS fast_now,
           coalesce(b.low_n, 0) AS low_n, coalesce(b.high_n, 0) AS high_n,
           coalesce(b.fast_n, 0) AS fast_n, b.low_t, b.high_t, b.fast_t,
           b.low_first, b.high_first, b.fast_first, b.low_peak, b.high_peak, b.fast_peak,
           f.state AS old_state
    FROM flagged f LEFT JOIN breach b ON b.sensor = f.sensor
    WHERE f.latest
),
upd AS (
    UPDATE twin.sensors s
    SET last_time = a.last_t, last_value = a.last_value,
        state = CASE WHEN a.alarm_now THEN 'alarm' ELSE 'normal' END,
        state_since = CASE WHEN s.state = CASE WHEN a.alarm_now THEN 'alarm' ELSE 'normal' END
                           THEN s.state_since ELSE now() END
    FROM agg a
    WHERE s.fid = a.sensor AND (s.last_time IS NULL OR a.last_t > s.last_time)
    RETURNING s.fid, s.state, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat
)
SELECT a.*, u.state AS new_state, u.lon, u.lat
FROM agg a JOIN upd u ON u.fid = a.sensor
WHERE a.old_state IS DISTINCT FROM u.state OR a.low_n > 0 OR a.high_n > 0 OR a.fast_n > 0
   OR a.old_state = 'alarm'
"""


@dataclass
class Problem:
    row: int  # 1-based, as a person counts the data rows
    sensor: str | None
    reason: str


@dataclass
class Batch:
    """A parsed batch, before the checks against the registry: names, µs since the epoch
    (UTC), values; rows that could not even be parsed are already problems."""

    names: list[str | None]
    t_us: np.ndarray
    values: np.ndarray
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


class ReadingsRejected(InvalidData):
    """A batch with bad rows, refused whole (nothing stored)."""

    def __init__(self, problems: list[Problem], total: int) -> None:
        shown = "; ".join(
            f"row {p.row}" + (f" ({p.sensor})" if p.sensor else "") + f": {p.reason}"
            for p in problems[:_SHOWN]
        )
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        super().__init__(
            f"{len(problems)} of {total} readings are bad and nothing was stored: {shown}{more}. "
            "Fix them, or send skip_invalid=true to store the good rows"
        )
        self.problems = problems


@dataclass
class IngestReport:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    problems: list[Problem] = field(default_factory=list)
    state_changes: int = 0
    alarms_opened: int = 0
    alarms_updated: int = 0
    alarms_cleared: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "problems": [
                {"row": p.row, "sensor": p.sensor, "reason": p.reason} for p in self.problems[:1000]
            ],
            "state_changes": self.state_changes,
            "alarms": {
                "opened": self.alarms_opened,
                "updated": self.alarms_updated,
                "cleared": self.alarms_cleared,
            },
            "seconds": round(self.seconds, 3),
        }


# --- parsing ----------------------------------------------------------------------------------
_NAMES = {"sensor": "sensor", "sensor_id": "sensor", "time": "time", "t": "time"}
_NAMES |= {"timestamp": "time", "value": "value", "v": "value"}


def _time_us(arr: pa.Array) -> tuple[np.ndarray, list[int], list[str]]:
    """µs since the epoch of ISO 8601 times with a zone; the rows that are not such times."""
    try:
        ts = pc.cast(arr, pa.timestamp("us", tz="UTC"))
        return pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False), [], []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out = np.zeros(len(arr), dtype=np.int64)
    bad, why = [], []
    for i, text in enumerate(arr.to_pylist()):
        try:
            moment = dt.datetime.fromisoformat(str(text).strip())
        except (ValueError, TypeError):
            bad.append(i)
            why.append(f"time {text!r} is not an ISO 8601 time")
            continue
        if moment.tzinfo is None:
            bad.append(i)
            why.append(f"time {text!r} has no zone: add Z or an offset such as +08:00")
            continue
        out[i] = (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return out, bad, why


def _values(arr: pa.Array) -> tuple[np.ndarray, list[int], list[str]]:
    try:
        out = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        bad = [int(i) for i in np.flatnonzero(~np.isfinite(out))]
        return out, bad, [f"value {out[i]} is not a finite number" for i in bad]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out = np.zeros(len(arr), dtype=np.float64)
    bad, why = [], []
    for i, v in enumerate(arr.to_pylist()):
        try:
            if isinstance(v, bool):
                raise ValueError
            number = float(v)
            if not math.isfinite(number):
                raise ValueError
            out[i] = number
        except (ValueError, TypeError):
            bad.append(i)
            why.append(f"value {v!r} is not a number")
    return out, bad, why


def _batch(names: pa.Array, times: pa.Array, values: pa.Array, first_row: int = 1) -> Batch:
    t_us, bad_t, why_t = _time_us(times)
    vals, bad_v, why_v = _values(values)
    listed = names.to_pylist()
    problems = [Problem(i + first_row, listed[i], w) for i, w in zip(bad_t, why_t, strict=True)]
    problems += [Problem(i + first_row, listed[i], w) for i, w in zip(bad_v, why_v, strict=True)]
    for i, name in enumerate(listed):
        if name is None or not str(name).strip():
            problems.append(Problem(i + first_row, None, "no sensor id"))
    problems.sort(key=lambda p: p.row)
    if not (pa.types.is_string(names.type) or pa.types.is_large_string(names.type)):
        listed = [None if n is None else str(n) for n in listed]  # e.g. numbers inferred
    return Batch(listed, t_us, vals, problems)


def parse_csv(data: bytes) -> Batch:
    """CSV with a header naming sensor (or sensor_id), time and value, in any order."""
    if not data.strip():
        raise InvalidData("the body has no readings")
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in _NAMES},
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InvalidData(f"the CSV cannot be read: {exc}") from None
    cols = {_NAMES[c.strip().lower()]: c for c in table.column_names if c.strip().lower() in _NAMES}
    missing = {"sensor", "time", "value"} - cols.keys()
    if missing:
        raise InvalidData(
            f"the CSV header has no {', '.join(sorted(missing))} column; expected "
            f"sensor,time,value (found {', '.join(table.column_names)})"
        )

    def col(name: str) -> pa.Array:
        return table.column(cols[name]).combine_chunks()

    return _batch(col("sensor"), col("time"), col("value"))


def parse_jsonl(data: bytes) -> Batch:
    """JSON lines, one ``{"sensor": ..., "time": ..., "value": ...}`` each (a JSON array of
    such objects is taken as well)."""
    text = data.decode("utf-8-sig", errors="replace").strip()
    if not text:
        raise InvalidData("the body has no readings")
    records: list[Any]
    problems: list[Problem] = []
    if text.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidData(f"the JSON array cannot be read: {exc}") from None
    else:
        records = []
        for i, line in enumerate(text.splitlines(), start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                records.append(None)
                problems.append(Problem(i, None, f"not JSON: {exc.msg}"))
    names, times, values = [], [], []
    for i, rec in enumerate(records, start=1):
        if rec is not None and not isinstance(rec, dict):
            problems.append(Problem(i, None, "not a JSON object"))
            rec = None
        rec = {_NAMES.get(k, k): v for k, v in (rec or {}).items()}
        names.append(rec.get("sensor"))
        times.append(None if rec.get("time") is None else str(rec.get("time")))
        values.append(rec.get("value"))
    batch = _batch(
        pa.array([None if n is None else str(n) for n in names], pa.string()),
        pa.array(times, pa.string()),
        pa.array([None if v is None else v if isinstance(v, str) else repr(v) for v in values]),
    )
    known = {p.row for p in problems}
    batch.problems = sorted(
        problems + [p for p in batch.problems if p.row not in known], key=lambda p: p.row
    )
    return batch


def parse(data: bytes, fmt: Format) -> Batch:
    return parse_csv(data) if fmt == "csv" else parse_jsonl(data)


# --- storing ----------------------------------------------------------------------------------
@dataclass
class Checked:
    fids: np.ndarray
    t_us: np.ndarray
    values: np.ndarray
    problems: list[Problem]


async def check(
    conn: psycopg.AsyncConnection, batch: Batch, settings: SensorSettings, now_us: int
) -> Checked:
    """Every problem of the batch: unparsable rows, unknown sensors, readings in the future or
    older than the retention."""
    problems = list(batch.problems)
    bad = np.zeros(len(batch), dtype=bool)
    for p in problems:
        bad[p.row - 1] = True
    present = set(batch.names)
    present.difference_update((None, ""))  # what is left: the names given
    known = await sensor_ids(conn, sorted(cast("set[str]", present)))
    # no sensor is named "" nor None: both map to -1 (a set and a map: 4 ms for 100,000 rows,
    # a comprehension each took 15)
    lookup = cast("Callable[[str | None, int], int]", known.get)
    fids = np.fromiter(map(lookup, batch.names, repeat(-1)), np.int64, len(batch))
    for i in np.flatnonzero((fids < 0) & ~bad):
        problems.append(
            Problem(int(i) + 1, batch.names[i], "unknown sensor: register it first (POST /sensors)")
        )
    bad |= fids < 0
    ahead = now_us + int(settings.readings_future_tolerance_s * 1e6)
    for i in np.flatnonzero((batch.t_us > ahead) & ~bad):
        problems.append(
            Problem(
                int(i) + 1,
                batch.names[i],
                f"time {_iso(batch.t_us[i])} is in the future (more than "
                f"{settings.readings_future_tolerance_s:g} s ahead of the server clock)",
            )
        )
    bad |= batch.t_us > ahead
    oldest = now_us - settings.readings_retention_days * _US_PER_DAY
    for i in np.flatnonzero((batch.t_us < oldest) & ~bad):
        problems.append(
            Problem(
                int(i) + 1,
                batch.names[i],
                f"time {_iso(batch.t_us[i])} is older than the retention of "
                f"{settings.readings_retention_days} days (TWIN_READINGS_RETENTION_DAYS)",
            )
        )
    bad |= batch.t_us < oldest
    problems.sort(key=lambda p: p.row)
    good = ~bad
    return Checked(fids[good], batch.t_us[good], batch.values[good], problems)


def _iso(us: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(us))
    return moment.isoformat().replace("+00:00", "Z")


async def ingest(
    conn: psycopg.AsyncConnection,
    batch: Batch,
    settings: SensorSettings,
    partitions: Partitions,
    *,
    skip_invalid: bool = False,
    graphs: Any = None,
) -> IngestReport:
    """Store a parsed batch: all of it, or (with ``skip_invalid``) its good rows; the report
    says what was stored, what was already there, and what changed."""
    started = time.perf_counter()
    if len(batch) > settings.readings_max_rows:
        raise LimitExceeded(
            f"{len(batch):,} readings in one request is over the limit of "
            f"{settings.readings_max_rows:,} (TWIN_READINGS_MAX_ROWS); send smaller batches"
        )
    now_us = time.time_ns() // 1000
    checked = await check(conn, batch, settings, now_us)
    report = IngestReport(received=len(batch), rejected=len(checked.problems))
    report.problems = checked.problems
    if checked.problems and not skip_invalid:
        raise ReadingsRejected(checked.problems, len(batch))
    if len(checked.fids):
        days = np.unique(checked.t_us // _US_PER_DAY)
        epoch = dt.date(1970, 1, 1)
        await partitions.ensure(conn, (epoch + dt.timedelta(days=int(d)) for d in days))
        await _store(conn, checked, report, graphs)
    report.seconds = time.perf_counter() - started
    return report


_COPY_STAGE = "COPY readings_in FROM STDIN (FORMAT BINARY)"
_COPY_STORE = "COPY twin.readings (sensor, t, value) FROM STDIN (FORMAT BINARY)"
_INSERT_NEW = """
    WITH ins AS (
        INSERT INTO twin.readings (sensor, t, value)
        SELECT sensor, t, value FROM readings_in
        ON CONFLICT DO NOTHING
        RETURNING sensor, t, value)
    INSERT INTO readings_new SELECT * FROM ins
"""


async def _insert(
    cur: psycopg.AsyncCursor, conn: psycopg.AsyncConnection, data: bytes, rows: int
) -> tuple[str, int]:
    """Store the readings, staged already as ``data`` in readings_in; (the table of those
    stored, how many).

    A plain COPY into twin.readings first, in a savepoint: with no reading already stored it
    is what stores rows fastest (rows go in by the page, a third less WAL than INSERT ...
    SELECT, no speculative insertion as in ON CONFLICT), and the staged table is then what was
    stored. A batch with one stored reading (a resent batch, a reading in it twice) fails on
    the key and goes again from readings_in with ON CONFLICT DO NOTHING, the new readings kept
    apart.
    """
    try:
        async with conn.transaction():
            async with cur.copy(_COPY_STORE) as copy:
                await copy.write(data)
        return "readings_in", rows
    except psycopg.errors.UniqueViolation:
        await cur.execute(_INSERT_NEW)
        return "readings_new", max(cur.rowcount, 0)


# One row of COPY BINARY of (bigint, timestamptz, double precision): the field count, then
# each field's length and value, in network order. Three fixed-width fields make a row one
# record of a numpy structured array: 2 ms for 100,000 rows, where layers.pgcopy's general
# encoder (any columns, NULLs, varlen) takes 40.
_ROW = np.dtype(
    [("n", ">i2"), ("l1", ">i4"), ("sensor", ">i8"), ("l2", ">i4"), ("t", ">i8"),
     ("l3", ">i4"), ("value", ">f8")]
)  # fmt: skip
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's epoch, in µs since 1970


def _copy_rows(fids: np.ndarray, t_us: np.ndarray, values: np.ndarray) -> bytes:
    rows = np.empty(len(fids), dtype=_ROW)
    rows["n"] = 3
    rows["l1"] = rows["l2"] = rows["l3"] = 8
    rows["sensor"] = fids
    rows["t"] = t_us - _PG_EPOCH_US
    rows["value"] = values
    return rows.tobytes()


async def _store(
    conn: psycopg.AsyncConnection, checked: Checked, report: IngestReport, graphs: Any
) -> None:
    # by sensor and time (a stable sort: of a reading sent twice, the first stays first): the
    # index on (sensor, t) then takes each sensor's readings on one page
    order = np.lexsort((checked.t_us, checked.fids))
    rows = _copy_rows(checked.fids[order], checked.t_us[order], checked.values[order])
    async with conn.transaction():
        # the temp tables have no statistics: the estimates of the evaluation pass the JIT's
        # threshold, and compiling costs more than the statement (50 ms of 400 ms)
        await conn.execute("SET LOCAL jit = off;" + _STAGE)
        async with conn.cursor() as cur:
            data = HEADER + rows + TRAILER
            async with cur.copy(_COPY_STAGE) as copy:
                await copy.write(data)
            source, report.stored = await _insert(cur, conn, data, len(checked.fids))
            report.duplicates = len(checked.fids) - report.stored
            await cur.execute(sql.SQL(_EVALUATE).format(source=sql.Identifier(source)))
            changed = await cur.fetchall()
            names = [d.name for d in cur.description or []]
        rows_out = [dict(zip(names, r, strict=True)) for r in changed]
        moved = [r for r in rows_out if r["old_state"] != r["new_state"]]
        report.state_changes = len(moved)
        # what needs no answer goes down together: fewer waits for a busy event loop
        async with conn.pipeline():
            counts = await alarms.apply(conn, rows_out)
            await alarms.notify_tiles(conn, [(r["lon"], r["lat"]) for r in moved])
        report.alarms_opened, report.alarms_updated, report.alarms_cleared, pending = counts
    for aid, sensor in pending:
        await alarms.propose(conn, aid, sensor, graphs)
