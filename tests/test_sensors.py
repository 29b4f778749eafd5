"""Sensors, readings and alarms against a real PostGIS and a served application: registration,
idempotent ingest of CSV and JSON lines, every kind of bad row, alarms opening, updating and
clearing, a pressure drop proposing a burst and its isolation, time series, partitions and
retention, sensor tiles following state changes, and the live event stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator

import httpx
import mapbox_vector_tile
import numpy as np
import psycopg
import pytest
from conftest import fresh_database, http_client, serve, settings_for

from grid.store import import_grid_folder
from pipelines.importers.native import read_native
from pipelines.store import save_network
from sensors.partitions import Partitions, maintain

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def pg_url(server_url) -> Iterator[str]:
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def served(pg_url, sample_city) -> Iterator[str]:
    """The application on a loopback port, over the sample city's grid and water network."""
    cfg = settings_for(pg_url)
    cfg.sensors.sensors_sweep_s = 0.5
    with psycopg.connect(pg_url) as conn:
        import_grid_folder(conn, sample_city, cfg.grid)
        conn.commit()
        data = read_native(sample_city / "water_pipes.gpkg", sample_city / "water_nodes.gpkg")
        save_network(conn, "water", data)
        conn.commit()
    from api.app import create_app

    with serve(create_app(cfg)) as url:
        yield url


@pytest.fixture(scope="module")
def client(served, pg_url) -> Iterator[httpx.Client]:
    with http_client(served, pg_url) as c:
        yield c


@pytest.fixture(scope="module")
def water_node(pg_url) -> tuple[str, float, float]:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT node_id, ST_X(geom), ST_Y(geom) FROM twin.pipe_nodes "
            "WHERE network = 'water' AND kind = 'junction' ORDER BY node_id LIMIT 1"
        ).fetchone()
    assert row is not None
    return row


@pytest.fixture(scope="module")
def registered(client, water_node) -> dict:
    node, lon, lat = water_node
    sensors = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [116.5365, 31.7610]},
                "properties": {
                    "sensor_id": "LV-001",
                    "name": "井下水位 manhole level",
                    "kind": "level",
                    "unit": "m",
                    "threshold_high": 1.5,
                    "threshold_rate": 0.5,
                },
            },
            {
                "type": "Feature",
                "geometry": None,
                "properties": {
                    "sensor_id": "P-001",
                    "kind": "pressure",
                    "unit": "MPa",
                    "network": "water",
                    "node_id": node,
                    "threshold_low": 0.2,
                    "department": "水务集团",
                },
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [116.5370, 31.7605]},
                "properties": {"sensor_id": "AQ-001", "kind": "air", "unit": "ug/m3"},
            },
        ],
    }
    r = client.post("/sensors", json=sensors)
    assert r.status_code == 201, r.text
    assert r.json() == {"created": 3, "updated": 0}
    return {"node": node, "lon": lon, "lat": lat}


def csv_body(rows: list[tuple[str, dt.datetime | str, object]]) -> str:
    out = ["sensor,time,value"]
    for sensor, moment, value in rows:
        out.append(f"{sensor},{iso(moment) if isinstance(moment, dt.datetime) else moment},{value}")
    return "\n".join(out) + "\n"


def post_csv(client, rows, **params) -> httpx.Response:
    return client.post(
        "/sensors/readings",
        content=csv_body(rows),
        headers={"Content-Type": "text/csv"},
        params=params,
    )


def count_readings(pg_url: str, sensor: str) -> int:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM twin.readings r JOIN twin.sensors s ON s.fid = r.sensor "
            "WHERE s.sensor_id = %s",
            [sensor],
        ).fetchone()[0]


def test_registered_sensors_are_located_and_published(client, registered, pg_url):
    with psycopg.connect(pg_url) as conn:
        rows = dict(
            conn.execute(
                "SELECT sensor_id, unit_grid FROM twin.sensors ORDER BY sensor_id"
            ).fetchall()
        )
        place = conn.execute(
            "SELECT ST_X(geom), ST_Y(geom) FROM twin.sensors WHERE sensor_id = 'P-001'"
        ).fetchone()
    assert all(code and len(code) >= 14 for code in rows.values()), rows
    # the pressure sensor stands where its pipe node is
    assert place == pytest.approx((registered["lon"], registered["lat"]))
    items = client.get("/collections/sensors/items", params={"limit": 10}).json()
    assert {f["properties"]["sensor_id"] for f in items["features"]} == set(rows)
    assert {f["properties"]["state"] for f in items["features"]} == {"stale"}


