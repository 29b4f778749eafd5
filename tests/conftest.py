"""Test harness: a real PostGIS, started by the tests themselves.

With TWIN_TEST_DATABASE_URL set, tests use that server (it needs CREATEDB rights). Otherwise an
embedded cluster is created in a temporary folder, started on a free port and stopped at the
end. Either way each test session gets a fresh database, migrated once.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from components.classes import sync_classes
from twin import migrate
from twin.embedded import EmbeddedPostgres
from twin.settings import ApiSettings, AuthSettings, DatabaseSettings, Settings, TileSettings

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of a PostGIS server (database 'postgres' or the given one) we may create DBs on."""
    external = os.environ.get("TWIN_TEST_DATABASE_URL")
    if external:
        yield external
        return
    root = Path(tempfile.mkdtemp(prefix="citytwin-test-"))
    root.chmod(0o755)  # the unprivileged server user must reach it when tests run as root
    cluster = EmbeddedPostgres(root, preferred_port=55433)
    url = cluster.start()
    try:
        yield url
    finally:
        cluster.stop()


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, migrated database with the component classes; dropped afterwards."""
    name = f"twin_test_{secrets.token_hex(4)}"
    base, _, _ = server_url.rpartition("/")
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    with psycopg.connect(url) as conn:
        migrate.migrate(conn)
        sync_classes(conn)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for(url: str) -> Settings:
    return Settings(
        db=DatabaseSettings(database_url=url, data_dir=Path(".twin-unused")),
        api=ApiSettings(items_max_limit=1000),
        tiles=TileSettings(),
        # Suites send hundreds of requests a second with one key; tests of the limits set them.
        auth=AuthSettings(rate_limit_per_minute=0, rate_limit_anonymous_per_minute=0),
    )


def make_key(url: str, role: str, **options) -> str:
    """A new API key of ``role`` in the database at ``url``; the token to send."""
    from twin.auth import create_key

    with psycopg.connect(url) as conn:
        token = create_key(conn, role, name=f"test {role}", **options).token
        conn.commit()
    return token


@contextmanager
def app_client(settings: Settings, role: str | None = "admin") -> Iterator[TestClient]:
    """The application, called with an API key of ``role`` (admin unless told; None for an
    anonymous caller). Tests of access control send their own credentials."""
    from api.app import create_app

    with TestClient(create_app(settings)) as c:
        if role is not None:
            token = make_key(settings.db.database_url or "", role)
            c.headers["Authorization"] = f"Bearer {token}"
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app) -> Iterator[str]:
    """An ASGI app served by uvicorn (as in production) in a thread on a free loopback port;
    its base URL. For what an in-process client cannot show: streams, real HTTP clients."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("the test server did not start within 30 s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def http_client(base: str, database_url: str, role: str = "editor") -> Iterator[httpx.Client]:
    """An HTTP client of a served app, with a new API key of ``role``."""
    token = make_key(database_url, role)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def sample_city(tmp_path_factory) -> Path:
    """The demo's sample city (seed 42), generated once per session; suites load it into
    databases of their own with ``load_city``."""
    from sample_data import generate

    folder = tmp_path_factory.mktemp("sample-city")
    generate(folder, seed=42, scale=1.0)
    return folder


def load_city(url: str, folder: Path, raster_dir: Path) -> Settings:
    """The sample city at ``folder`` loaded into the database at ``url`` through the demo's
    own path (grid, components, pipes, imagery with its change set, plain layers)."""
    from sample_data.load import load_sample_city

    settings = settings_for(url)
    settings.rasters.raster_dir = raster_dir
    with psycopg.connect(url) as conn:
        load_sample_city(conn, folder, settings)
        conn.commit()
    return settings


@pytest.fixture(scope="session")
def pg_url(server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session (modules may take their own)."""
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url) as c:
        yield c


@pytest.fixture(scope="session")
def settings(pg_url: str) -> Settings:
    return settings_for(pg_url)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    with app_client(settings) as c:
        yield c


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path, monkeypatch):
    """Run each test in its own folder, so reports and outputs never land in the checkout."""
    monkeypatch.chdir(tmp_path)
