"""Landing page, conformance and health."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import Catalog, catalog, connection, principal
from api.routers.viewer import viewer_page
from layers.health import database_versions, feature_counts
from twin import migrate

router = APIRouter(tags=["Landing"])

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/arithmetic",
]


def _wants_html(request: Request) -> bool:
    f = request.query_params.get("f")
    if f:
        return f == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept.split(",")[0]


@router.get("/", summary="Landing page (the viewer for browsers)")
async def landing(request: Request) -> Response:
    if _wants_html(request):
        return HTMLResponse(viewer_page())
    base = str(request.base_url).rstrip("/")
    doc = {
        "title": "citytwin",
        "description": "City digital twin: grid, components, pipelines and imagery as OGC APIs",
        "links": [
            {
                "href": f"{base}/",
                "rel": "self",
                "type": "application/json",
                "title": "This document",
            },
            {
                "href": f"{base}/api",
                "rel": "service-desc",
                "type": "application/vnd.oai.openapi+json;version=3.1",
                "title": "OpenAPI definition",
            },
            {
                "href": f"{base}/api.html",
                "rel": "service-doc",
                "type": "text/html",
                "title": "API documentation",
            },
            {
                "href": f"{base}/conformance",
                "rel": "conformance",
                "type": "application/json",
                "title": "Conformance classes",
            },
            {
                "href": f"{base}/collections",
                "rel": "data",
                "type": "application/json",
                "title": "Collections",
            },
            {"href": f"{base}/viewer", "rel": "alternate", "type": "text/html", "title": "Viewer"},
        ],
    }
    return Response(
        content=__import__("json").dumps(doc, ensure_ascii=False), media_type="application/json"
    )


@router.get("/conformance", summary="Conformance classes")
async def conformance() -> dict:
    return {"conformsTo": CONFORMANCE}


@router.get("/healthz", summary="PostGIS version, migration level, features per layer")
async def healthz(
    request: Request,
    cat: Annotated[Catalog, Depends(catalog)],
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
) -> dict:
    postgis, postgresql, level = await database_versions(conn)
    counts = await feature_counts(conn, cat.visible(principal(request)))
    latest = migrate.available()[-1].version
    return {
        "status": "ok",
        "postgis": postgis,
        "postgresql": postgresql,
        "migration_level": level,
        "migration_latest": latest,
        "layers": counts,
    }
