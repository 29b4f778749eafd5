"""Vector tiles and TileJSON of published layers (OGC API Tiles paths)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Path, Request, Response

from api.deps import Catalog, access_level, cache_headers, catalog, connection, principal, settings
from tiles.cache import TileKey
from tiles.mvt import TMS_ID, check_tile, tilejson
from twin.errors import InvalidParameter, NotFound
from twin.settings import Settings

router = APIRouter(tags=["Vector tiles"])

MVT = "application/vnd.mapbox-vector-tile"
# The row of a vector tile, as Martin, tipg and GeoServer clients also write it: {y}.pbf, {y}.mvt.
_TILE_ROW = r"(-?[0-9]{1,10})(?:\.(?:pbf|mvt))?"
TileRow = Annotated[
    str,
    Path(
        alias="y",
        description="Tile row; a .pbf or .mvt suffix is accepted",
        json_schema_extra={"pattern": f"^{_TILE_ROW}$"},  # documented, checked by tile_row
    ),
]


def tile_row(y: str) -> int:
    """The row of a tile URL, with or without its .pbf/.mvt suffix."""
    match = re.fullmatch(_TILE_ROW, y)
    if match is None:
        raise InvalidParameter(
            f"tile row {y[:40]!r}: expected an integer, or one ending .pbf or .mvt"
        )
    return int(match[1])


def check_tms(tms: str) -> None:
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
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
) -> dict:
    check_tms(tms)
    layer = cat.layer(collection_id, principal(request))
    base = str(request.base_url).rstrip("/")
    url = f"{base}/collections/{layer.name}/tiles/{TMS_ID}/{{z}}/{{x}}/{{y}}"
    doc = tilejson(layer, url, cfg.tiles)
    kind = cat.kind(layer.name)
    if kind is not None:
        await kind.tile_extras(conn, layer, doc)
    return doc


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
    row: TileRow,
    cat: Annotated[Catalog, Depends(catalog)],
    cfg: Annotated[Settings, Depends(settings)],
) -> Response:
    y = tile_row(row)
    check_tms(tms)
    layer = cat.layer(collection_id, principal(request))
    check_tile(z, x, y, cfg.tiles.tile_max_zoom)
    key = TileKey(access_level(request), f"layer:{layer.name}", z, x, y, layer.data_version)
    tiles = cat.tiles[layer.name]

    async def render() -> bytes:
        async with request.app.state.pool.connection() as conn:
            return await tiles.render(conn, z, x, y, cfg.tiles.tile_extent)

    return await cached_tile(request, cat, key, [layer.name], render, cfg)


async def cached_tile(
    request: Request,
    cat: Catalog,
    key: TileKey,
    collections: list[str],
    render: Callable[[], Awaitable[bytes]],
    cfg: Settings,
) -> Response:
    """A tile from the cache, or rendered and kept; with its ETag, a 304 when the client has it,
    and a 204 when it is empty. ``X-Tile-Cache`` says hit or miss."""
    tile, hit = await cat.cached_tile(key, collections, render)
    state = "hit" if hit else "miss"
    headers = {
        **cache_headers(request, cfg.tiles.tile_cache_seconds),
        "ETag": tile.etag,
        "X-Tile-Cache": state,
    }
    if request.headers.get("if-none-match") == tile.etag:
        return Response(status_code=304, headers=headers)
    if not tile.data:
        # An empty tile: 204 tells clients there is nothing here without a body to decode.
        return Response(status_code=204, headers=headers)
    if tile.compressible and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"  # made once per kept tile, not per hit
        return Response(tile.gzipped(), media_type=MVT, headers=headers)
    return Response(tile.data, media_type=MVT, headers=headers)
