"""Database access: resolving the URL (external or embedded), connections and the async pool."""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import AsyncConnectionPool

from twin.embedded import EmbeddedPostgres
from twin.errors import DatabaseUnavailable
from twin.settings import DatabaseSettings

log = logging.getLogger(__name__)

APPLICATION_NAME = "citytwin"


def embedded(settings: DatabaseSettings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.data_dir, preferred_port=settings.pg_port)


def database_url(settings: DatabaseSettings, *, start: bool = True) -> str:
    """The URL to use: TWIN_DATABASE_URL, or the embedded cluster (started when asked)."""
    if settings.database_url:
        return settings.database_url
    cluster = embedded(settings)
    return cluster.start() if start else cluster.url()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A synchronous connection for the command line and imports."""
    try:
        return psycopg.connect(
            url, autocommit=autocommit, application_name=APPLICATION_NAME, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        log.error("database connection failed: %s", exc)
        raise DatabaseUnavailable(
            "cannot connect to the database: check that it is running ('twin db status') "
            "or that TWIN_DATABASE_URL is right"
        ) from None


def make_pool(url: str, settings: DatabaseSettings) -> AsyncConnectionPool:
    """The service's async pool; each new connection gets the session settings."""
    timeout = int(settings.statement_timeout_ms)

    async def configure(conn: psycopg.AsyncConnection) -> None:
        # SET cannot take bind parameters; the value is an int from settings.
        await conn.execute(f"SET statement_timeout = {timeout}")
        await conn.execute("SET search_path = twin, public")
        # Timestamps leave the database in UTC whatever the server's own setting.
        await conn.execute("SET TimeZone = 'UTC'")
        await conn.commit()

    return AsyncConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        kwargs={"application_name": APPLICATION_NAME, "autocommit": True},
        configure=configure,
        open=False,
        timeout=10,
    )
