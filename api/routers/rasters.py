"""Remote sensing over HTTP: STAC catalog, raster tiles, point values, zonal statistics,
change detection. Scenes are named by id only; no parameter takes a path or a URL."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import geopandas as gpd
import psycopg
import shapely
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import READ_ONLY, cache_headers, catalog, connection, needs, principal, settings
from layers.access import raster_readable
from rasters import render, stac, zonal
from rasters.catalog import (
    SCENE_COLUMNS,
    SCENE_ID,
    UNKNOWN_SCENE,
    Scene,
    get_scene,
    scene_from_row,
)
from tiles.cache import etag_of
from tiles.mvt import check_tile
from twin import audit
from twin.auth import Principal
from twin.crs import axis_ordered_to_wgs84, parse_crs
from twin.errors import InvalidParameter, LimitExceeded, NotFound
from twin.settings import Settings

router = APIRouter(prefix="/raster", tags=["Remote sensing"])
Who = Annotated[Principal, Depends(principal)]
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]
Cfg = Annotated[Settings, Depends(settings)]
FORMATS = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}
LEVELS = ("district", "street", "community", "unit")


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


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _image(data: bytes, fmt: str, request: Request) -> Response:
    etag = etag_of(data)
    headers = {"ETag": etag, **cache_headers(request, 3600)}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=FORMATS[fmt], headers=headers)


# --- catalog (STAC) ------------------------------------------------------------------------
async def _scenes(conn: Any, collection: str, interval: str | None = None) -> list[Scene]:
    query = f"SELECT {SCENE_COLUMNS} FROM twin.raster_scenes WHERE collection = %s"  # noqa: S608
    params: list[Any] = [collection]
    if interval:
        start, end = _interval(interval)
        query += " AND datetime >= %s AND datetime <= %s"
        params += [start, end]
    cur = await conn.execute(query + " ORDER BY datetime DESC, id", params)
    return [scene_from_row(r) for r in await cur.fetchall()]


def _interval(text: str) -> tuple[datetime, datetime]:
    parts = text.split("/")
    try:
        if len(parts) == 1:
            day = datetime.fromisoformat(parts[0])
            return day, day.replace(hour=23, minute=59, second=59)
        lo = datetime.fromisoformat(parts[0]) if parts[0] not in ("", "..") else datetime.min
        hi = datetime.fromisoformat(parts[1]) if parts[1] not in ("", "..") else datetime.max
    except ValueError:
        raise InvalidParameter(
            f"datetime {text!r}: use a date or an interval such as 2023-01-01/2024-12-31"
        ) from None
    return lo, hi.replace(hour=23, minute=59, second=59) if len(parts[1]) == 10 else hi


async def _collection_title(conn: Any, cid: str, who: Principal) -> str:
    """A collection the caller may read; any other is as unknown as a missing one."""
    if not SCENE_ID.fullmatch(cid):
        raise NotFound(UNKNOWN_SCENE)
    cur = await conn.execute(
        "SELECT title, read_role FROM twin.raster_collections WHERE id = %s", [cid]
    )
    row = await cur.fetchone()
    if row is None or not raster_readable(who, row[1], cid):
        raise NotFound(UNKNOWN_SCENE)
    return str(row[0])


async def _scene(conn: Any, scene_id: str, who: Principal) -> Scene:
    scene = await get_scene(conn, scene_id)
    await _collection_title(conn, scene.collection, who)
    return scene


async def _mosaic_scenes(conn: Any, cid: str, interval: str | None, who: Principal) -> list[Scene]:
    """A collection's scenes over a date range, newest first; none is a 404."""
    await _collection_title(conn, cid, who)
    scenes = await _scenes(conn, cid, interval)
    if not scenes:
        raise NotFound(f"collection {cid} has no scenes in {interval or 'any time'}")
    return scenes


@router.get("/collections", summary="Raster collections (STAC)")
async def collections(request: Request, conn: Conn, who: Who) -> dict:
    cur = await conn.execute("SELECT id, title, read_role FROM twin.raster_collections ORDER BY id")
    rows = [
        (cid, title) for cid, title, role in await cur.fetchall() if raster_readable(who, role, cid)
    ]
    base = _base(request)
    out = [stac.collection(cid, title, await _scenes(conn, cid), base) for cid, title in rows]
    return {"collections": out, "links": [{"rel": "self", "href": f"{base}/raster/collections"}]}


@router.get("/collections/{cid}", summary="A raster collection (STAC Collection)")
async def collection(cid: str, request: Request, conn: Conn, who: Who) -> dict:
    title = await _collection_title(conn, cid, who)
    return stac.collection(cid, title, await _scenes(conn, cid), _base(request))


