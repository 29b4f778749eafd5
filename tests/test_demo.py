"""The demo path end to end: generate a small sample city, import its folder, serve it."""

from __future__ import annotations

import json
import math

import mapbox_vector_tile
import psycopg
import pytest
from conftest import app_client, fresh_database, settings_for

from sample_data import generate
from sample_data.load import load_sample_city

EXPECTED = {
    "boundary",
    "streets",
    "blocks",
    "buildings",
    "grid_district",
    "grid_street",
    "grid_community",
    "grid_unit",
    "components",
    "water_pipes",
    "water_nodes",
    "sewer_pipes",
    "sewer_nodes",
    "storm_pipes",
    "storm_nodes",
    "gas_pipes",
    "gas_nodes",
    "changes_truth",
}


# The demo's counts are checked against its manifest: it gets a database of its own.
@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def client(pg_url):
    with app_client(settings_for(pg_url)) as c:
        yield c


@pytest.fixture(scope="module")
def city(pg_url, tmp_path_factory, client):
    folder = tmp_path_factory.mktemp("city")
    summary = generate(folder, seed=7, scale=0.2)
    with psycopg.connect(pg_url) as conn:
        first = load_sample_city(conn, folder, settings_for(pg_url))
        again = load_sample_city(conn, folder, settings_for(pg_url))
    reports = [*first.layers, *first.grid, first.components, *first.networks]
    again = [*again.layers, *again.grid, *again.networks] + (
        [again.components] if again.components else []
    )
    client.app.state.catalog._loaded_at = 0
    return folder, summary, reports, again


def test_every_sample_file_is_published(city):
    folder, summary, reports, again = city
    names = {
        getattr(r, "layer", None) or (f"grid_{r.level}" if hasattr(r, "level") else "components")
        for r in reports
        if not hasattr(r, "network")
    }
    for r in reports:
        if hasattr(r, "network"):  # a pipe network publishes two collections
            names |= {f"{r.network}_pipes", f"{r.network}_nodes"}
            assert r.segments == summary[f"{r.network}_pipes.gpkg"]
            assert r.nodes == summary[f"{r.network}_nodes.gpkg"]
    assert names == EXPECTED
    assert again == []  # a restarted demo does not import twice
    for r in reports:
        if hasattr(r, "network"):
            continue
        if hasattr(r, "layer"):
            assert r.loaded == summary[f"{r.layer}.gpkg"], r.layer
            assert not r.bad_rows
        elif not hasattr(r, "level"):
            assert r.loaded == summary["components.gpkg"] and not r.bad_rows
        else:
            assert r.cells == summary[f"grid_{r.level}.gpkg"] and not r.fatal


def test_healthz_counts_match_the_manifest(city, client):
    folder, summary, _, _ = city
    health = client.get("/healthz").json()
    manifest = json.loads((folder / "manifest.json").read_text())
    for layer in EXPECTED:
        assert health["layers"][layer] == manifest[f"{layer}.gpkg"]
    assert health["migration_level"] == health["migration_latest"]


def test_component_tile_over_the_city_decodes_with_codes(city, client):
    doc = client.get("/collections/components").json()
    minx, miny, maxx, maxy = doc["extent"]["spatial"]["bbox"][0]
    lon, lat, z = (minx + maxx) / 2, (miny + maxy) / 2, 15
    x = int((lon + 180) / 360 * 2**z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
    r = client.get(f"/collections/components/tiles/WebMercatorQuad/{z}/{x}/{y}")
    assert r.status_code == 200
    feats = mapbox_vector_tile.decode(r.content)["components"]["features"]
    assert len(feats) > 50
    codes = {f["properties"]["code"] for f in feats}
    assert all(len(c) == 16 and c.startswith("341502") for c in codes)


def test_unit_grid_items_in_cgcs2000_gauss_kruger(city, client):
    doc = client.get("/collections/grid_unit/items?limit=1&crs=EPSG:4548").json()
    geometry = doc["features"][0]["geometry"]
    assert geometry["type"] == "MultiPolygon"  # the grid tables hold multipolygons
    north, east = geometry["coordinates"][0][0][0][:2]
    assert 3_400_000 < north < 3_600_000 and 400_000 < east < 600_000
    assert len(doc["features"][0]["properties"]["code"]) == 14
