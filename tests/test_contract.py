"""Contract tests: schemathesis generates requests from the OpenAPI document at /api and checks
that no answer is a server error and that answers match the documented schemas and media types.

The server runs in a thread on a free loopback port against a small sample city; requests carry
an admin key, so write routes are exercised too. The number of examples per operation is bounded
(CONTRACT_EXAMPLES) to keep the suite short.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import psycopg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from sample_data import generate
from sample_data.load import load_sample_city
from tests.conftest import fresh_database, make_key, settings_for

EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "12"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(server_url, tmp_path_factory):
    with fresh_database(server_url) as url:
        folder = tmp_path_factory.mktemp("city")
        generate(folder, seed=7, scale=0.2)
        cfg = settings_for(url)
        cfg.rasters.raster_dir = tmp_path_factory.mktemp("rasters")
        with psycopg.connect(url) as conn:
            load_sample_city(conn, folder, cfg)
            conn.commit()
        from api.app import create_app

        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", make_key(url, "admin")
        server.should_exit = True
        thread.join(timeout=10)


def _document() -> dict:
    """The OpenAPI document of the application, built without a database (routes and their
    schemas do not depend on the data)."""
    from api.app import create_app

    return create_app(settings_for("postgresql://127.0.0.1:1/unused")).openapi()


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_answers_match_the_schema(case, served):
    base, token = served
    case.call_and_validate(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        timeout=60,
    )
