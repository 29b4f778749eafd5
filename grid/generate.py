"""Regular unit grids for areas without one: squares in the local Gauss-Krüger CRS.

Each community is covered by squares of the given size laid from its north-west corner,
clipped to the community; slivers under a fifth of a square join the neighbour they share the
longest edge with, so no cell is uselessly small. Cells are numbered west→east within each
row, rows north→south (GB/T 30428.1 practice) and coded community code + sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from grid.checks import Metric
from grid.codes import unit_code
from twin.errors import InvalidParameter

SLIVER = 0.2  # fraction of a full square below which a clipped piece is merged


@dataclass(frozen=True)
class Community:
    code: str
    name: str
    geom: shapely.Geometry  # lon/lat


@dataclass(frozen=True)
class Cell:
    code: str
    name: str
    parent_code: str
    geom: shapely.Geometry  # lon/lat


def generate_units(communities: list[Community], size_m: float, unit_width: int) -> list[Cell]:
    if not 20 <= size_m <= 2000:
        raise InvalidParameter(f"--size {size_m} m is not a sensible unit grid: use 20 to 2000 m")
    cells: list[Cell] = []
    for community in communities:
        metric = Metric(float(shapely.centroid(community.geom).x))
        area = metric.to_metres(np.array([community.geom]))[0]
        pieces = _squares(area, size_m)
        for seq, geom in enumerate(pieces, start=1):
            code = unit_code(community.code, seq, unit_width)
            lonlat = metric.to_lonlat(np.array([geom]))[0]
            cells.append(Cell(code, f"{community.name}{seq:02d}", community.code, lonlat))
    return cells


def _squares(area: shapely.Geometry, size: float) -> list[shapely.Geometry]:
    """Clipped squares in reading order (rows north→south, west→east), slivers merged."""
    minx, miny, maxx, maxy = area.bounds
    cols = max(1, int(np.ceil((maxx - minx) / size)))
    rows = max(1, int(np.ceil((maxy - miny) / size)))
    keyed: list[tuple[tuple[int, int], shapely.Geometry]] = []
    for r in range(rows):
        top = maxy - r * size
        for c in range(cols):
            left = minx + c * size
            square = shapely.box(left, top - size, left + size, top)
            piece = shapely.intersection(square, area)
            if not piece.is_empty and piece.area > 0.01:
                keyed.append(((r, c), _polygonal(piece)))
    return _merge_slivers([g for _, g in keyed], size * size * SLIVER)


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    parts = shapely.get_parts(geom)
    parts = parts[shapely.get_type_id(parts) == 3]
    return shapely.union_all(parts)


def _merge_slivers(pieces: list[shapely.Geometry], min_area: float) -> list[shapely.Geometry]:
    pieces = list(pieces)
    while len(pieces) > 1:
        small = [i for i, p in enumerate(pieces) if p.area < min_area]
        if not small:
            break
        i = min(small, key=lambda k: pieces[k].area)
        shared = [
            (shapely.length(shapely.intersection(pieces[i].boundary, p.boundary)), j)
            for j, p in enumerate(pieces)
            if j != i
        ]
        best_len, j = max(shared)
        if best_len <= 0:  # an island: keep it as its own cell
            min_area = min(min_area, pieces[i].area)
            continue
        pieces[j] = _polygonal(shapely.union(pieces[j], pieces[i]))
        del pieces[i]
    return pieces
