"""Vector tiles: decoded MVT content, TileJSON and tile-matrix errors."""

from __future__ import annotations

import math

import geopandas as gpd
import mapbox_vector_tile
import psycopg
import pytest
from shapely.geometry import LineString, Point, Polygon

from layers.importer import import_file

LON, LAT = 116.52, 31.76


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


@pytest.fixture(scope="module")
def city(pg_url, tmp_path_factory, client):
    folder = tmp_path_factory.mktemp("tiles")
    lamps = gpd.GeoDataFrame(
        {"code": ["L1", "L2"], "height": [8, 10]},
        geometry=[Point(LON, LAT), Point(LON + 0.0001, LAT)],
        crs=4326,
    )
    roads = gpd.GeoDataFrame(
        {"name": ["梅山路"]},
        geometry=[LineString([(LON - 0.01, LAT), (LON + 0.01, LAT + 0.0001)])],
        crs=4326,
    )
    blocks = gpd.GeoDataFrame(
        {"use": ["park"]},
        geometry=[Polygon([(LON, LAT), (LON + 0.002, LAT), (LON + 0.002, LAT + 0.002)])],
        crs=4326,
    )
    with psycopg.connect(pg_url) as conn:
        for name, frame in (("tile_lamps", lamps), ("tile_roads", roads), ("tile_blocks", blocks)):
            path = folder / f"{name}.gpkg"
            frame.to_file(path, engine="pyogrio")
            import_file(conn, path, layer_name=name, mode="replace")
    client.app.state.catalog._loaded_at = 0


def fetch_tile(client, layer, z, x, y):
    r = client.get(f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{x}/{y}")
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204:
        return {}
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert "ETag" in r.headers and "max-age" in r.headers["cache-control"]
    return mapbox_vector_tile.decode(r.content)


def test_point_tile_has_features_with_attributes_where_they_are(client, city):
    x, y = tile_of(LON, LAT, 16)
    decoded = fetch_tile(client, "tile_lamps", 16, x, y)
    feats = decoded["tile_lamps"]["features"]
    assert sorted(f["properties"]["code"] for f in feats) == ["L1", "L2"]
    assert sorted(f["id"] for f in feats) == [1, 2]
    assert {f["properties"]["height"] for f in feats} == {8, 10}
    # The point sits where Web Mercator puts it inside the tile (y axis up in the decoder).
    n = 2**16
    fx = ((LON + 180) / 360 * n - x) * 4096
    l1 = next(f for f in feats if f["properties"]["code"] == "L1")
    assert l1["geometry"]["coordinates"][0] == pytest.approx(fx, abs=1)


def test_tile_elsewhere_is_empty(client, city):
    x, y = tile_of(LON, LAT, 16)
    assert fetch_tile(client, "tile_lamps", 16, x + 5, y) == {}


def test_lines_and_polygons_decode_at_low_and_high_zoom(client, city):
    for z in (10, 15, 18):
        x, y = tile_of(LON, LAT + 0.00005, z)
        roads = fetch_tile(client, "tile_roads", z, x, y)["tile_roads"]["features"]
        assert roads[0]["geometry"]["type"] == "LineString"
        assert roads[0]["properties"]["name"] == "梅山路"
    x, y = tile_of(LON + 0.0015, LAT + 0.0005, 15)
    blocks = fetch_tile(client, "tile_blocks", 15, x, y)["tile_blocks"]["features"]
    assert blocks[0]["geometry"]["type"] == "Polygon"


def test_etag_revalidation_returns_304(client, city):
    x, y = tile_of(LON, LAT, 16)
    url = f"/collections/tile_lamps/tiles/WebMercatorQuad/16/{x}/{y}"
    etag = client.get(url).headers["etag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304


def test_tilejson_describes_the_layer(client, city):
    doc = client.get("/collections/tile_lamps/tiles/WebMercatorQuad/tilejson.json").json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"][0].endswith("/collections/tile_lamps/tiles/WebMercatorQuad/{z}/{x}/{y}")
    layer = doc["vector_layers"][0]
    assert layer["id"] == "tile_lamps"
    assert layer["fields"] == {"code": "String", "height": "Number"}
    assert doc["bounds"][0] == pytest.approx(LON)


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("tile_lamps/tiles/WebMercatorQuad/3/8/1", 404, "x and y run 0 to 7"),
        ("tile_lamps/tiles/WebMercatorQuad/3/1/-1", 404, "outside the tile matrix"),
        ("tile_lamps/tiles/WebMercatorQuad/31/0/0", 404, "zoom 31"),
        ("tile_lamps/tiles/WorldCRS84Quad/3/1/1", 404, "unknown tile matrix set"),
        ("nope/tiles/WebMercatorQuad/3/1/1", 404, "no collection"),
        ("tile_lamps/tiles/WebMercatorQuad/a/1/1", 400, "z"),
    ],
)
def test_bad_tile_requests(client, city, path, status, says):
    r = client.get(f"/collections/{path}")
    assert r.status_code == status
    assert says in r.json()["message"]


@pytest.fixture(scope="module")
def world(pg_url, tmp_path_factory, client):
    folder = tmp_path_factory.mktemp("world")
    frame = gpd.GeoDataFrame(
        {"name": ["east", "west", "greenwich"]},
        geometry=[Point(179.5, 10), Point(-179.5, 10), Point(0.5, 10)],
        crs=4326,
    )
    path = folder / "edges.gpkg"
    frame.to_file(path, engine="pyogrio")
    with psycopg.connect(pg_url) as conn:
        import_file(conn, path, layer_name="tile_edges", mode="replace")
    client.app.state.catalog._loaded_at = 0


@pytest.mark.parametrize("z", [0, 1, 2, 3, 8])
def test_features_near_the_antimeridian_and_greenwich_are_in_their_tiles(client, world, z):
    for lon, name in ((179.5, "east"), (-179.5, "west"), (0.5, "greenwich")):
        x, y = tile_of(lon, 10, z)
        decoded = fetch_tile(client, "tile_edges", z, x, y)
        names = {f["properties"]["name"] for f in decoded.get("tile_edges", {}).get("features", [])}
        assert name in names, (z, x, y, names)
