"""The live twin of the demo: the sample city's sensors registered by the demo's loader with
their recent history, the 物联感知 IoT map over them (tiles that follow sensor states), and the
simulator that feeds them and makes alarms happen."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from pathlib import Path

import mapbox_vector_tile
import psycopg
import pytest
from conftest import app_client, fresh_database, load_city, settings_for

from sample_data.live import HISTORY_S, HISTORY_STEP_S, is_silent, load_sensors, read_sensors
from sample_data.simulator import Simulator, SimulatorThread

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / "node_modules" / ".bin" / "gl-style-validate"
SENSOR_LAYERS = ("air_sensors", "rain_sensors", "level_sensors", "gas_sensors", "pressure_sensors")
STATE_COLOURS = {"normal": "#2e9d57", "alarm": "#e0262f", "stale": "#9aa0a6"}


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def city(pg_url, sample_city, tmp_path_factory) -> str:
    started = time.monotonic()
    load_city(pg_url, sample_city, tmp_path_factory.mktemp("rasters"))
    print(f"sample city loaded in {time.monotonic() - started:.1f} s")
    return pg_url


@pytest.fixture(scope="module")
def client(city):
    cfg = settings_for(city)
    cfg.sensors.sensors_sweep_s = 0.5
    with app_client(cfg, role="editor") as c:
        yield c


@pytest.fixture(scope="module")
def demo_sensors(sample_city) -> dict[str, dict]:
    return {s.sensor_id: s.model_dump() for s in read_sensors(sample_city)}


def iot_tile(client, lon: float, lat: float, z: int = 16):
    x, y = tile_of(lon, lat, z)
    r = client.get(f"/maps/iot/tiles/WebMercatorQuad/{z}/{x}/{y}")
    assert r.status_code == 200, r.text
    return mapbox_vector_tile.decode(r.content), r.headers["X-Tile-Cache"]


def tile_states(layers: dict) -> dict[str, tuple[str, str]]:
    """sensor id → (layer, state) of the sensors in a tile's per-kind layers."""
    out = {}
    for name in SENSOR_LAYERS:
        for f in layers.get(name, {}).get("features", []):
            out[f["properties"]["sensor_id"]] = (name, f["properties"]["state"])
    return out


def place(conn: psycopg.Connection, sensor_id: str) -> tuple[float, float]:
    return conn.execute(
        "SELECT ST_X(geom), ST_Y(geom) FROM twin.sensors WHERE sensor_id = %s", [sensor_id]
    ).fetchone()


