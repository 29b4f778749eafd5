"""What one request may ask: body size (413), bbox area and page size (422), batch sizes, the
statement timeout (504) and a pool with no free connection (503). Each refusal names the limit,
its value and the setting that changes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import psycopg
import pytest
from conftest import app_client, fresh_database
from fastapi.testclient import TestClient
from psycopg import sql
from shapely.geometry import Point

from api.limits import BodyLimit, BodySizeLimit, check_batch
from layers.features import bbox_area_km2
from layers.importer import import_file
from layers.registry import register_view
from twin import db
from twin.crs import parse_crs
from twin.errors import LimitExceeded, ServerBusy
from twin.settings import (
    ApiSettings,
    AuthSettings,
    DatabaseSettings,
    LimitSettings,
    Settings,
    TileSettings,
)

LUAN = (116.52, 31.76)
STATEMENT_TIMEOUT_MS = 300
MANY_POINTS = """
    CREATE OR REPLACE VIEW twin.many_points AS
    SELECT g::bigint AS fid,
           ST_SetSRID(ST_MakePoint(116.5 + mod(g, 1000) * 1e-5, 31.7 + mod(g / 1000, 1000) * 1e-5),
                      4326) AS geom
    FROM generate_series(1, {n}) AS g
"""


def settings_for(url: str) -> Settings:
    return Settings(
        db=DatabaseSettings(
            database_url=url,
            data_dir=Path(".twin-unused"),
            statement_timeout_ms=STATEMENT_TIMEOUT_MS,
            pool_min_size=1,
            pool_max_size=1,  # one connection: the exhaustion test holds it
        ),
        api=ApiSettings(items_max_limit=1000),
        tiles=TileSettings(tile_cache="off"),
        auth=AuthSettings(rate_limit_per_minute=0, rate_limit_anonymous_per_minute=0),
        limits=LimitSettings(max_body_mb=0.01, max_bulk_body_mb=0.05, pool_timeout_s=1),
    )


@pytest.fixture(scope="module")
def url(server_url: str, tmp_path_factory) -> Iterator[str]:
    """A database of this module: a small point layer, and a layer whose rows are computed
    (30 million generated points: any page of it takes seconds)."""
    with fresh_database(server_url) as url:
        folder = tmp_path_factory.mktemp("limits")
        frame = gpd.GeoDataFrame(
            {"code": [f"P{i}" for i in range(20)]},
            geometry=[Point(LUAN[0] + i * 1e-3, LUAN[1] + i * 1e-3) for i in range(20)],
            crs=4326,
        )
        frame.to_file(folder / "poles.gpkg", engine="pyogrio")
        with psycopg.connect(url) as conn:
            import_file(conn, folder / "poles.gpkg", layer_name="poles")
            # Registered while small (registration counts the rows), then made large.
            conn.execute(sql.SQL(MANY_POINTS).format(n=10))
            register_view(conn, "many_points", "Many points", "many_points", "Point", [], "")
            conn.execute(sql.SQL(MANY_POINTS).format(n=30_000_000))
            conn.commit()
        yield url


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[TestClient]:
    with app_client(settings_for(url)) as c:
        yield c


def refusal(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    return body["message"]


# --- body size ---------------------------------------------------------------------------------
def polygon_body(padding: int) -> dict:
    ring = [[116.52, 31.76], [116.53, 31.76], [116.53, 31.77], [116.52, 31.76]]
    return {"geometry": {"type": "Polygon", "coordinates": [ring]}, "note": "x" * padding}


def test_a_body_declared_over_the_limit_is_413_naming_the_limit(client):
    message = refusal(
        client.post("/query/within", json=polygon_body(20_000)), 413, "payload-too-large"
    )
    assert "0.01 MiB (10,485 bytes, TWIN_MAX_BODY_MB)" in message
    assert "declares" in message


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read():
    """The app is never called and the body never read."""

    async def app(scope, receive, send):  # pragma: no cover - must not run
        raise AssertionError("the app was called")

    async def receive():  # pragma: no cover - must not run
        raise AssertionError("the body was read")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    limit = BodySizeLimit(app, general=BodyLimit(1.0, "TWIN_MAX_BODY_MB"), bulk=BodyLimit(2.0, "X"))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/query/within",
        "headers": [(b"content-length", str(5 << 20).encode())],
    }
    asyncio.run(limit(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413


def chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    """A body sent chunked (no Content-Length): the server only learns its size by reading."""
    yield b'{"geometry": {"type": "Point", "coordinates": [116.5, 31.7]}, "note": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_413_while_it_is_read(client):
    r = client.post(
        "/query/within", content=chunks(30_000), headers={"Content-Type": "application/json"}
    )
    message = refusal(r, 413, "payload-too-large")
    assert "TWIN_MAX_BODY_MB" in message and "declares" not in message


def test_a_chunked_body_under_the_limit_gets_through(client):
    r = client.post(
        "/query/within", content=chunks(2_000), headers={"Content-Type": "application/json"}
    )
    assert r.status_code not in (413, 500), r.text  # judged on its content, not its size


def test_bulk_routes_take_bodies_up_to_their_own_limit(client):
    csv = b"lon,lat\n" + b"116.52,31.76\n" * 2_000  # 26 kB: over the general limit
    r = client.post("/grid/locate", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    r = client.post(
        "/grid/locate", content=csv * 3, headers={"Content-Type": "text/csv"}
    )  # 78 kB: over the bulk limit
    message = refusal(r, 413, "payload-too-large")
    assert "0.05 MiB" in message and "TWIN_MAX_BULK_BODY_MB" in message
    big = csv * 3
    chunked = (big[i : i + 4096] for i in range(0, len(big), 4096))
    r = client.post("/grid/locate", content=chunked, headers={"Content-Type": "text/csv"})
    assert "TWIN_MAX_BULK_BODY_MB" in refusal(r, 413, "payload-too-large")


# --- bbox area and page size ------------------------------------------------------------------
def test_a_bbox_over_the_area_limit_is_422_naming_the_limit(client):
    r = client.get("/collections/poles/items?bbox=116,31,118,33")
    message = refusal(r, 422, "limit-exceeded")
    assert "10,000 km²" in message and "TWIN_ITEMS_MAX_BBOX_KM2" in message
    assert "41,94" in message  # the area asked for: 222 km x 189 km


def test_a_projected_bbox_is_measured_on_the_ground(client):
    box = "3500000,400000,3700000,600000"  # 200 km x 200 km in EPSG:4548, northing first
    r = client.get(f"/collections/poles/items?bbox={box}&bbox-crs=EPSG:4548")
    assert "TWIN_ITEMS_MAX_BBOX_KM2" in refusal(r, 422, "limit-exceeded")
    r = client.get("/collections/poles/items?bbox=3510000,510000,3530000,530000&bbox-crs=EPSG:4548")
    assert r.status_code == 200, r.text


def test_a_bbox_under_the_limit_is_answered(client):
    r = client.get("/collections/poles/items?bbox=116.5,31.7,116.6,31.8")
    assert r.status_code == 200, r.text
    assert r.json()["numberMatched"] == 20


@pytest.mark.parametrize(
    ("bbox", "crs", "km2"),
    [
        ((116.4, 31.7, 116.6, 31.8), "CRS84", 210.3),
        ((-180, -90, 180, 90), "CRS84", 510_065_622),
        ((500_000, 3_500_000, 510_000, 3_510_000), "EPSG:4548", 100.0),
        ((12_950_000, 3_720_000, 12_960_000, 3_730_000), "EPSG:3857", 72.2),  # not 100
    ],
)
def test_bbox_area_is_on_the_ellipsoid(bbox, crs, km2):
    assert bbox_area_km2(bbox, parse_crs(crs)) == pytest.approx(km2, rel=2e-3)


def test_a_page_over_the_cap_is_422_naming_the_cap(client):
    message = refusal(client.get("/collections/poles/items?limit=1001"), 422, "limit-exceeded")
    assert "cap of 1000" in message and "TWIN_ITEMS_MAX_LIMIT" in message
    assert client.get("/collections/poles/items?limit=1000").status_code == 200


# --- batch sizes --------------------------------------------------------------------------------
def test_a_batch_over_its_limit_names_the_limit():
    check_batch(10, 10, "points", "TWIN_LOCATE_MAX_POINTS")
    with pytest.raises(LimitExceeded, match=r"11 points, more than the limit of 10 .*TWIN_LOC"):
        check_batch(11, 10, "points", "TWIN_LOCATE_MAX_POINTS")


def test_locate_refuses_more_points_than_the_limit(url):
    settings = settings_for(url)
    settings.grid.locate_max_points = 100
    with app_client(settings) as c:
        csv = b"lon,lat\n" + b"116.52,31.76\n" * 101
        r = c.post("/grid/locate", content=csv, headers={"Content-Type": "text/csv"})
        message = refusal(r, 422, "limit-exceeded")
        assert "101 points" in message and "100" in message and "TWIN_LOCATE_MAX_POINTS" in message


# --- the database's limits --------------------------------------------------------------------
def test_a_statement_over_the_timeout_is_504_naming_the_timeout(client):
    started = time.monotonic()
    r = client.get("/collections/many_points/items?limit=1")
    message = refusal(r, 504, "statement-timeout")
    assert f"statement timeout of {STATEMENT_TIMEOUT_MS} ms" in message
    assert "TWIN_STATEMENT_TIMEOUT_MS" in message
    assert time.monotonic() - started < 5
    assert client.get("/collections/poles/items").status_code == 200  # the pool is fine after


def test_no_free_connection_is_503_busy_naming_the_wait(client):
    pool = client.app.state.pool
    client.get("/collections/poles/items")  # the catalog is loaded: only the items wait
    held = client.portal.call(pool.getconn)  # the pool's only connection
    try:
        r = client.get("/collections/poles/items")
    finally:
        client.portal.call(pool.putconn, held)
    message = refusal(r, 503, "busy")
    assert f"within {pool.timeout:g} s (TWIN_POOL_TIMEOUT_S" in message
    assert "at most 1, TWIN_POOL_MAX_SIZE" in message
    assert r.headers["Retry-After"] == "2"
    assert client.get("/collections/poles/items").status_code == 200


def test_the_pool_waits_as_long_as_the_setting_says(url):
    async def scenario() -> None:
        pool = db.make_pool(
            url,
            DatabaseSettings(pool_min_size=1, pool_max_size=1),
            LimitSettings(pool_timeout_s=0.5),
        )
        await pool.open(wait=True)
        try:
            held = await pool.getconn()
            started = time.monotonic()
            with pytest.raises(ServerBusy, match=r"within 0.5 s"):
                await pool.getconn()
            assert 0.4 < time.monotonic() - started < 3
            await pool.putconn(held)
        finally:
            await pool.close()

    asyncio.run(scenario())
