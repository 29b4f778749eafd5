"""The demo's live feed: fresh readings for every demo sensor every few seconds, and now and
then an incident, so whoever watches the viewer sees alarms open and clear.

Two incidents take turns: a main bursts near a water pressure sensor (the pressure there and,
less, around it falls below the threshold: a low-pressure alarm that proposes the burst pipe
and the valves to close; the crew repairs it a minute or two later), and a cloudburst floods a
storm manhole (the rain gauges read heavy rain, the manhole's water rises fast past its high
level, then drains away). The readings go through the readings ingest on a connection of the
simulator's own, as a field gateway's would; ``twin demo`` runs it in a thread beside the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

from pipelines.graph import GraphCache
from sample_data.live import is_silent, read_sensors
from sample_data.signals import Signal
from sensors import ingest
from sensors.partitions import Partitions
from twin.errors import TwinError
from twin.settings import SensorSettings

log = logging.getLogger(__name__)

STEP_S = 10.0
INCIDENT_EVERY = 30  # ticks from the start of one incident to the next (5 min at 10 s)
FIRST_INCIDENT = 3  # the first one starts soon after the demo does
# Pressure (MPa) a burst pulls each sensor towards: far below the 0.20 MPa threshold at the
# burst, below it close by, a dip without alarm further out. Targets well clear of the
# threshold keep a sensor from flapping in and out of alarm on the noise.
BURST_AT = 0.12
BURST_AROUND = ((250.0, 0.16), (500.0, 0.26))  # (within metres, pressure)
# How far towards its target each sensor is, per tick since the burst: down within two
# readings, down until the crew closes the valves and repairs, then back.
BURST_PROFILE = (0.5, *(1.0,) * 9, 0.55, 0.2)
# Water level added in the flooded manhole (m) per tick: a fast rise, a few readings at the
# top, then the water drains away at about 0.4 m/min (below the 0.5 m/min rate threshold).
_RISE = [0.3 * (k + 1) for k in range(6)] + [1.8] * 3
FLOOD_RISE = (*_RISE, *(round(1.8 - 0.07 * (k + 1), 2) for k in range(25)))
RAIN_PEAK = 38.0  # mm/h at the gauge nearest the flood (heavy rain, 暴雨); less elsewhere


@dataclass
class Sensor:
    sensor_id: str
    kind: str
    lon: float
    lat: float
    signal: Signal


@dataclass
class Incident:
    """A burst or a flood and what it does to each sensor it touches: the pressure a burst
    pulls it towards, or how much of a flood's water and rain it gets (1 at the centre)."""

    kind: str  # burst | flood
    start: int  # tick
    centre: str
    effects: dict[str, float]

    @property
    def length(self) -> int:
        return len(BURST_PROFILE) if self.kind == "burst" else len(FLOOD_RISE)

    def over(self, tick: int) -> bool:
        return tick - self.start >= self.length

    def apply(self, tick: int, sensor: Sensor, value: float) -> float:
        w = self.effects.get(sensor.sensor_id)
        k = tick - self.start
        if w is None or not 0 <= k < self.length:
            return value
        if self.kind == "burst":
            return round(value + (w - value) * BURST_PROFILE[k], 3)
        if sensor.kind == "level":
            return round(value + FLOOD_RISE[k] * w, 3)
        # rain: a storm cell passing over, heaviest halfway through the flood
        return round(max(value, RAIN_PEAK * w * math.sin(math.pi * (k + 1) / (self.length + 1))), 1)


def metres(a: Sensor, b: Sensor) -> float:
    """Distance on the ground, near enough at city scale (equirectangular)."""
    kx = 111_320.0 * math.cos(math.radians((a.lat + b.lat) / 2))
    return math.hypot((a.lon - b.lon) * kx, (a.lat - b.lat) * 110_574.0)