def test_bad_sensors_are_refused_whole(client, registered, pg_url):
    bad = [
        {"sensor_id": "X-1", "kind": "level", "unit": "m", "lon": 116.53, "lat": 31.76},
        {"sensor_id": "X-2", "kind": "volume", "unit": "m", "lon": 116.53, "lat": 31.76},
    ]
    r = client.post("/sensors", json=bad)
    assert r.status_code == 422
    assert "sensor 2 (X-2): kind" in r.json()["message"]
    r = client.post(
        "/sensors",
        json=[
            {
                "sensor_id": "X-3",
                "kind": "pressure",
                "unit": "MPa",
                "network": "water",
                "node_id": "NO-SUCH-NODE",
            }
        ],
    )
    assert r.status_code == 422
    assert "NO-SUCH-NODE" in r.json()["message"]
    with psycopg.connect(pg_url) as conn:
        assert (
            conn.execute("SELECT count(*) FROM twin.sensors WHERE sensor_id LIKE 'X-%'").fetchone()[
                0
            ]
            == 0
        )


def test_anonymous_callers_may_not_ingest(served, registered):
    r = httpx.post(
        f"{served}/sensors/readings",
        content="sensor,time,value\nAQ-001,2026-01-01T00:00:00Z,1\n",
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 401


def test_ingest_is_idempotent_on_sensor_and_time(client, registered, pg_url):
    rows = [("AQ-001", NOW - dt.timedelta(minutes=m), 30 + m) for m in range(5, 0, -1)]
    first = post_csv(client, rows)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 5
    again = post_csv(client, rows)
    assert again.json()["stored"] == 0
    assert again.json()["duplicates"] == 5
    assert count_readings(pg_url, "AQ-001") == 5


def test_json_lines_are_taken(client, registered, pg_url):
    lines = "\n".join(
        json.dumps({"sensor": "AQ-001", "time": iso(NOW - dt.timedelta(seconds=s)), "value": s})
        for s in (50, 40)
    )
    r = client.post(
        "/sensors/readings", content=lines, headers={"Content-Type": "application/x-ndjson"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 2


def test_bad_rows_refuse_the_batch_and_say_which(client, registered, pg_url):
    before = count_readings(pg_url, "AQ-001")
    rows = [
        ("AQ-001", NOW - dt.timedelta(hours=2), 1.0),
        ("NOPE-9", NOW - dt.timedelta(hours=2), 1.0),
        ("AQ-001", NOW + dt.timedelta(days=1), 1.0),
        ("AQ-001", NOW - dt.timedelta(hours=3), "high"),
        ("AQ-001", "2026-01-01T00:00:00", 1.0),
        ("AQ-001", NOW - dt.timedelta(days=400), 1.0),
    ]
    r = post_csv(client, rows)
    assert r.status_code == 422
    message = r.json()["message"]
    assert "5 of 6 readings are bad and nothing was stored" in message
    assert "row 2 (NOPE-9): unknown sensor" in message
    assert "row 3 (AQ-001): time" in message and "in the future" in message
    assert "row 4 (AQ-001): value 'high' is not a number" in message
    assert "row 5 (AQ-001): time '2026-01-01T00:00:00' has no zone" in message
    assert "row 6 (AQ-001)" in message and "retention" in message
    assert count_readings(pg_url, "AQ-001") == before
    kept = post_csv(client, rows, skip_invalid="true")
    assert kept.status_code == 200
    assert kept.json()["stored"] == 1
    assert [p["row"] for p in kept.json()["problems"]] == [2, 3, 4, 5, 6]
    assert count_readings(pg_url, "AQ-001") == before + 1


def test_a_body_without_the_columns_says_what_is_expected(client, registered):
    r = client.post(
        "/sensors/readings", content="id,when\n1,2\n", headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 422
    assert "sensor,time,value" in r.json()["message"]
    r = client.post("/sensors/readings", content=b"x", headers={"Content-Type": "image/png"})
    assert r.status_code == 400
    assert "text/csv" in r.json()["message"]


def alarms_of(client, sensor: str) -> list[dict]:
    return client.get("/alarms", params={"sensor": sensor}).json()["alarms"]


def test_a_high_alarm_opens_updates_and_clears_with_its_history(client, registered, pg_url):
    base = NOW - dt.timedelta(minutes=30)
    post_csv(client, [("LV-001", base, 0.8), ("LV-001", base + dt.timedelta(minutes=5), 0.9)])
    assert alarms_of(client, "LV-001") == []
    r = post_csv(
        client,
        [
            ("LV-001", base + dt.timedelta(minutes=10), 1.6),
            ("LV-001", base + dt.timedelta(minutes=15), 1.8),
        ],
    )
    assert r.json()["alarms"]["opened"] == 1
    (alarm,) = [a for a in alarms_of(client, "LV-001") if a["rule"] == "high"]
    assert alarm["state"] == "open"
    assert alarm["first_value"] == 1.6 and alarm["peak_value"] == 1.8
    assert alarm["readings"] == 2 and alarm["threshold"] == 1.5
    with psycopg.connect(pg_url) as conn:
        assert (
            conn.execute("SELECT state FROM twin.sensors WHERE sensor_id = 'LV-001'").fetchone()[0]
            == "alarm"
        )
    r = post_csv(client, [("LV-001", base + dt.timedelta(minutes=20), 2.1)])
    assert r.json()["alarms"]["updated"] == 1
    r = post_csv(client, [("LV-001", base + dt.timedelta(minutes=25), 1.2)])
    assert r.json()["alarms"]["cleared"] == 1
    detail = client.get(f"/alarms/{alarm['id']}").json()
    assert detail["state"] == "cleared" and detail["peak_value"] == 2.1
    assert [h["action"] for h in detail["history"]] == ["opened", "updated", "cleared"]
    with psycopg.connect(pg_url) as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM twin.events WHERE kind = 'alarm' "
                "AND payload->>'alarm' = %s ORDER BY id",
                [str(alarm["id"])],
            ).fetchall()
        ]
    assert actions == ["opened", "updated", "cleared"]


def test_a_late_reading_is_stored_but_does_not_move_the_state(client, registered, pg_url):
    r = post_csv(client, [("LV-001", NOW - dt.timedelta(hours=5), 9.9)])
    assert r.json()["stored"] == 1
    assert r.json()["alarms"] == {"opened": 0, "updated": 0, "cleared": 0}


def test_a_rate_alarm_opens_on_a_fast_rise(client, registered):
    # the last reading was 1.2 m five minutes ago; 0.5 m/min is the limit: a fall of 0.6 m
    # in the next minute breaches it, the level itself breaches nothing
    r = post_csv(client, [("LV-001", NOW - dt.timedelta(minutes=4), 0.6)])
    assert r.json()["alarms"]["opened"] == 1
    rate = [a for a in alarms_of(client, "LV-001") if a["rule"] == "rate"][0]
    assert rate["state"] == "open"
    assert rate["peak_value"] == pytest.approx(-0.6)


def test_a_pressure_drop_proposes_the_burst_and_its_isolation(client, registered):
    base = NOW - dt.timedelta(minutes=20)
    r = post_csv(
        client,
        [("P-001", base, 0.32), ("P-001", base + dt.timedelta(minutes=2), 0.11)],
    )
    assert r.json()["alarms"]["opened"] == 1
    (alarm,) = alarms_of(client, "P-001")
    assert alarm["rule"] == "low" and alarm["department"] == "水务集团"
    proposal = alarm["proposal"]
    assert proposal["network"] == "water" and proposal["segment"]
    assert "error" not in proposal, proposal
    isolation = proposal["isolation"]
    assert isolation["valves_to_close"], isolation
    # the proposal is what the isolation route answers for that pipe
    direct = client.post(
        "/pipelines/isolate",
        json={"network": "water", "start": {"segment": proposal["segment"]}},
    ).json()
    assert isolation["valves_to_close"] == direct["valves_to_close"]


def test_an_alarm_becomes_a_case_once(client, registered, pg_url):
    from cases.classes import sync_case_classes

    with psycopg.connect(pg_url) as conn:
        sync_case_classes(conn)
        conn.commit()
    (alarm,) = alarms_of(client, "P-001")
    r = client.post(f"/alarms/{alarm['id']}/case")
    assert r.status_code == 201, r.text
    code = r.json()["case"]
    case = client.get(f"/cases/{code}").json()
    # a water pressure alarm reports a burst water main (事件 0402) where the sensor stands
    assert case["kind"] == "事件" and case["class_code"] == "0402"
    assert case["source"] == "alarm" and case["source_ref"] == str(alarm["id"])
    assert case["unit_grid"] == alarm["unit_grid"]
    assert client.get(f"/alarms/{alarm['id']}").json()["case_code"] == code
    again = client.post(f"/alarms/{alarm['id']}/case")
    assert again.status_code == 409 and code in again.json()["message"]
    # an air sensor's alarm names no class by itself: the caller must give one
    (air,) = [a for a in alarms_of(client, "LV-001") if a["rule"] == "high"]
    r = client.post(f"/alarms/{air['id']}/case")
    assert r.status_code == 400 and "class_code" in r.json()["message"]
    r = client.post(f"/alarms/{air['id']}/case", json={"class_code": "0405"})
    assert r.status_code == 201
    assert client.post("/alarms/999999/case").status_code == 404


def test_time_series_buckets_are_computed_in_sql(client, registered, pg_url):
    start = (NOW - dt.timedelta(hours=6)).replace(minute=0, second=0)
    values = np.round(np.linspace(10, 40, 60), 3)
    rows = [("AQ-001", start + dt.timedelta(minutes=i), v) for i, v in enumerate(values)]
    assert post_csv(client, rows).status_code == 200
    window = f"{iso(start)}/{iso(start + dt.timedelta(hours=1))}"
    body = client.get(
        "/sensors/AQ-001/readings", params={"datetime": window, "resolution": "15min"}
    ).json()
    assert [p["count"] for p in body["points"]] == [15, 15, 15, 15]
    for i, point in enumerate(body["points"]):
        chunk = values[i * 15 : (i + 1) * 15]
        assert point["mean"] == pytest.approx(chunk.mean())
        assert point["min"] == chunk.min() and point["max"] == chunk.max()
    raw = client.get("/sensors/AQ-001/readings", params={"datetime": window}).json()
    assert [p["value"] for p in raw["points"]] == list(values)
    bad = client.get("/sensors/AQ-001/readings", params={"resolution": "fortnight"})
    assert bad.status_code == 400 and "5min" in bad.json()["message"]
    assert client.get("/sensors/NOPE/readings").status_code == 404


def test_partitions_are_made_per_day_and_dropped_past_the_retention(server_url):
    with fresh_database(server_url) as url:
        check_partitions(url)


def check_partitions(pg_url: str) -> None:
    async def run() -> dict:
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            parts = Partitions()
            far = dt.date(2099, 1, 10)
            made = await maintain(conn, parts, retention_days=5, ahead_days=2, today=far)
            cur = await conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'twin.readings'::regclass"
            )
            total = (await cur.fetchone())[0]
            later = await maintain(
                conn, parts, retention_days=5, ahead_days=2, today=far + dt.timedelta(days=6)
            )
            await conn.commit()
            return {"made": made, "total": total, "later": later}

    out = asyncio.run(run())
    assert out["made"]["made"] == 3  # 2099-01-10, 11 and 12
    # six days later, 2099-01-10 is wholly past the 5-day retention
    assert out["later"]["dropped"] == 1
    with psycopg.connect(pg_url) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'twin.readings'::regclass"
            ).fetchall()
        }
    assert "readings_20990111" in names and "readings_20990110" not in names


