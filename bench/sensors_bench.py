"""Live-twin load: POST /sensors/readings against a plain COPY, and alarm-to-SSE latency.

A scratch embedded PostGIS (bench/out/sensors-db) and `twin serve` (uvicorn serving
api.app.create_app, as in production) on a free loopback port. 20,000 sensors are registered
through POST /sensors, each with low, high and rate thresholds, so every reading is checked
against its rules. Then, in alternating rounds, the same readings (default 10,000,000) go in:

- citytwin: CSV batches of 100,000 readings to POST /sensors/readings from 4 concurrent
  clients (gateways, each owning its own share of the sensors), end to end: HTTP, parse,
  checks (known sensor, time not in the future nor past the retention), binary COPY into a temp
  table and into the day-partitioned twin.readings (idempotent: a batch with a reading already
  stored goes in with INSERT ... ON CONFLICT DO NOTHING), the threshold and rate rules
  evaluated in SQL, sensor states and alarms moved and their events emitted, one transaction
  per batch;
- COPY: the same rows (sensor fid instead of its id) in the same batches from as many
  connections, each batch one `COPY twin.readings (sensor, t, value) FROM STDIN (FORMAT csv)`
  in a transaction of its own: no checks, no duplicates handling, no rules, no alarms.

Before every run of either side the readings are truncated (the partitions stay), the alarms
removed and the sensors reset to no reading, so every round does the same work. While citytwin
ingests, a side sender posts one reading of a dedicated sensor every ~0.5 s, alternately over
and under its threshold, and a client subscribed to /events/stream?kinds=alarm records when
the alarm's `opened` or `cleared` event arrives: latency = arrival - send.

    .venv/bin/python bench/sensors_bench.py                       # 10M readings, 3 rounds
    .venv/bin/python bench/sensors_bench.py --readings 1000000    # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import math
import os
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from common import (  # bench/common.py, beside this script
    OUT,
    REPO,
    ScratchDatabase,
    ServerProcess,
    alternate,
    console,
    machine,
    median_or_nan,
    p95,
    package_versions,
    print_written,
    pyplot,
    save_figure,
    start_scratch,
    twin_serve,
    write_json,
)
from rich.table import Table

LAT_SENSOR = "LAT-001"  # the side sender's sensor: threshold_high 50, readings 80 / 20
LAT_HIGH, LAT_BREACH, LAT_NORMAL = 50.0, 80.0, 20.0
STEP_S = 30  # seconds between two readings of one sensor
KINDS = [("pressure", "MPa"), ("flow", "m3/h"), ("level", "m"), ("gas", "%LEL")]
KINDS += [("air", "ug/m3"), ("temperature", "degC"), ("quality", "NTU")]
COPY_SQL = "COPY twin.readings (sensor, t, value) FROM STDIN (FORMAT csv, HEADER true)"
RESET_SQL = """
    TRUNCATE twin.readings;
    TRUNCATE twin.alarms CASCADE;
    UPDATE twin.sensors SET last_time = NULL, last_value = NULL, state = 'stale',
                            state_since = now();
"""


# --- the workload -----------------------------------------------------------------------------
@dataclass
class Workload:
    """Sensors with their levels and thresholds, and every reading as a (steps, sensors) matrix
    of values at times ``t0 + k * STEP_S``."""

    names: list[str]
    level: np.ndarray
    sigma: np.ndarray
    values: np.ndarray  # (steps, sensors)
    t0: int  # epoch seconds of the first step
    breaching: int = 0

    @property
    def steps(self) -> int:
        return self.values.shape[0]

    def thresholds(self, i: int) -> tuple[float, float, float]:
        """low, high (level ± 4 sigma) and rate (12 sigma a minute)."""
        lv, sg = float(self.level[i]), float(self.sigma[i])
        return round(lv - 4 * sg, 4), round(lv + 4 * sg, 4), round(12 * sg, 4)


def make_workload(sensors: int, readings: int, share: float, episode: int, seed: int) -> Workload:
    """Each sensor: Gaussian noise (sigma 2 % of its level) around its level, plus episodes of
    ``episode`` readings 7 sigma past one of its thresholds (the same side for a sensor),
    started at random so that about ``share`` of all readings breach a threshold; the steps
    over and back breach the rate rule too."""
    rng = np.random.default_rng(seed)
    steps = max(2, readings // sensors)
    level = rng.uniform(1.0, 100.0, sensors)
    sigma = 0.02 * level
    values = level + sigma * rng.standard_normal((steps, sensors))
    starts = rng.random((steps, sensors)) < share / episode
    excursion = np.zeros_like(starts)
    for lag in range(min(episode, steps)):
        excursion[lag:] |= starts[: steps - lag]
    sign = np.where(rng.random(sensors) < 0.5, -1.0, 1.0)
    values = np.where(excursion, values + sign * 7 * sigma, values).round(4)
    end = int(time.time()) // STEP_S * STEP_S - 120  # the newest readings two minutes old
    work = Workload([f"S-{i:05d}" for i in range(sensors)], level, sigma, values, 0)
    work.t0 = end - (steps - 1) * STEP_S
    low, high = (level - 4 * sigma).round(4), (level + 4 * sigma).round(4)  # as registered
    work.breaching = int(((values < low) | (values > high)).sum())
    return work


@dataclass
class Batches:
    """One side's bodies, per client, with their row counts."""

    bodies: list[list[bytes]]
    rows: list[list[int]]

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.rows)


