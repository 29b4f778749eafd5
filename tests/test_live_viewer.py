"""The live twin in a real headless Chromium: the 物联感知 IoT view with the demo's sensors, an
alarm appearing in the live panel and on the map while the page stays open (a breaching reading
posted by another client), its sensor's popup with the time-series chart and the proposed
isolation drawn from it, and the alarm clearing again."""

from __future__ import annotations

import shutil

import psycopg
import pytest
from conftest import fresh_database, make_key, serve, settings_for
from test_viewer_browser import colour_count, drive, map_pixels, near

from sample_data import generate
from sample_data.live import is_silent
from sample_data.load import load_sample_city
from twin.settings import RasterSettings

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("node") is None,
    reason="make test installs chromium and node",
)
RED = (224, 38, 47)


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def server(pg_url, tmp_path_factory):
    cfg = settings_for(pg_url)
    cfg.rasters = RasterSettings(raster_dir=tmp_path_factory.mktemp("rasters"))
    folder = tmp_path_factory.mktemp("city")
    generate(folder, seed=7, scale=0.2)
    with psycopg.connect(pg_url) as conn:
        load_sample_city(conn, folder, cfg)
        conn.commit()
    from api.app import create_app

    with serve(create_app(cfg)) as url:
        yield url


@pytest.fixture(scope="module")
def sensor(server, pg_url) -> tuple[str, float, float]:
    """A reporting pressure sensor with no other sensor drawn within some 40 m."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            """
            SELECT s.sensor_id, ST_X(s.geom), ST_Y(s.geom) FROM twin.sensors s
            WHERE s.kind = 'pressure' AND NOT EXISTS (
                SELECT 1 FROM twin.sensors o
                WHERE o.fid <> s.fid AND ST_DWithin(o.geom, s.geom, 0.0004))
            ORDER BY s.sensor_id
            """
        ).fetchall()
    return next(r for r in rows if not is_silent(r[0]))


def post_reading(token: str, sensor_id: str, value: float) -> str:
    """A page-side fetch that posts one reading, as another client would (the editor key is
    this request's only: the viewer itself stays anonymous); its value is the HTTP status."""
    csv = f"'sensor,time,value\\n{sensor_id},' + new Date().toISOString() + ',{value}\\n'"
    return (
        "fetch('/sensors/readings', {method: 'POST', headers: {'Content-Type': 'text/csv', "
        f"Authorization: 'Bearer {token}'}}, body: {csv}}}).then((r) => r.status)"
    )


def test_an_alarm_appears_live_and_its_sensor_shows_readings_and_isolation(
    server, pg_url, sensor, tmp_path
):
    sid, lon, lat = sensor
    token = make_key(pg_url, "editor")
    row = f"#live-list li[data-sensor='{sid}']"
    rendered = (
        "citytwinMap.queryRenderedFeatures({layers: ['{layer}']})"
        ".filter((f) => f.properties.sensor_id === '" + sid + "')"
    )
    in_alarm_layer = rendered.replace("{layer}", "alarms-circle") + ".length > 0"
    steps = [
        {"do": "goto", "url": f"/viewer#view=iot&map=16.5/{lat}/{lon}"},
        {"do": "wait", "until": "citytwinViewer.live() && citytwinViewer.live().connected"},
        {"do": "ready"},
        {"do": "shot", "path": str(tmp_path / "iot.png")},
        {
            "do": "eval",
            "name": "before",
            "expr": "({views: [...document.querySelectorAll('#views button')]"
            ".map((b) => b.dataset.view), "
            "title: document.getElementById('view-title').innerText, "
            "legend: document.getElementById('layer-list').innerText, "
            "live: citytwinViewer.live(), "
            "panel: document.getElementById('live').innerText, "
            "mine: "
            + rendered.replace("{layer}", "pressure_sensors-circle")
            + ".map((f) => f.properties.state), "
            "states: [...new Set(citytwinMap.queryRenderedFeatures({layers: "
            "['pressure_sensors-circle', 'level_sensors-circle', 'gas_sensors-circle']})"
            ".map((f) => f.properties.state))]})",
        },
        # the page is not reloaded from here on: a marker on the window must survive
        {"do": "eval", "expr": "window.notReloaded = true"},
        {"do": "eval", "name": "posted", "expr": post_reading(token, sid, 0.05)},
        {"do": "wait", "until": f'document.querySelector("{row}[data-state=open]")'},
        {"do": "wait", "until": in_alarm_layer},  # the map's tiles follow
        {"do": "wait", "until": f'document.querySelector("{row} .proposal")'},
        {"do": "ready"},
        {"do": "shot", "path": str(tmp_path / "alarm.png")},
        {
            "do": "eval",
            "name": "alarm",
            "expr": "({kept: window.notReloaded === true, live: citytwinViewer.live(), "
            f'row: document.querySelector("{row}").innerText, '
            "count: document.getElementById('live-count').innerText, "
            "rings: citytwinViewer.rendered('ct-live-ring')})",
        },
        # a click on the alarm flies to the sensor and opens it
        {"do": "click", "selector": row},
        {
            "do": "wait",
            "until": "document.querySelector('.maplibregl-popup .sensor-live svg.series polyline')"
            " && document.querySelector('.maplibregl-popup .proposal')",
        },
        {"do": "ready"},
        {"do": "shot", "path": str(tmp_path / "popup.png")},
        {
            "do": "eval",
            "name": "popup",
            "expr": "({text: document.querySelector('.maplibregl-popup').innerText, "
            "points: Number(document.querySelector('.maplibregl-popup .chart').dataset.points), "
            "centre: citytwinMap.getCenter().toArray(), zoom: citytwinMap.getZoom()})",
        },
        {"do": "click", "selector": ".maplibregl-popup button[data-action=show-isolation]"},
        {"do": "wait", "until": "document.querySelector('#results .summary[data-kind=isolation]')"},
        {"do": "ready"},
        {"do": "shot", "path": str(tmp_path / "isolation.png")},
        {
            "do": "eval",
            "name": "isolation",
            "expr": "({text: document.getElementById('results').innerText, "
            "valves: citytwinViewer.rendered('ct-analysis-valve')})",
        },
        # back to normal: the alarm clears in the panel, the sensor leaves the alarm layer
        {"do": "sleep", "ms": 1100},
        {"do": "eval", "name": "recovered", "expr": post_reading(token, sid, 0.36)},
        {"do": "wait", "until": f'document.querySelector("{row}[data-state=cleared]")'},
        {"do": "wait", "until": "!(" + in_alarm_layer + ")"},
        {"do": "ready"},
        {"do": "shot", "path": str(tmp_path / "cleared.png")},
        {
            "do": "eval",
            "name": "cleared",
            "expr": "({kept: window.notReloaded === true, "
            f'row: document.querySelector("{row}").innerText, '
            "count: document.getElementById('live-count').innerText, "
            "rings: citytwinViewer.rendered('ct-live-ring')})",
        },
    ]
    report = drive(server, tmp_path, steps, timeout_s=60)
    values = report["values"]
    before = values["before"]
    assert "iot" in before["views"] and before["title"] == "物联感知 IoT"
    assert "供水压力 Water pressure" in before["legend"]
    assert "告警 Sensors in alarm" in before["legend"]
    assert before["live"]["connected"] and before["live"]["rows"] == []
    assert "暂无告警" in before["panel"]
    assert before["mine"] == ["normal"] and "normal" in before["states"]
    assert near(map_pixels(tmp_path / "iot.png"), (46, 157, 87), 30) > 30  # green sensors

    assert values["posted"] == 200
    alarm = values["alarm"]
    assert alarm["kept"]  # the same page: no reload
    mine = [r for r in alarm["live"]["rows"] if r["sensor"] == sid]
    assert mine and mine[0]["state"] == "open" and mine[0]["rule"] == "low" and mine[0]["proposal"]
    assert "低于下限" in alarm["row"] and "0.05 MPa" in alarm["row"] and "爆管研判" in alarm["row"]
    assert "1 条告警" in alarm["count"] and alarm["rings"] > 0
    assert near(map_pixels(tmp_path / "alarm.png"), RED, 30) > 100  # the sensor and its ring

    popup = values["popup"]
    assert sid in popup["text"] and "告警 alarm" in popup["text"] and "0.05 MPa" in popup["text"]
    assert popup["points"] >= 60  # six hours of 5-minute buckets
    assert "需关闭阀门" in popup["text"]
    assert abs(popup["centre"][0] - lon) < 2e-4 and abs(popup["centre"][1] - lat) < 2e-4
    assert popup["zoom"] >= 17.5

    isolation = values["isolation"]
    assert "爆管关阀" in isolation["text"] and isolation["valves"] > 0

    assert values["recovered"] == 200
    cleared = values["cleared"]
    assert cleared["kept"] and "解除" in cleared["row"] and "无告警" in cleared["count"]
    assert cleared["rings"] == 0
    assert colour_count(map_pixels(tmp_path / "cleared.png")) > 40
