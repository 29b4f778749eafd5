"""Readings from MQTT against a real PostGIS and a real mosquitto started by the suite: every
payload form stored with its exact values, duplicates stored once, alarms opened, bad payloads
counted without stopping the consumer, a database away and back, and a consumer restarted under
the same client id getting what was published while it was down (QoS 1, persistent session).

The server's own consumer (TWIN_MQTT_URL) takes ``citytwin/readings/#``; the restart goes
through ``twin sensors mqtt`` and the outage through a consumer of its own, each on a topic
of its own so that no two consumers share a message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import psycopg
import pytest
from conftest import free_port, fresh_database, http_client, make_key, serve, settings_for
from paho.mqtt.enums import CallbackAPIVersion

from sensors import registry
from sensors.mqtt import MqttConsumer
from sensors.partitions import Partitions
from sensors.payloads import read_payload
from twin import db
from twin.settings import DatabaseSettings, LimitSettings, SensorSettings

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
ROOT = Path(__file__).resolve().parents[1]


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


def wait_for(check: Callable[[], object], seconds: float = 20, what: str = "") -> object:
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            assert got, f"gave up waiting {seconds:g} s for {what or check}"
            return got
        time.sleep(0.1)


# --- the broker -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker_url(tmp_path_factory) -> Iterator[str]:
    """A mosquitto of this suite on a free loopback port, in memory only."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    assert binary, "make test installs mosquitto (scripts/ensure-system --redis)"
    folder = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    with (folder / "mosquitto.log").open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _accepts(port), 10, "mosquitto to listen")
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def publish(broker_url) -> Iterator[Callable[[str, object], None]]:
    """Publish with QoS 1 and wait for the broker's acknowledgement."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex}")
    host, port = broker_url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()

    def send(topic: str, payload: object) -> None:
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)

    yield send
    client.disconnect()
    client.loop_stop()


# --- the served application with its consumer -------------------------------------------------
@pytest.fixture(scope="module")
def pg_url(server_url) -> Iterator[str]:
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def served(pg_url, broker_url) -> Iterator[str]:
    cfg = settings_for(pg_url)
    cfg.sensors.mqtt_url = broker_url
    cfg.sensors.mqtt_client_id = f"citytwin-test-{secrets.token_hex(4)}"
    cfg.sensors.mqtt_batch_ms = 100
    from api.app import create_app

    with serve(create_app(cfg)) as url:
        yield url


@pytest.fixture(scope="module")
def client(served, pg_url) -> Iterator[httpx.Client]:
    with http_client(served, pg_url) as c:
        yield c


def status(client: httpx.Client) -> dict:
    r = client.get("/sensors/mqtt")
    assert r.status_code == 200, r.text
    return r.json()


def point(sensor_id: str, kind: str = "air", unit: str = "ug/m3", **more) -> dict:
    place = {"lon": 116.537, "lat": 31.76}
    return {"sensor_id": sensor_id, "kind": kind, "unit": unit} | place | more


@pytest.fixture(scope="module")
def registered(client) -> None:
    sensors = [point("MQ-1"), point("MQ-3"), point("MQ-R"), point("MQ-DUP")]
    sensors.append(point("MQ-2", kind="level", unit="m", threshold_high=1.5))
    r = client.post("/sensors", json=sensors)
    assert r.status_code == 201, r.text
    wait_for(lambda: status(client)["subscribed"], 20, "the server's consumer to subscribe")


def readings(pg_url: str, sensor: str) -> list[tuple[dt.datetime, float]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT r.t, r.value FROM twin.readings r JOIN twin.sensors s ON s.fid = r.sensor "
            "WHERE s.sensor_id = %s ORDER BY r.t",
            [sensor],
        ).fetchall()


# --- the payloads, read without a broker ------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "topic_sensor", "rows", "says"),
    [
        (b'{"sensor": "A", "time": "2026-01-01T08:00:00+08:00", "value": 1}', None, 1, None),
        (b'[{"sensor": "A", "value": 1}, {"sensor": "A", "value": "x"}]', None, 1, "a text"),
        (b"sensor,time,value\nA,2026-01-01T00:00:00Z,1\nB,yesterday,2\n", None, 1, "ISO 8601"),
        (b"A,2026-01-01T00:00:00,1\n", None, 0, "no zone"),
        (b"1.5", "P-1", 1, None),
        (b"1.5", None, 0, "needs its sensor in the topic"),
        (b'{"time": "2026-01-01T00:00:00Z", "value": 2}', "P-1", 1, None),
        (b"NaN", "P-1", 0, "finite"),
        (b"\xff\xfe\x00\x81 not text", None, 0, "neither JSON nor CSV"),
        (b"true", "P-1", 0, "not a reading"),
    ],
)
def test_payloads_are_read_or_say_why_not(payload, topic_sensor, rows, says):
    got, bad = read_payload(payload, topic_sensor, 0)
    assert len(got) == rows
    assert (says is None and not bad) or (says and says in " ".join(bad))


def test_a_reading_on_a_sensor_topic_takes_its_sensor_and_zone():
    (row,), _ = read_payload(b'{"time": "2026-01-01T08:00:00+08:00", "value": 3}', "P-1", 0)
    assert row == ("P-1", int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1e6), 3.0)


# --- through the broker -----------------------------------------------------------------------
def test_readings_in_every_payload_form_land_with_their_values(client, registered, publish, pg_url):
    t = [ago(50 - i) for i in range(6)]
    publish("citytwin/readings", {"sensor": "MQ-1", "time": iso(t[0]), "value": 1.25})
    publish(
        "citytwin/readings",
        [
            {"sensor": "MQ-1", "time": iso(t[1]), "value": 2.5},
            {"sensor": "MQ-3", "time": t[1].astimezone(dt.timezone(dt.timedelta(hours=8)))
             .isoformat(), "value": -3.75},
        ],
    )  # fmt: skip
    publish("citytwin/readings", f"sensor,time,value\nMQ-1,{iso(t[2])},3.125\n")
    publish("citytwin/readings", f"MQ-3,{iso(t[3])},4\nMQ-3,{iso(t[4])},5.5\n")
    publish("citytwin/readings/MQ-1", {"time": iso(t[5]), "value": 6.5})
    before = dt.datetime.now(dt.UTC)
    publish("citytwin/readings/MQ-3", "7.25")
    after = dt.datetime.now(dt.UTC)
    wait_for(lambda: len(readings(pg_url, "MQ-3")) == 4, what="MQ-3's four readings")
    wait_for(lambda: len(readings(pg_url, "MQ-1")) == 4, what="MQ-1's four readings")
    assert readings(pg_url, "MQ-1") == [(t[0], 1.25), (t[1], 2.5), (t[2], 3.125), (t[5], 6.5)]
    three = readings(pg_url, "MQ-3")
    assert three[:3] == [(t[1], -3.75), (t[3], 4.0), (t[4], 5.5)]
    # a bare number is taken at the moment it arrived
    assert three[3][1] == 7.25 and before <= three[3][0] <= after + dt.timedelta(seconds=1)


def test_a_reading_published_twice_is_stored_once(client, registered, publish, pg_url):
    seen = status(client)["duplicates"]
    reading = {"sensor": "MQ-DUP", "time": iso(ago(30)), "value": 8.5}
    publish("citytwin/readings", reading)
    wait_for(lambda: readings(pg_url, "MQ-DUP"), what="the first copy")
    publish("citytwin/readings", reading)
    publish("citytwin/readings", f"MQ-DUP,{reading['time']},8.5\n")
    wait_for(lambda: status(client)["duplicates"] >= seen + 2, what="two duplicates counted")
    assert readings(pg_url, "MQ-DUP") == [(ago(30), 8.5)]


def test_an_alarm_opens_from_mqtt_readings(client, registered, publish, pg_url):
    publish("citytwin/readings/MQ-2", {"time": iso(ago(20)), "value": 0.9})
    publish("citytwin/readings/MQ-2", {"time": iso(ago(19)), "value": 1.8})

    def alarm() -> tuple | None:
        with psycopg.connect(pg_url) as conn:
            return conn.execute(
                "SELECT a.rule, a.state, a.first_value, s.state FROM twin.alarms a "
                "JOIN twin.sensors s ON s.fid = a.sensor WHERE s.sensor_id = 'MQ-2'"
            ).fetchone()

    assert wait_for(alarm, what="the alarm") == ("high", "open", 1.8, "alarm")
    assert status(client)["alarms_opened"] >= 1


def test_bad_payloads_are_counted_and_the_consumer_keeps_consuming(
    client, registered, publish, pg_url
):
    seen = status(client)
    publish("citytwin/readings", b"\x00\xff\xfe garbage \x81\x82")
    publish("citytwin/readings", {"sensor": "MQ-1", "time": iso(ago(10)), "value": "high"})
    publish("citytwin/readings", {"sensor": "NOPE-404", "time": iso(ago(10)), "value": 1.0})
    publish("citytwin/readings", {"sensor": "MQ-1", "time": iso(ago(9)), "value": 42.5})
    wait_for(lambda: (ago(9), 42.5) in readings(pg_url, "MQ-1"), what="the good reading")
    now = wait_for(lambda: (s := status(client))["rejected"] > seen["rejected"] and s)
    assert now["received"] == seen["received"] + 4
    assert now["malformed"] == seen["malformed"] + 2  # garbage, a text value
    assert now["rejected"] == seen["rejected"] + 1  # the unknown sensor
    assert now["connected"] and now["subscribed"]
    assert (ago(10), "high") not in readings(pg_url, "MQ-1")


def test_the_counters_are_for_editors(client, served, pg_url, broker_url):
    assert httpx.get(f"{served}/sensors/mqtt").status_code == 401
    viewer = make_key(pg_url, "viewer")
    r = httpx.get(f"{served}/sensors/mqtt", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403
    body = status(client)
    assert body["enabled"] and body["broker"] == broker_url
    assert body["topic"] == "citytwin/readings/#" and body["pending"] == 0


# --- a consumer restarted: the broker kept what came meanwhile --------------------------------
def _twin(pg_url: str, broker_url: str, client_id: str, cwd: Path) -> subprocess.Popen:
    # the checkout first on the path, as under pytest: an editable install made before a
    # package was added does not know it
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = os.environ | {
        "PYTHONPATH": path,
        "TWIN_DATABASE_URL": pg_url,
        "TWIN_MQTT_BATCH_MS": "100",
    }
    with (cwd / f"{client_id}-{time.monotonic_ns()}.log").open("wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("twin")), "sensors", "mqtt", "--url", broker_url,
             "--topic", "citytwin-cli/readings/#", "--client-id", client_id, "--every", "0.5"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def test_a_restarted_consumer_gets_what_was_published_while_it_was_down(
    registered, publish, pg_url, broker_url, tmp_path
):
    client_id = f"citytwin-cli-{secrets.token_hex(4)}"
    first = _twin(pg_url, broker_url, client_id, tmp_path)
    try:
        probe = (ago(40), 1.0)

        def probed() -> bool:  # published until stored: then the session and its subscription exist
            publish("citytwin-cli/readings/MQ-R", {"time": iso(probe[0]), "value": probe[1]})
            time.sleep(0.3)
            return probe in readings(pg_url, "MQ-R")

        wait_for(probed, 60, "the command to store a reading")
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=30) == 0
    (out,) = [p.read_text() for p in tmp_path.glob(f"{client_id}-*.log")]
    assert "stopped:" in out and "stored" in out, out

    meanwhile = [(ago(39 - i), 10.0 + i) for i in range(3)]
    for moment, value in meanwhile:
        publish("citytwin-cli/readings/MQ-R", {"time": iso(moment), "value": value})
    second = _twin(pg_url, broker_url, client_id, tmp_path)
    try:
        wait_for(lambda: len(readings(pg_url, "MQ-R")) == 4, 60, "the readings of meanwhile")
    finally:
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=30) == 0
    assert readings(pg_url, "MQ-R") == [probe, *meanwhile]


# --- the database away and back ---------------------------------------------------------------
class Running:
    """A consumer of its own, on an event loop in a thread (as in a server process)."""

    def __init__(self, pg_url: str, settings: SensorSettings, **options) -> None:
        self.consumer: MqttConsumer | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(pg_url, settings, options),)
        )

    async def _main(self, pg_url: str, settings: SensorSettings, options: dict) -> None:
        pool = db.make_pool(
            pg_url, DatabaseSettings(database_url=pg_url), LimitSettings(pool_timeout_s=1)
        )
        await pool.open(wait=False)
        self.consumer = MqttConsumer(settings, pool, Partitions(), **options)
        self.consumer.start()
        while not self._done.is_set():
            await asyncio.sleep(0.05)
        await self.consumer.stop()
        await pool.close()

    def __enter__(self) -> MqttConsumer:
        self._thread.start()
        wait_for(lambda: self.consumer and self.consumer.subscribed.is_set(), 20, "subscribed")
        assert self.consumer is not None
        return self.consumer

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)


def _register(url: str, sensors: list[dict]) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await registry.register(conn, [registry.SensorIn.model_validate(s) for s in sensors])

    asyncio.run(run())


def test_readings_wait_while_the_database_is_away(server_url, broker_url, publish):
    settings = SensorSettings(mqtt_batch_ms=100, mqtt_buffer_max=3)
    topic = "citytwin-away/readings"
    with fresh_database(server_url) as url:
        name = url.rpartition("/")[2]
        _register(url, [point("MQ-D")])
        options = {"url": broker_url, "topic": f"{topic}/#", "client_id": f"away-{uuid.uuid4()}"}
        with Running(url, settings, **options) as consumer:
            publish(f"{topic}/MQ-D", {"time": iso(ago(5)), "value": 1.0})
            wait_for(lambda: readings(url, "MQ-D"), what="the first reading")
            with psycopg.connect(server_url, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    [name],
                )
                try:
                    for i in range(4):
                        publish(f"{topic}/MQ-D", {"time": iso(ago(4 - i / 2)), "value": 2.0 + i})
                    away = wait_for(
                        lambda: (
                            (s := consumer.status())["received"] == 5
                            and s["pending"] == 3
                            and s["last_error"]
                            and s
                        ),
                        what="the readings kept while the database is away",
                    )
                    # a buffer of 3: the oldest of the four went, and the count says so
                    assert away["dropped"] == 1 and away["stored"] == 1
                    assert "database is unavailable" in away["last_error"]
                finally:
                    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            wait_for(lambda: consumer.status()["pending"] == 0, 60, "the kept readings stored")
            assert consumer.status()["stored"] == 4
        assert readings(url, "MQ-D") == [(ago(5), 1.0), (ago(3.5), 3.0), (ago(3), 4.0),
                                          (ago(2.5), 5.0)]  # fmt: skip
