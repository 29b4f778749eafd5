"""The live side of a server process: one LISTEN connection that fans events out to the
Server-Sent Events clients and drops the tiles of sensors whose state changed, plus the periodic
sweep (stale sensors, reading partitions).

Changes arrive through PostgreSQL notifications, whoever made them (this process, another
replica, an MQTT consumer), so every process's tile cache and stream hear of every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from sensors import alarms
from sensors.mqtt import MqttConsumer
from sensors.partitions import Partitions, maintain
from tiles.cache import TileCache
from twin.settings import SensorSettings

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000  # events a slow client may lag behind before it is cut off (it reconnects)
REPLAY_MAX = 1000  # events replayed to a client that reconnects with Last-Event-ID
_EVENT_COLUMNS = "id, at, kind, action, target, department, unit_grid, lon, lat, payload"


def event_row(row: tuple) -> dict[str, Any]:
    keys = ("id", "at", "kind", "action", "target", "department", "unit_grid", "lon", "lat")
    out = dict(zip((*keys, "payload"), row, strict=True))
    out["at"] = out["at"].isoformat()
    return out


@dataclass(eq=False)  # kept in a set: identity, not value, tells subscribers apart
class Subscriber:
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    closed: bool = False


@dataclass
class LiveHub:
    url: str
    pool: AsyncConnectionPool
    cache: TileCache
    settings: SensorSettings
    partitions: Partitions = field(default_factory=Partitions)
    graphs: Any = None  # the app's pipe graph cache, for the burst proposals of alarms
    subscribers: set[Subscriber] = field(default_factory=set)
    last_id: int = 0
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    mqtt: MqttConsumer | None = None  # readings from TWIN_MQTT_URL, when set
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="live-listen"),
            asyncio.create_task(self._sweep(), name="live-sweep"),
        ]
        if self.settings.mqtt_url:
            self.mqtt = MqttConsumer(self.settings, self.pool, self.partitions, graphs=self.graphs)
            self.mqtt.start()

    async def stop(self) -> None:
        if self.mqtt is not None:  # first: its last batch still needs the pool
            await self.mqtt.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in list(self.subscribers):
            sub.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def replay(self, after: int) -> list[dict[str, Any]]:
        """Events after ``after`` (a reconnecting client's Last-Event-ID), oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM twin.events WHERE id > %s ORDER BY id LIMIT %s",  # noqa: S608
                [after, REPLAY_MAX],
            )
            return [event_row(r) for r in await cur.fetchall()]

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute("LISTEN twin_events")
                    await conn.execute("LISTEN twin_tiles")
                    cur = await conn.execute("SELECT coalesce(max(id), 0) FROM twin.events")
                    if not self.last_id:
                        self.last_id = (await cur.fetchone())[0]  # type: ignore[index]
                    self.listening.set()
                    backoff = 0.5
                    # catch up on what was missed while not listening, then follow
                    await self._fan_out()
                    async for notice in conn.notifies():
                        if notice.channel == "twin_tiles":
                            await self._drop_tiles(notice.payload)
                        else:
                            await self._fan_out()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("live events: listener lost its connection (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _fan_out(self) -> None:
        """Read the events after the last one sent and hand them to every subscriber (the ids
        in notifications only say that there is something new)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM twin.events WHERE id > %s ORDER BY id LIMIT 5000",  # noqa: S608
                [self.last_id],
            )
            rows = [event_row(r) for r in await cur.fetchall()]
        for event in rows:
            self.last_id = max(self.last_id, event["id"])
            for sub in list(self.subscribers):
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    # too slow: cut it off; it reconnects with Last-Event-ID and replays
                    sub.closed = True
                    self.subscribers.discard(sub)

    async def _drop_tiles(self, payload: str) -> None:
        try:
            body = json.loads(payload)
            collection = str(body["collection"])
            points = [(float(x), float(y)) for x, y in body["points"]]
        except (ValueError, KeyError, TypeError):
            log.warning("live events: a tile notice that is not understood: %.200s", payload)
            return
        for x, y in points:
            await self.cache.invalidate(collection, (x, y, x, y))

    async def _sweep(self) -> None:
        """Stale sensors every ``sensors_sweep_s``; reading partitions once an hour."""
        ticks = 0
        every = max(1, int(3600 / self.settings.sensors_sweep_s))
        while True:
            try:
                async with self.pool.connection() as conn:
                    if ticks % every == 0:
                        await maintain(
                            conn,
                            self.partitions,
                            self.settings.readings_retention_days,
                            self.settings.readings_partitions_ahead_days,
                        )
                    await alarms.sweep_stale(conn)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("live sweep failed (%s); trying again later", exc)
            except Exception:  # a bug here must not end the sweeps of a running server
                log.exception("live sweep failed")
            ticks += 1
            await asyncio.sleep(self.settings.sensors_sweep_s)