def make_batches(
    work: Workload, labels: pa.Array, header: bytes, clients: int, size: int
) -> Batches:
    """Client g owns sensors g, g + clients, ...; its readings go time step after time step
    (as a gateway forwards them), cut into bodies of ``size`` rows."""
    iso = [
        dt.datetime.fromtimestamp(work.t0 + k * STEP_S, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for k in range(work.steps)
    ]
    times = pa.array(iso, pa.string())
    out = Batches([], [])
    for g in range(clients):
        own = np.arange(g, len(work.names), clients)
        sensor = np.tile(own, work.steps)
        step = np.repeat(np.arange(work.steps), len(own))
        value = work.values[:, own].ravel()
        bodies, rows = [], []
        for a in range(0, len(sensor), size):
            sl = slice(a, a + size)
            table = pa.table(
                {
                    "sensor": labels.take(pa.array(sensor[sl])),
                    "time": times.take(pa.array(step[sl])),
                    "value": pa.array(value[sl]),
                }
            )
            sink = io.BytesIO()
            sink.write(header)
            pacsv.write_csv(
                table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none")
            )
            bodies.append(sink.getvalue())
            rows.append(len(table))
        out.bodies.append(bodies)
        out.rows.append(rows)
    return out


# --- set-up -----------------------------------------------------------------------------------
def editor_key(url: str) -> str:
    from twin.auth import create_key

    with psycopg.connect(url) as conn:
        token = create_key(conn, "editor", name="sensors bench").token
        conn.commit()
    return token


def register(client: httpx.Client, work: Workload, seed: int) -> None:
    """The sensors and the latency sensor, registered through POST /sensors in chunks."""
    rng = np.random.default_rng(seed + 1)
    lon = rng.uniform(116.40, 116.60, len(work.names))
    lat_ = rng.uniform(31.70, 31.80, len(work.names))
    kinds = rng.integers(0, len(KINDS), len(work.names))
    records = []
    for i, name in enumerate(work.names):
        low, high, rate = work.thresholds(i)
        kind, unit = KINDS[kinds[i]]
        records.append(
            {
                "sensor_id": name,
                "kind": kind,
                "unit": unit,
                "lon": round(float(lon[i]), 6),
                "lat": round(float(lat_[i]), 6),
                "threshold_low": low,
                "threshold_high": high,
                "threshold_rate": rate,
                "stale_after_s": 86_400,  # the readings are hours old: not stale within the run
            }
        )
    records.append(
        {
            "sensor_id": LAT_SENSOR,
            "kind": "level",
            "unit": "m",
            "lon": 116.5,
            "lat": 31.75,
            "threshold_high": LAT_HIGH,
            "stale_after_s": 86_400,
        }
    )
    started = time.perf_counter()
    with console.status("registering sensors...") as status:
        for a in range(0, len(records), 2000):
            r = client.post("/sensors", json=records[a : a + 2000], timeout=600)
            if r.status_code != 201:
                raise SystemExit(f"POST /sensors answered {r.status_code}: {r.text[:500]}")
            status.update(f"registering sensors... {min(a + 2000, len(records)):,}")
    console.print(
        f"{len(records):,} sensors registered through POST /sensors in "
        f"{time.perf_counter() - started:.1f} s"
    )


def ensure_partitions(url: str, work: Workload) -> None:
    """The day partitions of the readings, made before the first round: the COPY side relies
    on them, as the ingest makes them when missing."""
    from sensors.partitions import Partitions

    first = dt.datetime.fromtimestamp(work.t0, dt.UTC).date()
    last = dt.datetime.fromtimestamp(work.t0 + (work.steps - 1) * STEP_S, dt.UTC).date()
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]

    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await Partitions().ensure(conn, days)

    made = asyncio.run(run())
    console.print(f"readings span {len(days)} day partition(s) ({made} made now)")


