"""Editing (OGC API Features Part 4) of the editable kinds of collection (components, grid
cells, pipe networks: layers/kinds.py), history, nearby search."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response

from api.deps import Catalog, catalog, connection, needs, principal
from components.nearby import nearby_components
from layers import versioned
from layers.access import check_edit
from layers.kinds import CollectionKind
from tiles.invalidation import footprints
from twin import audit
from twin.errors import InvalidParameter

router = APIRouter(tags=["Editing (OGC API Features Part 4)"])

Feature = Annotated[dict[str, Any], Body(description="A GeoJSON Feature")]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="ETag read with GET")]
CollectionId = Annotated[str, Path(alias="collectionId")]
FeatureId = Annotated[str, Path(alias="featureId")]
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]
_ITEM = "/collections/{collectionId}/items/{featureId}"
_EDITOR = [Depends(needs("editor"))]  # on writes: runs before the body is read


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

    kind: CollectionKind
    fid: int | None
    version: int = 0


async def _state(
    conn: psycopg.AsyncConnection, kind: CollectionKind, fid: int | None
) -> dict[str, Any] | None:
    """The version (and, for components, the departments) of a feature, deleted or not."""
    return await kind.state(conn, fid) if fid is not None else None


@asynccontextmanager
async def _editing(
    request: Request,
    conn: psycopg.AsyncConnection,
    collection_id: str,
    fid: int | None,
    action: str,
) -> AsyncIterator[Edit]:
    """Around every write: the caller's grant on the layer (and the row rules of its kind,
    before and after), one transaction holding the change and its audit row, and afterwards
    the cached tiles the change touched dropped."""
    who = principal(request)  # an editor at least: the route's dependency checked it
    cat: Catalog = await catalog(request)
    kind = cat.editable(collection_id)  # read-only collections: refused before anything is read
    check_edit(who, cat.layer(collection_id, who))
    boxes = await footprints(conn, kind, fid) if fid is not None else {}
    before = await _state(conn, kind, fid)
    kind.check_rows(who, before)
    done = Edit(kind, fid)
    async with conn.transaction():
        yield done
        after = await _state(conn, kind, done.fid)
        kind.check_rows(who, after)
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
    await cat.invalidate_edit(boxes, await footprints(conn, kind, done.fid))


@router.post(
    "/collections/{collectionId}/items",
    status_code=201,
    summary="Add a component (its code is generated when absent)",
    dependencies=_EDITOR,
)
async def create_item(
    request: Request, collection_id: CollectionId, feature: Feature, conn: Conn
) -> Response:
    async with _editing(request, conn, collection_id, None, "create") as done:
        change = done.kind.parse(feature, partial=False)
        done.fid, done.version = await done.kind.create(conn, change)
    assert done.fid is not None
    return _done(201, collection_id, done.fid, done.version, request)


def _changing(*, partial: bool) -> Callable[..., Awaitable[Response]]:
    """The route that replaces (PUT) or patches (PATCH) a feature at the version of its ETag."""

    async def change(
        request: Request,
        collection_id: CollectionId,
        feature_id: FeatureId,
        feature: Feature,
        conn: Conn,
        if_match: IfMatch = None,
    ) -> Response:
        fid = _fid(feature_id)
        action = "patch" if partial else "replace"
        async with _editing(request, conn, collection_id, fid, action) as done:
            version = versioned.parse_version(if_match, done.kind.label)
            change = done.kind.parse(feature, partial=partial)
            done.version = await done.kind.update(conn, fid, change, version, partial=partial)
        return _done(204, collection_id, fid, done.version, request)

    return change


replace_item = router.put(
    _ITEM, summary="Replace a feature", dependencies=_EDITOR, name="replace_item"
)(_changing(partial=False))
patch_item = router.patch(
    _ITEM,
    summary="Change some properties or the geometry of a feature",
    dependencies=_EDITOR,
    name="patch_item",
)(_changing(partial=True))


@router.delete(
    _ITEM,
    summary="Delete a component or retire a grid cell (both can be restored)",
    dependencies=_EDITOR,
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
        version = versioned.parse_version(if_match, done.kind.label)
        done.version = await done.kind.delete(conn, fid, version)
    return _done(204, collection_id, fid, done.version, request)


@router.get(
    "/collections/{collectionId}/items/{featureId}/history", summary="Every state a feature has had"
)
async def item_history(
    request: Request, collection_id: CollectionId, feature_id: FeatureId, conn: Conn
) -> dict:
    cat: Catalog = await catalog(request)
    kind, fid = cat.editable(collection_id), _fid(feature_id)
    cat.layer(collection_id, principal(request))  # the history of what one may not read: 404
    return {"id": fid, "versions": await versioned.history(conn, kind.table, fid)}


@router.post(
    f"{_ITEM}/restore",
    summary="Undelete a feature, or bring back one of its prior versions",
    dependencies=_EDITOR,
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
        done.version = await done.kind.restore(conn, fid, version)
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
    doc = await nearby_components(conn, lon, lat, radius, class_, limit)
    return Response(json.dumps(doc, ensure_ascii=False), media_type="application/geo+json")
