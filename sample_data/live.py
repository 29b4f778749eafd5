"""The demo's sensors in the twin: registered from ``sensors.geojson`` through the sensor
registry (the path of ``POST /sensors``), with the last hours of readings ingested through the
readings ingest (the path of ``POST /sensors/readings``), so maps and time series have data the
moment the demo serves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

from sample_data.sensors import SENSORS_FILE
from sample_data.signals import Signal
from sensors import ingest, registry
from sensors.partitions import Partitions
from sensors.registry import SensorIn
from twin.settings import Settings

HISTORY_S = 6 * 3600
HISTORY_STEP_S = 300


@dataclass
class SensorLoad:
    sensors: int
    created: int
    updated: int
    readings: int  # stored now (a restarted demo stores only what is missing)
    silent: int  # sensors that went quiet hours ago: the map shows them stale


def read_sensors(folder: Path) -> list[SensorIn]:
    """The demo sensors of a sample-city folder, checked as ``POST /sensors`` checks them."""
    return registry.parse_sensors((folder / SENSORS_FILE).read_bytes(), "application/geo+json")


def is_silent(sensor_id: str) -> bool:
    """About one sensor in 40 stopped reporting before the demo started (a flat battery, a lost
    link): it turns stale on the map and the simulator leaves it quiet."""
    return zlib.crc32(f"silent:{sensor_id}".encode()) % 40 == 0


def conninfo(conn: psycopg.Connection) -> str:
    """The connection string of an open connection (``info.dsn`` leaves out the password)."""
    password = conn.info.password
    return make_conninfo(conn.info.dsn, password=password) if password else conn.info.dsn


def history(
    sensors: list[SensorIn],
    last: dict[str, dt.datetime | None],
    now_s: float,
    rng: np.random.Generator,
) -> ingest.Batch:
    """Readings every 5 minutes over the last hours, on the clock's 5-minute marks (a restart
    meets the same times again), after each sensor's latest reading."""
    end = np.floor(now_s / HISTORY_STEP_S) * HISTORY_STEP_S
    times = np.arange(end - HISTORY_S, end + 1, HISTORY_STEP_S)
    names: list[str | None] = []
    t_parts, v_parts = [], []
    for s in sensors:
        t = times
        if is_silent(s.sensor_id):  # quiet for the last one to three hours
            t = t[t <= end - 3600 * (1 + zlib.crc32(s.sensor_id.encode()) % 3)]
        seen = last.get(s.sensor_id)
        if seen is not None:
            t = t[t > seen.timestamp()]
        if not len(t):
            continue
        names += [s.sensor_id] * len(t)
        t_parts.append(t)
        v_parts.append(Signal.of(s.sensor_id, s.kind).values(t, rng))
    if not names:
        return ingest.Batch([], np.empty(0, np.int64), np.empty(0))
    t_us = (np.concatenate(t_parts) * 1e6).astype(np.int64)
    return ingest.Batch(names, t_us, np.concatenate(v_parts))


async def _load(url: str, sensors: list[SensorIn], settings: Settings, now_s: float) -> SensorLoad:
    # autocommit, as the server's pool: registration and each ingest commit on their own
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT sensor_id, last_time FROM twin.sensors WHERE sensor_id = ANY(%s)",
            [[s.sensor_id for s in sensors]],
        )
        last: dict[str, dt.datetime | None] = dict(await cur.fetchall())
        counts = {"created": 0, "updated": 0}
        if len(last) < len(sensors):  # registered already: a restarted demo skips it
            counts = await registry.register(conn, sensors)
        batch = history(sensors, last, now_s, np.random.default_rng(int(now_s)))
        stored = 0
        if len(batch):
            report = await ingest.ingest(conn, batch, settings.sensors, Partitions())
            stored = report.stored
    silent = sum(is_silent(s.sensor_id) for s in sensors)
    return SensorLoad(len(sensors), counts["created"], counts["updated"], stored, silent)


def load_sensors(
    conn: psycopg.Connection, folder: Path, settings: Settings, now_s: float | None = None
) -> SensorLoad | None:
    """Register the folder's sensors and ingest their recent history; None without a
    sensors file (a sample city generated before there were sensors)."""
    if not (folder / SENSORS_FILE).exists():
        return None
    sensors = read_sensors(folder)
    # The registry and ingest are asynchronous and take a connection of their own: everything
    # loaded so far must be committed for them to see it (and not to wait on its locks).
    conn.commit()
    return asyncio.run(_load(conninfo(conn), sensors, settings, now_s or time.time()))
