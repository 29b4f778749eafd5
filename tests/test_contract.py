"""Contract tests: schemathesis generates requests from the OpenAPI document at /api and checks
that no answer is a server error and that answers match the documented schemas and media types.

The server runs in a thread on a free loopback port against a small sample city; requests carry
an admin key, so write routes are exercised too. The number of examples per operation is bounded
(CONTRACT_EXAMPLES) to keep the suite short.
"""

from __future__ import annotations

import os

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from sample_data import generate
from sample_data.load import load_sample_city
from tests.conftest import fresh_database, make_key, serve, settings_for

EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "12"))


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

        with serve(create_app(cfg)) as base:
            yield base, make_key(url, "admin")


def _document() -> dict:
    """The OpenAPI document of the application, built without a database (routes and their
    schemas do not depend on the data)."""
    from api.app import create_app

    return create_app(settings_for("postgresql://127.0.0.1:1/unused")).openapi()


# Readings in JSON lines: schemathesis knows no such media type; arbitrary bytes will do.
schemathesis.openapi.media_type(
    "application/x-ndjson", st.binary(max_size=300).map(lambda b: b"{" + b)
)

# The live event stream never ends by itself: it is tested on its own (tests/test_sensors.py).
schema = schemathesis.openapi.from_dict(_document()).exclude(path="/events/stream")


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