def sensor_states(client, z: int, x: int, y: int) -> tuple[dict[str, str], str]:
    r = client.get(f"/collections/sensors/tiles/WebMercatorQuad/{z}/{x}/{y}")
    assert r.status_code == 200
    layers = mapbox_vector_tile.decode(r.content)
    feats = layers["sensors"]["features"] if "sensors" in layers else []
    return (
        {f["properties"]["sensor_id"]: f["properties"]["state"] for f in feats},
        r.headers.get("X-Tile-Cache", ""),
    )


def test_sensor_tiles_follow_state_changes(client, registered):
    import morecantile

    tile = morecantile.tms.get("WebMercatorQuad").tile(116.5370, 31.7605, 15)
    client.post(
        "/sensors",
        json=[
            {
                "sensor_id": "AQ-002",
                "kind": "air",
                "unit": "ug/m3",
                "lon": 116.5371,
                "lat": 31.7606,
                "threshold_high": 75,
            }
        ],
    )
    time.sleep(2.5)  # the catalog re-reads the registry every 2 s
    post_csv(client, [("AQ-002", NOW - dt.timedelta(minutes=3), 20)])
    deadline = time.monotonic() + 10
    while True:
        states, _ = sensor_states(client, tile.z, tile.x, tile.y)
        if states.get("AQ-002") == "normal" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert states["AQ-002"] == "normal"
    assert sensor_states(client, tile.z, tile.x, tile.y)[1] == "hit"
    post_csv(client, [("AQ-002", NOW - dt.timedelta(minutes=2), 120)])
    deadline = time.monotonic() + 10
    while True:
        states, cache = sensor_states(client, tile.z, tile.x, tile.y)
        if states.get("AQ-002") == "alarm" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert states["AQ-002"] == "alarm"
    assert cache == "miss"  # dropped by the state change, not by expiry


