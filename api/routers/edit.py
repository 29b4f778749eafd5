"""Editing (OGC API Features Part 4) of components and grid cells, history, nearby search."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from psycopg.rows import dict_row

from api.deps import Catalog, catalog, connection, needs, principal, settings
from components import edit
from grid import edit as grid_edit
from layers import versioned
from layers.access import check_component_rows, check_edit
from pipelines import edit as pipe_edit
from tiles.invalidation import footprints, invalidate
from twin import audit
from twin.errors import InvalidParameter, ReadOnly
from twin.settings import Settings

router = APIRouter(tags=["Editing (OGC API Features Part 4)"])

GRID_LEVELS = {f"grid_{level}": level for level in ("district", "street", "community", "unit")}
Feature = Annotated[dict[str, Any], Body(description="A GeoJSON Feature")]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="ETag read with GET")]
CollectionId = Annotated[str, Path(alias="collectionId")]
FeatureId = Annotated[str, Path(alias="featureId")]
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]


def _kind(collection_id: str) -> str:
    """'components', a grid level or 'pipes'; other collections are read-only."""
    if collection_id == "components":
        return collection_id
    if collection_id in GRID_LEVELS:
        return GRID_LEVELS[collection_id]
    if pipe_edit.target_of(collection_id) is not None:
        return "pipes"
    raise ReadOnly(
        f"collection {collection_id!r} is read-only; components, grid cells and pipe "
        "networks (<network>_pipes, <network>_nodes) can be edited"
    )


def _pipes(collection_id: str) -> pipe_edit.Target:
    target = pipe_edit.target_of(collection_id)
    assert target is not None
    return target


def _fid(feature_id: str) -> int:
    if not feature_id.isascii() or not feature_id.isdigit() or len(feature_id) > 18:
        raise InvalidParameter(f"{feature_id!r} is not a feature id")
    return int(feature_id)


def _done(status: int, collection_id: str, fid: int, version: int, request: Request) -> Response:
    base = str(request.base_url).rstrip("/")
    return Response(
        status_code=status,
        headers={
            "ETag": f'"{version}"',
            "Location": f"{base}/collections/{collection_id}/items/{fid}",
        },
    )


@dataclass
class Edit:
    """What an edit did, filled in by the route inside ``_editing``."""

    fid: int | None
    version: int = 0


_STATE = {
    "components": "SELECT version, code, dept_code, dept_name, maint_code, maint_name "
    "FROM twin.components WHERE id = %s",
    "pipes": "SELECT version FROM twin.pipe_segments WHERE id = %s",
    "nodes": "SELECT version FROM twin.pipe_nodes WHERE id = %s",
    "grid": "SELECT version FROM twin.grid_cells WHERE id = %s",
}


async def _state(
    conn: psycopg.AsyncConnection, collection_id: str, fid: int | None
) -> dict[str, Any] | None:
    """The version (and, for components, the departments) of a feature, deleted or not."""
    if fid is None:
        return None
    kind = _kind(collection_id)
    if kind == "pipes":
        kind = _pipes(collection_id).what
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_STATE.get(kind, _STATE["grid"]), [fid])
        return await cur.fetchone()


@asynccontextmanager
async def _editing(
    request: Request,
    conn: psycopg.AsyncConnection,
    collection_id: str,
    fid: int | None,
    action: str,
) -> AsyncIterator[Edit]:
    """Around every write: the caller's grant on the layer (and the department rule for
    components, before and after), one transaction holding the change and its audit row, and
    afterwards the cached tiles the change touched dropped."""
    who = principal(request)  # an editor at least: the route's dependency checked it
    _kind(collection_id)  # read-only collections are refused before anything is read
    cat: Catalog = await catalog(request)
    check_edit(who, cat.layer(collection_id, who))
    boxes = await footprints(conn, collection_id, fid) if fid is not None else {}
    before = await _state(conn, collection_id, fid)
    if collection_id == "components":
        check_component_rows(who, before)
    done = Edit(fid)
    async with conn.transaction():
        yield done
        after = await _state(conn, collection_id, done.fid)
        if collection_id == "components":
            check_component_rows(who, after)
        await audit.record(
            conn,
            who,
            action,
            collection_id,
            feature_id=done.fid,
            before=before["version"] if before else None,
            after=after["version"] if after else None,
        )
    assert done.fid is not None
    await invalidate(cat.cache, boxes, await footprints(conn, collection_id, done.fid))


async def _update(
    conn: psycopg.AsyncConnection,
    collection_id: str,
    fid: int,
    feature: dict,
    if_match: str | None,
    cfg: Settings,
    *,
    partial: bool,
) -> int:
    kind = _kind(collection_id)
    label = {"components": "component", "pipes": "pipe network feature"}.get(kind, "grid cell")
    version = versioned.parse_version(if_match, label)
    if kind == "components":
        if partial:
            feature = {"type": "Feature", **feature}
        change = edit.parse_feature(feature, partial=partial)
        return await edit.update(conn, fid, change, version, cfg.components, partial=partial)
    if kind == "pipes":
        return await pipe_edit.update(
            conn, _pipes(collection_id), fid, feature, version, partial=partial
        )
    return await grid_edit.update(conn, kind, fid, feature, version, partial=partial)


@router.post(
    "/collections/{collectionId}/items",
    status_code=201,
    summary="Add a component (its code is generated when absent)",
    dependencies=[Depends(needs("editor"))],
)
async def create_item(
    request: Request,
    collection_id: CollectionId,
    feature: Feature,
    conn: Conn,
    cfg: Annotated[Settings, Depends(settings)],
) -> Response:
    async with _editing(request, conn, collection_id, None, "create") as done:
        if _kind(collection_id) == "pipes":
            done.fid, done.version = await pipe_edit.create(conn, _pipes(collection_id), feature)
        elif _kind(collection_id) == "components":
            change = edit.parse_feature(feature, partial=False)
            done.fid, done.version = await edit.create(conn, change, cfg.components)
        else:
            raise ReadOnly(
                "new grid cells come from `twin grid import`, whose checks keep the "
                "hierarchy whole; edit existing cells here"
            )
    assert done.fid is not None
    return _done(201, collection_id, done.fid, done.version, request)


@router.put(
    "/collections/{collectionId}/items/{featureId}",
    summary="Replace a feature",
    dependencies=[Depends(needs("editor"))],
)
async def replace_item(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    feature: Feature,
    conn: Conn,
    cfg: Annotated[Settings, Depends(settings)],
    if_match: IfMatch = None,
) -> Response:
    fid = _fid(feature_id)
    async with _editing(request, conn, collection_id, fid, "replace") as done:
        done.version = await _update(
            conn, collection_id, fid, feature, if_match, cfg, partial=False
        )
    return _done(204, collection_id, fid, done.version, request)


@router.patch(
    "/collections/{collectionId}/items/{featureId}",
    summary="Change some properties or the geometry of a feature",
    dependencies=[Depends(needs("editor"))],
)
async def patch_item(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    feature: Feature,
    conn: Conn,
    cfg: Annotated[Settings, Depends(settings)],
    if_match: IfMatch = None,
) -> Response:
    fid = _fid(feature_id)
    async with _editing(request, conn, collection_id, fid, "patch") as done:
        done.version = await _update(conn, collection_id, fid, feature, if_match, cfg, partial=True)
    return _done(204, collection_id, fid, done.version, request)


@router.delete(
    "/collections/{collectionId}/items/{featureId}",
    summary="Delete a component or retire a grid cell (both can be restored)",
    dependencies=[Depends(needs("editor"))],
)
async def delete_item(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    conn: Conn,
    if_match: IfMatch = None,
) -> Response:
    fid = _fid(feature_id)
    async with _editing(request, conn, collection_id, fid, "delete") as done:
        kind = _kind(collection_id)
        if kind == "components":
            done.version = await edit.soft_delete(conn, fid, edit.parse_version(if_match))
        elif kind == "pipes":
            version = versioned.parse_version(if_match, "pipe network feature")
            done.version = await pipe_edit.delete(conn, _pipes(collection_id), fid, version)
        else:
            done.version = await grid_edit.retire(
                conn, kind, fid, versioned.parse_version(if_match, "grid cell")
            )
    return _done(204, collection_id, fid, done.version, request)


@router.get(
    "/collections/{collectionId}/items/{featureId}/history", summary="Every state a feature has had"
)
async def item_history(
    request: Request, collection_id: CollectionId, feature_id: FeatureId, conn: Conn
) -> dict:
    kind, fid = _kind(collection_id), _fid(feature_id)
    cat: Catalog = await catalog(request)
    cat.layer(collection_id, principal(request))  # the history of what one may not read: 404
    if kind == "pipes":
        table = _pipes(collection_id).table
    else:
        table = edit.TABLE if kind == "components" else grid_edit.table(kind)
    return {"id": fid, "versions": await versioned.history(conn, table, fid)}


@router.post(
    "/collections/{collectionId}/items/{featureId}/restore",
    summary="Undelete a feature, or bring back one of its prior versions",
    dependencies=[Depends(needs("editor"))],
)
async def restore_item(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    conn: Conn,
    version: Annotated[int | None, Query(description="The version to bring back")] = None,
) -> Response:
    fid = _fid(feature_id)
    async with _editing(request, conn, collection_id, fid, "restore") as done:
        kind = _kind(collection_id)
        if kind == "components":
            done.version = await edit.restore(conn, fid, version)
        elif kind == "pipes":
            done.version = await pipe_edit.restore(conn, _pipes(collection_id), fid, version)
        else:
            done.version = await grid_edit.restore(conn, kind, fid, version)
    return _done(200, collection_id, fid, done.version, request)


@router.get(
    "/components/nearby",
    summary="Nearest components, with distances in metres",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}}},
)
async def nearby(
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    lat: Annotated[float, Query(ge=-90, le=90)],
    radius: Annotated[float, Query(gt=0, le=5000, description="Metres")] = 100,
    class_: Annotated[str | None, Query(alias="class", description="Class code, e.g. 0118")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Response:
    if class_ is not None:
        cur = await conn.execute(
            "SELECT 1 FROM twin.component_classes WHERE class_code = %s", [class_]
        )
        if await cur.fetchone() is None:
            raise InvalidParameter(f"class {class_!r} is unknown: use a class code such as 0118")
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
