"""Editing (OGC API Features Part 4) of the components collection, its history, nearby search."""

from __future__ import annotations

import json
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response

from api.deps import connection, settings
from layers.components import edit
from twin.errors import InvalidParameter, ReadOnly
from twin.settings import Settings

router = APIRouter(tags=["Editing (OGC API Features Part 4)"])

EDITABLE = "components"
Feature = Annotated[dict[str, Any], Body(description="A GeoJSON Feature (Point)")]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="ETag read with GET")]


def _editable(collection_id: str) -> None:
    if collection_id != EDITABLE:
        raise ReadOnly(f"collection {collection_id!r} is read-only; components can be edited")


def _fid(feature_id: str) -> int:
    if not feature_id.isascii() or not feature_id.isdigit() or len(feature_id) > 18:
        raise InvalidParameter(f"{feature_id!r} is not a feature id")
    return int(feature_id)


def _done(status: int, fid: int, version: int, request: Request) -> Response:
    base = str(request.base_url).rstrip("/")
    return Response(
        status_code=status,
        headers={"ETag": f'"{version}"', "Location": f"{base}/collections/{EDITABLE}/items/{fid}"},
    )


@router.post(
    "/collections/{collectionId}/items",
    status_code=201,
    summary="Add a component (its code is generated when absent)",
)
async def create_item(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    feature: Feature,
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    cfg: Annotated[Settings, Depends(settings)],
) -> Response:
    _editable(collection_id)
    change = edit.parse_feature(feature, partial=False)
    fid, version = await edit.create(conn, change, cfg.components)
    return _done(201, fid, version, request)


@router.put("/collections/{collectionId}/items/{featureId}", summary="Replace a component")
async def replace_item(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    feature_id: Annotated[str, Path(alias="featureId")],
    feature: Feature,
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    cfg: Annotated[Settings, Depends(settings)],
    if_match: IfMatch = None,
) -> Response:
    _editable(collection_id)
    fid, version = _fid(feature_id), edit.parse_version(if_match)
    change = edit.parse_feature(feature, partial=False)
    new = await edit.update(conn, fid, change, version, cfg.components)
    return _done(204, fid, new, request)


@router.patch(
    "/collections/{collectionId}/items/{featureId}",
    summary="Change some properties or the place of a component",
)
async def patch_item(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    feature_id: Annotated[str, Path(alias="featureId")],
    feature: Feature,
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    cfg: Annotated[Settings, Depends(settings)],
    if_match: IfMatch = None,
) -> Response:
    _editable(collection_id)
    fid, version = _fid(feature_id), edit.parse_version(if_match)
    change = edit.parse_feature({"type": "Feature", **feature}, partial=True)
    new = await edit.update(conn, fid, change, version, cfg.components)
    return _done(204, fid, new, request)


@router.delete(
    "/collections/{collectionId}/items/{featureId}",
    summary="Delete a component (soft: it can be restored)",
)
async def delete_item(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    feature_id: Annotated[str, Path(alias="featureId")],
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    if_match: IfMatch = None,
) -> Response:
    _editable(collection_id)
    fid, version = _fid(feature_id), edit.parse_version(if_match)
    new = await edit.soft_delete(conn, fid, version)
    return _done(204, fid, new, request)


@router.get(
    "/collections/{collectionId}/items/{featureId}/history",
    summary="Every state a component has had",
)
async def item_history(
    collection_id: Annotated[str, Path(alias="collectionId")],
    feature_id: Annotated[str, Path(alias="featureId")],
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
) -> dict:
    _editable(collection_id)
    fid = _fid(feature_id)
    return {"id": fid, "versions": await edit.history(conn, fid)}


@router.post(
    "/collections/{collectionId}/items/{featureId}/restore",
    summary="Undelete a component, or bring back one of its prior versions",
)
async def restore_item(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    feature_id: Annotated[str, Path(alias="featureId")],
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    version: Annotated[int | None, Query(description="The version to bring back")] = None,
) -> Response:
    _editable(collection_id)
    fid = _fid(feature_id)
    new = await edit.restore(conn, fid, version)
    return _done(200, fid, new, request)


@router.get("/components/nearby", summary="Nearest components, with distances in metres")
async def nearby(
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    lat: Annotated[float, Query(ge=-90, le=90)],
    radius: Annotated[float, Query(gt=0, le=5000, description="Metres")] = 100,
    class_: Annotated[str | None, Query(alias="class", description="Class code, e.g. 0118")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Response:
    # The index finds candidates inside a box a little larger than the circle (degrees of
    # longitude shrink with latitude); exact distances on the spheroid then filter and sort.
    cur = await conn.execute(
        """
        WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g)
        SELECT c.fid, c.code, c.class_code, c.class_name, c.name, c.status, c.unit_grid,
               round(ST_Distance(c.geom::geography, p.g::geography)::numeric, 2) AS d,
               ST_AsGeoJSON(c.geom, 7)
        FROM twin.components_current c, p
        WHERE c.geom && ST_Expand(p.g, %(deg)s)
          AND (%(cls)s::text IS NULL OR c.class_code = %(cls)s)
          AND ST_DWithin(c.geom::geography, p.g::geography, %(radius)s)
        ORDER BY d, c.fid
        LIMIT %(limit)s
        """,
        {
            "lon": lon,
            "lat": lat,
            "deg": radius / 100_000 / max(0.05, _cos(lat)),
            "cls": class_,
            "radius": radius,
            "limit": limit,
        },
    )
    rows = await cur.fetchall()
    features = [
        {
            "type": "Feature",
            "id": r[0],
            "geometry": json.loads(r[8]),
            "properties": {
                "code": r[1],
                "class_code": r[2],
                "class_name": r[3],
                "name": r[4],
                "status": r[5],
                "unit_grid": r[6],
                "distance_m": float(r[7]),
            },
        }
        for r in rows
    ]
    doc = {"type": "FeatureCollection", "features": features, "numberReturned": len(features)}
    return Response(json.dumps(doc, ensure_ascii=False), media_type="application/geo+json")


def _cos(lat: float) -> float:
    import math

    return math.cos(math.radians(lat))
