"""The GB/T 30428.1 grid hierarchy: district → 街道 → 社区 → 单元网格 (about 10,000 m²).

Unit grids follow street centre lines: each centre-line cell is cut into pieces of about
105 m × 105 m along the local axes, slivers are merged into a neighbour, and cells are grouped
into communities and sub-districts, so every level tiles the one above without gaps or overlaps.
Sub-district borders run along the main arterials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from sample_data.frame import CITY_CODE, DISTRICT_CODE, DISTRICT_NAME, CityFrame
from sample_data.geom import merge_small
from sample_data.tables import name_pools
from sample_data.topology import StreetNetwork

UNIT_SIDE = 105.0
MIN_UNIT_SHARE = 0.4  # pieces below this share of UNIT_SIDE² are merged into a neighbour
MAX_UNITS_PER_COMMUNITY = 50  # the 2-digit sequence allows 99
KM2_PER_SUBDISTRICT = 1.8


@dataclass
class GridCell:
    """One polygon of one level of the grid hierarchy."""

    code: str
    name: str
    parent_code: str
    level: str
    geom: shapely.Polygon  # local frame
    area_m2: float


@dataclass
class Grid:
    district: list[GridCell]
    streets: list[GridCell]
    communities: list[GridCell]
    units: list[GridCell]


def build_grid(net: StreetNetwork, frame: CityFrame, rng: np.random.Generator) -> Grid:
    """Split cells into unit pieces, group cells into communities and sub-districts, code all."""
    pieces = [_split_cell(c) for c in net.cells]
    points = np.array([[p.x, p.y] for p in (c.representative_point() for c in net.cells)])
    counts = np.array([len(p) for p in pieces])
    groups = _subdistricts(net, points, frame.district.area / 1e6)
    pools = name_pools()
    sub_names = [str(n) for n in rng.permutation(pools["subdistricts"])]
    comm_names = [str(n) + "社区" for n in rng.permutation(pools["community_roots"])]

    district = GridCell(DISTRICT_CODE, DISTRICT_NAME, CITY_CODE, "district", frame.district, 0.0)
    streets: list[GridCell] = []
    communities: list[GridCell] = []
    units: list[GridCell] = []
    for s_i, cells in enumerate(_reading_order(groups, points, frame, 500.0)):
        s_code = f"{DISTRICT_CODE}{s_i + 1:03d}"
        s_geom = _union([net.cells[i] for i in cells])
        streets.append(
            GridCell(s_code, sub_names[s_i % len(sub_names)], DISTRICT_CODE, "street", s_geom, 0.0)
        )
        comms = _contiguous(_bisect(cells, points, counts, force=True), net.cells)
        for c_i, members in enumerate(_reading_order(comms, points, frame, 250.0)):
            c_code = f"{s_code}{c_i + 1:03d}"
            name = comm_names[len(communities) % len(comm_names)]
            c_geom = _union([net.cells[i] for i in members])
            communities.append(GridCell(c_code, name, s_code, "community", c_geom, 0.0))
            units.extend(_units(c_code, name, [p for i in members for p in pieces[i]], frame))
    grid = Grid([district], streets, communities, units)
    for level in (grid.district, grid.streets, grid.communities, grid.units):
        for cell in level:
            cell.area_m2 = round(float(cell.geom.area), 2)
    return grid


def _union(polys: list[shapely.Polygon]) -> shapely.Geometry:
    return shapely.union_all(polys) if len(polys) > 1 else polys[0]


def _split_cell(cell: shapely.Polygon) -> list[shapely.Polygon]:
    """Cut a cell into about UNIT_SIDE squares along the local axes; merge the slivers."""
    minx, miny, maxx, maxy = cell.bounds
    nx = max(1, round((maxx - minx) / UNIT_SIDE))
    ny = max(1, round((maxy - miny) / UNIT_SIDE))
    xs, ys = np.linspace(minx, maxx, nx + 1), np.linspace(miny, maxy, ny + 1)
    i, j = (a.ravel() for a in np.meshgrid(np.arange(nx), np.arange(ny)))
    boxes = shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1])
    parts = shapely.get_parts(shapely.intersection(cell, boxes))
    pieces = [p for p in parts if p.geom_type == "Polygon" and p.area > 0.01]
    return merge_small(pieces, MIN_UNIT_SHARE * UNIT_SIDE**2)


def _side_of(line: shapely.Geometry, points: np.ndarray, axis: int) -> np.ndarray:
    """True where points lie on the low side (west or south) of a roughly straight line."""
    xy = shapely.get_coordinates(line)
    along, across = 1 - axis, axis
    order = np.argsort(xy[:, along])
    at = np.interp(points[:, along], xy[order, along], xy[order, across])
    return points[:, across] < at


def _subdistricts(net: StreetNetwork, points: np.ndarray, area_km2: float) -> list[np.ndarray]:
    """2-4 groups of cells separated by the main north-south and east-west arterials."""
    wanted = int(np.clip(round(area_km2 / KM2_PER_SUBDISTRICT), 2, 4))
    mains = {s.axis: s.geom for s in net.streets if s.main}
    everything = np.arange(len(points))
    if "ns" not in mains or "ew" not in mains:
        return _bisect(everything, points, np.ones(len(points)), force=True)
    west = _side_of(mains["ns"], points, axis=0)
    south = _side_of(mains["ew"], points, axis=1)
    halves = [everything[west], everything[~west]]
    if wanted == 2:
        groups = halves
    elif wanted == 4:
        groups = [h[south[h]] for h in halves] + [h[~south[h]] for h in halves]
    else:
        big, other = sorted(halves, key=lambda h: -_cells_area(net, h))
        groups = [other, big[south[big]], big[~south[big]]]
    groups = [g for g in groups if g.size]
    return groups if len(groups) >= 2 else _bisect(everything, points, np.ones(len(points)), True)


def _cells_area(net: StreetNetwork, cells: np.ndarray) -> float:
    return float(sum(net.cells[i].area for i in cells))


def _bisect(
    cells: np.ndarray, points: np.ndarray, counts: np.ndarray, force: bool
) -> list[np.ndarray]:
    """Halve a group of cells across its longer spread until each has few enough units."""
    total = counts[cells].sum()
    if cells.size < 2 or (total <= MAX_UNITS_PER_COMMUNITY and not force):
        return [cells]
    spread = np.ptp(points[cells], axis=0)
    axis = int(np.argmax(spread))
    ordered = cells[np.argsort(points[cells, axis], kind="stable")]
    cum = np.cumsum(counts[ordered])
    cut = int(np.clip(np.searchsorted(cum, total / 2.0) + 1, 1, ordered.size - 1))
    return _bisect(ordered[:cut], points, counts, False) + _bisect(
        ordered[cut:], points, counts, False
    )


def _contiguous(groups: list[np.ndarray], cells: list[shapely.Polygon]) -> list[np.ndarray]:
    """Hand the cells of each detached part of a group to the group it borders most.

    Halving by centre position can leave a group in two pieces where the district edge or a
    long riverside cell is irregular; communities must be single areas.
    """
    label = {int(c): k for k, g in enumerate(groups) for c in g}
    for k in range(len(groups)):
        members = sorted(c for c, g in label.items() if g == k)
        parts = list(shapely.get_parts(_union([cells[c] for c in members])))
        if len(parts) < 2:
            continue
        parts.sort(key=lambda p: -p.area)
        for part in parts[1:]:
            movers = [c for c in members if part.contains(cells[c].representative_point())]
            target = _best_neighbour(part, k, label, cells)
            if target is None:
                continue
            for c in movers:
                label[c] = target
    regrouped = [
        np.array(sorted(c for c, g in label.items() if g == k)) for k in range(len(groups))
    ]
    return [g for g in regrouped if g.size]


def _best_neighbour(
    part: shapely.Geometry, own: int, label: dict[int, int], cells: list[shapely.Polygon]
) -> int | None:
    shared: dict[int, float] = {}
    for c, g in label.items():
        if g != own and cells[c].intersects(part):
            length = shapely.intersection(cells[c].boundary, part.boundary).length
            shared[g] = shared.get(g, 0.0) + length
    best = max(sorted(shared), key=lambda g: shared[g], default=None)
    return best if best is not None and shared[best] > 1.0 else None


def _reading_sort(centres: np.ndarray, row_tolerance: float) -> list[int]:
    """Indices in reading order: rows north→south, west→east inside a row (true axes).

    A new row starts when a centre lies more than row_tolerance south of the row's first one.
    """
    by_north = sorted(range(len(centres)), key=lambda k: (-centres[k, 1], centres[k, 0]))
    rows: list[list[int]] = []
    for k in by_north:
        if not rows or centres[rows[-1][0], 1] - centres[k, 1] > row_tolerance:
            rows.append([])
        rows[-1].append(k)
    return [k for row in rows for k in sorted(row, key=lambda k: centres[k, 0])]


def _reading_order(
    groups: list[np.ndarray], points: np.ndarray, frame: CityFrame, tolerance: float
) -> list[np.ndarray]:
    """Groups of cells in reading order of their mean cell position."""
    centres = frame.xy_to_gk(np.array([points[g].mean(axis=0) for g in groups]))
    return [groups[k] for k in _reading_sort(centres, tolerance)]


def _units(
    community: str, name: str, pieces: list[shapely.Polygon], frame: CityFrame
) -> list[GridCell]:
    """Number the unit grids of one community west→east, then north→south."""
    if len(pieces) > 99:
        raise ValueError(f"community {community} has {len(pieces)} unit grids; 99 fit a code")
    centres = frame.xy_to_gk(np.array([[c.x, c.y] for c in shapely.centroid(pieces)]))
    order = _reading_sort(centres, UNIT_SIDE / 2.0)
    return [
        GridCell(
            f"{community}{n + 1:02d}", f"{name}{n + 1:02d}网格", community, "unit", pieces[k], 0.0
        )
        for n, k in enumerate(order)
    ]
