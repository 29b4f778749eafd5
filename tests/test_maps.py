"""One-map views: map definitions, composite tiles with zoom rules, styles, the tile cache and
its precise invalidation, on the sample city."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import mapbox_vector_tile
import psycopg
import pytest

from api.app import create_app
from tests.conftest import app_client, fresh_database, load_city, settings_for
from twin.errors import SetupError

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / "node_modules" / ".bin" / "gl-style-validate"
MAPS = ("city-management", "pipelines", "imagery-ecology", "flood-control")
EXTENT = 4096


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    n = 2**z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return (x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y))


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def city(pg_url, sample_city, tmp_path_factory) -> str:
    load_city(pg_url, sample_city, tmp_path_factory.mktemp("rasters"))
    return pg_url


@pytest.fixture(scope="module")
def client(city):
    with app_client(settings_for(city)) as c:
        yield c


def get_tile(client, map_id: str, z: int, x: int, y: int, **headers: str):
    r = client.get(f"/maps/{map_id}/tiles/WebMercatorQuad/{z}/{x}/{y}", headers=headers)
    assert r.status_code in (200, 204), r.text
    layers = mapbox_vector_tile.decode(r.content) if r.status_code == 200 else {}
    return r, layers


def some_component(conn: psycopg.Connection, status: str = "完好") -> tuple[int, float, float]:
    row = conn.execute(
        "SELECT id, ST_X(geom), ST_Y(geom) FROM twin.components "
        "WHERE deleted_at IS NULL AND status = %s ORDER BY id LIMIT 1",
        [status],
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


# --- definitions and styles -----------------------------------------------------------------
def test_the_four_thematic_maps_are_listed_with_their_links(client):
    maps = {m["id"]: m for m in client.get("/maps").json()["maps"]}
    assert set(MAPS) <= set(maps)
    for m in maps.values():
        rels = {link["rel"] for link in m["links"]}
        assert {"stylesheet", "tilejson", "item"} <= rels
        assert m["missing"] == [], m  # the sample city has every collection the maps name


@pytest.mark.parametrize("map_id", MAPS)
def test_every_map_style_passes_the_maplibre_style_validator(client, map_id, tmp_path):
    style = client.get(f"/maps/{map_id}/style.json").json()
    path = tmp_path / "style.json"
    path.write_text(json.dumps(style), encoding="utf-8")
    assert VALIDATOR.exists(), "make test installs the style validator (npm ci)"
    result = subprocess.run(
        [shutil.which("node") or "node", str(VALIDATOR), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Offline: nothing to fetch but this server's tiles.
    assert "glyphs" not in style and "sprite" not in style
    urls = [u for s in style["sources"].values() for u in s.get("tiles", [])]
    assert urls and all(u.startswith("http://testserver/") for u in urls)
    assert style["metadata"]["citytwin:legend"]


def test_imagery_map_draws_the_newest_collection_in_true_colour_and_ndvi(client):
    style = client.get("/maps/imagery-ecology/style.json").json()
    rasters = {k: v for k, v in style["sources"].items() if v["type"] == "raster"}
    assert set(rasters) == {"raster-imagery", "raster-ndvi"}
    assert "preset=ndvi" in rasters["raster-ndvi"]["tiles"][0]
    url = rasters["raster-imagery"]["tiles"][0].replace("http://testserver", "")
    lon, lat = 116.535, 31.76
    x, y = tile_of(lon, lat, 14)
    r = client.get(url.replace("{z}", "14").replace("{x}", str(x)).replace("{y}", str(y)))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_tilejson_lists_each_layer_with_its_zoom_range(client):
    doc = client.get("/maps/city-management/tiles/WebMercatorQuad/tilejson.json").json()
    layers = {v["id"]: v for v in doc["vector_layers"]}
    assert layers["unit_grid"]["minzoom"] == 14
    assert layers["components"]["minzoom"] == 16
    assert layers["components_cells"]["maxzoom"] == 15
    assert "status" in layers["components"]["fields"]


# --- composite tiles ---------------------------------------------------------------------
def test_composite_tile_holds_every_vector_layer_of_the_view(client):
    x, y = tile_of(116.535, 31.76, 16)
    _, layers = get_tile(client, "pipelines", 16, x, y)
    assert {"water_pipes", "sewer_pipes", "storm_pipes", "streets"} <= set(layers)
    pipe = layers["water_pipes"]["features"][0]
    assert pipe["properties"]["utility"] == "JS" and isinstance(pipe["id"], int)
    # A filtered layer holds only what its filter selects.
    for feature in layers.get("water_valves", {"features": []})["features"]:
        assert feature["properties"]["kind"] == "valve"


def test_unit_grids_appear_from_the_zoom_where_they_are_readable(client):
    for z, expected in ((12, False), (13, False), (14, True), (17, True)):
        x, y = tile_of(116.535, 31.76, z)
        _, layers = get_tile(client, "city-management", z, x, y)
        assert ("unit_grid" in layers) is expected, z
        assert "community" in layers


def test_dense_points_are_counted_per_cell_at_low_zoom_not_dropped(client, city):
    z = 14
    x, y = tile_of(116.535, 31.76, z)
    _, layers = get_tile(client, "city-management", z, x, y)
    assert "components" not in layers
    cells = layers["components_cells"]["features"]
    inside = [
        c
        for c in cells
        if 0 <= c["geometry"]["coordinates"][0] < EXTENT
        and 0 <= c["geometry"]["coordinates"][1] < EXTENT
    ]
    west, south, east, north = tile_bounds(z, x, y)
    with psycopg.connect(city) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM twin.components_current "
            "WHERE ST_Transform(geom, 3857) && ST_TileEnvelope(%s, %s, %s) "
            "AND ST_X(geom) < %s GROUP BY status",
            [z, x, y, east],
        ).fetchall()
    expected = dict(rows)
    assert sum(c["properties"]["count"] for c in inside) == sum(expected.values()) > 100
    for status, n in expected.items():
        got = sum(c["properties"].get(f"n_{status}", 0) for c in inside)
        assert got == n, status
    # At z16 and above every component is there, one by one, with its status.
    z = 16
    x, y = tile_of(116.535, 31.76, z)
    _, layers = get_tile(client, "city-management", z, x, y)
    assert "components_cells" not in layers
    assert {"code", "status", "class_name"} <= set(
        layers["components"]["features"][0]["properties"]
    )


def test_lines_are_simplified_for_the_zoom(client, city):
    def vertices(layers: dict) -> int:
        total = 0
        for f in layers["storm_pipes"]["features"]:
            coords = f["geometry"]["coordinates"]
            parts = coords if f["geometry"]["type"] == "MultiLineString" else [coords]
            total += sum(len(p) for p in parts)
        return total

    x, y = tile_of(116.535, 31.76, 12)
    _, layers = get_tile(client, "flood-control", 12, x, y)
    shown = len(layers["storm_pipes"]["features"])
    with psycopg.connect(city) as conn:
        full = conn.execute(
            "SELECT sum(ST_NPoints(geom)) FROM twin.pipes_storm WHERE fid = ANY(%s)",
            [[f["id"] for f in layers["storm_pipes"]["features"]]],
        ).fetchone()[0]
    assert shown > 500 and vertices(layers) < full


# --- cache -------------------------------------------------------------------------------
def test_second_request_is_a_cache_hit_and_the_etag_revalidates(client):
    x, y = tile_of(116.531, 31.757, 17)
    first, _ = get_tile(client, "pipelines", 17, x, y)
    second, _ = get_tile(client, "pipelines", 17, x, y)
    assert first.headers["x-tile-cache"] == "miss" and second.headers["x-tile-cache"] == "hit"
    assert first.content == second.content and first.headers["etag"] == second.headers["etag"]
    assert "max-age" in second.headers["cache-control"]
    r = client.get(
        f"/maps/pipelines/tiles/WebMercatorQuad/17/{x}/{y}",
        headers={"If-None-Match": second.headers["etag"]},
    )
    assert r.status_code == 304 and not r.content


def _warm(client, lon: float, lat: float, zooms=range(12, 19)) -> dict:
    """Request the tiles around a point at every zoom in two maps and as a single layer."""
    seen = {}
    for z in zooms:
        x, y = tile_of(lon, lat, z)
        for path in (
            f"/maps/city-management/tiles/WebMercatorQuad/{z}/{x}/{y}",
            f"/maps/pipelines/tiles/WebMercatorQuad/{z}/{x}/{y}",
            f"/collections/components/tiles/WebMercatorQuad/{z}/{x}/{y}",
        ):
            r = client.get(path)
            assert r.status_code in (200, 204)
            seen[path] = r
    return seen


def _states(client, paths) -> dict[str, str]:
    return {p: client.get(p).headers["x-tile-cache"] for p in paths}


def test_a_status_change_invalidates_exactly_the_tiles_showing_the_component(client, city):
    with psycopg.connect(city) as conn:
        fid, lon, lat = some_component(conn)
    far = _warm(client, lon + 0.02, lat + 0.02, zooms=range(14, 19))
    near = _warm(client, lon, lat)
    assert set(_states(client, near).values()) == {"hit"}
    r = client.get(f"/collections/components/items/{fid}")
    r = client.patch(
        f"/collections/components/items/{fid}",
        json={"properties": {"status": "破损"}},
        headers={"If-Match": r.headers["etag"]},
    )
    assert r.status_code == 204
    after = _states(client, near)
    for path, state in after.items():
        if "pipelines" in path:
            assert state == "hit", path  # the pipelines map does not show components
        else:
            assert state == "miss", path  # every zoom, the map and the single layer
    assert set(_states(client, far).values()) == {"hit"}
    # The next request shows the change: one by one at z18, in the counts at z14.
    x, y = tile_of(lon, lat, 18)
    _, layers = get_tile(client, "city-management", 18, x, y)
    mine = [f for f in layers["components"]["features"] if f["id"] == fid]
    assert mine and mine[0]["properties"]["status"] == "破损"
    x, y = tile_of(lon, lat, 14)
    before = near[f"/maps/city-management/tiles/WebMercatorQuad/14/{x}/{y}"]
    old = mapbox_vector_tile.decode(before.content)["components_cells"]["features"]
    _, layers = get_tile(client, "city-management", 14, x, y)
    new = layers["components_cells"]["features"]
    total = sum(c["properties"].get("n_破损", 0) for c in new)
    assert total == sum(c["properties"].get("n_破损", 0) for c in old) + 1


def test_a_move_invalidates_the_tiles_of_both_places(client, city):
    with psycopg.connect(city) as conn:
        fid, lon, lat = some_component(conn, "破损")
    dest = (lon + 0.01, lat - 0.008)
    old_place = _warm(client, lon, lat, zooms=range(15, 19))
    new_place = _warm(client, *dest, zooms=range(15, 19))
    r = client.get(f"/collections/components/items/{fid}")
    r = client.patch(
        f"/collections/components/items/{fid}",
        json={"geometry": {"type": "Point", "coordinates": list(dest)}},
        headers={"If-Match": r.headers["etag"]},
    )
    assert r.status_code == 204
    for path, state in {**_states(client, old_place), **_states(client, new_place)}.items():
        assert state == ("hit" if "pipelines" in path else "miss"), path
    x, y = tile_of(*dest, 18)
    _, layers = get_tile(client, "city-management", 18, x, y)
    assert fid in [f["id"] for f in layers["components"]["features"]]


def test_a_pipe_edit_invalidates_the_pipelines_map_only(client, city):
    with psycopg.connect(city) as conn:
        fid, lon, lat = conn.execute(
            "SELECT fid, ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM twin.pipes_water "
            "ORDER BY fid LIMIT 1"
        ).fetchone()
    tiles = _warm(client, lon, lat)
    r = client.get(f"/collections/water_pipes/items/{fid}")
    r = client.patch(
        f"/collections/water_pipes/items/{fid}",
        json={"properties": {"material": "PE"}},
        headers={"If-Match": r.headers["etag"]},
    )
    assert r.status_code == 204, r.text
    for path, state in _states(client, tiles).items():
        assert state == ("miss" if "pipelines" in path else "hit"), path
    x, y = tile_of(lon, lat, 17)
    _, layers = get_tile(client, "pipelines", 17, x, y)
    mine = [f for f in layers["water_pipes"]["features"] if f["id"] == fid]
    assert mine and mine[0]["properties"]["material"] == "PE"


def test_cache_off_renders_every_tile(city):
    settings = settings_for(city)
    settings.tiles.tile_cache = "off"
    with app_client(settings) as c:
        x, y = tile_of(116.535, 31.76, 16)
        states = [get_tile(c, "pipelines", 16, x, y)[0].headers["x-tile-cache"] for _ in "ab"]
    assert states == ["miss", "miss"]


# --- adding a view is adding a file; bad input ---------------------------------------------
def test_a_map_file_in_the_maps_folder_adds_a_view_without_code(city, tmp_path):
    (tmp_path / "hydrants.toml").write_text(
        """
