"""The one table from domain exceptions to HTTP responses ``{"code", "message"}``."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from twin import errors
from twin.db import UNAVAILABLE

log = logging.getLogger(__name__)

# Seconds a client is asked to wait before retrying when the database is down or busy.
RETRY_AFTER_S = 2

STATUS: dict[type[errors.TwinError], int] = {
    errors.NotFound: 404,
    errors.TileOutOfRange: 404,
    errors.InvalidParameter: 400,
    errors.LimitExceeded: 422,
    errors.PayloadTooLarge: 413,
    errors.InvalidData: 422,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.PreconditionRequired: 428,
    errors.ReadOnly: 405,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.TooManyRequests: 429,
    errors.DatabaseUnavailable: 503,
    errors.ServerBusy: 503,
    errors.StatementTimeout: 504,
    errors.SetupError: 503,
}


def status_of(exc: errors.TwinError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def twin_response(exc: errors.TwinError) -> JSONResponse:
    """The answer to a domain error: its status, code and message, and the headers it calls
    for."""
    response = error_response(status_of(exc), exc.code, exc.message)
    if isinstance(exc, errors.Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="citytwin"'
    if isinstance(exc, errors.TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.DatabaseUnavailable | errors.ServerBusy):
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def statement_timeout_error(request: Request) -> errors.TwinError:
    """A cancelled statement, said with the timeout that cancelled it."""
    settings = getattr(request.app.state, "settings", None)
    ms = settings.db.statement_timeout_ms if settings is not None else 0
    if not ms:
        return errors.StatementTimeout("the query was cancelled before it finished; try again")
    return errors.StatementTimeout(
        f"the query ran longer than the statement timeout of {ms} ms "
        "(TWIN_STATEMENT_TIMEOUT_MS) and was cancelled; narrow the request: a smaller bbox, "
        "a lower limit or a tighter filter"
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.TwinError)
    async def twin_error(request: Request, exc: errors.TwinError) -> JSONResponse:
        return twin_response(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error_response(400, "invalid-parameter", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not-found" if exc.status_code == 404 else "http-error"
        message = "no such resource" if exc.status_code == 404 else str(exc.detail)
        if exc.status_code == 404 and (request.url.path + "/").startswith("/raster/"):
            from rasters.catalog import UNKNOWN_SCENE

            message = UNKNOWN_SCENE  # a path or URL in place of a scene id looks like any miss
        return error_response(exc.status_code, code, message)

    # QueryCanceled and PoolTimeout are OperationalErrors: each needs its own entry, or the
    # handler of their base class would answer for them.
    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def cancelled(request: Request, exc: psycopg.errors.QueryCanceled) -> JSONResponse:
        log.warning("statement cancelled on %s: %s", request.url.path, exc)
        return twin_response(statement_timeout_error(request))

    @app.exception_handler(PoolTimeout)
    async def no_connection(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.error("no database connection on %s: %s", request.url.path, exc)
        return twin_response(
            errors.ServerBusy(
                "no database connection came free in time (TWIN_POOL_TIMEOUT_S, "
                "TWIN_POOL_MAX_SIZE); try again shortly"
            )
        )

    @app.exception_handler(psycopg.OperationalError)
    async def db_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        # A connection lost in the middle of a request (a restart, a crash, a cut network):
        # the pool replaces it; this request cannot be finished.
        log.error("database unavailable on %s: %s", request.url.path, exc)
        return twin_response(errors.DatabaseUnavailable(UNAVAILABLE))

    @app.exception_handler(psycopg.Error)
    async def db_error(request: Request, exc: psycopg.Error) -> JSONResponse:
        # The detail (SQL, table names) goes to the log, never to the client.
        log.exception("database error on %s", request.url.path)
        if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
            # A layer replaced or dropped since the catalog was read: re-read it next time.
            catalog = getattr(request.app.state, "catalog", None)
            if catalog is not None:
                catalog.expire()
            return error_response(
                503, "layer-changing", "the layer is being replaced or removed; try again"
            )
        if isinstance(exc, psycopg.errors.DataError):
            return error_response(
                400, "invalid-parameter", "a value in the request is out of range for the data"
            )
        return error_response(500, "internal", "internal error; it has been logged")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, "internal", "internal error; it has been logged")
