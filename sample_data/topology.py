"""Street topology: noding street lines into edges and nodes, and centre-line cells.

Cells are the polygons bounded by street centre lines and the district edge; they tile the
district exactly and are the building stones of blocks (cell minus street space) and of the
unit grid (cells split into about 100 m pieces).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString

from sample_data.geom import merge_small
from sample_data.streets import River, Street, StreetPlan

GRID_SIZE = 0.01  # snap-rounding of the noding, metres
MIN_CELL_M2 = 2500.0


@dataclass
class Edge:
    """A street segment between two nodes (intersections, dead ends, district edge)."""

    street: int
    geom: LineString
    a: int
    b: int
    south_of_river: bool


@dataclass
class StreetNetwork:
    streets: list[Street]
    edges: list[Edge]
    nodes: np.ndarray  # (n, 2) local coordinates
    on_edge: np.ndarray  # bool: node lies on the district edge (a cut street end)
    cells: list[shapely.Polygon]
    river: River
    river_polygon: shapely.Polygon
    district: shapely.Polygon
    adjacency: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.adjacency = [[] for _ in range(len(self.nodes))]
        for i, edge in enumerate(self.edges):
            self.adjacency[edge.a].append(i)
            self.adjacency[edge.b].append(i)

    def street_of(self, edge: Edge) -> Street:
        return self.streets[edge.street]

    def node_reach(self, node: int) -> float:
        """Half the widest street meeting at a node: how far from it the crossing extends."""
        widths = [self.streets[self.edges[e].street].width for e in self.adjacency[node]]
        return max(widths) / 2.0 if widths else 0.0


def build_network(plan: StreetPlan, district: shapely.Polygon) -> StreetNetwork:
    """Node the planned streets against each other and the district edge."""
    ring = LineString(district.exterior.coords)
    sources = [s.geom for s in plan.streets] + [ring]
    noded = shapely.union_all(sources, grid_size=GRID_SIZE)
    parts = shapely.get_parts(shapely.line_merge(noded))
    mids = shapely.line_interpolate_point(parts, 0.5, normalized=True)
    owner = shapely.STRtree(sources).nearest(mids)
    street_parts = [(int(o), p) for o, p in zip(owner, parts, strict=True) if o < len(plan.streets)]
    street_parts.sort(key=lambda op: (op[0], _start_key(op[1])))
    nodes, edges = _nodes_and_edges(street_parts, plan.river)
    on_edge = shapely.distance(shapely.points(nodes), ring) < 0.05
    # Near-misses of the diagonal with a crossing leave tiny cells: fold them into a neighbour.
    cells = merge_small(list(shapely.get_parts(shapely.polygonize(parts))), MIN_CELL_M2)
    cells.sort(key=lambda c: _start_key(c.exterior))
    return StreetNetwork(
        plan.streets, edges, nodes, on_edge, cells, plan.river, plan.river_polygon, district
    )


def _start_key(line: shapely.Geometry) -> tuple[int, int]:
    x, y = shapely.get_coordinates(line)[0]
    return (round(x * 100), round(y * 100))


def _nodes_and_edges(
    street_parts: list[tuple[int, LineString]], river: River
) -> tuple[np.ndarray, list[Edge]]:
    index: dict[tuple[int, int], int] = {}
    coords: list[tuple[float, float]] = []

    def node_at(xy: np.ndarray) -> int:
        key = (round(float(xy[0]) * 100), round(float(xy[1]) * 100))
        if key not in index:
            index[key] = len(coords)
            coords.append((float(xy[0]), float(xy[1])))
        return index[key]

    edges = []
    for street, geom in street_parts:
        xy = shapely.get_coordinates(geom)
        a, b = node_at(xy[0]), node_at(xy[-1])
        if a == b:
            continue
        mid = shapely.get_coordinates(geom.interpolate(0.5, normalized=True))[0]
        south = bool(mid[1] < river.road_v(mid[0]) - 1.0)
        edges.append(Edge(street, geom, a, b, south))
    return np.asarray(coords, dtype="float64"), edges