id = "hydrant-check"
title = "消火栓 Hydrants"
[[layers]]
id = "hydrants"
collection = "water_nodes"
filter = "kind = 'hydrant'"
style = { type = "circle", color = "#e74c3c" }
[[layers]]
id = "not_imported"
collection = "heat_pipes"
style = { type = "line" }
""",
        encoding="utf-8",
    )
    settings = settings_for(city)
    settings.tiles.maps_dir = tmp_path
    with app_client(settings) as c:
        doc = c.get("/maps/hydrant-check").json()
        assert doc["missing"] == ["not_imported"]
        x, y = tile_of(116.535, 31.76, 15)
        _, layers = get_tile(c, "hydrant-check", 15, x, y)
        kinds = {f["properties"]["kind"] for f in layers["hydrants"]["features"]}
        assert kinds == {"hydrant"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('id = "x"\ntitle = "t"\nlayers = [', "not valid TOML"),
        (
            'id = "Bad Id"\ntitle = "t"\n[[layers]]\nid="a"\ncollection="b"\nstyle={type="line"}',
            "map id",
        ),
        (
            'id = "x"\ntitle = "t"\n[[layers]]\nid="a"\ncollection="b"\n'
            'style={type="line", color="blue-ish"}',
            "not a colour",
        ),
        ('id = "x"\ntitle = "t"\n[[layers]]\nid="a"\nstyle={type="line"}', "exactly one of"),
    ],
)
def test_a_broken_map_file_stops_the_start_with_its_name_and_problem(tmp_path, text, says):
    (tmp_path / "broken.toml").write_text(text, encoding="utf-8")
    settings = settings_for("postgresql://unused/none")
    settings.tiles.maps_dir = tmp_path
    with pytest.raises(SetupError) as err:
        create_app(settings)
    assert "broken.toml" in err.value.message and says in err.value.message


def test_a_map_filter_on_an_unknown_field_answers_with_the_problem(city, tmp_path):
    (tmp_path / "typo.toml").write_text(
        'id = "typo"\ntitle = "t"\n[[layers]]\nid = "a"\ncollection = "components"\n'
        'filter = "colour = \'red\'"\nstyle = { type = "circle" }\n',
        encoding="utf-8",
    )
    settings = settings_for(city)
    settings.tiles.maps_dir = tmp_path
    with app_client(settings) as c:
        r = c.get("/maps/typo/tiles/WebMercatorQuad/14/13398/6666")
        assert r.status_code == 503 and "colour" in r.json()["message"]
        assert c.get("/maps/pipelines/style.json").status_code == 200  # the others still work


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/maps/nowhere/style.json", 404, "no map named 'nowhere'"),
        ("/maps/nowhere/tiles/WebMercatorQuad/3/1/1", 404, "city-management"),
        ("/maps/pipelines/tiles/WebMercatorQuad/3/8/1", 404, "x and y run 0 to 7"),
        ("/maps/pipelines/tiles/WebMercatorQuad/31/0/0", 404, "zoom 31"),
        ("/maps/pipelines/tiles/WorldCRS84Quad/3/1/1", 404, "unknown tile matrix set"),
        ("/maps/pipelines/tiles/WebMercatorQuad/a/1/1", 400, "z"),
    ],
)
def test_bad_map_requests_say_what_to_fix(client, path, status, says):
    r = client.get(path)
    assert r.status_code == status
    assert says in r.json()["message"]


# --- Redis: one cache shared by replicas ---------------------------------------------------
@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    import socket
    import time

    server = shutil.which("redis-server")
    assert server, "make test installs redis-server (scripts/ensure-system --redis)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def test_replicas_share_the_redis_cache_and_its_invalidation(city, redis_url):
    settings = settings_for(city)
    settings.tiles.tile_cache = "redis"
    settings.tiles.tile_cache_redis_url = redis_url
    with psycopg.connect(city) as conn:
        fid, lon, lat = some_component(conn)
    x, y = tile_of(lon, lat, 17)
    far_x, far_y = tile_of(lon + 0.03, lat + 0.03, 17)
    path = f"/maps/city-management/tiles/WebMercatorQuad/17/{x}/{y}"
    far = f"/maps/city-management/tiles/WebMercatorQuad/17/{far_x}/{far_y}"
    with app_client(settings) as one, app_client(settings) as two:
        assert one.get(path).headers["x-tile-cache"] == "miss"
        one.get(far)
        assert two.get(path).headers["x-tile-cache"] == "hit"  # rendered by the other replica
        r = one.get(f"/collections/components/items/{fid}")
        r = one.patch(
            f"/collections/components/items/{fid}",
            json={"properties": {"status": "丢失"}},
            headers={"If-Match": r.headers["etag"]},
        )
        assert r.status_code == 204
        fresh = two.get(path)
        assert fresh.headers["x-tile-cache"] == "miss"
        mine = [
            f
            for f in mapbox_vector_tile.decode(fresh.content)["components"]["features"]
            if f["id"] == fid
        ]
        assert mine[0]["properties"]["status"] == "丢失"
        assert two.get(far).headers["x-tile-cache"] == "hit"


def test_components_are_tiled_from_their_stored_web_mercator_copy(client, city):
    assert "components" in client.app.state.catalog.stored
    x, y = tile_of(116.535, 31.76, 17)
    r = client.get(f"/collections/components/tiles/WebMercatorQuad/17/{x}/{y}")
    shown = {f["id"] for f in mapbox_vector_tile.decode(r.content)["components"]["features"]}
    with psycopg.connect(city) as conn:
        rows = conn.execute(
            "SELECT fid FROM twin.components_current WHERE ST_Intersects("
            "ST_Transform(geom, 3857), ST_TileEnvelope(17, %s, %s, margin => 64.0 / 4096))",
            [x, y],
        ).fetchall()
        fid = rows[0][0]
    assert shown == {r[0] for r in rows}
    history = client.get(f"/collections/components/items/{fid}/history").json()
    assert all("geom_3857" not in v["state"] for v in history["versions"])