def fids(url: str, names: list[str]) -> tuple[pa.Array, int]:
    with psycopg.connect(url) as conn:
        known = dict(conn.execute("SELECT sensor_id, fid FROM twin.sensors").fetchall())
    return pa.array([str(known[n]) for n in names], pa.string()), int(known[LAT_SENSOR])


def reset(url: str) -> None:
    """Empty readings and alarms, sensors back to no reading; the sensors table rewritten (a
    round leaves it many times its size, see sensors_mb) so that every round starts from the
    same tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RESET_SQL)
        conn.execute("VACUUM (FULL, ANALYZE) twin.sensors")
        conn.execute("VACUUM twin.alarms")
        try:
            conn.execute("CHECKPOINT")  # the previous round's WAL is not flushed into this one
        except psycopg.errors.InsufficientPrivilege:
            pass


# --- CPU accounting -----------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int | None, children: bool = False) -> float:
    """User + system CPU seconds of a process (Linux /proc; 0 elsewhere); with ``children``,
    of its live children too and of those it has reaped (a cluster's postmaster: every
    backend, checkpointer, WAL writer and autovacuum worker)."""
    if pid is None:
        return 0.0
    try:
        f = _stat(pid)
        total = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if children else 0)
        if children:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        c = _stat(int(entry.name))
                    except (OSError, IndexError):
                        continue
                    if int(c[1]) == pid:
                        total += int(c[11]) + int(c[12])
        return total / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


# --- the two sides ----------------------------------------------------------------------------
@dataclass
class Done:
    client: int
    rows: int
    start: float
    end: float
    report: dict[str, Any] | None = None


@dataclass
class Run:
    side: str
    round: int
    seconds: float = 0.0
    rows: int = 0
    batches: list[Done] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds: server, database, client
    sensors_mb: float = 0.0  # twin.sensors with its indexes, at the end of the round

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _post_all(base: str, token: str, client: int, bodies, rows, run: Run, t0: float) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    with httpx.Client(base_url=base, headers=headers, timeout=600) as http:
        for body, n in zip(bodies, rows, strict=True):
            start = time.perf_counter()
            try:
                r = http.post("/sensors/readings", content=body)
            except httpx.HTTPError as exc:
                run.failures.append(f"client {client}: {exc!r}")
                return
            end = time.perf_counter()
            if r.status_code != 200:
                run.failures.append(f"client {client}: {r.status_code} {r.text[:300]}")
                return
            run.batches.append(Done(client, n, start - t0, end - t0, r.json()))


def _copy_all(url: str, client: int, bodies, rows, run: Run, t0: float) -> None:
    with psycopg.connect(url) as conn:
        for body, n in zip(bodies, rows, strict=True):
            start = time.perf_counter()
            with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
                copy.write(body)
            conn.commit()
            run.batches.append(Done(client, n, start - t0, time.perf_counter() - t0))


def run_side(side: str, batches: Batches, target, run: Run, pids: tuple) -> None:
    """Every client's bodies, at once, each client in a thread; progress on the console; the
    CPU time of the server, the database and this client over the run."""
    before = (cpu_s(pids[0]), cpu_s(pids[1], children=True), time.process_time())
    t0 = time.perf_counter()
    threads = [
        threading.Thread(
            target=target, args=(g, batches.bodies[g], batches.rows[g], run, t0), daemon=True
        )
        for g in range(len(batches.bodies))
    ]
    for t in threads:
        t.start()
    with console.status(f"{side} round {run.round}...") as status:
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            done = sum(b.rows for b in run.batches)
            elapsed = time.perf_counter() - t0
            status.update(
                f"{side} round {run.round}: {len(run.batches)}/{batches.count} batches, "
                f"{done:,} readings, {done / elapsed:,.0f}/s"
            )
    run.seconds = max((b.end for b in run.batches), default=time.perf_counter() - t0)
    run.rows = sum(b.rows for b in run.batches)
    after = (cpu_s(pids[0]), cpu_s(pids[1], children=True), time.process_time())
    run.cpu = {
        k: round(b - a, 2)
        for k, a, b in zip(("server", "database", "client"), before, after, strict=True)
    }


# --- alarm latency ----------------------------------------------------------------------------
def _us(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


class Listener(threading.Thread):
    """A client of /events/stream?kinds=alarm for the whole benchmark, as a browser's
    EventSource: cut off, it comes back after the server's `retry` with Last-Event-ID and
    replays what it missed. When each event of the side sender's sensor arrived, by (action,
    reading time); the other alarm events and the reconnections (when) counted."""

    def __init__(self, base: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base}/events/stream?kinds=alarm"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.arrived: dict[tuple[str, int], float] = {}
        self.others = 0
        self.last_id: str | None = None
        self.ids: set[int] = set()  # of every alarm event received
        self.retry_s = 2.0
        self.reconnects: list[float] = []
        self.ready = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        timeout = httpx.Timeout(10, read=None)
        while not self.halt.is_set():
            try:
                self._follow(timeout)
            except httpx.HTTPError:
                pass  # cut off, or the server stopped at the end of the benchmark
            if self.halt.wait(self.retry_s):
                return
            self.reconnects.append(time.perf_counter())

    def _follow(self, timeout: httpx.Timeout) -> None:
        headers = dict(self.headers)
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        with httpx.stream("GET", self.url, headers=headers, timeout=timeout) as r:
            for line in r.iter_lines():
                now = time.perf_counter()
                self.ready.set()
                if line.startswith("id: "):
                    self.last_id = line[4:]
                    self.ids.add(int(self.last_id))
                elif line.startswith("retry: "):
                    self.retry_s = int(line[7:]) / 1000
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                payload = event.get("payload") or {}
                if payload.get("sensor") != LAT_SENSOR:
                    self.others += 1
                    continue
                at = _us(dt.datetime.fromisoformat(payload["at"]))
                self.arrived.setdefault((event["action"], at), now)


@dataclass
class Sent:
    action: str  # the event it must cause: opened or cleared
    at_us: int
    sent: float
    answered: float = math.nan
    status: int = 0


class Sender(threading.Thread):
    """One reading of the latency sensor every ``every`` s, over and under its threshold in
    turn, each with the time it is sent at."""

    def __init__(self, base: str, token: str, every: float) -> None:
        super().__init__(daemon=True)
        self.base, self.every = base, every
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
        self.sent: list[Sent] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=60) as http:
            k = 0
            tick = time.perf_counter()
            while not self.halt.is_set():
                breach = k % 2 == 0
                moment = dt.datetime.now(dt.UTC)
                body = f"sensor,time,value\n{LAT_SENSOR},{moment.isoformat()},"
                body += f"{LAT_BREACH if breach else LAT_NORMAL}\n"
                s = Sent("opened" if breach else "cleared", _us(moment), time.perf_counter())
                self.sent.append(s)
                try:
                    r = http.post("/sensors/readings", content=body)
                    s.status = r.status_code
                except httpx.HTTPError:
                    s.status = -1
                s.answered = time.perf_counter()
                k += 1
                tick += self.every
                self.halt.wait(max(0.0, tick - time.perf_counter()))


def latency_of(
    sender: Sender, listener: Listener, since: float, others: int, emitted: tuple[int, int, int]
) -> dict[str, Any]:
    """Per reading sent: the POST's time and its event's; and whether the stream delivered
    every alarm event the round emitted (``emitted``: ids after, up to, and how many)."""
    first, last, count = emitted
    delivered = sum(first < i <= last for i in listener.ids)
    sends = []
    for s in sender.sent:
        got = listener.arrived.get((s.action, s.at_us))
        sends.append(
            {
                "action": s.action,
                "status": s.status,
                "post_ms": round((s.answered - s.sent) * 1000, 1),
                "event_ms": None if got is None else round((got - s.sent) * 1000, 1),
            }
        )
    return {
        "sent": len(sends),
        "refused": sum(s["status"] != 200 for s in sends),
        "matched": sum(s["event_ms"] is not None for s in sends),
        "ms": [s["event_ms"] for s in sends if s["event_ms"] is not None],
        "post_ms": [s["post_ms"] for s in sends if s["status"] == 200],
        "sends": sends,
        "stream_reconnects": sum(t >= since for t in listener.reconnects),
        "other_alarm_events": listener.others - others,
        "alarm_events_emitted": count,
        "alarm_events_delivered": delivered,
    }


def _p95(values: list[float]) -> float:
    return p95(values) if values else math.nan


# --- report -----------------------------------------------------------------------------------
def report(runs: list[Run], args, work: Workload, clients: int) -> dict[str, Any]:
    table = Table(title=f"{args.readings:,} readings, batches of {args.batch:,}, {clients} clients")
    for col in ("side", "round", "seconds", "readings/s", "alarms opened", "cleared"):
        table.add_column(col, justify="left" if col == "side" else "right")
    for run in runs:
        reports = [b.report for b in run.batches if b.report]
        opened = sum(r["alarms"]["opened"] for r in reports) if reports else None
        cleared = sum(r["alarms"]["cleared"] for r in reports) if reports else None
        table.add_row(
            run.side,
            str(run.round),
            f"{run.seconds:.1f}",
            f"{run.rate:,.0f}",
            "" if opened is None else f"{opened:,}",
            "" if cleared is None else f"{cleared:,}",
        )
    console.print(table)
    med = {side: statistics.median(r.rate for r in runs if r.side == side) for side in SIDES}
    ratio = med["citytwin"] / med["COPY"]
    console.print(
        f"median citytwin {med['citytwin']:,.0f} readings/s, COPY {med['COPY']:,.0f} readings/s: "
        f"citytwin/COPY = [bold]{ratio:.2f}x[/bold] (goal >= 0.5x)"
    )
    lat = [v for r in runs if r.side == "citytwin" for v in r.latency.get("ms", [])]
    post = [v for r in runs if r.side == "citytwin" for v in r.latency.get("post_ms", [])]
    sent = sum(r.latency.get("sent", 0) for r in runs)
    matched = sum(r.latency.get("matched", 0) for r in runs)
    summary = {
        "count": len(lat),
        "sent": sent,
        "missing": sent - matched,
        "median_ms": round(median_or_nan(lat), 1),
        "p95_ms": round(_p95(lat), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "post_median_ms": round(median_or_nan(post), 1),
        "post_p95_ms": round(_p95(post), 1),
        "stream_reconnects": sum(r.latency.get("stream_reconnects", 0) for r in runs),
        "other_alarm_events": sum(r.latency.get("other_alarm_events", 0) for r in runs),
        "alarm_events_emitted": sum(r.latency.get("alarm_events_emitted", 0) for r in runs),
        "alarm_events_delivered": sum(r.latency.get("alarm_events_delivered", 0) for r in runs),
    }
    console.print(
        f"alarm -> SSE latency under load: {summary['count']} events of {sent} readings sent "
        f"({summary['missing']} without their event), median {summary['median_ms']:.0f} ms, "
        f"p95 [bold]{summary['p95_ms']:.0f} ms[/bold], max {summary['max_ms']} ms (goal p95 < "
        f"1000 ms); the POST itself: median {summary['post_median_ms']:.0f} ms, p95 "
        f"{summary['post_p95_ms']:.0f} ms. The stream delivered "
        f"{summary['alarm_events_delivered']:,} of the {summary['alarm_events_emitted']:,} alarm "
        f"events emitted during the rounds; the subscriber was cut off "
        f"{summary['stream_reconnects']} times"
    )
    server_s = [b.report["seconds"] for r in runs for b in r.batches if b.report]
    wall = [b.end - b.start for r in runs if r.side == "citytwin" for b in r.batches]
    copy = [b.end - b.start for r in runs if r.side == "COPY" for b in r.batches]
    console.print(
        f"per batch, median: citytwin {statistics.median(wall):.2f} s at the client, "
        f"{statistics.median(server_s):.2f} s in ingest(); COPY {statistics.median(copy):.2f} s"
    )
    return {
        "median_readings_per_s": {k: round(v) for k, v in med.items()},
        "ratio": round(ratio, 3),
        "latency": summary,
        "batch_median_s": {
            "citytwin_client": round(statistics.median(wall), 3),
            "citytwin_ingest": round(statistics.median(server_s), 3),
            "copy": round(statistics.median(copy), 3),
        },
    }


def plot(runs: list[Run]) -> Path | None:
    """Readings stored over each round, and each batch's rate, both sides."""
    plt = pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = {"citytwin": "tab:blue", "COPY": "tab:orange"}
    for run in runs:
        done = sorted(run.batches, key=lambda b: b.end)
        ends = [b.end for b in done]
        left.plot(
            ends,
            np.cumsum([b.rows for b in done]),
            color=colours[run.side],
            alpha=0.7,
            label=f"{run.side} round {run.round}",
        )
        right.scatter(
            ends,
            [b.rows / (b.end - b.start) for b in done],
            s=8,
            color=colours[run.side],
            alpha=0.5,
            label=run.side if run.round == 1 else None,
        )
    left.set(xlabel="s since the round began", ylabel="readings stored", title="progress")
    right.set(
        xlabel="s since the round began",
        ylabel="readings/s of one batch (one client)",
        title="throughput per batch",
    )
    left.legend(fontsize=7)
    right.legend()
    return save_figure(plt, fig, "sensors_bench.png", dpi=110)


