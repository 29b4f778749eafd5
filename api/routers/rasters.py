"""Remote sensing over HTTP: STAC catalog, raster tiles, point values, zonal statistics,
change detection. Scenes are named by id only; no parameter takes a path or a URL."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import geopandas as gpd
import psycopg
import shapely
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import (
    READ_ONLY,
    Catalog,
    cache_headers,
    catalog,
    connection,
    needs,
    principal,
    settings,
)
from grid.codes import LEVELS
from rasters import render, stac, zonal
from rasters.catalog import Scene
from rasters.collections import (
    collection_title,
    mosaic_scenes,
    readable_collections,
    readable_scene,
    scenes_of,
)
from tiles.cache import etag_of
from tiles.mvt import check_tile
from twin.auth import Principal
from twin.crs import axis_ordered_to_wgs84, parse_crs
from twin.errors import InvalidParameter, NotFound
from twin.settings import Settings

router = APIRouter(prefix="/raster", tags=["Remote sensing"])
Who = Annotated[Principal, Depends(principal)]
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]
Cfg = Annotated[Settings, Depends(settings)]
FORMATS = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}


class StyleParams(BaseModel):
    preset: str | None = Field(None, description="truecolor, falsecolor, ndvi or ndwi")
    bands: str | None = Field(None, description="1 to 4 band names, e.g. nir,red,green")
    expression: str | None = Field(None, description="Band math, e.g. (nir-red)/(nir+red)")
    rescale: str | None = Field(None, description="min,max (one per band, ';' between)")
    colormap_name: str | None = Field(None, description="e.g. rdylgn, viridis (one band)")


def _style(scene: Scene, p: StyleParams) -> render.Style:
    return render.style_for(
        scene,
        preset=p.preset,
        bands=p.bands,
        expression=p.expression,
        rescale=p.rescale,
        colormap_name=p.colormap_name,
    )


def _tile_name(name: str) -> tuple[int, str]:
    y, _, fmt = name.partition(".")
    if not (y.isascii() and y.isdigit() and len(y) <= 10) or fmt not in FORMATS:
        raise NotFound(f"tile {name!r}: expected {{y}}.png, {{y}}.webp or {{y}}.jpg")
    return int(y), fmt


@dataclass(frozen=True)
class RasterTile:
    """The tile a raster tile URL names: its place in the grid and its image format."""

    z: int
    x: int
    y: int
    fmt: str


def raster_tile(z: int, x: int, tile: str, cfg: Cfg) -> RasterTile:
    """The tile of ``/{z}/{x}/{y}.png|webp|jpg``, inside the tile grid."""
    y, fmt = _tile_name(tile)
    check_tile(z, x, y, cfg.tiles.tile_max_zoom)
    return RasterTile(z, x, y, fmt)


Tile = Annotated[RasterTile, Depends(raster_tile)]
Style = Annotated[StyleParams, Query()]


async def _rendered(
    request: Request, cfg: Cfg, t: RasterTile, draw: Callable[..., bytes], what: Any, style: Any
) -> Response:
    """Draw a tile of a scene or a mosaic off the event loop, as an image with its ETag."""
    size = cfg.rasters.raster_tile_size
    data = await run_in_threadpool(draw, what, t.z, t.x, t.y, style, t.fmt, size)
    return _image(data, t.fmt, request)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _image(data: bytes, fmt: str, request: Request) -> Response:
    etag = etag_of(data)
    headers = {"ETag": etag, **cache_headers(request, 3600)}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=FORMATS[fmt], headers=headers)


# --- catalog (STAC) ------------------------------------------------------------------------
@router.get("/collections", summary="Raster collections (STAC)")
async def collections(request: Request, conn: Conn, who: Who) -> dict:
    rows = await readable_collections(conn, who)
    base = _base(request)
    out = [stac.collection(cid, title, await scenes_of(conn, cid), base) for cid, title in rows]
    return {"collections": out, "links": [{"rel": "self", "href": f"{base}/raster/collections"}]}


@router.get("/collections/{cid}", summary="A raster collection (STAC Collection)")
async def collection(cid: str, request: Request, conn: Conn, who: Who) -> dict:
    title = await collection_title(conn, cid, who)
    return stac.collection(cid, title, await scenes_of(conn, cid), _base(request))


@router.get("/collections/{cid}/items", summary="The scenes of a collection (STAC Items)")
async def collection_items(
    cid: str,
    request: Request,
    conn: Conn,
    who: Who,
    datetime_: Annotated[str | None, Query(alias="datetime")] = None,
) -> Response:
    await collection_title(conn, cid, who)
    base = _base(request)
    items = [stac.item(s, base) for s in await scenes_of(conn, cid, datetime_)]
    body = {
        "type": "FeatureCollection",
        "features": items,
        "numberMatched": len(items),
        "numberReturned": len(items),
    }
    return Response(json.dumps(body), media_type="application/geo+json")


@router.get("/scenes/{scene_id}", summary="A scene (STAC Item)")
async def scene_item(scene_id: str, request: Request, conn: Conn, who: Who) -> Response:
    scene = await readable_scene(conn, scene_id, who)
    return Response(json.dumps(stac.item(scene, _base(request))), media_type="application/geo+json")


@router.get("/scenes/{scene_id}/data.tif", summary="The scene's Cloud Optimized GeoTIFF")
async def scene_data(scene_id: str, conn: Conn, who: Who) -> FileResponse:
    scene = await readable_scene(conn, scene_id, who)
    return FileResponse(scene.cog_path, media_type="image/tiff", filename=f"{scene.id}.tif")


# --- tiles ---------------------------------------------------------------------------------
def _tilejson(name: str, url: str, bbox: tuple[float, ...], query: dict, cfg: Settings) -> dict:
    q = urlencode({k: v for k, v in query.items() if v is not None})
    return {
        "tilejson": "3.0.0",
        "name": name,
        "scheme": "xyz",
        "tiles": [url + ("?" + q if q else "")],
        "minzoom": 0,
        "maxzoom": cfg.tiles.tile_max_zoom,
        "bounds": list(bbox),
        "center": [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, 12],
        "tileSize": cfg.rasters.raster_tile_size,
    }


@router.get("/scenes/{scene_id}/tiles/WebMercatorQuad/tilejson.json", summary="TileJSON of a scene")
async def scene_tilejson(
    scene_id: str,
    request: Request,
    conn: Conn,
    who: Who,
    cfg: Cfg,
    p: Annotated[StyleParams, Query()],
) -> dict:
    scene = await readable_scene(conn, scene_id, who)
    _style(scene, p)  # refuse a bad style here, not on every tile
    url = f"{_base(request)}/raster/scenes/{scene.id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
    return _tilejson(scene.id, url, scene.bbox, p.model_dump(), cfg)


@router.get(
    "/scenes/{scene_id}/tiles/WebMercatorQuad/{z}/{x}/{tile}",
    summary="A raster tile of a scene ({y}.png|webp|jpg); 404 outside the scene",
    response_class=Response,
)
async def scene_tile(
    scene_id: str, t: Tile, request: Request, conn: Conn, who: Who, cfg: Cfg, p: Style
) -> Response:
    scene = await readable_scene(conn, scene_id, who)
    style = _style(scene, p)
    return await _rendered(request, cfg, t, render.tile, scene, style)


@router.get(
    "/collections/{cid}/tiles/WebMercatorQuad/tilejson.json",
    summary="TileJSON of a collection's mosaic",
)
async def mosaic_tilejson(
    cid: str,
    request: Request,
    conn: Conn,
    who: Who,
    cfg: Cfg,
    p: Annotated[StyleParams, Query()],
    datetime_: Annotated[str | None, Query(alias="datetime")] = None,
) -> dict:
    scenes = await mosaic_scenes(conn, cid, datetime_, who)
    _style(scenes[0], p)
    bbox = (
        min(s.bbox[0] for s in scenes),
        min(s.bbox[1] for s in scenes),
        max(s.bbox[2] for s in scenes),
        max(s.bbox[3] for s in scenes),
    )
    url = f"{_base(request)}/raster/collections/{cid}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
    return _tilejson(cid, url, bbox, {**p.model_dump(), "datetime": datetime_}, cfg)


@router.get(
    "/collections/{cid}/tiles/WebMercatorQuad/{z}/{x}/{tile}",
    summary="A mosaic tile: newest scene first, over a date range (datetime=a/b)",
    response_class=Response,
)
async def mosaic_tile(
    cid: str,
    t: Tile,
    request: Request,
    conn: Conn,
    who: Who,
    cfg: Cfg,
    p: Style,
    datetime_: Annotated[str | None, Query(alias="datetime")] = None,
) -> Response:
    scenes = await mosaic_scenes(conn, cid, datetime_, who)
    styles = {s.bands for s in scenes}
    if len(styles) > 1:
        raise InvalidParameter(f"the scenes of {cid} have different bands; tile one scene")
    style = _style(scenes[0], p)
    return await _rendered(request, cfg, t, render.mosaic_tile, scenes, style)


# --- point and zonal statistics --------------------------------------------------------------
def _lonlat(x: float, y: float, crs: str | None) -> tuple[float, float]:
    import math

    import numpy as np

    lon, lat = x, y
    if crs and math.isfinite(x) and math.isfinite(y):
        with np.errstate(all="ignore"):
            xy = axis_ordered_to_wgs84(np.array([[x, y]], dtype=float), parse_crs(crs))
        lon, lat = float(xy[0, 0]), float(xy[0, 1])
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidParameter(
            "the point is not a valid position: lon, lat in degrees by default, or x, y in the "
            "given crs (northing first for the Gauss-Krüger CRSs)"
        )
    return lon, lat


@router.get("/scenes/{scene_id}/point", summary="Pixel values of a scene at a point")
async def scene_point(
    scene_id: str,
    conn: Conn,
    who: Who,
    lon: Annotated[float, Query(description="x in crs (lon by default)")],
    lat: Annotated[float, Query(description="y in crs (lat by default)")],
    crs: str | None = None,
    expression: str | None = None,
) -> dict:
    scene = await readable_scene(conn, scene_id, who)
    x, y = _lonlat(lon, lat, crs)
    values = await run_in_threadpool(render.point, scene, x, y, expression)
    return {"scene": scene.id, "lon": x, "lat": y, **values}


class ZonalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon")
    crs: str | None = None
    band: str | None = None
    expression: str | None = None


def _zones_of(geometry: dict, crs: str | None) -> gpd.GeoDataFrame:
    try:
        shape = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.GEOSException, ValueError, TypeError):
        raise InvalidParameter("geometry is not valid GeoJSON") from None
    if shape.geom_type not in ("Polygon", "MultiPolygon") or shape.is_empty:
        raise InvalidParameter(f"zonal statistics need a polygon, not {shape.geom_type}")
    if not shape.is_valid:
        raise InvalidParameter(f"invalid polygon: {shapely.is_valid_reason(shape)}")
    frame = gpd.GeoDataFrame({"zone": ["polygon"]}, geometry=[shape], crs="EPSG:4326")
    if crs:
        ref = parse_crs(crs)
        if ref.kind == "gcj02":
            raise InvalidParameter("send the polygon in CRS84 or an EPSG CRS, not gcj02")
        frame = frame.set_crs(f"EPSG:{ref.srid}", allow_override=True)
    return frame


@router.post(
    "/scenes/{scene_id}/zonal",
    summary="Zonal statistics of a posted polygon",
    openapi_extra=READ_ONLY,
)
async def zonal_polygon(scene_id: str, body: ZonalRequest, conn: Conn, who: Who) -> dict:
    scene = await readable_scene(conn, scene_id, who)
    zones = _zones_of(body.geometry, body.crs)
    rows = await run_in_threadpool(
        zonal.zonal_stats, scene, zones, "zone", body.band, body.expression
    )
    return {"scene": scene.id, **rows[0]}


@router.get(
    "/scenes/{scene_id}/zonal",
    summary="Zonal statistics per grid cell: JSON, CSV or choropleth GeoJSON",
)
async def zonal_grid(
    scene_id: str,
    conn: Conn,
    who: Who,
    cfg: Cfg,
    level: Annotated[str, Query(description="district, street, community or unit")] = "unit",
    band: str | None = None,
    expression: str | None = None,
    f: Annotated[str, Query(description="json, csv or geojson")] = "json",
) -> Response:
    if level not in LEVELS:
        raise InvalidParameter(f"level {level!r}: one of {', '.join(LEVELS)}")
    if f not in ("json", "csv", "geojson"):
        raise InvalidParameter("f is json, csv or geojson")
    scene = await readable_scene(conn, scene_id, who)
    zones = await zonal.grid_zones(conn, scene, level, cfg.rasters.raster_max_zonal_cells)
    stats = await run_in_threadpool(zonal.zonal_stats, scene, zones, "code", band, expression)
    if f == "csv":
        import pandas as pd

        buf = io.StringIO()
        pd.DataFrame(stats).to_csv(buf, index=False)
        return Response(buf.getvalue(), media_type="text/csv")
    if f == "geojson":
        by_code = {s["code"]: s for s in stats}
        features = [
            {
                "type": "Feature",
                "id": code,
                "geometry": json.loads(shapely.to_geojson(geom)),
                "properties": {"code": code, "name": name, **by_code.get(code, {})},
            }
            for code, name, geom in zip(zones.code, zones.name, zones.geometry, strict=True)
        ]
        return Response(
            json.dumps({"type": "FeatureCollection", "features": features}),
            media_type="application/geo+json",
        )
    return Response(
        json.dumps({"scene": scene.id, "level": level, "cells": stats}),
        media_type="application/json",
    )


# --- change detection ------------------------------------------------------------------------
class ChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    before: str = Field(description="Scene id of the earlier date")
    after: str = Field(description="Scene id of the later date")
    name: str | None = Field(None, description="Change set name (default before__after)")


@router.post(
    "/changes",
    summary="Detect changes between two scenes into the raster_changes layer",
    dependencies=[Depends(needs("editor"))],
)
async def detect(body: ChangeRequest, request: Request, conn: Conn, who: Who) -> dict:
    from rasters.changes import detect_changes

    for scene_id in (body.before, body.after):
        await readable_scene(conn, scene_id, who)
    url = request.app.state.database_url
    summary = await run_in_threadpool(detect_changes, url, who, body.before, body.after, body.name)
    cat: Catalog = request.app.state.catalog
    cat.expire()  # the raster_changes collection may be new
    await cat.invalidate("raster_changes")
    return summary


@router.get(
    "/changes/{name}/grid",
    summary="Changes per grid cell: new construction candidates and vegetation loss",
)
async def changes_by_grid(
    name: str,
    request: Request,
    conn: Conn,
    who: Who,
    level: Annotated[str, Query(description="district, street, community or unit")] = "unit",
    every_cell: Annotated[bool, Query(alias="all", description="Cells without change too")] = False,
) -> dict:
    from rasters.changes import grid_summary

    (await catalog(request)).layer("raster_changes", who)  # unreadable: as unknown as missing
    cells = await grid_summary(conn, name, level, every_cell)
    return {"change_set": name, "level": level, "cells": cells}