def read_events(url: str, headers: dict, seconds: float, want: int) -> list[dict]:
    """Events from the stream until ``want`` arrived or ``seconds`` passed."""
    got: list[dict] = []
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url, headers=headers, timeout=seconds) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        try:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                if len(got) >= want or time.monotonic() > deadline:
                    break
        except httpx.ReadTimeout:  # a quiet stream: nothing came in time
            pass
    return got


def test_the_stream_carries_alarms_live_filtered_by_place(client, served, registered):
    received: list[dict] = []
    far: list[dict] = []
    url = f"{served}/events/stream?kinds=alarm&bbox=116.53,31.75,116.54,31.77"
    elsewhere = f"{served}/events/stream?kinds=alarm&bbox=117,32,117.1,32.1"
    headers = dict(client.headers)
    threads = [
        threading.Thread(target=lambda: received.extend(read_events(url, headers, 15, 1))),
        threading.Thread(target=lambda: far.extend(read_events(elsewhere, headers, 4, 1))),
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    sent = time.monotonic()
    post_csv(client, [("AQ-001", NOW - dt.timedelta(seconds=5), 999)])  # no threshold: nothing
    client.post(
        "/sensors",
        json=[
            {
                "sensor_id": "AQ-003",
                "kind": "air",
                "unit": "ug/m3",
                "lon": 116.5372,
                "lat": 31.7604,
                "threshold_high": 75,
            }
        ],
    )
    post_csv(client, [("AQ-003", NOW - dt.timedelta(seconds=4), 300)])
    for t in threads:
        t.join(20)
    assert received, "no event arrived"
    event = received[0]
    assert event["kind"] == "alarm" and event["action"] == "opened"
    assert event["payload"]["sensor"] == "AQ-003" and event["payload"]["value"] == 300
    assert time.monotonic() - sent < 15
    assert far == []


def test_the_stream_replays_after_the_last_event_id(client, served, pg_url):
    with psycopg.connect(pg_url) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM twin.events WHERE kind = 'alarm' ORDER BY id"
            ).fetchall()
        ]
    headers = dict(client.headers) | {"Last-Event-ID": str(ids[0])}
    got = read_events(f"{served}/events/stream?kinds=alarm", headers, 5, len(ids) - 1)
    assert [e["id"] for e in got] == ids[1:]


