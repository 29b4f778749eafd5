"""OGC API Features Parts 1 and 2 over HTTP, against layers imported into a real PostGIS."""

from __future__ import annotations

import datetime as dt
import json

import geopandas as gpd
import pandas as pd
import psycopg
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point, shape

from layers.importer import import_file

HEFEI = (117.2272, 31.8206)
HEFEI_4548 = (521510.564, 3521982.109)
N = 25


@pytest.fixture(scope="module")
def stations(pg_url, tmp_path_factory, client):
    """25 points on a diagonal from Hefei, one a day from 2024-01-01, plus a polygon layer."""
    folder = tmp_path_factory.mktemp("features")
    frame = gpd.GeoDataFrame(
        {
            "code": [f"S{i:02d}" for i in range(N)],
            "kind": ["lamp" if i % 2 else "bin" for i in range(N)],
            "seen": pd.to_datetime([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(N)]),
        },
        geometry=[Point(HEFEI[0] + i * 0.001, HEFEI[1] + i * 0.001) for i in range(N)],
        crs=4326,
    )
    path = folder / "stations.gpkg"
    frame.to_file(path, engine="pyogrio")
    with psycopg.connect(pg_url) as conn:
        import_file(conn, path, layer_name="stations", mode="replace")
    client.app.state.catalog._loaded_at = 0  # see the new layer at once
    return frame


def get(client, url, status=200, params=None):
    r = client.get(url, params=params)
    assert r.status_code == status, r.text
    return r


