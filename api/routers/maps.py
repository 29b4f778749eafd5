"""One-map views: the maps, their composite vector tiles, TileJSON and MapLibre styles."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path, Request, Response

from api.deps import Catalog, access_level, catalog, connection, principal, settings
from api.routers.tiles import MVT, TileRow, cached_tile, check_tms, tile_row
from rasters.collections import newest_mosaic
from tiles.cache import TileKey
from tiles.composite import MapTiles
from tiles.maps import get_map
from tiles.mvt import TMS_ID, check_tile
from tiles.style import map_bounds, map_style, map_tilejson
from twin.auth import Principal
from twin.settings import Settings

router = APIRouter(prefix="/maps", tags=["One-map views"])

MapId = Annotated[str, Path(alias="mapId", description="e.g. city-management")]
Cat = Annotated[Catalog, Depends(catalog)]
Cfg = Annotated[Settings, Depends(settings)]
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _summary(cat: Catalog, map_id: str, base: str, who: Principal) -> dict[str, Any]:
    m = get_map(cat.maps, map_id)
    error = cat.map_errors.get(map_id)
    view = None if error else cat.map(map_id, who)
    shown = {p.spec.id for p in view.parts} | set(view.missing) if view else set()
    doc: dict[str, Any] = {
        "id": m.id,
        "title": m.title,
        "description": m.description,
        "layers": [
            {
                "id": layer.id,
                "title": layer.title or layer.id,
                "collection": layer.collection,
                "raster": layer.raster.model_dump() if layer.raster else None,
                "minzoom": layer.minzoom,
                "maxzoom": layer.maxzoom,
                "aggregate_below": layer.aggregate_below,
            }
            for layer in m.layers
            if layer.raster is not None or layer.id in shown or error
        ],
        "links": [
            {"rel": "self", "href": f"{base}/maps/{m.id}", "type": "application/json"},
            {
                "rel": "stylesheet",
                "href": f"{base}/maps/{m.id}/style.json",
                "type": "application/vnd.mapbox.style+json",
            },
            {
                "rel": "tilejson",
                "href": f"{base}/maps/{m.id}/tiles/{TMS_ID}/tilejson.json",
                "type": "application/json",
            },
            {
                "rel": "item",
                "href": f"{base}/maps/{m.id}/tiles/{TMS_ID}/{{z}}/{{x}}/{{y}}",
                "type": MVT,
                "templated": True,
            },
        ],
    }
    if view is None:
        doc["error"] = error
    else:
        doc["missing"] = view.missing
        doc["bounds"] = map_bounds(view)
    return doc


@router.get("", summary="The thematic maps (一张图 views)")
async def list_maps(request: Request, cat: Cat) -> dict:
    base, who = _base(request), principal(request)
    return {"maps": [_summary(cat, map_id, base, who) for map_id in sorted(cat.maps)]}


@router.get("/{mapId}", summary="A map: its layers and links")
async def get_map_doc(request: Request, map_id: MapId, cat: Cat) -> dict:
    return _summary(cat, map_id, _base(request), principal(request))


async def _raster_sources(
    conn: psycopg.AsyncConnection, tiles: MapTiles, base: str, cfg: Settings, who: Principal
) -> dict[str, dict[str, Any]]:
    """The raster source of each imagery layer: its collection's mosaic (the newest collection
    the caller may read when the map names none), over the scenes' extent."""
    out: dict[str, dict[str, Any]] = {}
    for spec in tiles.map.layers:
        if spec.raster is None:
            continue
        mosaic = await newest_mosaic(conn, spec.raster.collection, who)
        if mosaic is None:
            continue
        cid, bbox = mosaic
        url = f"{base}/raster/collections/{cid}/tiles/{TMS_ID}/{{z}}/{{x}}/{{y}}.png"
        out[spec.id] = {
            "type": "raster",
            "tiles": [f"{url}?preset={spec.raster.preset}"],
            "tileSize": cfg.rasters.raster_tile_size,
            "bounds": bbox,
            "maxzoom": 18,
            "attribution": f"imagery: {cid}",
        }
    return out


@router.get(
    "/{mapId}/style.json",
    summary="The map's MapLibre style (spec v8; no glyphs or sprites, works offline)",
)
async def style(request: Request, map_id: MapId, cat: Cat, cfg: Cfg, conn: Conn) -> dict:
    who = principal(request)
    tiles = cat.map(map_id, who)
    base = _base(request)
    rasters = await _raster_sources(conn, tiles, base, cfg, who)
    return map_style(tiles, base, cfg.tiles.tile_max_zoom, rasters)


@router.get(
    "/{mapId}/tiles/{tileMatrixSetId}/tilejson.json",
    summary="TileJSON 3.0 of the map's composite vector tiles",
)
async def tilejson(
    request: Request,
    map_id: MapId,
    tms: Annotated[str, Path(alias="tileMatrixSetId")],
    cat: Cat,
    cfg: Cfg,
) -> dict:
    check_tms(tms)
    return map_tilejson(
        cat.map(map_id, principal(request)), _base(request), cfg.tiles.tile_max_zoom
    )


@router.get(
    "/{mapId}/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
    summary="A composite vector tile (MVT): every layer of the map, with its zoom rules",
    response_class=Response,
    responses={200: {"content": {MVT: {}}}, 204: {"description": "Empty tile"}},
)
async def map_tile(
    request: Request,
    map_id: MapId,
    tms: Annotated[str, Path(alias="tileMatrixSetId")],
    z: int,
    x: int,
    row: TileRow,
    cat: Cat,
    cfg: Cfg,
) -> Response:
    y = tile_row(row)
    check_tms(tms)
    tiles = cat.map(map_id, principal(request))
    check_tile(z, x, y, cfg.tiles.tile_max_zoom)
    key = TileKey(access_level(request), f"map:{map_id}", z, x, y, tiles.data_version)

    async def render() -> bytes:
        async with request.app.state.pool.connection() as conn:
            return await tiles.render(conn, z, x, y, cfg.tiles.tile_extent)

    return await cached_tile(request, cat, key, tiles.collections_at(z), render, cfg)
