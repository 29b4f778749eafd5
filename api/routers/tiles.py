"""Vector tiles and TileJSON of published layers (OGC API Tiles paths)."""

from __future__ import annotations

import hashlib
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Path, Request, Response

from api.deps import Catalog, catalog, connection, settings
from tiles.mvt import TMS_ID, check_tile, tilejson
from twin.errors import NotFound
from twin.settings import Settings

router = APIRouter(tags=["Vector tiles"])

MVT = "application/vnd.mapbox-vector-tile"


def _check_tms(tms: str) -> None:
    if tms != TMS_ID:
        raise NotFound(f"unknown tile matrix set {tms!r}; only {TMS_ID} is served")


@router.get(
    "/collections/{collectionId}/tiles/{tileMatrixSetId}/tilejson.json",
    summary="TileJSON 3.0 of a layer's vector tiles",
)
async def layer_tilejson(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    tms: Annotated[str, Path(alias="tileMatrixSetId")],
    cat: Annotated[Catalog, Depends(catalog)],
    cfg: Annotated[Settings, Depends(settings)],
) -> dict:
    _check_tms(tms)
    layer = cat.layer(collection_id)
    base = str(request.base_url).rstrip("/")
    url = f"{base}/collections/{layer.name}/tiles/{TMS_ID}/{{z}}/{{x}}/{{y}}"
    return tilejson(layer, url, cfg.tiles)


@router.get(
    "/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
    summary="A vector tile (MVT) of a layer",
    response_class=Response,
    responses={200: {"content": {MVT: {}}}, 204: {"description": "Empty tile"}},
)
async def layer_tile(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    tms: Annotated[str, Path(alias="tileMatrixSetId")],
    z: int,
    x: int,
    y: int,
    cat: Annotated[Catalog, Depends(catalog)],
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    cfg: Annotated[Settings, Depends(settings)],
) -> Response:
    _check_tms(tms)
    layer = cat.layer(collection_id)
    check_tile(z, x, y, cfg.tiles.tile_max_zoom)
    data = await cat.tiles[layer.name].render(conn, z, x, y, cfg.tiles.tile_extent)
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    headers = {
        "Cache-Control": f"public, max-age={cfg.tiles.tile_cache_seconds}",
        "ETag": etag,
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if not data:
        # An empty tile: 204 tells clients there is nothing here without a body to decode.
        return Response(status_code=204, headers=headers)
    return Response(data, media_type=MVT, headers=headers)