def test_landing_links_to_collections_api_and_conformance(client):
    doc = get(client, "/").json()
    rels = {link["rel"] for link in doc["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    conf = get(client, "/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in conf
    api = get(client, "/api").json()
    params = api["paths"]["/collections/{collectionId}/items"]["get"]["parameters"]
    limit = next(p for p in params if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000 and limit["schema"]["default"] == 10


def test_collection_lists_extent_crs_and_time(client, stations):
    ids = [c["id"] for c in get(client, "/collections").json()["collections"]]
    assert "stations" in ids
    doc = get(client, "/collections/stations").json()
    bbox = doc["extent"]["spatial"]["bbox"][0]
    assert bbox[0] == pytest.approx(HEFEI[0]) and bbox[3] == pytest.approx(HEFEI[1] + 0.024)
    assert "http://www.opengis.net/def/crs/EPSG/0/4490" in doc["crs"]
    assert doc["extent"]["temporal"]["interval"][0][0].startswith("2024-01-01")


def test_items_page_through_with_next_links(client, stations):
    url = "/collections/stations/items?limit=10"
    codes = []
    pages = 0
    while url:
        doc = get(client, url).json()
        assert doc["numberMatched"] == N
        codes += [f["properties"]["code"] for f in doc["features"]]
        nxt = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        url = nxt[0] if nxt else None
        pages += 1
    assert pages == 3
    assert codes == [f"S{i:02d}" for i in range(N)]


def test_items_bbox_and_property_filter(client, stations):
    bbox = f"{HEFEI[0] - 0.0005},{HEFEI[1] - 0.0005},{HEFEI[0] + 0.0045},{HEFEI[1] + 0.0045}"
    doc = get(client, f"/collections/stations/items?bbox={bbox}").json()
    assert [f["properties"]["code"] for f in doc["features"]] == ["S00", "S01", "S02", "S03", "S04"]
    doc = get(client, f"/collections/stations/items?bbox={bbox}&kind=lamp").json()
    assert [f["properties"]["code"] for f in doc["features"]] == ["S01", "S03"]


def test_items_datetime_interval(client, stations):
    doc = get(client, "/collections/stations/items?datetime=2024-01-03/2024-01-05").json()
    assert [f["properties"]["code"] for f in doc["features"]] == ["S02", "S03", "S04"]
    doc = get(client, "/collections/stations/items?datetime=../2024-01-02&limit=100").json()
    assert doc["numberReturned"] == 2


def test_items_properties_subset(client, stations):
    doc = get(client, "/collections/stations/items?properties=code&limit=1").json()
    assert doc["features"][0]["properties"] == {"code": "S00"}


def test_crs_4548_answers_northing_easting_like_the_hefei_check(client, stations):
    r = get(client, "/collections/stations/items?limit=1&crs=EPSG:4548")
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4548>"
    north, east = r.json()["features"][0]["geometry"]["coordinates"]
    assert east == pytest.approx(HEFEI_4548[0], abs=0.002)
    assert north == pytest.approx(HEFEI_4548[1], abs=0.002)


@pytest.mark.parametrize("epsg", [4326, 4490])
def test_geographic_epsg_crs_is_lat_lon(client, stations, epsg):
    uri = f"http://www.opengis.net/def/crs/EPSG/0/{epsg}"
    doc = get(client, f"/collections/stations/items?limit=1&crs={uri}").json()
    lat, lon = doc["features"][0]["geometry"]["coordinates"]
    assert (lon, lat) == pytest.approx(HEFEI)


@pytest.mark.parametrize("epsg", [3857, 4526, 4527, 4528, 4547, 4548, 4549])
def test_projected_crs_round_trip_through_bbox_crs(client, stations, epsg):
    """Ask for features in a projected CRS, then use those coordinates as bbox-crs again."""
    doc = get(client, f"/collections/stations/items?limit=1&crs=EPSG:{epsg}").json()
    coords = doc["features"][0]["geometry"]["coordinates"]
    t = Transformer.from_crs(4326, epsg, always_xy=True)
    x, y = t.transform(*HEFEI)
    expected = [x, y] if epsg == 3857 else [y, x]  # GK CRSs are northing-first
    assert coords == pytest.approx(expected, abs=0.002)
    a, b = coords
    box = f"{a - 1},{b - 1},{a + 1},{b + 1}"
    found = get(client, f"/collections/stations/items?bbox={box}&bbox-crs=EPSG:{epsg}").json()
    assert [f["properties"]["code"] for f in found["features"]] == ["S00"]


def test_gcj02_output_is_an_explicit_choice(client, stations):
    doc = get(client, "/collections/stations/items?limit=1&crs=gcj02").json()
    lon, lat = doc["features"][0]["geometry"]["coordinates"]
    assert 0.001 < abs(lon - HEFEI[0]) < 0.01 and 0.001 < abs(lat - HEFEI[1]) < 0.01


def test_single_feature_and_its_links(client, stations):
    doc = get(client, "/collections/stations/items/3").json()
    assert doc["id"] == 3 and doc["properties"]["code"] == "S02"
    assert shape(doc["geometry"]).equals_exact(Point(HEFEI[0] + 0.002, HEFEI[1] + 0.002), 1e-7)
    assert {link["rel"] for link in doc["links"]} == {"self", "collection"}


@pytest.mark.parametrize(
    ("url", "status", "code", "says"),
    [
        ("/collections/nope", 404, "not-found", "no collection named 'nope'"),
        ("/collections/nope/items", 404, "not-found", "no collection"),
        ("/collections/stations/items/999999", 404, "not-found", "no feature"),
        ("/collections/stations/items/abc", 404, "not-found", "no feature"),
        ("/collections/stations/items?bbox=1,2,3", 400, "invalid-parameter", "malformed"),
        ("/collections/stations/items?bbox=a,b,c,d", 400, "invalid-parameter", "malformed"),
        ("/collections/stations/items?bbox=117,32,116,31", 400, "invalid-parameter", "inverted"),
        ("/collections/stations/items?limit=5000", 422, "limit-exceeded", "cap of 1000"),
        ("/collections/stations/items?limit=0", 400, "invalid-parameter", "at least 1"),
        ("/collections/stations/items?offset=ten", 400, "invalid-parameter", "offset"),
        ("/collections/stations/items?offset=-1", 400, "invalid-parameter", "offset"),
        ("/collections/stations/items?crs=EPSG:999999", 400, "invalid-parameter", "unknown CRS"),
        ("/collections/stations/items?crs=EPSG:2000", 400, "invalid-parameter", "not offered"),
        ("/collections/stations/items?crs=banana", 400, "invalid-parameter", "unknown CRS"),
        ("/collections/stations/items?properties=nope", 400, "invalid-parameter", "unknown prop"),
        ("/collections/stations/items?color=red", 400, "invalid-parameter", "unknown query"),
        ("/collections/stations/items?datetime=yesterday", 400, "invalid-parameter", "malformed"),
    ],
)
def test_bad_requests_get_clear_errors(client, stations, url, status, code, says):
    r = get(client, url, status)
    body = r.json()
    assert body["code"] == code
    assert says in body["message"]
    assert "SELECT" not in body["message"] and "published" not in body["message"]


def test_items_geometries_are_valid_geojson(client, stations):
    doc = get(client, "/collections/stations/items?limit=100").json()
    geoms = [shape(f["geometry"]) for f in doc["features"]]
    assert all(shapely.is_valid(g) for g in geoms)
    assert len(geoms) == N


def test_database_errors_never_reach_the_client(client, pg_url, tmp_path):
    """A table gone behind the registry's back: 500 with a safe message, no SQL or names."""
    path = tmp_path / "ghost.geojson"
    gpd.GeoDataFrame({"a": [1]}, geometry=[Point(HEFEI)], crs=4326).to_file(
        path, driver="GeoJSON", engine="pyogrio"
    )
    with psycopg.connect(pg_url) as conn:
        import_file(conn, path, layer_name="ghost")
        conn.execute("ALTER TABLE published.ghost RENAME TO ghost_moved")
        conn.commit()
    client.app.state.catalog._loaded_at = 0
    r = client.get("/collections/ghost/items")
    assert r.status_code == 503
    assert r.json()["code"] == "layer-changing"
    assert "ghost" not in r.text and "relation" not in r.text


def test_date_only_interval_end_includes_the_whole_day(client, stations):
    doc = get(client, "/collections/stations/items?datetime=2024-01-20/2024-01-25").json()
    assert [f["properties"]["code"] for f in doc["features"]][-1] == "S24"
    assert doc["numberMatched"] == 6
    doc = get(client, "/collections/stations/items?datetime=2024-01-03").json()
    assert [f["properties"]["code"] for f in doc["features"]] == ["S02"]
    mixed = "2024-01-01T00:00:00/2024-01-02T00:00:00Z"
    assert get(client, f"/collections/stations/items?datetime={mixed}").json()["numberMatched"] == 2


@pytest.mark.parametrize(
    "url",
    [
        "/collections/stations/items?offset=99999999999999999999",
        "/collections/stations/items?bbox=0,0,1e9,1e9&bbox-crs=EPSG:4548",
    ],
)
def test_out_of_range_numbers_are_400_not_500(client, stations, url):
    r = client.get(url)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid-parameter"


def test_odd_feature_ids_are_404(client, stations):
    for fid in ("%C2%B2", "1e3", "-1", "99999999999999999999"):
        r = client.get(f"/collections/stations/items/{fid}")
        assert r.status_code == 404, (fid, r.text)


@pytest.mark.parametrize(
    ("cql", "codes"),
    [
        ("kind = 'lamp' AND code < 'S06'", ["S01", "S03", "S05"]),
        (
            "code IN ('S00', 'S10') OR code LIKE 'S2%'",
            ["S00", "S10", "S20", "S21", "S22", "S23", "S24"],
        ),
        (
            f"S_INTERSECTS(geom, BBOX({HEFEI[0] - 0.0005},{HEFEI[1] - 0.0005},"
            f"{HEFEI[0] + 0.0015},{HEFEI[1] + 0.0015}))",
            ["S00", "S01"],
        ),
        ("T_BEFORE(seen, TIMESTAMP('2024-01-03T00:00:00Z'))", ["S00", "S01"]),
    ],
)
def test_cql2_text_filter_selects_the_right_features(client, stations, cql, codes):
    doc = get(client, "/collections/stations/items", params={"filter": cql, "limit": 100}).json()
    assert [f["properties"]["code"] for f in doc["features"]] == codes
    assert doc["numberMatched"] == len(codes)


def test_cql2_json_filter_and_next_links_keep_it(client, stations):
    cql = json.dumps({"op": "=", "args": [{"property": "kind"}, "bin"]})
    r = get(
        client,
        "/collections/stations/items",
        params={"filter": cql, "filter-lang": "cql2-json", "limit": 5},
    )
    doc = r.json()
    assert doc["numberMatched"] == 13
    nxt = next(link["href"] for link in doc["links"] if link["rel"] == "next")
    page2 = get(client, nxt).json()
    assert all(f["properties"]["kind"] == "bin" for f in page2["features"])


@pytest.mark.parametrize(
    ("cql", "says"),
    [
        ("colour = 'red'", "colour"),
        ("kind = ", "filter"),
        ("kind = 'x'; DROP TABLE published.stations", "filter"),
        ("pg_sleep(10) = 1", "pg_sleep"),
    ],
)
def test_bad_cql2_filters_are_400_naming_the_problem(client, stations, cql, says):
    r = client.get("/collections/stations/items", params={"filter": cql})
    assert r.status_code == 400, r.text
    assert says.lower() in r.json()["message"].lower()
    assert get(client, "/collections/stations/items").json()["numberMatched"] == N
