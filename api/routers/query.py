"""Spatial queries over HTTP: what is inside a polygon, a grid cell or a buffer."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import READ_ONLY, connection, query_scope, settings
from query import service
from query.plan import run_async
from twin.settings import Settings

router = APIRouter(prefix="/query", tags=["Spatial queries"])
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]
Cfg = Annotated[Settings, Depends(settings)]

CRS_HELP = (
    "CRS of the geometry (default CRS84): an EPSG code such as EPSG:4548, an OGC CRS URI or "
    "gcj02. Coordinates are x = easting (or longitude) first, as GeoJSON has them"
)


class WithinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geometry: dict[str, Any] | None = Field(None, description="GeoJSON Polygon or MultiPolygon")
    grid: str | None = Field(
        None, description="A grid code of any level instead: 341502, 341502001, 341502001001..."
    )
    crs: str | None = Field(None, description=CRS_HELP)


class BufferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geometry: dict[str, Any] = Field(description="Any GeoJSON geometry: Point, LineString, ...")
    distance_m: float = Field(description="Buffer distance in metres (more than 0, capped)")
    crs: str | None = Field(None, description=CRS_HELP)


@router.post("/within", summary="What is inside a polygon or a grid cell", openapi_extra=READ_ONLY)
async def within(body: WithinRequest, request: Request, conn: Conn, cfg: Cfg) -> dict:
    scope = await query_scope(request, conn)
    plan = service.within(cfg.query, body.geometry, body.grid, body.crs, scope)
    return await run_async(conn, plan)


@router.post(
    "/buffer",
    summary="What is within a distance of a geometry, and the buffer",
    openapi_extra=READ_ONLY,
)
async def buffer(body: BufferRequest, request: Request, conn: Conn, cfg: Cfg) -> dict:
    scope = await query_scope(request, conn)
    plan = service.near(cfg.query, body.geometry, body.distance_m, body.crs, scope)
    return await run_async(conn, plan)
