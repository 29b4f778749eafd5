"""The viewer in a real headless Chromium, over a small sample city.

The server runs in a thread on a free loopback port against a database of this module's own
(the sample city at a fifth of its size, plus two user layers); the page is driven by
tests/e2e/drive.mjs (Chromium over the DevTools protocol, software WebGL): each of the one-map
views renders with its legend, a component is identified with its code and unit grid, a clicked
pipe gives a trace and a burst isolation drawn on top, a polygon drawn by clicks gets its "what
is inside" summary, and the imagery compare mode shows both dates. No request leaves the server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pytest
from conftest import fresh_database, serve, settings_for
from PIL import Image
from shapely.geometry import Point, Polygon

from layers.importer import import_file
from sample_data import generate
from sample_data.load import load_sample_city
from twin.settings import RasterSettings

E2E = Path(__file__).resolve().parent / "e2e"
SCRIPT = E2E / "screenshot.sh"
DRIVER = E2E / "drive.mjs"
PANEL_PX = 340  # the side panel's width: the map is right of it
VIEWS = ["city-management", "pipelines", "imagery-ecology", "flood-control", "iot"]
# A user layer outside the sample city (inside the real district), for the "all layers" view.
LON, LAT = 116.60, 31.80

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("node") is None,
    reason="make test installs chromium and node",
)


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def settings(pg_url, tmp_path_factory):
    cfg = settings_for(pg_url)
    cfg.rasters = RasterSettings(raster_dir=tmp_path_factory.mktemp("rasters"))
    return cfg


def user_layers(conn: psycopg.Connection, folder: Path) -> None:
    parks = gpd.GeoDataFrame(
        {"name": ["梅山公园"], "kind": ["park"]},
        geometry=[
            Polygon(
                [(LON, LAT), (LON + 0.004, LAT), (LON + 0.004, LAT + 0.003), (LON, LAT + 0.003)]
            )
        ],
        crs=4326,
    )
    hydrants = gpd.GeoDataFrame(
        {"code": [f"H{i}" for i in range(6)]},
        geometry=[Point(LON + 0.0006 * i, LAT - 0.0005) for i in range(6)],
        crs=4326,
    )
    for name, frame in (("web_parks", parks), ("web_hydrants", hydrants)):
        path = folder / f"{name}.gpkg"
        frame.to_file(path, engine="pyogrio")
        import_file(conn, path, layer_name=name, mode="replace")


@pytest.fixture(scope="module")
def server(settings, pg_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("city")
    generate(folder, seed=7, scale=0.2)
    with psycopg.connect(pg_url) as conn:
        load_sample_city(conn, folder, settings)
        user_layers(conn, tmp_path_factory.mktemp("user"))
        conn.commit()
    from api.app import create_app

    with serve(create_app(settings)) as url:
        yield url


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def post(url: str, body: dict) -> dict:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def drive(
    server: str, tmp_path: Path, steps: list[dict], timeout_s: int = 60, window=(1400, 900)
) -> dict:
    """Run the steps in a fresh Chromium; the report, with the step that failed if any."""
    scenario = {
        "origin": server,
        "window": list(window),
        "timeout_s": timeout_s,
        "screenshot_on_failure": str(tmp_path / "failure.png"),
        "steps": steps,
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    flags = ["--no-warnings"]
    probe = subprocess.run(
        ["node", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"], env=env
    )
    if probe.returncode != 0:
        flags.append("--experimental-websocket")
    result = subprocess.run(
        ["node", *flags, str(DRIVER), str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("REPORT ")), None)
    assert line, result.stderr[-2000:]
    report = json.loads(line[len("REPORT ") :])
    assert "failed" not in report, report["failed"]
    # Nothing but this server: no CDN, no base map, no fonts.
    assert report["outside"] == []
    assert report["requests"] > 0
    assert report["console_errors"] == [], report["console_errors"]
    return report


def map_pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))[:, PANEL_PX + 2 :]


def colour_count(pixels: np.ndarray) -> int:
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


def near(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 30) -> int:
    """How many pixels are within the tolerance of a colour."""
    diff = np.abs(pixels.astype(int) - np.array(rgb)).max(axis=2)
    return int((diff <= tolerance).sum())


# --- the places the tests click ---------------------------------------------------------------
@pytest.fixture(scope="module")
def places(server, pg_url) -> dict:
    """A component and a water pipe with nothing else drawn within a few metres of them."""
    with psycopg.connect(pg_url) as conn:
        code, clon, clat, unit = conn.execute(
            """
            SELECT c.code, ST_X(c.geom), ST_Y(c.geom), c.unit_grid
            FROM twin.components_current c
            WHERE NOT EXISTS (SELECT 1 FROM twin.components_current o
                              WHERE o.code <> c.code AND ST_DWithin(o.geom, c.geom, 0.00008))
            ORDER BY c.code LIMIT 1
            """
        ).fetchone()
        pipe, plon, plat = conn.execute(
            """
            WITH m AS (SELECT pipe_id, id, ST_LineInterpolatePoint(geom, 0.5) AS p
                       FROM twin.pipe_segments
                       WHERE network = 'water' AND deleted_at IS NULL AND length_m > 25)
            SELECT m.pipe_id, ST_X(m.p), ST_Y(m.p) FROM m
            WHERE NOT EXISTS (SELECT 1 FROM twin.pipe_segments s
                              WHERE s.id <> m.id AND s.deleted_at IS NULL
                                AND ST_DWithin(s.geom, m.p, 0.00009))
              AND NOT EXISTS (SELECT 1 FROM twin.pipe_nodes n
                              WHERE n.deleted_at IS NULL AND ST_DWithin(n.geom, m.p, 0.00012))
              AND NOT EXISTS (SELECT 1 FROM twin.pipe_findings f
                              WHERE ST_DWithin(f.geom, m.p, 0.00012))
            ORDER BY m.pipe_id LIMIT 1
            """
        ).fetchone()
        community = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
            "FROM (SELECT ST_Extent(geom) AS e FROM twin.grid_unit) AS x"
        ).fetchone()
    return {
        "component": (code, clon, clat, unit),
        "pipe": (pipe, plon, plat),
        "city": community,
    }


def ready_wait(until: str) -> list[dict]:
    return [{"do": "wait", "until": until}, {"do": "ready"}]


# --- the tests ----------------------------------------------------------------------------------
def test_each_view_renders_with_its_legend(server, tmp_path):
    maps = {m["id"]: m for m in get(f"{server}/maps")["maps"]}
    assert set(VIEWS) <= set(maps)
    steps: list[dict] = []
    for view in VIEWS:
        steps += [
            {"do": "goto", "url": f"/viewer#view={view}"},
            {"do": "shot", "path": str(tmp_path / f"{view}.png")},
            {
                "do": "eval",
                "name": view,
                "expr": "({view: citytwinViewer.view, "
                "legend: document.getElementById('layer-list').innerText, "
                "active: document.querySelector('#views button.active').dataset.view, "
                "title: document.getElementById('view-title').innerText, "
                "hash: location.hash, "
                "drawn: citytwinMap.queryRenderedFeatures().length})",
            },
        ]
    # A smaller window: fewer imagery tiles to render, the same checks.
    report = drive(server, tmp_path, steps, timeout_s=90, window=(1100, 720))
    for view in VIEWS:
        seen = report["values"][view]
        assert seen["view"] == seen["active"] == view
        assert seen["hash"].startswith(f"#view={view}") and "map=" in seen["hash"]
        assert seen["title"] == maps[view]["title"]
        legend = get(f"{server}/maps/{view}/style.json")["metadata"]["citytwin:legend"]
        for entry in legend:
            assert entry["title"] in seen["legend"], (view, entry["title"])
        pixels = map_pixels(tmp_path / f"{view}.png")
        assert colour_count(pixels) > 40, view  # fills, lines, points or imagery: not blank
        background = (242, 241, 236)
        assert near(pixels, background, 4) < 0.9 * pixels.shape[0] * pixels.shape[1], view
        if view != "imagery-ecology":
            assert seen["drawn"] > 0, view
    # the imagery view shows the image: many colours over the whole map
    assert colour_count(map_pixels(tmp_path / "imagery-ecology.png")) > 2000


def test_all_layers_view_shows_user_layers_and_identifies_a_park(server, tmp_path):
    lat, lon = LAT + 0.0015, LON + 0.002
    steps = [
        {"do": "goto", "url": f"/viewer#view=layers&map=16/{lat}/{lon}"},
        {"do": "click", "lonlat": [lon, lat]},
        *ready_wait(
            "document.querySelector('.maplibregl-popup') && "
            "!document.querySelector('.maplibregl-popup').innerText.includes('loading')"
        ),
        {"do": "shot", "path": str(tmp_path / "park.png")},
        {
            "do": "eval",
            "name": "page",
            "expr": "({layers: [...document.querySelectorAll('#layer-list > li')]"
            ".map((li) => li.dataset.collection), "
            "popup: document.querySelector('.maplibregl-popup').innerText})",
        },
    ]
    page = drive(server, tmp_path, steps)["values"]["page"]
    assert {"web_parks", "web_hydrants", "components", "water_pipes"} <= set(page["layers"])
    assert "web_parks" in page["popup"] and "梅山公园" in page["popup"]
    assert colour_count(map_pixels(tmp_path / "park.png")) > 20


def test_old_viewer_links_and_the_screenshot_script_still_work(server, tmp_path):
    # #zoom/lat/lon links of the earlier viewer open the default view at that place
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "TIMEOUT_S": "40", "HOME": str(tmp_path)}
    url = f"{server}/viewer#16/{LAT + 0.0015}/{LON + 0.002}"
    result = subprocess.run(
        ["bash", str(SCRIPT), url, str(tmp_path / "old.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT ") :])
    assert report["state"] == "ready"
    assert "components" in report["layers"]  # the city-management view


def test_identify_a_component_and_search_a_grid_code(server, places, tmp_path):
    code, lon, lat, unit = places["component"]
    steps = [
        {"do": "goto", "url": f"/viewer#view=city-management&map=18.5/{lat}/{lon}"},
        {"do": "click", "lonlat": [lon, lat]},
        *ready_wait("document.querySelector('.maplibregl-popup dd.grid')"),
        {"do": "shot", "path": str(tmp_path / "identify.png")},
        {
            "do": "eval",
            "name": "identify",
            "expr": "({popup: document.querySelector('.maplibregl-popup').innerText, "
            "code: document.querySelector('.maplibregl-popup dd.code').innerText, "
            "highlight: citytwinViewer.count('highlight')})",
        },
        # search by a unit grid code: typed and submitted as a user would
        {"do": "click", "selector": "#search-input"},
        {"do": "eval", "expr": f"document.getElementById('search-input').value = '{unit}'"},
        {"do": "click", "selector": "#search button[type=submit]"},
        *ready_wait(
            "document.querySelector('#search-results .hits') && "
            "document.querySelector('.maplibregl-popup dd.code')?.innerText === "
            f"'{unit}'"
        ),
        {"do": "shot", "path": str(tmp_path / "search.png")},
        {
            "do": "eval",
            "name": "search",
            "expr": "({hits: document.getElementById('search-results').innerText, "
            "highlight: citytwinViewer.count('highlight'), "
            "drawn: citytwinViewer.rendered('ct-highlight')})",
        },
    ]
    values = drive(server, tmp_path, steps)["values"]
    identify = values["identify"]
    assert identify["code"] == code
    assert "部件 Components" in identify["popup"]
    assert unit in identify["popup"]  # the unit grid it belongs to
    assert "status" in identify["popup"] and "class_name" in identify["popup"]
    assert identify["highlight"] == 1
    search = values["search"]
    assert unit in search["hits"] and search["highlight"] == 1 and search["drawn"] > 0


def test_trace_and_isolate_from_a_clicked_pipe(server, places, tmp_path):
    pipe, lon, lat = places["pipe"]
    at = f"/viewer#view=pipelines&map=18/{lat}/{lon}"
    popup_ready = ready_wait(
        "document.querySelector('.maplibregl-popup dd.grid') && "
        "document.querySelector('.maplibregl-popup button[data-action=isolate]')"
    )
    steps = [
        {"do": "goto", "url": at},
        {"do": "click", "lonlat": [lon, lat]},
        *popup_ready,
        {
            "do": "eval",
            "name": "popup",
            "expr": "document.querySelector('.maplibregl-popup dd.code').innerText",
        },
        {"do": "click", "selector": ".maplibregl-popup button[data-action=trace-connected]"},
        *ready_wait("document.querySelector('#results .summary[data-kind=trace]')"),
        {"do": "shot", "path": str(tmp_path / "trace.png")},
        {
            "do": "eval",
            "name": "trace",
            "expr": "({text: document.getElementById('results').innerText, "
            "held: citytwinViewer.count('analysis'), "
            "drawn: citytwinViewer.rendered('ct-analysis-line'), "
            "body: citytwinViewer.state.result.body.totals})",
        },
        {"do": "goto", "url": at},
        {"do": "click", "lonlat": [lon, lat]},
        *popup_ready,
        {"do": "click", "selector": ".maplibregl-popup button[data-action=isolate]"},
        *ready_wait("document.querySelector('#results .summary[data-kind=isolation]')"),
        {"do": "shot", "path": str(tmp_path / "isolate.png")},
        {
            "do": "eval",
            "name": "isolate",
            "expr": "({text: document.getElementById('results').innerText, "
            "held: citytwinViewer.count('analysis'), "
            "lines: citytwinViewer.rendered('ct-analysis-line'), "
            "valves: citytwinViewer.rendered('ct-analysis-valve'), "
            "area: citytwinViewer.rendered('ct-analysis-area')})",
        },
        {"do": "click", "selector": "#clear-results"},
        {"do": "eval", "name": "cleared", "expr": "citytwinViewer.count('analysis')"},
    ]
    values = drive(server, tmp_path, steps)["values"]
    assert values["popup"] == pipe
    trace = values["trace"]
    expected = post(
        f"{server}/pipelines/trace",
        {"network": "water", "start": {"segment": pipe}, "direction": "connected"},
    )
    assert trace["body"]["segments"] == expected["totals"]["segments"] > 1
    assert "连通" in trace["text"] and pipe in trace["text"]
    assert trace["held"] == len(expected["features"]) and trace["drawn"] > 0
    orange = near(map_pixels(tmp_path / "trace.png"), (255, 109, 0), 25)
    assert orange > 200  # the traced pipes, drawn on top in the trace colour

    isolate = values["isolate"]
    answer = post(f"{server}/pipelines/isolate", {"network": "water", "start": {"segment": pipe}})
    assert "爆管关阀" in isolate["text"]
    for valve in answer["valves_to_close"]:
        assert valve["node_id"] in isolate["text"]
    assert isolate["lines"] > 0 and isolate["valves"] == len(answer["valves_to_close"]) > 0
    assert isolate["area"] > 0  # the outage area
    red = near(map_pixels(tmp_path / "isolate.png"), (229, 57, 53), 25)
    assert red > 100
    assert values["cleared"] == 0


def test_draw_a_polygon_and_see_what_is_inside(server, places, tmp_path):
    x0, y0, x1, y1 = places["city"]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    dx, dy = (x1 - x0) / 5, (y1 - y0) / 5
    ring = [[cx - dx, cy - dy], [cx + dx, cy - dy], [cx + dx, cy + dy], [cx - dx, cy + dy]]
    steps = [
        {"do": "goto", "url": f"/viewer#view=city-management&map=15.5/{cy}/{cx}"},
        # Esc cancels a polygon being drawn
        {"do": "click", "selector": "#draw-tool"},
        {"do": "click", "lonlat": ring[0]},
        {"do": "click", "lonlat": ring[1]},
        {"do": "key", "key": "Escape"},
        {
            "do": "eval",
            "name": "cancelled",
            "expr": "[citytwinViewer.count('draw'), citytwinViewer.state.draw.active]",
        },
        # click the vertices, then the first one again to close the ring
        {"do": "click", "selector": "#draw-tool"},
        *[{"do": "click", "lonlat": p} for p in ring],
        {"do": "click", "lonlat": ring[0]},
        *ready_wait("document.querySelector('#results .summary[data-kind=query]')"),
        {"do": "shot", "path": str(tmp_path / "query.png")},
        {
            "do": "eval",
            "name": "query",
            "expr": "({text: document.getElementById('results').innerText, "
            "sections: [...document.querySelectorAll('#results .answer-section')]"
            ".map((s) => s.dataset.key), "
            "drawn: citytwinViewer.rendered('ct-draw'), "
            "polygon: citytwinViewer.state.overlay.draw.features[0].geometry})",
        },
    ]
    values = drive(server, tmp_path, steps)["values"]
    assert values["cancelled"] == [0, False]
    query = values["query"]
    polygon = query["polygon"]
    assert polygon["type"] == "Polygon" and len(polygon["coordinates"][0]) == 5
    for clicked, wanted in zip(polygon["coordinates"][0], ring, strict=False):
        assert abs(clicked[0] - wanted[0]) < 1e-4 and abs(clicked[1] - wanted[1]) < 1e-4
    assert query["drawn"] > 0
    assert "区域查询" in query["text"]
    # the panel shows the answer to the polygon the clicks made
    answer = post(f"{server}/query/within", {"geometry": polygon})
    for key in answer:
        if isinstance(answer[key], dict):
            assert key in query["sections"], key
    total = answer["components"]["total"]
    assert total > 0 and f"{total:,}" in query["text"]
    blue = near(map_pixels(tmp_path / "query.png"), (30, 136, 229), 20)
    assert blue > 100  # the polygon's outline


def test_query_errors_are_shown_in_the_panel(server, tmp_path):
    # a polygon far outside anything: whatever the server answers is shown, an error legibly
    steps = [
        {"do": "goto", "url": "/viewer#view=city-management"},
        {
            "do": "eval",
            "expr": "citytwinViewer.state.draw.onFinish({type: 'Polygon', coordinates: "
            "[[[0, 0], [1, 1], [0, 1], [1, 0], [0, 0]]]})",
        },
        *ready_wait("document.querySelector('#results .error-box, #results .summary')"),
        {"do": "eval", "name": "panel", "expr": "document.getElementById('results').innerText"},
    ]
    text = drive(server, tmp_path, steps)["values"]["panel"]
    assert "失败" in text and "code:" in text  # a self-intersecting ring is refused


def test_imagery_before_after_compare(server, tmp_path):
    scenes = get(f"{server}/raster/collections/sample-city/items")["features"]
    dates = sorted(s["properties"]["datetime"][:10] for s in scenes)
    steps = [
        {"do": "goto", "url": "/viewer#view=imagery-ecology"},
        {"do": "click", "selector": "#compare-tool"},
        *ready_wait("!!citytwinViewer.compareMaps()"),
        {"do": "shot", "path": str(tmp_path / "compare.png")},
        {
            "do": "eval",
            "name": "compare",
            "expr": "({before: document.getElementById('compare-label-before').innerText, "
            "after: document.getElementById('compare-label-after').innerText, "
            "clip: document.getElementById('compare-after').style.clipPath})",
        },
        {"do": "drag", "selector": "#compare-divider .grip", "to": [PANEL_PX + 220, 360]},
        {"do": "ready"},
        {"do": "eval", "name": "dragged", "expr": "citytwinViewer.state.compare.fraction"},
    ]
    values = drive(server, tmp_path, steps, timeout_s=90, window=(1100, 720))["values"]
    compare = values["compare"]
    assert dates[0] in compare["before"] and dates[-1] in compare["after"]
    assert compare["clip"].startswith("inset(")
    assert 0.2 < values["dragged"] < 0.4  # the divider followed the mouse
    pixels = map_pixels(tmp_path / "compare.png")
    half = pixels.shape[1] // 2
    assert colour_count(pixels[:, : half - 20]) > 500  # the older image
    assert colour_count(pixels[:, half + 20 :]) > 500  # the newer image