# --- the demo's sensors -------------------------------------------------------------------------
def test_the_demo_sensors_are_registered_where_their_attachments_are(city, sample_city):
    manifest = json.loads((sample_city / "manifest.json").read_text())
    with psycopg.connect(city) as conn:
        count, unplaced, ungridded = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE geom IS NULL), "
            "count(*) FILTER (WHERE unit_grid IS NULL) FROM twin.sensors"
        ).fetchone()
        # every attached sensor stands exactly on its node, of the kind it watches
        attached = conn.execute(
            """
            SELECT s.kind, n.kind, count(*), bool_and(ST_Equals(s.geom, n.geom))
            FROM twin.sensors s JOIN twin.pipe_nodes n
              ON n.network = s.network AND n.node_id = s.node_id AND n.deleted_at IS NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ).fetchall()
        free = conn.execute(
            "SELECT count(*) FROM twin.sensors WHERE node_id IS NULL AND kind IN ('rain', 'air')"
        ).fetchone()[0]
        layer = conn.execute(
            "SELECT feature_count FROM twin.layers WHERE name = 'sensors'"
        ).fetchone()
    assert count == manifest["sensors.geojson"] and 150 <= count <= 400
    assert unplaced == 0 and ungridded == 0  # all located to their unit grid
    kinds = {(k, nk): (n, same) for k, nk, n, same in attached}
    assert set(kinds) == {
        ("pressure", "junction"),
        ("level", "manhole"),
        ("level", "inlet"),
        ("gas", "valve"),
    }
    assert all(same for _, same in kinds.values())
    assert kinds[("pressure", "junction")][0] >= 50
    assert free + sum(n for n, _ in kinds.values()) == count
    assert layer == (count,)


def test_the_loader_ingests_hours_of_history_without_alarms(city, client, demo_sensors):
    steps = HISTORY_S // HISTORY_STEP_S
    with psycopg.connect(city) as conn:
        per_sensor = dict(
            conn.execute(
                "SELECT s.sensor_id, count(r.*) FROM twin.sensors s "
                "LEFT JOIN twin.readings r ON r.sensor = s.fid GROUP BY 1"
            ).fetchall()
        )
        alarms = conn.execute("SELECT count(*) FROM twin.alarms").fetchone()[0]
        lows = conn.execute(
            "SELECT min(r.value), max(r.value) FROM twin.readings r "
            "JOIN twin.sensors s ON s.fid = r.sensor WHERE s.kind = 'pressure'"
        ).fetchone()
    assert alarms == 0  # ordinary days: the history breaches no threshold
    assert 0.2 < lows[0] < lows[1] < 0.5  # MPa, with the daily demand in it
    for sid in demo_sensors:
        if is_silent(sid):
            assert 0 < per_sensor[sid] < steps - 10, sid  # went quiet an hour or more ago
        else:
            assert steps <= per_sensor[sid] <= steps + 1, sid
    assert any(is_silent(s) for s in demo_sensors)
    # the time series of one sensor, in 5-minute buckets
    body = client.get("/sensors/P-0001/readings", params={"resolution": "5min"}).json()
    assert body["unit"] == "MPa"
    assert steps - 1 <= len(body["points"]) <= steps + 1
    assert all(p["count"] == 1 for p in body["points"])


def test_a_restarted_demo_registers_nothing_again_and_fills_only_the_gap(city, sample_city):
    cfg = settings_for(city)
    with psycopg.connect(city) as conn:
        before = conn.execute("SELECT count(*) FROM twin.readings").fetchone()[0]
        again = load_sensors(conn, sample_city, cfg)
        # as if the demo had stopped an hour ago: its last hour of readings is not there
        gone = conn.execute(
            "DELETE FROM twin.readings WHERE t > now() - interval '1 hour'"
        ).rowcount
        conn.execute(
            "UPDATE twin.sensors s SET last_time = (SELECT max(t) FROM twin.readings r "
            "WHERE r.sensor = s.fid)"
        )
        conn.commit()
        gap = load_sensors(conn, sample_city, cfg)
        after = conn.execute("SELECT count(*) FROM twin.readings").fetchone()[0]
    assert again is not None and (again.created, again.updated) == (0, 0)
    assert again.readings <= again.sensors  # at most the 5-minute mark just passed
    assert gap is not None and gap.created == 0
    assert gap.readings == gone  # the same marks again, nothing more
    assert after == before + again.readings


# --- the map ------------------------------------------------------------------------------------
def test_the_iot_map_is_listed_with_sensors_by_state_and_kind(client, tmp_path):
    maps = {m["id"]: m for m in client.get("/maps").json()["maps"]}
    assert maps["iot"]["title"] == "物联感知 IoT" and maps["iot"]["missing"] == []
    style = client.get("/maps/iot/style.json").json()
    legend = {e["layer"]: e for e in style["metadata"]["citytwin:legend"]}
    assert {"water_pipes", "storm_pipes", "community", "alarms", *SENSOR_LAYERS} <= set(legend)
    for name in SENSOR_LAYERS:
        colours = {i["label"]: i["color"] for i in legend[name]["items"]}
        assert legend[name]["property"] == "state"
        assert {k: colours[k] for k in STATE_COLOURS} == STATE_COLOURS
    circles = {
        layer["metadata"]["citytwin:layer"]: layer["paint"]["circle-radius"]
        for layer in style["layers"]
        if layer["type"] == "circle"
    }
    # sized by kind: stations larger than the sensors on the networks
    assert circles["air_sensors"][6] > circles["level_sensors"][6] > circles["pressure_sensors"][6]
    if VALIDATOR.exists():
        path = tmp_path / "style.json"
        path.write_text(json.dumps(style), encoding="utf-8")
        node = shutil.which("node") or "node"
        result = subprocess.run([node, str(VALIDATOR), str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_iot_tiles_carry_the_sensors_with_their_states(client, city, demo_sensors):
    silent = next(s for s in demo_sensors if is_silent(s))
    with psycopg.connect(city) as conn:
        lon, lat = place(conn, silent)
    deadline = time.monotonic() + 10
    while True:  # the server's sweep marks the silent sensor stale, and drops its tiles
        states = tile_states(iot_tile(client, lon, lat)[0])
        if states.get(silent, ("", ""))[1] == "stale" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert states[silent] == (f"{demo_sensors[silent]['kind']}_sensors", "stale")
    layers, _ = iot_tile(client, lon, lat)
    assert {"streets", "water_pipes"} <= set(layers)
    assert {state for _, state in states.values()} <= {"normal", "stale"}
    # every sensor is in the layer of its kind
    for sid, (layer, _) in states.items():
        assert layer == f"{demo_sensors[sid]['kind']}_sensors"
    # the whole city at z13: every demo sensor is drawn somewhere
    with psycopg.connect(city) as conn:
        box = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
            "FROM (SELECT ST_Extent(geom) e FROM twin.sensors) x"
        ).fetchone()
    z = 13
    x0, y1 = tile_of(box[0], box[1], z)
    x1, y0 = tile_of(box[2], box[3], z)
    seen: set[str] = set()
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            r = client.get(f"/maps/iot/tiles/WebMercatorQuad/{z}/{x}/{y}")
            if r.status_code == 200:
                seen |= set(tile_states(mapbox_vector_tile.decode(r.content)))
    assert seen == set(demo_sensors)


def test_a_breaching_reading_turns_the_sensor_red_in_the_iot_tiles(client, city):
    sid = "P-0001"
    with psycopg.connect(city) as conn:
        lon, lat = place(conn, sid)
    layers, _ = iot_tile(client, lon, lat)
    assert tile_states(layers)[sid] == ("pressure_sensors", "normal")
    assert sid not in {
        f["properties"]["sensor_id"] for f in layers.get("alarms", {}).get("features", [])
    }
    assert iot_tile(client, lon, lat)[1] == "hit"

    def post(value: float) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r = client.post(
            "/sensors/readings",
            content=f"sensor,time,value\n{sid},{now},{value}\n",
            headers={"Content-Type": "text/csv"},
        )
        assert r.status_code == 200, r.text

    def wait_for(state: str) -> tuple[dict, str]:
        deadline = time.monotonic() + 10
        while True:
            layers, cache = iot_tile(client, lon, lat)
            if tile_states(layers)[sid][1] == state or time.monotonic() > deadline:
                return layers, cache
            time.sleep(0.1)

    post(0.08)  # MPa, far below the 0.20 threshold: a burst nearby
    layers, cache = wait_for("alarm")
    assert tile_states(layers)[sid] == ("pressure_sensors", "alarm")
    assert cache == "miss"  # dropped by the state change
    alarmed = {f["properties"]["sensor_id"]: f for f in layers["alarms"]["features"]}
    assert alarmed[sid]["properties"]["state"] == "alarm"
    # tiles carry states, not values (a cached tile would show them stale): items do
    assert "last_value" not in alarmed[sid]["properties"]
    item = client.get("/collections/sensors/items", params={"sensor_id": sid}).json()
    assert item["features"][0]["properties"]["last_value"] == pytest.approx(0.08)
    time.sleep(1.1)  # a new second: the next reading has a later time
    post(0.36)
    layers, _ = wait_for("normal")
    assert tile_states(layers)[sid][1] == "normal"
    assert sid not in {
        f["properties"]["sensor_id"] for f in layers.get("alarms", {}).get("features", [])
    }


# --- the simulator ------------------------------------------------------------------------------
def test_the_simulator_opens_and_clears_a_burst_and_a_flood(city, sample_city):
    cfg = settings_for(city)
    sim = Simulator(city, sample_city, cfg.sensors, step_s=0.4, incident_every=12, seed=3)
    with psycopg.connect(city) as conn:
        first = conn.execute("SELECT coalesce(max(id), 0) FROM twin.alarms").fetchone()[0]
    started = time.monotonic()
    thread = SimulatorThread(sim).start()

    def alarms() -> list[tuple]:
        with psycopg.connect(city) as conn:
            return conn.execute(
                """
                SELECT s.sensor_id, s.kind, a.rule, a.state, a.proposal
                FROM twin.alarms a JOIN twin.sensors s ON s.fid = a.sensor
                WHERE a.id > %s ORDER BY a.id
                """,
                [first],
            ).fetchall()

    wanted = {("pressure", "low"), ("level", "high"), ("level", "rate")}
    try:
        seen: list[tuple] = []
        low_at = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = alarms()
            if low_at is None and any(k == "pressure" and r == "low" for _, k, r, *_ in seen):
                low_at = time.monotonic() - started
            if wanted <= {(k, r) for _, k, r, state, _ in seen if state == "cleared"}:
                break
            time.sleep(0.3)
    finally:
        thread.stop()
    assert not thread._thread.is_alive()  # stopped cleanly
    assert low_at is not None and low_at < 10  # the first burst comes in the first ticks
    # a burst repaired, a manhole flooded fast and drained: opened, then cleared
    assert wanted <= {(k, r) for _, k, r, state, _ in seen if state == "cleared"}, seen
    # the burst alarm proposes the pipe and the valves to close
    proposals = [p for _, k, r, _, p in seen if r == "low" and p]
    assert proposals and proposals[0]["segment"].startswith("JSL")
    assert proposals[0]["isolation"]["valves_to_close"]
    # only the sensors the incidents touched alarmed: the ordinary feed breaches nothing
    touched = {sid for i in sim.happened for sid in i.effects}
    assert {sid for sid, *_ in seen} <= touched
    assert sim.readings > 10 * len(sim.sensors)
