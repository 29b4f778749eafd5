"""Discrete global grids as alternate keys for unified-grid cells: H3 and the Beidou grid code.

The API uses this module. H3 comes from the `h3` package (v4 API); the Beidou grid location code
(GB/T 39409-2020) is implemented in `grid.beidou` and re-exported here. Points and polygons are
lon/lat degrees (EPSG:4326, x = longitude); h3 itself takes (lat, lng), and that flip happens only
inside this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import h3
import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Polygon

from grid.beidou import cell_polygon as beidou_polygon
from grid.beidou import decode as beidou_bounds
from grid.beidou import encode as beidou_code
from grid.beidou import encode_many as beidou_codes_many
from grid.beidou import lonlat_arrays
from grid.beidou import parent as beidou_parent
from twin.errors import InvalidParameter, LimitExceeded

__all__ = [
    "MAX_COVER_CELLS",
    "beidou_bounds",
    "beidou_code",
    "beidou_codes_many",
    "beidou_parent",
    "beidou_polygon",
    "h3_cell",
    "h3_cells_many",
    "h3_cover",
    "h3_polygon",
]

MIN_RESOLUTION: Final = 0
MAX_RESOLUTION: Final = 15
# h3_cover refuses polygons that would need more cells than this (estimated from the area).
MAX_COVER_CELLS: Final = 100_000

_GEOD: Final = Geod(ellps="WGS84")


def check_resolution(resolution: object) -> int:
    """The resolution as an int, or InvalidParameter if it is not an integer 0..15."""
    if isinstance(resolution, bool) or not isinstance(resolution, int | np.integer):
        raise InvalidParameter(f"H3 resolution must be an integer 0..15; got {resolution!r}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise InvalidParameter(f"H3 resolution must be 0..15; got {resolution}")
    return int(resolution)


def _check_lon_lat(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]) -> None:
    """InvalidParameter naming the first point that is not a finite lon/lat in range."""
    one = lon.size == 1
    for name, values, limit in (("longitude", lon, 180.0), ("latitude", lat, 90.0)):
        bad = ~np.isfinite(values) | (np.abs(values) > limit)
        if bad.any():
            i = int(np.argmax(bad))
            where = "" if one else f" at index {i}"
            raise InvalidParameter(
                f"{name}{where} must be a finite number within ±{limit:g}°; got {values[i]}"
            )


def h3_cell(lon: float, lat: float, resolution: int) -> str:
    """The H3 cell (15-character hex id) at `resolution` holding the lon/lat point."""
    for name, value in (("longitude", lon), ("latitude", lat)):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InvalidParameter(f"{name} must be a number; got {value!r}")
    return str(h3_cells_many(np.array([lon]), np.array([lat]), resolution)[0])


def h3_cells_many(
    lons: npt.ArrayLike, lats: npt.ArrayLike, resolution: int
) -> npt.NDArray[np.str_]:
    """H3 cell ids for arrays of lon/lat points; same shape as the input."""
    resolution = check_resolution(resolution)
    lon, lat = lonlat_arrays(lons, lats)
    _check_lon_lat(lon.ravel(), lat.ravel())
    # h3 takes (lat, lng).
    cells = [
        h3.latlng_to_cell(y, x, resolution)
        for x, y in zip(lon.ravel().tolist(), lat.ravel().tolist(), strict=True)
    ]
    return np.array(cells, dtype="U15").reshape(lon.shape)


def check_cell(cell: object) -> str:
    """A valid H3 cell id in canonical lower case, or InvalidParameter."""
    if not isinstance(cell, str):
        raise InvalidParameter(f"an H3 cell id must be a string; got {cell!r}")
    text = cell.strip().lower()
    try:
        valid = h3.is_valid_cell(text)
    except (ValueError, OverflowError):  # h3 parses the id as a 64-bit integer first
        valid = False
    if not valid:
        raise InvalidParameter(
            f"{cell!r} is not a valid H3 cell id (15 hexadecimal digits, e.g. '8940f8e0693ffff')"
        )
    return text


def h3_polygon(cell: str) -> Polygon:
    """The cell's boundary as a lon/lat polygon (EPSG:4326, x = longitude).

    H3 edges are great-circle arcs; the polygon joins the vertices with straight lon/lat lines,
    which differ by well under a millimetre at the resolutions used for city grids.
    """
    boundary = h3.cell_to_boundary(check_cell(cell))  # ((lat, lng), ...)
    lons = [lng for _, lng in boundary]
    lats = [lat for lat, _ in boundary]
    # Antimeridian: a cell straddling ±180° comes back with longitudes from both ends. Shift the
    # western ones by +360° so the polygon is one small ring (its longitudes then exceed 180°)
    # instead of a band across the whole world. Cells holding a pole are not handled.
    if max(lons) - min(lons) > 180.0:
        lons = [x + 360.0 if x < 0 else x for x in lons]
    return Polygon(zip(lons, lats, strict=True))


def h3_cover(
    polygon: Polygon | MultiPolygon, resolution: int, *, max_cells: int = MAX_COVER_CELLS
) -> list[str]:
    """The H3 cells whose interiors overlap a lon/lat polygon, so their union covers it; sorted.

    h3's polygon fill keeps only cells whose centre is inside, which leaves the rim uncovered
    for a small polygon (a 100 m grid cell at resolution 10 may hold no centre at all). So the
    centre cells and the cell under a point inside each part are the seeds, and neighbours are
    added while they overlap the polygon. The cells overlapping a valid polygon are connected,
    so this finds all of them. Polygons crossing the antimeridian are not supported.
    """
    resolution = check_resolution(resolution)
    parts = _check_cover_polygon(polygon)
    area = abs(_GEOD.geometry_area_perimeter(polygon)[0])
    estimate = int(area / h3.average_hexagon_area(resolution, unit="m^2"))
    if estimate > max_cells:
        raise LimitExceeded(
            f"covering this polygon at H3 resolution {resolution} needs about {estimate} cells, "
            f"more than the limit of {max_cells}; use a coarser resolution"
        )

    # geo_to_cells reads __geo_interface__, which is GeoJSON (lon, lat) order: no flip here.
    seeds = set(h3.geo_to_cells(polygon, resolution))
    for part in parts:
        point = part.representative_point()
        seeds.add(h3.latlng_to_cell(point.y, point.x, resolution))

    shapely.prepare(polygon)
    seen = set(seeds)
    found = set(_overlapping(seeds, polygon))
    frontier = seeds
    while frontier:
        candidates = {n for c in frontier for n in h3.grid_disk(c, 1)} - seen
        seen |= candidates
        frontier = _overlapping(candidates, polygon)
        found |= frontier
    return sorted(found)


def _check_cover_polygon(polygon: object) -> list[Polygon]:
    """The polygon's parts, or InvalidParameter if it is not a valid lon/lat (multi)polygon."""
    if isinstance(polygon, Polygon):
        parts = [polygon]
    elif isinstance(polygon, MultiPolygon):
        parts = list(polygon.geoms)
    else:
        raise InvalidParameter(f"an H3 cover needs a Polygon or MultiPolygon; got {polygon!r}")
    if polygon.is_empty:
        raise InvalidParameter("cannot cover an empty polygon with H3 cells")
    if not polygon.is_valid:
        raise InvalidParameter(f"polygon is not valid: {shapely.is_valid_reason(polygon)}")
    west, south, east, north = polygon.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise InvalidParameter(
            "polygon coordinates must be lon/lat degrees (EPSG:4326); these look projected: "
            f"bounds {polygon.bounds}"
        )
    return parts


def _overlapping(cells: Iterable[str], polygon: Polygon | MultiPolygon) -> set[str]:
    """The cells whose interior meets the (prepared) polygon's interior; touching is not enough."""
    ids = list(cells)
    if not ids:
        return set()
    shapes = np.array([h3_polygon(c) for c in ids], dtype=object)
    hit = shapely.intersects(polygon, shapes) & ~shapely.touches(polygon, shapes)
    return {c for c, h in zip(ids, hit, strict=True) if h}