@dataclass
class Simulator:
    """The feed of one demo: the sensors of ``folder``'s sensors file, as registered."""

    url: str
    folder: Path
    settings: SensorSettings
    step_s: float = STEP_S
    incident_every: int = INCIDENT_EVERY
    seed: int | None = None
    sensors: list[Sensor] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)  # under way
    happened: list[Incident] = field(default_factory=list)  # every one started
    tick: int = 0
    started: int = 0  # incidents started so far
    readings: int = 0  # stored so far

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.partitions = Partitions()
        self.graphs = GraphCache()  # the burst proposals' network graphs, kept between rounds
        self._queues: dict[str, list[Sensor]] = {"pressure": [], "level": []}

    async def _read_sensors(self, conn: psycopg.AsyncConnection) -> None:
        ids = [s.sensor_id for s in read_sensors(self.folder) if not is_silent(s.sensor_id)]
        cur = await conn.execute(
            "SELECT sensor_id, kind, ST_X(geom), ST_Y(geom) FROM twin.sensors "
            "WHERE sensor_id = ANY(%s) ORDER BY sensor_id",
            [ids],
        )
        self.sensors = [
            Sensor(sid, kind, lon, lat, Signal.of(sid, kind))
            for sid, kind, lon, lat in await cur.fetchall()
        ]

    def _next(self, kind: str) -> Sensor | None:
        """The next sensor an incident of this kind centres on: each in turn, shuffled."""
        queue = self._queues[kind]
        if not queue:
            pool = [s for s in self.sensors if s.kind == kind]
            queue.extend(pool[i] for i in self.rng.permutation(len(pool)))
        return queue.pop() if queue else None

    def _start_incident(self) -> None:
        kind = ("burst", "flood")[self.started % 2]
        self.started += 1
        centre = self._next("pressure" if kind == "burst" else "level")
        if centre is None:
            return
        effects = {centre.sensor_id: 1.0}
        if kind == "burst":
            for s in self.sensors:
                d = metres(s, centre)
                target = next((p for r, p in BURST_AROUND if d < r), None)
                if s.kind == "pressure" and target is not None:
                    effects[s.sensor_id] = target
            effects[centre.sensor_id] = BURST_AT
        else:
            gauges = sorted(
                (metres(s, centre), s.sensor_id) for s in self.sensors if s.kind == "rain"
            )
            for i, (_, sid) in enumerate(gauges):
                effects[sid] = 1.0 if i == 0 else float(self.rng.uniform(0.45, 0.65))
        incident = Incident(kind, self.tick, centre.sensor_id, effects)
        self.incidents.append(incident)
        self.happened.append(incident)
        log.info("demo simulator: %s at %s", kind, centre.sensor_id)

    def batch(self, now_s: float) -> ingest.Batch:
        """This tick's readings: every sensor's ordinary value, changed by what is happening."""
        since = self.tick - FIRST_INCIDENT
        if since >= 0 and since % self.incident_every == 0:
            self._start_incident()
        t = np.array([now_s])
        values = []
        for s in self.sensors:
            value = float(s.signal.values(t, self.rng)[0])
            for incident in self.incidents:
                value = incident.apply(self.tick, s, value)
            values.append(value)
        self.incidents = [i for i in self.incidents if not i.over(self.tick + 1)]
        t_us = np.full(len(values), int(now_s * 1e6), dtype=np.int64)
        return ingest.Batch([s.sensor_id for s in self.sensors], t_us, np.array(values))

    async def step(self, conn: psycopg.AsyncConnection) -> ingest.IngestReport:
        """Post one round of readings (the ingest opens, updates and clears the alarms)."""
        batch = self.batch(time.time())
        self.tick += 1
        report = await ingest.ingest(
            conn, batch, self.settings, self.partitions, skip_invalid=True, graphs=self.graphs
        )
        self.readings += report.stored
        for p in report.problems[:3]:
            log.warning("demo simulator: %s: %s", p.sensor, p.reason)
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Post readings every ``step_s`` until ``stop`` is set; a lost database connection is
        opened again."""
        while not stop.is_set():
            try:
                # autocommit, as the server's pool: each ingest is a transaction of its own,
                # and a burst proposal reads the network in a snapshot of its own
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    if not self.sensors:
                        await self._read_sensors(conn)
                    while not stop.is_set():
                        began = time.monotonic()
                        await self.step(conn)
                        wait = max(0.0, self.step_s - (time.monotonic() - began))
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), wait)
            except (psycopg.Error, TwinError) as exc:
                log.warning("demo simulator: %s; trying again", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.step_s)


class SimulatorThread:
    """A simulator on an event loop of its own, beside a server that owns the main thread."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._thread = threading.Thread(target=self._main, name="demo-simulator", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> SimulatorThread:
        self._thread.start()
        self._ready.wait(5)
        return self

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self.simulator.run(self._stop)

    def stop(self, timeout: float = 10.0) -> None:
        """Let the round under way finish, close the connection, end the thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)


def start_simulator(
    url: str, folder: Path, settings: SensorSettings, step_s: float = STEP_S
) -> SimulatorThread | None:
    """The demo's feed, running; None when the folder has no sensors file."""
    from sample_data.sensors import SENSORS_FILE

    if not (folder / SENSORS_FILE).exists():
        return None
    return SimulatorThread(Simulator(url, folder, settings, step_s=step_s)).start()
