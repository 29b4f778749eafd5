"""The server outlives its database: a restart, a cut connection, a start while it is down.

Every test here runs against a cluster of its own (started in a temporary folder and stopped
at the end), never the session's shared one, since the tests stop and start it.
"""

from __future__ import annotations

import math
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import mapbox_vector_tile
import psycopg
import pytest
from conftest import app_client
from fastapi.testclient import TestClient
from psycopg import sql
from shapely.geometry import Point

from layers.importer import import_file
from layers.registry import register_view
from twin import migrate
from twin.embedded import EmbeddedPostgres
from twin.settings import AuthSettings, DatabaseSettings, LimitSettings, Settings, TileSettings

LUAN = (116.52, 31.76)
ZOOM = 15
RECOVERY_S = 20  # after the restart, requests succeed again within this
MANY_POINTS = """
    CREATE OR REPLACE VIEW twin.many_points AS
    SELECT g::bigint AS fid,
           ST_SetSRID(ST_MakePoint(116.5 + mod(g, 1000) * 1e-5, 31.7 + mod(g / 1000, 1000) * 1e-5),
                      4326) AS geom
    FROM generate_series(1, {n}) AS g
"""


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


X, Y = tile_of(*LUAN, ZOOM)
ITEMS = "/collections/poles/items?limit=5"
TILE = f"/collections/poles/tiles/WebMercatorQuad/{ZOOM}/{X}/{Y}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A cluster of this module's own, with a small point layer and a slow computed one."""
    root = Path(tempfile.mkdtemp(prefix="citytwin-faults-"))
    root.chmod(0o755)  # the unprivileged server user must reach it when tests run as root
    pg = EmbeddedPostgres(root, preferred_port=free_port())
    try:
        url = pg.start()
        folder = tmp_path_factory.mktemp("faults")
        frame = gpd.GeoDataFrame(
            {"code": [f"P{i}" for i in range(10)]},
            geometry=[Point(LUAN[0] + i * 1e-4, LUAN[1] + i * 1e-4) for i in range(10)],
            crs=4326,
        )
        frame.to_file(folder / "poles.gpkg", engine="pyogrio")
        with psycopg.connect(url) as conn:
            migrate.migrate(conn)
            import_file(conn, folder / "poles.gpkg", layer_name="poles")
            conn.execute(sql.SQL(MANY_POINTS).format(n=10))
            register_view(conn, "many_points", "Many points", "many_points", "Point", [], "")
            conn.execute(sql.SQL(MANY_POINTS).format(n=30_000_000))
            conn.commit()
        yield pg, url
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def settings_for(url: str) -> Settings:
    return Settings(
        db=DatabaseSettings(database_url=url, data_dir=Path(".twin-unused")),
        tiles=TileSettings(tile_cache="off"),  # every tile is drawn from the database
        auth=AuthSettings(rate_limit_per_minute=0, rate_limit_anonymous_per_minute=0),
        limits=LimitSettings(pool_timeout_s=2),
    )


def assert_served(client: TestClient) -> None:
    items = client.get(ITEMS)
    assert items.status_code == 200, items.text
    assert [f["properties"]["code"] for f in items.json()["features"]] == [
        f"P{i}" for i in range(5)
    ]
    tile = client.get(TILE)
    assert tile.status_code == 200, tile.text
    assert len(mapbox_vector_tile.decode(tile.content)["poles"]["features"]) == 10


def assert_unavailable(client: TestClient, path: str, within_s: float) -> None:
    started = time.monotonic()
    r = client.get(path)
    took = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "database-unavailable"
    assert r.json()["message"].startswith("the database is unavailable")
    assert r.headers["Retry-After"]
    assert took < within_s, f"{path} took {took:.1f} s to answer 503"


def wait_until_served(client: TestClient) -> float:
    """Seconds until the items answer 200 again (asserted within RECOVERY_S)."""
    started = time.monotonic()
    while True:
        r = client.get(ITEMS)
        if r.status_code == 200:
            return time.monotonic() - started
        assert r.status_code == 503, r.text
        assert time.monotonic() - started < RECOVERY_S, "the server did not recover"
        time.sleep(0.2)


def test_requests_get_503_while_the_database_is_down_and_200_once_it_is_back(cluster):
    pg, url = cluster
    with app_client(settings_for(url)) as client:
        assert_served(client)
        wait_s = client.app.state.pool.timeout
        pg.stop()
        try:
            # The first request finds the pooled connections dead and waits out the pool's
            # wait; once a probe has found the database down, the others are answered at once.
            assert_unavailable(client, ITEMS, within_s=wait_s + 5)
            for path in (TILE, ITEMS, TILE):
                assert_unavailable(client, path, within_s=2)
        finally:
            assert pg.start() == url
        print(f"served again {wait_until_served(client):.1f} s after the restart")
        assert_served(client)  # the same app: nothing restarted but the database


def terminate(url: str, state: str, after_s: float = 0.0) -> None:
    """pg_terminate_backend on the server's connections in ``state`` (active or idle)."""
    time.sleep(after_s)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'citytwin' AND state = %s AND pid <> pg_backend_pid()",
            [state],
        )


def test_a_connection_cut_in_the_middle_of_a_query_is_503_and_then_replaced(cluster):
    _, url = cluster
    with app_client(settings_for(url)) as client:
        assert_served(client)
        cut = threading.Thread(target=terminate, args=(url, "active", 1.0))
        cut.start()
        started = time.monotonic()
        r = client.get("/collections/many_points/items?limit=1")  # runs for many seconds
        cut.join()
        assert r.status_code == 503, r.text
        assert r.json()["message"].startswith("the database is unavailable")
        assert time.monotonic() - started < 10
        assert_served(client)


def test_dead_idle_connections_are_replaced_without_an_error(cluster):
    _, url = cluster
    with app_client(settings_for(url)) as client:
        assert_served(client)
        terminate(url, "idle")  # every pooled connection, as a restart would leave them
        assert_served(client)  # the check before lending finds them dead: no request fails


def test_the_server_starts_while_the_database_is_down_and_serves_once_it_is_up(cluster):
    pg, url = cluster
    pg.stop()
    try:
        # Anonymous: an API key could not be made (nor checked) with the database down.
        with app_client(settings_for(url), role=None) as client:
            wait_s = client.app.state.pool.timeout
            assert_unavailable(client, ITEMS, within_s=wait_s + 5)
            assert_unavailable(client, TILE, within_s=2)
            assert pg.start() == url
            print(f"served {wait_until_served(client):.1f} s after the database started")
            assert_served(client)
    finally:
        pg.start()
