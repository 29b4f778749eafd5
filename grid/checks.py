"""Topology checks of grid cells, in metres: containment in the parent, sibling overlaps, gaps.

Cells are compared in the local CGCS2000 Gauss-Krüger CRS so that areas are square metres.
Each finding names the codes, the area and a lon/lat where to look.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import STRtree

from twin.crs import from_wgs84_xy, parse_crs, to_wgs84_xy, utm_or_gk_epsg


@dataclass
class Finding:
    code: str
    kind: str  # code, duplicate, parent, geometry, outside-parent, overlap, gap, repaired
    message: str
    lon: float | None = None
    lat: float | None = None
    area_m2: float | None = None
    fatal: bool = True


class Metric:
    """Projection of lon/lat geometries to the Gauss-Krüger zone of the area, and back."""

    def __init__(self, lon: float) -> None:
        self.crs = parse_crs(utm_or_gk_epsg(lon))

    def to_metres(self, geoms: np.ndarray) -> np.ndarray:
        # Densify first (about every 10 m): a straight edge in lon/lat is slightly curved in
        # the projection, so a parent's long edge and its children's shorter edges would
        # otherwise part by a sliver of a few square metres per kilometre.
        dense = shapely.segmentize(geoms, max_segment_length=1e-4)
        return shapely.transform(dense, lambda xy: from_wgs84_xy(xy, self.crs))

    def to_lonlat(self, geoms: np.ndarray) -> np.ndarray:
        return shapely.transform(geoms, lambda xy: to_wgs84_xy(xy, self.crs))


def where(metric: Metric, geom: shapely.Geometry) -> tuple[float, float]:
    point = metric.to_lonlat(np.array([shapely.point_on_surface(geom)]))[0]
    return round(point.x, 7), round(point.y, 7)


def repair(codes: list[str], lonlat: np.ndarray, metric: Metric) -> list[Finding]:
    """Make invalid cells valid when that keeps their area (within 0.1%); refuse otherwise.

    Validity is judged in the file's lon/lat, before projection (projecting can turn a
    zero-width spike into a valid sliver and hide it). Repaired cells replace their entry in
    ``lonlat``; their findings have kind "repaired" and do not stop the import.
    """
    findings = []
    for i in np.flatnonzero(~shapely.is_valid(lonlat)):
        reason = shapely.is_valid_reason(lonlat[i])
        parts = shapely.get_parts(shapely.make_valid(lonlat[i]))
        parts = parts[shapely.get_type_id(parts) == 3]
        fixed = shapely.multipolygons(parts) if len(parts) else None
        # A safe repair (duplicate vertices, a spike, a self-touching ring) keeps the area; a
        # bow-tie or a collapsed ring does not, and needs a person to decide.
        before, after = shapely.area(metric.to_metres(np.array([lonlat[i], fixed])))
        ok = fixed is not None and abs(after - before) <= 0.001 * max(before, 1.0)
        lon, lat = where(metric, metric.to_metres(np.array([lonlat[i]]))[0])
        if ok:
            lonlat[i] = fixed
            findings.append(
                Finding(
                    codes[i],
                    "repaired",
                    f"cell {codes[i]}: invalid geometry ({reason}) was "
                    "repaired without changing its area",
                    lon,
                    lat,
                    fatal=False,
                )
            )
        else:
            findings.append(
                Finding(
                    codes[i],
                    "geometry",
                    f"cell {codes[i]}: invalid geometry ({reason}) "
                    "cannot be repaired safely; fix it in the source",
                    lon,
                    lat,
                )
            )
    return findings


@dataclass(frozen=True)
class Tolerance:
    """Which slivers are noise: smaller than ``m2``, or thinner than ``width_m`` on average.

    Edges that are straight in one CRS curve slightly in another, so two sources of the same
    boundary part by thin slivers (a few centimetres wide, tens of square metres along a
    district's edge). A real gap or overlap is wide; its mean width 2·area/perimeter tells it
    apart whatever its length.
    """

    m2: float
    width_m: float

    def significant(self, geom: shapely.Geometry) -> float:
        """Total area of the parts of ``geom`` that are not noise."""
        total = 0.0
        for part in shapely.get_parts(geom):
            area = float(shapely.area(part))
            perimeter = float(shapely.length(part)) or 1.0
            if area > self.m2 and 2 * area / perimeter > self.width_m:
                total += area
        return total


def outside_parent(
    codes: list[str],
    parents: list[str | None],
    geoms_m: np.ndarray,
    parent_geoms: dict[str, shapely.Geometry],
    metric: Metric,
    tolerance: Tolerance,
) -> list[Finding]:
    findings = []
    for code, parent, geom in zip(codes, parents, geoms_m, strict=True):
        if parent is None or parent not in parent_geoms:
            continue
        outside = shapely.difference(geom, parent_geoms[parent])
        area = tolerance.significant(outside)
        if area:
            lon, lat = where(metric, outside)
            findings.append(
                Finding(
                    code,
                    "outside-parent",
                    f"cell {code} extends {area:,.1f} m² outside its parent {parent}",
                    lon,
                    lat,
                    area,
                )
            )
    return findings


def overlaps(
    codes: list[str], geoms_m: np.ndarray, metric: Metric, tolerance: Tolerance
) -> list[Finding]:
    tree = STRtree(geoms_m)
    left, right = tree.query(geoms_m, predicate="intersects")
    pairs = left < right
    findings = []
    for i, j in zip(left[pairs], right[pairs], strict=True):
        shared = shapely.intersection(geoms_m[i], geoms_m[j])
        area = tolerance.significant(shared)
        if area:
            lon, lat = where(metric, shared)
            findings.append(
                Finding(
                    codes[i],
                    "overlap",
                    f"cells {codes[i]} and {codes[j]} overlap by {area:,.1f} m²",
                    lon,
                    lat,
                    area,
                )
            )
    return findings


def gaps(
    parents: list[str | None],
    geoms_m: np.ndarray,
    parent_geoms: dict[str, shapely.Geometry],
    metric: Metric,
    tolerance: Tolerance,
    fatal: bool,
) -> list[Finding]:
    """Parts of each parent not covered by its children."""
    children: dict[str, list[int]] = defaultdict(list)
    for i, parent in enumerate(parents):
        if parent is not None:
            children[parent].append(i)
    findings = []
    for parent, idx in sorted(children.items()):
        if parent not in parent_geoms:
            continue
        hole = shapely.difference(parent_geoms[parent], shapely.union_all(geoms_m[idx]))
        for part in shapely.get_parts(hole):
            area = tolerance.significant(part)
            if area:
                lon, lat = where(metric, part)
                findings.append(
                    Finding(
                        parent,
                        "gap",
                        f"a gap of {area:,.1f} m² inside {parent} is covered by none of its cells",
                        lon,
                        lat,
                        area,
                        fatal=fatal,
                    )
                )
    return findings