def test_case_events_reach_only_callers_who_may_read_cases(client, served, registered):
    url = f"{served}/events/stream?kinds=case&since=0"
    got = read_events(url, dict(client.headers), 5, 1)
    assert got and got[0]["kind"] == "case" and got[0]["target"] == "cases"
    assert got[0]["payload"]["code"]
    # cases are for viewers and up: an anonymous stream hears nothing of them
    assert read_events(url, {}, 2, 1) == []


def test_the_stream_filters_by_grid_code(client, served, pg_url):
    with psycopg.connect(pg_url) as conn:
        grid = conn.execute(
            "SELECT unit_grid FROM twin.events WHERE kind = 'alarm' ORDER BY id LIMIT 1"
        ).fetchone()[0]
        inside = conn.execute(
            "SELECT count(*) FROM twin.events WHERE kind = 'alarm' AND unit_grid LIKE %s",
            [grid[:12] + "%"],
        ).fetchone()[0]
    community = grid[:12]  # a unit grid's code begins with its community's
    headers = dict(client.headers)
    got = read_events(
        f"{served}/events/stream?kinds=alarm&since=0&grid={community}", headers, 4, 10_000
    )
    assert len(got) == inside and all(e["unit_grid"].startswith(community) for e in got)
    assert read_events(f"{served}/events/stream?since=0&grid=999999", headers, 2, 1) == []


def test_the_stream_refuses_bad_filters(client):
    assert client.get("/events/stream", params={"kinds": "weather"}).status_code == 400
    assert client.get("/events/stream", params={"bbox": "1,2,3"}).status_code == 400


def test_silent_sensors_turn_stale(client, registered, pg_url):
    client.post(
        "/sensors",
        json=[
            {
                "sensor_id": "AQ-009",
                "kind": "air",
                "unit": "ug/m3",
                "lon": 116.5372,
                "lat": 31.7604,
                "stale_after_s": 60,
            }
        ],
    )
    post_csv(client, [("AQ-009", NOW - dt.timedelta(minutes=1, seconds=30), 20)])
    deadline = time.monotonic() + 10
    state = None
    while time.monotonic() < deadline:
        with psycopg.connect(pg_url) as conn:
            state = conn.execute(
                "SELECT state FROM twin.sensors WHERE sensor_id = 'AQ-009'"
            ).fetchone()[0]
        if state == "stale":
            break
        time.sleep(0.3)
    assert state == "stale"