SIDES = ("citytwin", "COPY")


# --- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=10_000_000, help="readings per round")
    p.add_argument("--sensors", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=100_000, help="readings per request or COPY")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients on each side")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each side (alternating)")
    p.add_argument(
        "--breach-share", type=float, default=0.005, help="share of readings past a threshold"
    )
    p.add_argument(
        "--episode",
        type=int,
        default=20,
        help="readings (30 s apart) in one episode past a threshold",
    )
    p.add_argument("--every", type=float, default=0.5, help="seconds between latency readings")
    p.add_argument("--seed", type=int, default=20250113)
    p.add_argument("--keep-db", action="store_true", help="leave the scratch cluster running")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - a linear script
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if str(REPO) not in sys.path:  # the checkout's packages (sensors) before the installed ones
        sys.path.insert(1, str(REPO))
    started = time.perf_counter()
    with console.status("generating the readings..."):
        work = make_workload(
            args.sensors, args.readings, args.breach_share, args.episode, args.seed
        )
    total = work.steps * args.sensors
    console.print(
        f"{args.sensors:,} sensors x {work.steps} readings ({STEP_S} s apart) = {total:,} "
        f"readings, {work.breaching:,} ({work.breaching / total:.2%}) past a threshold"
    )
    args.readings = total
    fresh_cluster(OUT / "sensors-db")
    db = ScratchDatabase(OUT / "sensors-db")
    # the checkout first on the path: packages added since the venv was installed are found
    db.env["PYTHONPATH"] = ":".join(filter(None, [str(REPO), db.env.get("PYTHONPATH")]))
    server: ServerProcess | None = None
    listener: Listener | None = None
    versions = package_versions(["fastapi", "uvicorn", "psycopg", "pyarrow", "numpy"])
    runs: list[Run] = []
    try:
        url = start_scratch(db)
        versions["postgres"] = server_versions(url)
        server = twin_serve(url, db.env)
        console.print(f"twin serve on {server.base} (pid {server.pid})")
        token = editor_key(url)
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}) as c:
            register(c, work, args.seed)
        ensure_partitions(url, work)
        labels, _ = fids(url, work.names)
        with console.status("writing the CSV bodies..."):
            ours = make_batches(
                work, pa.array(work.names), b"sensor,time,value\n", args.clients, args.batch
            )
            peer = make_batches(work, labels, b"sensor,t,value\n", args.clients, args.batch)
        console.print(
            f"{ours.count} bodies a side ({args.clients} clients); "
            f"{sum(map(len, sum(ours.bodies, []))) / 1e6:,.0f} MB of CSV for citytwin"
        )
        pids = (server.pid, db.pid)
        listener = Listener(server.base, token)
        listener.start()
        if not listener.ready.wait(30):
            raise SystemExit("the event stream did not answer")
        for rnd in range(1, args.rounds + 1):
            order = alternate(SIDES, rnd - 1)  # citytwin first in odd rounds
            for side in order:
                reset(url)
                run = Run(side, rnd)
                if side == "citytwin":
                    sender = Sender(server.base, token, args.every)
                    since, others = time.perf_counter(), listener.others
                    first_event = last_event_id(url)
                    sender.start()
                    run_side(side, ours, lambda *a: _post_all(server.base, token, *a), run, pids)
                    sender.halt.set()
                    sender.join()
                    time.sleep(2.0)  # the last events on their way
                    emitted = (first_event, last_event_id(url), events_between(url, first_event))
                    run.latency = latency_of(sender, listener, since, others, emitted)
                else:
                    run_side(side, peer, lambda *a: _copy_all(url, *a), run, pids)
                if run.failures:
                    for line in run.failures[:5]:
                        console.print(f"[red]{line}[/red]", markup=True)
                    raise SystemExit(f"{side} round {rnd} failed")
                check_round(url, run, total)
                run.sensors_mb = sensors_mb(url)
                runs.append(run)
                extra = ""
                if run.latency:
                    ms = run.latency["ms"]
                    extra = (
                        f"; alarm latency median {median_or_nan(ms):.0f} ms, p95 "
                        f"{_p95(ms):.0f} ms ({len(ms)}/{run.latency['sent']}; "
                        f"stream: {run.latency['alarm_events_delivered']:,} of "
                        f"{run.latency['alarm_events_emitted']:,} alarm events, "
                        f"{run.latency['stream_reconnects']} reconnections)"
                    )
                console.print(
                    f"round {rnd} {side:8} {run.seconds:7.1f} s {run.rate:12,.0f} readings/s; "
                    f"CPU s: server {run.cpu['server']:.1f}, database {run.cpu['database']:.1f}, "
                    f"client {run.cpu['client']:.1f}; twin.sensors {run.sensors_mb:g} MB" + extra
                )
    finally:
        if listener is not None:
            listener.halt.set()
        if server is not None:
            server.stop()
        if not args.keep_db:
            db.stop()
    summary = report(runs, args, work, args.clients)
    out = {
        "arguments": vars(args),
        "machine": machine(),
        "versions": versions,
        "readings_past_threshold": work.breaching,
        "summary": summary,
        "rounds": [
            {
                "side": r.side,
                "round": r.round,
                "seconds": round(r.seconds, 2),
                "readings_per_s": round(r.rate),
                "cpu_s": r.cpu,
                "sensors_mb": r.sensors_mb,
                "latency": r.latency,
                "batches": [
                    [
                        b.client,
                        b.rows,
                        round(b.start, 3),
                        round(b.end, 3),
                        b.report["seconds"] if b.report else None,
                    ]
                    for b in r.batches
                ],
            }
            for r in runs
        ],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print_written(write_json("sensors_bench.json", out), plot(runs))
    console.print(f"whole run {out['wall_s']:.0f} s")
    return 0


def server_versions(url: str) -> str:
    with psycopg.connect(url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        gis = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
        return f"PostgreSQL {pg}, PostGIS {(gis.fetchone() or ['?'])[0]}"


def sensors_mb(url: str) -> float:
    with psycopg.connect(url) as conn:
        size = conn.execute("SELECT pg_total_relation_size('twin.sensors')").fetchone()[0]
    return round(size / 2**20, 1)


def last_event_id(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM twin.events").fetchone()[0])


def events_between(url: str, after: int) -> int:
    with psycopg.connect(url) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM twin.events WHERE kind = 'alarm' AND id > %s", [after]
            ).fetchone()[0]
        )


def fresh_cluster(folder: Path) -> None:
    """No cluster of an earlier run: the schema is the checkout's, and every run starts from
    the same empty tables (a cluster left by --keep-db is stopped first)."""
    if folder.exists():
        ScratchDatabase(folder).twin("db", "stop", check=False)
        shutil.rmtree(folder)


def check_round(url: str, run: Run, total: int) -> None:
    """Every reading stored once: the count in twin.readings, and citytwin's own reports."""
    with psycopg.connect(url) as conn:
        n = conn.execute(
            "SELECT count(*) FROM twin.readings r JOIN twin.sensors s ON s.fid = r.sensor "
            "WHERE s.sensor_id <> %s",
            [LAT_SENSOR],
        ).fetchone()[0]
    stored = sum(b.report["stored"] for b in run.batches if b.report)
    if n != total or (run.side == "citytwin" and stored != total):
        raise SystemExit(f"{run.side} round {run.round}: {n:,} readings stored, not {total:,}")


if __name__ == "__main__":
    sys.exit(main())