@router.get("/collections/{cid}/items", summary="The scenes of a collection (STAC Items)")
async def collection_items(
    cid: str,
    request: Request,
    conn: Conn,
    who: Who,
    datetime_: Annotated[str | None, Query(alias="datetime")] = None,
) -> Response:
    await _collection_title(conn, cid, who)
    base = _base(request)
    items = [stac.item(s, base) for s in await _scenes(conn, cid, datetime_)]
    body = {
        "type": "FeatureCollection",
        "features": items,
        "numberMatched": len(items),
        "numberReturned": len(items),
    }
    return Response(json.dumps(body), media_type="application/geo+json")


@router.get("/scenes/{scene_id}", summary="A scene (STAC Item)")
async def scene_item(scene_id: str, request: Request, conn: Conn, who: Who) -> Response:
    scene = await _scene(conn, scene_id, who)
    return Response(json.dumps(stac.item(scene, _base(request))), media_type="application/geo+json")


@router.get("/scenes/{scene_id}/data.tif", summary="The scene's Cloud Optimized GeoTIFF")
async def scene_data(scene_id: str, conn: Conn, who: Who) -> FileResponse:
    scene = await _scene(conn, scene_id, who)
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
    scene = await _scene(conn, scene_id, who)
    _style(scene, p)  # refuse a bad style here, not on every tile
    url = f"{_base(request)}/raster/scenes/{scene.id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
    return _tilejson(scene.id, url, scene.bbox, p.model_dump(), cfg)


@router.get(
    "/scenes/{scene_id}/tiles/WebMercatorQuad/{z}/{x}/{tile}",
    summary="A raster tile of a scene ({y}.png|webp|jpg); 404 outside the scene",
    response_class=Response,
)
async def scene_tile(
    scene_id: str,
    z: int,
    x: int,
    tile: str,
    request: Request,
    conn: Conn,
    who: Who,
    cfg: Cfg,
    p: Annotated[StyleParams, Query()],
) -> Response:
    y, fmt = _tile_name(tile)
    check_tile(z, x, y, cfg.tiles.tile_max_zoom)
    scene = await _scene(conn, scene_id, who)
    style = _style(scene, p)
    data = await run_in_threadpool(
        render.tile, scene, z, x, y, style, fmt, cfg.rasters.raster_tile_size
    )
    return _image(data, fmt, request)


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
    scenes = await _mosaic_scenes(conn, cid, datetime_, who)
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
    z: int,
    x: int,
    tile: str,
    request: Request,
    conn: Conn,
    who: Who,
    cfg: Cfg,
    p: Annotated[StyleParams, Query()],
    datetime_: Annotated[str | None, Query(alias="datetime")] = None,
) -> Response:
    y, fmt = _tile_name(tile)
    check_tile(z, x, y, cfg.tiles.tile_max_zoom)
    scenes = await _mosaic_scenes(conn, cid, datetime_, who)
    styles = {s.bands for s in scenes}
    if len(styles) > 1:
        raise InvalidParameter(f"the scenes of {cid} have different bands; tile one scene")
    style = _style(scenes[0], p)
    data = await run_in_threadpool(
        render.mosaic_tile, scenes, z, x, y, style, fmt, cfg.rasters.raster_tile_size
    )
    return _image(data, fmt, request)


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
    scene = await _scene(conn, scene_id, who)
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
    scene = await _scene(conn, scene_id, who)
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
    scene = await _scene(conn, scene_id, who)
    cur = await conn.execute(
        "SELECT code, name, ST_AsBinary(geom) FROM twin.grid_cells WHERE level = %s "
        "AND valid_to IS NULL AND ST_Intersects(geom, ST_GeomFromGeoJSON(%s)) ORDER BY code",
        [level, json.dumps(scene.footprint)],
    )
    rows = await cur.fetchall()
    if not rows:
        raise NotFound(f"no {level} grid cell overlaps scene {scene.id}")
    if len(rows) > cfg.rasters.raster_max_zonal_cells:
        raise LimitExceeded(
            f"{len(rows)} {level} cells overlap the scene, more than the limit of "
            f"{cfg.rasters.raster_max_zonal_cells} (TWIN_RASTER_MAX_ZONAL_CELLS); use a "
            "coarser level"
        )
    zones = gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "name": [r[1] for r in rows]},
        geometry=shapely.from_wkb([bytes(r[2]) for r in rows]),
        crs="EPSG:4326",
    )
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
    from rasters.changes import run_change_detection
    from twin import db

    for scene_id in (body.before, body.after):
        await _scene(conn, scene_id, who)
    url = request.app.state.database_url

    def run() -> dict:
        with db.connect(url) as sync:
            summary = run_change_detection(sync, body.before, body.after, body.name)
            audit.record_sync(
                sync,
                who,
                "changes.detect",
                summary.get("change_set") or body.name,
                detail={"before": body.before, "after": body.after},
            )
            sync.commit()
            return summary

    summary = await run_in_threadpool(run)
    request.app.state.catalog._loaded_at = 0  # the raster_changes collection may be new
    await request.app.state.catalog.cache.invalidate("raster_changes")
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
