"""The two questions planners ask: what is inside this area, and what is near this feature."""

from __future__ import annotations

import json
from typing import Any

import shapely

from query.area import buffer_area, grid_area, polygon_area
from query.plan import Plan
from query.scope import EVERYTHING, Scope
from query.summary import summarise
from twin.errors import InvalidParameter
from twin.settings import QuerySettings


def within(
    settings: QuerySettings,
    geometry: Any = None,
    grid: str | None = None,
    crs: str | None = None,
    scope: Scope = EVERYTHING,
) -> Plan[dict[str, Any]]:
    """Summary of a posted polygon, or of a grid cell of any level named by its code."""
    if (geometry is None) == (grid is None):
        raise InvalidParameter(
            "give either geometry (a GeoJSON Polygon or MultiPolygon) or grid (a grid code "
            "such as 341502001001), one of the two"
        )
    if grid is not None:
        if crs:
            raise InvalidParameter("crs applies to a posted geometry, not to a grid code")
        area = yield from grid_area(grid)
    else:
        area = polygon_area(geometry, crs, settings.query_max_area_km2)
    return (yield from summarise(area, settings, scope))


def near(
    settings: QuerySettings,
    geometry: Any,
    distance_m: float,
    crs: str | None = None,
    scope: Scope = EVERYTHING,
) -> Plan[dict[str, Any]]:
    """Summary of the buffer of any geometry, with the buffer polygon as GeoJSON (CRS84)."""
    area = buffer_area(
        geometry,
        crs,
        distance_m,
        settings.query_max_buffer_m,
        settings.query_max_area_km2,
    )
    out = yield from summarise(area, settings, scope)
    out["buffer"] = json.loads(shapely.to_geojson(shapely.set_precision(area.shape, 1e-7)))
    return out
