"""The area a query asks about: a posted polygon, a buffer around any geometry, or a grid cell.

Posted GeoJSON is read as GeoJSON orders coordinates: easting (or longitude) first, whatever
the CRS's own axis order. Areas and buffers are measured in metres in the CGCS2000
Gauss-Krüger zone of the area's centre, never in degrees.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from query.plan import Plan, Query
from twin.crs import CrsRef, epsg_xy, parse_crs, to_wgs84_xy, utm_or_gk_epsg
from twin.errors import InvalidParameter, LimitExceeded, NotFound

POLYGONS = ("Polygon", "MultiPolygon")
GRID_LEVELS = {6: "district", 9: "street", 12: "community", 14: "unit", 15: "unit"}
_WHERE = re.compile(r"^(?P<what>[^\[]+)\[(?P<x>[-+0-9.eE]+) (?P<y>[-+0-9.eE]+)\]$")


@dataclass
class Area:
    """A query area in lon/lat with its metric measures."""

    shape: shapely.Geometry  # EPSG:4326, lon/lat
    area_m2: float
    metric_epsg: int
    source: str  # "geometry", "buffer" or "grid"
    grid: dict[str, Any] | None = None  # the cell, when the area is one
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wkb(self) -> bytes:
        return shapely.to_wkb(self.shape)

    def describe(self) -> dict[str, Any]:
        west, south, east, north = self.shape.bounds
        out: dict[str, Any] = {
            "source": self.source,
            "area_m2": round(self.area_m2, 1),
            "bbox": [round(v, 7) for v in (west, south, east, north)],
            "metric_crs": f"EPSG:{self.metric_epsg}",
        }
        if self.grid:
            out["grid"] = self.grid
        return out | self.extra


# --- reading posted geometry ---------------------------------------------------------------
def read_geojson(geometry: Any) -> shapely.Geometry:
    """A GeoJSON geometry (or a Feature holding one) as shapely; bad input says what is wrong."""
    if isinstance(geometry, dict) and geometry.get("type") == "Feature":
        geometry = geometry.get("geometry")
    if not isinstance(geometry, dict) or "type" not in geometry:
        raise InvalidParameter(
            'geometry must be a GeoJSON geometry object such as {"type": "Polygon", '
            '"coordinates": [[[x, y], ...]]}'
        )
    try:
        shape = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.GEOSException, TypeError, ValueError):
        raise InvalidParameter(
            f"geometry is not valid GeoJSON of type {geometry.get('type')!r}: check the "
            "coordinates nesting (a Polygon is a list of rings of [x, y] positions)"
        ) from None
    if shape is None or shape.is_empty:
        raise InvalidParameter("the geometry is empty: give at least one position")
    coords = shapely.get_coordinates(shape)
    if not np.isfinite(coords).all():
        raise InvalidParameter("the geometry has coordinates that are not finite numbers")
    return shape


def validity_problem(shape: shapely.Geometry) -> str | None:
    """Why a geometry is invalid and where (in its own coordinates), or None when valid."""
    if shape.is_valid:
        return None
    reason = shapely.is_valid_reason(shape)
    match = _WHERE.match(reason)
    if not match:
        return reason
    what = match.group("what").strip().lower()
    x, y = float(match.group("x")), float(match.group("y"))
    return f"{what} at x={x:.7g}, y={y:.7g}"


def check_valid(shape: shapely.Geometry, kind: str = "polygon") -> None:
    problem = validity_problem(shape)
    if problem:
        raise InvalidParameter(
            f"the {kind} is invalid: {problem}; rings must not cross or touch themselves "
            "(redraw it, or split it into parts)"
        )


def to_lonlat(shape: shapely.Geometry, crs: str | None) -> shapely.Geometry:
    """Posted coordinates (x = east first, as GeoJSON has them) to lon/lat."""
    if crs:
        ref: CrsRef = parse_crs(crs)
        shape = shapely.transform(shape, lambda xy: to_wgs84_xy(np.asarray(xy, "float64"), ref))
    west, south, east, north = shape.bounds
    finite = np.isfinite([west, south, east, north]).all()
    if not finite or west < -180 or east > 180 or south < -90 or north > 90:
        raise InvalidParameter(
            "the coordinates are outside the lon/lat range: give the crs they are in "
            "(for example EPSG:4548), x = easting first as GeoJSON has it"
        )
    return shape


# --- metric measures -----------------------------------------------------------------------
def metric_epsg_for(shape: shapely.Geometry) -> int:
    west, _, east, _ = shape.bounds
    return utm_or_gk_epsg((west + east) / 2)


def _project(shape: shapely.Geometry, src: int, dst: int) -> shapely.Geometry:
    return shapely.transform(shape, lambda xy: epsg_xy(xy, src, dst))


def to_metric(shape: shapely.Geometry, epsg: int) -> shapely.Geometry:
    return _project(shape, 4326, epsg)


def from_metric(shape: shapely.Geometry, epsg: int) -> shapely.Geometry:
    return _project(shape, epsg, 4326)


def check_size(area_m2: float, max_km2: float, what: str) -> None:
    if area_m2 > max_km2 * 1e6:
        raise LimitExceeded(
            f"the {what} covers {area_m2 / 1e6:,.2f} km², more than the {max_km2:g} km² "
            "limit of one query (TWIN_QUERY_MAX_AREA_KM2); split it into smaller areas"
        )


def polygon_area(geometry: Any, crs: str | None, max_km2: float) -> Area:
    """A posted Polygon or MultiPolygon, checked, in lon/lat with its area in m²."""
    shape = read_geojson(geometry)
    if shape.geom_type not in POLYGONS:
        raise InvalidParameter(
            f"a within query needs a Polygon or MultiPolygon, not a {shape.geom_type}; "
            "use /query/buffer for points and lines"
        )
    check_valid(shape)
    lonlat = to_lonlat(shape, crs)
    check_valid(lonlat)  # a transform can fold a polygon that spans a CRS's edge
    epsg = metric_epsg_for(lonlat)
    area = float(to_metric(lonlat, epsg).area)
    if area <= 0:
        raise InvalidParameter("the polygon has no area: its rings are degenerate")
    check_size(area, max_km2, "polygon")
    return Area(lonlat, area, epsg, "geometry")


def buffer_area(
    geometry: Any, crs: str | None, distance_m: float, max_distance_m: float, max_km2: float
) -> Area:
    """The buffer of any geometry by ``distance_m`` metres, computed in the metric CRS."""
    if not (distance_m > 0):
        raise InvalidParameter("distance_m must be more than 0 (metres)")
    if distance_m > max_distance_m:
        raise LimitExceeded(
            f"distance_m {distance_m:g} is more than the {max_distance_m:g} m limit "
            "(TWIN_QUERY_MAX_BUFFER_M)"
        )
    shape = read_geojson(geometry)
    if shape.geom_type == "GeometryCollection":
        raise InvalidParameter(
            "a GeometryCollection cannot be buffered: send one Point, LineString, Polygon or "
            "a Multi* of them"
        )
    check_valid(shape, "geometry")
    lonlat = to_lonlat(shape, crs)
    epsg = metric_epsg_for(lonlat)
    buffered = to_metric(lonlat, epsg).buffer(distance_m, quad_segs=16)
    area = float(buffered.area)
    check_size(area, max_km2, f"buffer of {distance_m:g} m")
    out = from_metric(buffered, epsg)
    return Area(out, area, epsg, "buffer", extra={"distance_m": distance_m})


# --- grid cells ----------------------------------------------------------------------------
CELL_SQL = """
SELECT level, code, name, parent_code, area_m2, ST_AsBinary(geom)
FROM twin.grid_cells WHERE code = %(code)s AND valid_to IS NULL
"""


def check_grid_code(code: str) -> str:
    code = code.strip()
    if not code.isdigit() or len(code) not in GRID_LEVELS:
        raise InvalidParameter(
            f"grid code {code!r} is not a grid code: 6 digits (district), 9 (street), "
            "12 (community) or 14/15 (unit grid), e.g. 341502001001"
        )
    return code


def grid_area(code: str, level: str | None = None) -> Plan[Area]:
    """A current grid cell as a query area; unknown codes are a NotFound naming the level."""
    code = check_grid_code(code)
    rows = yield Query(CELL_SQL, {"code": code}, "finding the grid cell")
    if not rows or (level is not None and rows[0][0] != level):
        what = {"unit": "unit grid"}.get(level or "", level or "grid cell")
        raise NotFound(f"no current {what} with code {code}; check the code and the level")
    lvl, code, name, parent, stored_m2, wkb = rows[0]
    shape = shapely.from_wkb(bytes(wkb))
    epsg = metric_epsg_for(shape)
    cell = {"level": lvl, "code": code, "name": name, "parent_code": parent}
    area = float(to_metric(shape, epsg).area)
    return Area(shape, area, epsg, "grid", grid=cell, extra={"stored_area_m2": stored_m2})
