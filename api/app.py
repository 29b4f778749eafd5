"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES

from api import errors, http, limits
from api.deps import Catalog
from api.live import LiveHub
from api.routers import (
    admin,
    cases,
    edit,
    events,
    features,
    grid,
    landing,
    maps,
    pipelines,
    query,
    rasters,
    reports,
    sensors,
    tiles,
    viewer,
)
from api.security import Authenticator, resolve_principal
from pipelines.graph import GraphCache
from tiles.cache import make_cache
from tiles.maps import load_maps
from twin import db
from twin.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; the lifespan owns the connection pool and the layer catalog."""
    settings = settings or Settings()
    map_defs = load_maps(settings.tiles.maps_dir)  # a broken map file stops the start-up here

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = db.database_url(settings.db, start=not settings.db.database_url)
        pool = db.make_pool(url, settings.db, settings.limits)
        await pool.open(wait=False)
        app.state.pool = pool
        app.state.database_url = url  # for the few long jobs that run on their own connection
        app.state.catalog = Catalog(settings, maps=map_defs, cache=make_cache(settings.tiles))
        app.state.pipe_graphs = GraphCache()
        app.state.live = LiveHub(
            url, pool, app.state.catalog.cache, settings.sensors, graphs=app.state.pipe_graphs
        )
        app.state.live.start()
        try:
            yield
        finally:
            await app.state.live.stop()
            await pool.close()

    app = FastAPI(
        title="citytwin",
        version="0.1.0",
        description="City digital twin: OGC API Features, vector tiles and a one-map viewer",
        openapi_url="/api",
        docs_url=None,  # /api.html is served offline by the viewer router
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(resolve_principal)],  # every request: who is calling
    )
    app.state.authenticator = Authenticator(settings.auth)
    app.state.settings = settings
    errors.install(app)
    limits.install(app, settings.limits)  # innermost: its 413s get the CORS headers
    # A COG is compressed inside already, and gzip would drop the Content-Length readers need.
    tiff = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "image/tiff")
    app.add_middleware(GZipMiddleware, minimum_size=1024, exclude_content_types=tiff)
    app.add_middleware(http.ByteRanges)  # outside gzip: a range counts the identity bytes
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.api.cors_origins,
        allow_methods=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["*"],
        expose_headers=["ETag", "Content-Crs", "Content-Range", "Accept-Ranges"],
    )
    app.add_middleware(http.HeadAsGet)  # outermost: everything inside serves a plain GET
    routers = [landing, features, edit, tiles, maps, grid, pipelines, query, reports, rasters]
    routers.append(cases)
    routers += [sensors, events, admin]
    for module in (*routers, viewer):
        app.include_router(module.router)
    _document_limits(app, settings)
    return app


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """Put the configured page size and cap in the OpenAPI document.

    They are settings, unknown when the routes are declared; clients such as GDAL's OAPIF
    driver read the maximum to choose their page size.
    """
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        _document_errors(schema)
        for path, ops in schema.get("paths", {}).items():
            if not path.endswith("/items"):
                continue
            for param in ops.get("get", {}).get("parameters", []):
                if param["name"] == "limit":
                    param["schema"] = {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": settings.api.items_max_limit,
                        "default": settings.api.items_default_limit,
                    }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# Every error leaves as {"code", "message"} (api/errors.py); FastAPI's own 422 body is never sent.
ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "Stable, e.g. not-found, limit-exceeded"},
        "message": {"type": "string", "description": "What went wrong and what to fix"},
    },
}
ERROR_STATUSES = {
    "400": "Bad request: the message says which parameter and why",
    "401": "Missing or unusable credentials",
    "403": "Credentials without the grant",
    "404": "Not found (or not readable with these credentials)",
    "413": "Request body over the limit",
    "422": "Over a limit (page size, area, batch), or content that cannot be used",
    "429": "Rate limit reached; see Retry-After",
    "503": "Database unavailable or busy; try again",
    "504": "Statement timeout",
}


def _document_errors(schema: dict) -> None:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            for status, text in ERROR_STATUSES.items():
                responses[status] = {"description": text, "content": ref}
