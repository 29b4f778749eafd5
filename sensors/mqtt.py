"""Readings from an MQTT broker, stored in batches through the same ingest as
``POST /sensors/readings``: the same checks, idempotence on (sensor, time) and alarm rules.

Payloads: a JSON object ``{"sensor", "time", "value"}``, a JSON array of them, CSV lines
``sensor,time,value`` (with or without a header); on a topic below the filter's fixed part
(``citytwin/readings/<sensor_id>``) the last level names the sensor, and the payload may be
``{"time", "value"}`` or a bare number. A JSON reading without a time is taken at the moment it
arrived (UTC).

Delivery: a QoS 1 subscription in a persistent session (clean session false under a stable
client id), so the broker keeps for the consumer what arrives while it is away. paho
acknowledges a message once it is read into the buffer: a stop flushes the buffer first, but a
process killed hard loses what was buffered (about one batch interval while the database is up).
Acknowledging only after the commit would bind throughput to the broker's in-flight window
(20 messages by default in mosquitto) per flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg_pool import AsyncConnectionPool

from sensors.ingest import Batch, IngestReport, ingest
from sensors.partitions import Partitions
from sensors.payloads import read_payload, topic_prefix, topic_sensor
from twin.errors import DatabaseUnavailable, InvalidParameter, ServerBusy
from twin.settings import SensorSettings

log = logging.getLogger(__name__)

Buffered = tuple[str, int, float, tuple[str, bytes]]  # a row and where it came from: topic, head
_HEAD = 64  # bytes of a bad payload shown in the log
_WARNINGS_PER_MINUTE = 30
_BACKOFF = (0.5, 30.0)  # seconds between attempts while the database is away: first, most
# Errors that say the database cannot be reached now, not that the batch is wrong: keep and retry.
_AWAY = (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable, ServerBusy, OSError)


# --- the broker -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:  # never the password: this is shown and logged
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def broker(url: str) -> Broker:
    """``mqtt://[user:password@]host[:1883]`` or ``mqtts://...[:8883]`` (TLS, system CAs)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port == -1:
        raise InvalidParameter(
            f"the MQTT URL {parts.scheme}://{parts.hostname or ''} is not understood: write "
            "mqtt://host:1883 or mqtts://user:password@host:8883 (TWIN_MQTT_URL)"
        )
    tls = parts.scheme == "mqtts"
    return Broker(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


# --- the consumer -----------------------------------------------------------------------------
@dataclass
class Counters:
    """What a consumer did since it started. Messages are counted as received and malformed;
    everything else counts readings."""

    received: int = 0  # messages
    readings: int = 0  # readings read from them
    malformed: int = 0  # messages with a part that is no reading (its good readings are kept)
    stored: int = 0
    duplicates: int = 0  # already stored: the same sensor and time
    rejected: int = 0  # refused by the checks: unknown sensor, in the future, past retention
    dropped: int = 0  # lost: the buffer full while the database was away, or a refused batch
    pending: int = 0  # buffered, not yet stored
    batches: int = 0
    alarms_opened: int = 0
    alarms_cleared: int = 0
    connected: bool = False
    last_error: str | None = None
    last_error_at: str | None = None
    last_batch_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class MqttConsumer:
    """Subscribes, reads messages on paho's network thread, and stores them in batches on the
    event loop; survives bad payloads, a lost broker and a database away for a while."""

    def __init__(
        self,
        settings: SensorSettings,
        pool: AsyncConnectionPool,
        partitions: Partitions | None = None,
        *,
        url: str | None = None,
        topic: str | None = None,
        client_id: str | None = None,
        graphs: Any = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.partitions = partitions or Partitions()
        self.graphs = graphs
        self.broker = broker(url or settings.mqtt_url or "mqtt://127.0.0.1:1883")
        self.topic = topic or settings.mqtt_topic
        self.client_id = client_id or settings.mqtt_client_id
        self.batch_size = min(settings.mqtt_batch_size, settings.readings_max_rows)
        self.buffer_max = settings.mqtt_buffer_max
        self.counters = Counters()
        self.subscribed = threading.Event()
        self._prefix = topic_prefix(self.topic)
        self._rows: deque[Buffered] = deque()
        self._lock = threading.Lock()  # the buffer and counters, shared with paho's thread
        self._inflight = 0  # readings taken from the buffer, being stored
        self._warned = (0.0, 0, 0)  # window start, warnings logged in it, warnings held back
        self._stopping = False
        self._client: paho.Client | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def status(self) -> dict[str, Any]:
        """Where it reads from, and its counters."""
        with self._lock:
            self.counters.pending = len(self._rows) + self._inflight
            counts = self.counters.as_dict()
        where = {"broker": str(self.broker), "topic": self.topic, "client_id": self.client_id}
        return where | {"subscribed": self.subscribed.is_set()} | counts

    def start(self) -> None:
        """Connect (in the background, retried until it works) and start storing."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        client.loop_start()
        self._client = client
        self._task = asyncio.create_task(self._run(), name="mqtt-readings")

    async def stop(self, timeout: float = 10.0) -> None:
        """Disconnect (the broker keeps the session), then store what is buffered."""
        self._stopping = True
        if self._client is not None:
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush(), timeout)
        with self._lock:
            left = len(self._rows)
            self._rows.clear()
            self.counters.dropped += left
        if left:
            log.warning("mqtt: %d readings could not be stored before the stop; dropped", left)

    # paho's network thread ---------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, _ud: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._error(f"the broker {self.broker} refused the connection: {rc}")
            return
        self.counters.connected = True
        session = "resumed" if flags.session_present else "new"
        log.info("mqtt: connected to %s as %s (%s session)", self.broker, self.client_id, session)
        client.subscribe(self.topic, qos=1)

    def _on_connect_fail(self, _c: paho.Client, _ud: Any) -> None:
        self._error(f"cannot reach the broker {self.broker}; retrying")

    def _on_subscribe(self, _c: paho.Client, _ud: Any, _mid: int, codes: list, _p: Any) -> None:
        if any(code.is_failure for code in codes):
            self._error(f"the broker refused the subscription to {self.topic}")
            return
        self.subscribed.set()

    def _on_disconnect(self, _c: paho.Client, _ud: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.counters.connected = False
        self.subscribed.clear()
        if not self._stopping:
            self._error(f"lost the broker {self.broker} ({rc}); reconnecting")

    def _on_message(self, _c: paho.Client, _ud: Any, message: paho.MQTTMessage) -> None:
        payload = bytes(message.payload)
        origin = (message.topic, payload[:_HEAD])
        try:
            sensor = topic_sensor(message.topic, self._prefix)
            rows, bad = read_payload(payload, sensor, time.time_ns() // 1000)
        except Exception:  # a bug in reading one payload must not end the consumption
            log.exception("mqtt: reading a message on %s failed: %r", *origin)
            rows, bad = [], ["not read (see the log)"]
        with self._lock:
            self.counters.received += 1
            self.counters.readings += len(rows)
            self.counters.malformed += bool(bad)
            for row in rows:
                self._rows.append((*row, origin))
            over = len(self._rows) - self.buffer_max
            for _ in range(max(over, 0)):  # the present matters more than the oldest readings
                self._rows.popleft()
            self.counters.dropped += max(over, 0)
            full = len(self._rows) >= self.batch_size
        for reason in bad[:3]:
            self._warn("mqtt: not a reading on %s (%s): %r", message.topic, reason, origin[1])
        if over > 0:
            self._warn("mqtt: buffer full (%d readings); the oldest dropped", self.buffer_max)
        if full and self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: stop() is under way
                self._loop.call_soon_threadsafe(self._wake.set)

    # the event loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        """Store a batch when one is full or every ``mqtt_batch_ms``, whichever first; wait
        longer and longer while the database is away."""
        assert self._wake is not None
        backoff = _BACKOFF[0]
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.mqtt_batch_ms / 1000)
            self._wake.clear()
            if await self._flush():
                backoff = _BACKOFF[0]
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF[1])

    async def _flush(self) -> bool:
        """Store what is buffered, a batch at a time; False when the database is away (the
        batch goes back to the front of the buffer, to be tried again)."""
        while True:
            with self._lock:
                take = min(self.batch_size, len(self._rows))
                rows = [self._rows.popleft() for _ in range(take)]
                self._inflight = take
            if not rows:
                return True
            try:
                report = await self._store(rows)
            except asyncio.CancelledError:
                self._put_back(rows)
                raise
            except _AWAY as exc:
                self._put_back(rows)
                self._error("the database is unavailable; readings are kept and retried", exc)
                return False
            except psycopg.Error as exc:  # the database refused this batch: retrying won't help
                self._drop(rows, "the database refused a batch", exc)
            except Exception as exc:  # a bug: drop the batch rather than retry it forever
                log.exception("mqtt: storing a batch failed")
                self._drop(rows, "storing a batch failed", exc)
            else:
                self._count(report, rows)

    async def _store(self, rows: list[Buffered]) -> IngestReport:
        batch = Batch(
            names=[r[0] for r in rows],
            t_us=np.fromiter((r[1] for r in rows), np.int64, len(rows)),
            values=np.fromiter((r[2] for r in rows), np.float64, len(rows)),
        )
        async with self.pool.connection() as conn:
            return await ingest(
                conn, batch, self.settings, self.partitions, skip_invalid=True, graphs=self.graphs
            )

    def _count(self, report: IngestReport, rows: list[Buffered]) -> None:
        with self._lock:
            c = self.counters
            c.stored += report.stored
            c.duplicates += report.duplicates
            c.rejected += report.rejected
            c.batches += 1
            c.alarms_opened += report.alarms_opened
            c.alarms_cleared += report.alarms_cleared
            c.last_batch_at = _now_iso()
            self._inflight = 0
        for p in report.problems:
            topic, head = rows[p.row - 1][3]
            self._warn("mqtt: reading refused on %s (%s): %r", topic, p.reason, head)

    def _put_back(self, rows: list[Buffered]) -> None:
        with self._lock:
            self._rows.extendleft(reversed(rows))
            self._inflight = 0
            over = max(len(self._rows) - self.buffer_max, 0)
            for _ in range(over):
                self._rows.popleft()
            self.counters.dropped += over

    def _drop(self, rows: list[Buffered], what: str, exc: Exception) -> None:
        with self._lock:
            self.counters.dropped += len(rows)
            self._inflight = 0
        self._error(f"{what}; {len(rows)} readings dropped", exc)

    def _error(self, message: str, detail: object = None) -> None:
        """Say it in the counters (safe to show: no database detail) and in the log."""
        self.counters.last_error = message
        self.counters.last_error_at = _now_iso()
        if detail is None:
            self._warn("mqtt: %s", message)
        else:
            self._warn("mqtt: %s (%s)", message, detail)

    def _warn(self, message: str, *args: object) -> None:
        """Log, at most ``_WARNINGS_PER_MINUTE``: a flood of bad payloads must not flood the
        log; how many were held back is said when the minute is over."""
        now = time.monotonic()
        with self._lock:
            start, logged, held = self._warned
            if now - start >= 60:
                if held:
                    log.warning("mqtt: %d more warnings in the last minute not logged", held)
                start, logged, held = now, 0, 0
            if logged >= _WARNINGS_PER_MINUTE:
                self._warned = (start, logged, held + 1)
                return
            self._warned = (start, logged + 1, held)
        log.warning(message, *args)
