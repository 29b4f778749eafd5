"""Zonal statistics of a scene's band or band math over polygons, with exactextract.

exactextract weighs every pixel by the fraction of it inside the polygon, which matters for
unit grids of a few hundred pixels. The band (or the expression, evaluated on the bands) is
read only over the zones' extent into an in-memory single-band raster in the scene's CRS, and
the zones are transformed to that CRS.
"""

from __future__ import annotations

import json
import math
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.errors
import shapely
import shapely.geometry
from exactextract import exact_extract
from rasterio.io import MemoryFile
from rasterio.windows import Window, from_bounds

from rasters.catalog import Scene, open_cog
from rasters.render import band_math, evaluate
from twin.errors import InvalidParameter, LimitExceeded, NotFound

_GRID_CELLS = (
    "SELECT code, name, ST_AsBinary(geom) FROM twin.grid_cells WHERE level = %s "
    "AND valid_to IS NULL AND ST_Intersects(geom, ST_GeomFromGeoJSON(%s)) ORDER BY code"
)
OPS = ["mean", "min", "max", "stdev", "count"]
MAX_PIXELS = 50_000_000


def _bands_in(expression: str, scene: Scene) -> set[str]:
    import ast

    names = {
        n.id
        for n in ast.walk(ast.parse(expression.strip(), mode="eval"))
        if isinstance(n, ast.Name)
    }
    return names & set(scene.bands)


def zone_raster(
    scene: Scene, zones: gpd.GeoDataFrame, band: str | None, expression: str | None
) -> tuple[MemoryFile, gpd.GeoDataFrame, str]:
    """The measured values over the zones' extent as a one-band float32 raster in memory."""
    if (band is None) == (expression is None):
        raise InvalidParameter("give band (e.g. nir) or expression (e.g. (nir-red)/(nir+red))")
    if band is not None and band not in scene.bands:
        raise InvalidParameter(
            f"the scene has no band {band!r}; its bands are {', '.join(scene.bands)}"
        )
    if expression is not None:
        band_math(expression, scene)
    footprint = shapely.geometry.shape(scene.footprint)
    zones = zones.copy()
    zones["geometry"] = zones.geometry.intersection(footprint)  # in lon/lat, before projecting
    zones = zones[~zones.geometry.is_empty]
    if zones.empty:
        raise NotFound(f"the zones are outside scene {scene.id}")
    with open_cog(scene.cog_path) as src:
        try:
            local = zones.to_crs(src.crs)
        except Exception:  # noqa: BLE001 - pyproj's reasons vary; the fix is the same
            raise InvalidParameter("the polygon cannot be placed in the scene's CRS") from None
        if not np.isfinite(local.total_bounds).all():
            raise InvalidParameter("the polygon cannot be placed in the scene's CRS")
        exact = from_bounds(*local.total_bounds, transform=src.transform)
        col, row = math.floor(exact.col_off), math.floor(exact.row_off)
        window = Window(
            col,
            row,
            math.ceil(exact.col_off + exact.width) - col,
            math.ceil(exact.row_off + exact.height) - row,
        )
        try:
            window = window.intersection(Window(0, 0, src.width, src.height))
        except rasterio.errors.WindowError:
            raise NotFound(f"the zones are outside scene {scene.id}") from None
        if window.width * window.height > MAX_PIXELS:
            raise LimitExceeded(
                f"the zones cover {int(window.width * window.height):,} pixels of the scene, "
                f"more than the {MAX_PIXELS:,} one request may read; use smaller zones"
            )
        used = [band] if band else sorted(_bands_in(expression or "", scene))
        data = src.read([scene.band_index(b) for b in used], window=window, masked=True).astype(
            "float32"
        )
        transform = src.window_transform(window)
        crs = src.crs
    if band:
        values = data[0]
        label = band
    else:
        arrays = {name: data[i] for i, name in enumerate(used)}
        values = np.ma.masked_invalid(evaluate(expression or "", arrays))
        label = expression or ""
    filled = np.ma.filled(values.astype("float32"), np.nan)
    mem = MemoryFile()
    with mem.open(
        driver="GTiff",
        width=filled.shape[1],
        height=filled.shape[0],
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=float("nan"),
    ) as dst:
        dst.write(filled, 1)
    return mem, local, label


def zonal_stats(
    scene: Scene, zones: gpd.GeoDataFrame, key: str, band: str | None, expression: str | None
) -> list[dict[str, Any]]:
    """One row per zone: mean, min, max, std, valid-pixel count and coverage (0..1)."""
    mem, local, label = zone_raster(scene, zones, band, expression)
    with mem, mem.open() as raster:
        pixel_area = abs(raster.transform.a * raster.transform.e)
        table = exact_extract(
            raster, local[[key, "geometry"]], OPS, include_cols=[key], output="pandas"
        )
    # coverage is measured against the whole zone, the part off the scene included
    areas = dict(zip(local[key], local.geometry.area, strict=True))
    whole = _whole_areas(zones, key, local.crs)
    areas.update({k: v for k, v in whole.items() if math.isfinite(v) and v > 0})
    out = []
    for row in table.to_dict("records"):
        possible = areas[row[key]] / pixel_area
        count = float(row["count"])
        out.append(
            {
                key: row[key],
                "measure": label,
                "mean": _num(row["mean"]),
                "min": _num(row["min"]),
                "max": _num(row["max"]),
                "std": _num(row["stdev"]),
                "valid_pixels": round(count, 3),
                "coverage": round(min(1.0, count / possible), 4) if possible else 0.0,
            }
        )
    return out


def _whole_areas(zones: gpd.GeoDataFrame, key: str, crs: Any) -> dict[Any, float]:
    try:
        projected = zones.to_crs(crs)
    except Exception:  # noqa: BLE001 - a zone that does not project keeps its clipped area
        return {}
    return dict(zip(projected[key], projected.geometry.area, strict=True))


def _num(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


async def grid_zones(conn: Any, scene: Scene, level: str, max_cells: int) -> gpd.GeoDataFrame:
    """The current grid cells of ``level`` over a scene's footprint, as zones keyed by code;
    none is a 404, more than ``max_cells`` a 413."""
    cur = await conn.execute(_GRID_CELLS, [level, json.dumps(scene.footprint)])
    rows = await cur.fetchall()
    if not rows:
        raise NotFound(f"no {level} grid cell overlaps scene {scene.id}")
    if len(rows) > max_cells:
        raise LimitExceeded(
            f"{len(rows)} {level} cells overlap the scene, more than the limit of "
            f"{max_cells} (TWIN_RASTER_MAX_ZONAL_CELLS); use a "
            "coarser level"
        )
    return gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "name": [r[1] for r in rows]},
        geometry=shapely.from_wkb([bytes(r[2]) for r in rows]),
        crs="EPSG:4326",
    )
