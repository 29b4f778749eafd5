"""Database access: resolving the URL (external or embedded), connections and the async pool."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from twin.embedded import EmbeddedPostgres
from twin.errors import DatabaseUnavailable, ServerBusy
from twin.settings import DatabaseSettings, LimitSettings

log = logging.getLogger(__name__)

APPLICATION_NAME = "citytwin"

AsyncConn = psycopg.AsyncConnection[Any]


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


# A connection attempt that keeps failing is retried with a doubling delay (1, 2, 4 s...) until
# this many seconds, then dropped; the next request starts a fresh attempt at once. Kept short so
# that, once the database is back, no request waits behind a retry scheduled far ahead.
RECONNECT_S = 5.0
# How long the verdict of one probe ("is the database there?") is trusted.
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 3

UNAVAILABLE = "the database is unavailable; the server reconnects on its own: try again shortly"


def make_pool(
    url: str, settings: DatabaseSettings, limits: LimitSettings | None = None
) -> ServicePool:
    """The service's async pool; each new connection gets the session settings.

    ``limits`` (how long a request waits for a connection) are read from the environment
    when not given.
    """
    return ServicePool(url, settings, limits if limits is not None else LimitSettings())


def _configure_with(statement_timeout_ms: int) -> Callable[[AsyncConn], Awaitable[None]]:
    timeout = int(statement_timeout_ms)

    async def configure(conn: AsyncConn) -> None:
        # SET cannot take bind parameters; the value is an int from settings.
        await conn.execute(f"SET statement_timeout = {timeout}")
        await conn.execute("SET search_path = twin, public")
        # Timestamps leave the database in UTC whatever the server's own setting.
        await conn.execute("SET TimeZone = 'UTC'")
        # Requests are short and many run at once: parallel workers for one tile statement
        # cost more to start than they save (EXPLAIN of a z15 tile: 43 ms with 2 workers,
        # 9 ms without) and take cores from the other requests.
        await conn.execute("SET max_parallel_workers_per_gather = 0")
        await conn.commit()

    return configure


class ServicePool(AsyncConnectionPool[AsyncConn]):
    """The pool of the web service, made to outlive database restarts.

    Every connection is checked before it is lent (a restart leaves the idle ones dead); the
    first dead one found has the whole pool checked in the background, and lost connections are
    replaced by the pool's own reconnection. A request that cannot get a connection learns why:
    ``DatabaseUnavailable`` when a probe cannot connect (and, while it stays down, at once
    instead of after the wait), ``ServerBusy`` when every connection is in use.
    """

    def __init__(self, url: str, settings: DatabaseSettings, limits: LimitSettings) -> None:
        self.url = url
        self.max_connections = settings.pool_max_size
        self._down = False
        self._probed_at = -PROBE_EVERY_S
        self._probe_lock = asyncio.Lock()
        self._sweep: asyncio.Task[None] | None = None
        super().__init__(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            kwargs={
                "application_name": APPLICATION_NAME,
                "autocommit": True,
                "connect_timeout": 10,
                # A peer that vanished without closing (a host down, a cut network) is noticed
                # within about a minute instead of the kernel's two hours.
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
            configure=_configure_with(settings.statement_timeout_ms),
            check=self._check_lent,
            open=False,
            timeout=limits.pool_timeout_s,
            reconnect_timeout=RECONNECT_S,
        )

    async def getconn(self, timeout: float | None = None) -> AsyncConn:
        if self._down and not await self.reachable():
            raise DatabaseUnavailable(UNAVAILABLE)
        try:
            conn = await super().getconn(timeout)
        except PoolTimeout:
            if not await self.reachable():
                raise DatabaseUnavailable(UNAVAILABLE) from None
            waited = self.timeout if timeout is None else timeout
            raise ServerBusy(
                f"every database connection is busy: none came free within {waited:g} s "
                f"(TWIN_POOL_TIMEOUT_S; the pool holds at most {self.max_connections}, "
                "TWIN_POOL_MAX_SIZE); try again shortly"
            ) from None
        self._down = False
        return conn

    async def reachable(self) -> bool:
        """Whether a new connection can be made now; one probe a second at most, shared."""
        async with self._probe_lock:
            if time.monotonic() - self._probed_at < PROBE_EVERY_S:
                return not self._down
            try:
                probe = await psycopg.AsyncConnection.connect(
                    self.url, application_name=APPLICATION_NAME, connect_timeout=PROBE_TIMEOUT_S
                )
            except psycopg.OperationalError as exc:
                if not self._down:
                    log.error("the database is unreachable: %s", exc)
                self._down = True
            else:
                await probe.close()
                if self._down:
                    log.warning("the database is reachable again")
                self._down = False
            self._probed_at = time.monotonic()
            return not self._down

    async def _check_lent(self, conn: AsyncConn) -> None:
        try:
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.Error:
            # One dead connection: likely all the idle ones died with it (a restart).
            if self._sweep is None or self._sweep.done():
                self._sweep = asyncio.create_task(self._drop_dead())
            raise

    async def _drop_dead(self) -> None:
        """Check every idle connection now, replacing the dead ones."""
        try:
            await self.check()
        except psycopg.Error as exc:  # the pool closing meanwhile
            log.info("pool check stopped: %s", exc)
