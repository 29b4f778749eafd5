"""Pipe network model shared by the utilities, and laying mains along the streets.

Each utility runs under the streets at its own fixed offset from the centre line (a constant
shift in the local frame), so the pipe graph has the street graph's topology and different
utilities never share a trench line. Street ends cut by the district edge are pulled back a few
metres so that shifted pipes stay inside the district.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from sample_data.topology import StreetNetwork

# Offset (du, dv) of each utility's main from the street centre line, local frame (m).
OFFSETS = {
    "JS": (3.5, 3.5),
    "WS": (-1.0, -1.0),
    "YS": (1.0, 1.0),
    "RQ": (-3.5, -3.0),
    "DL": (-5.0, 5.0),
    "TX": (5.0, -5.0),
}
EDGE_TRIM_M = 10.0


@dataclass
class Node:
    xy: np.ndarray
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pipe:
    a: int
    b: int
    coords: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> float:
        return float(np.hypot(*np.diff(self.coords, axis=0).T).sum())


@dataclass
class Network:
    """Nodes and pipe segments of one utility network (local frame)."""

    prefix: str  # node ids are prefix + 6 digits, pipe ids prefix + "L" + 6 digits
    utility: str
    subclass: str
    owner: str
    nodes: list[Node] = field(default_factory=list)
    pipes: list[Pipe] = field(default_factory=list)

    def add_node(self, xy, kind: str, **attrs: Any) -> int:
        self.nodes.append(Node(np.asarray(xy, dtype="float64"), kind, attrs))
        return len(self.nodes) - 1

    def add_pipe(self, a: int, b: int, coords, **attrs: Any) -> int:
        coords = np.asarray(coords, dtype="float64")
        coords[0], coords[-1] = self.nodes[a].xy, self.nodes[b].xy
        self.pipes.append(Pipe(a, b, coords, attrs))
        return len(self.pipes) - 1

    def node_id(self, i: int) -> str:
        return f"{self.prefix}{i + 1:06d}"

    def pipe_id(self, i: int) -> str:
        return f"{self.prefix}L{i + 1:06d}"

    def keep_connected(self, roots: list[int]) -> None:
        """Drop every node and pipe not connected to one of the roots (renumbering)."""
        parent = list(range(len(self.nodes)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for p in self.pipes:
            parent[find(p.a)] = find(p.b)
        live = {find(r) for r in roots}
        keep = [i for i in range(len(self.nodes)) if find(i) in live]
        new = {old: k for k, old in enumerate(keep)}
        self.nodes = [self.nodes[i] for i in keep]
        self.pipes = [Pipe(new[p.a], new[p.b], p.coords, p.attrs) for p in self.pipes if p.a in new]


@dataclass
class Main:
    """One street edge's main: shifted, trimmed coordinates and its two end nodes."""

    edge: int
    coords: np.ndarray
    cum: np.ndarray  # cumulative length at each vertex
    a: int
    b: int
    trim_start: float  # metres cut at the start (street distance = main distance + trim_start)

    @property
    def length(self) -> float:
        return float(self.cum[-1])


def lay_mains(
    net: StreetNetwork, network: Network, edges: list[int], kind: str = "junction"
) -> list[Main]:
    """Shift the chosen street edges by the utility offset and create their end nodes."""
    offset = np.array(OFFSETS[network.prefix])
    at_node: dict[int, int] = {}
    mains = []
    for e in edges:
        edge = net.edges[e]
        coords = np.asarray(edge.geom.coords) + offset
        trim_a = EDGE_TRIM_M if net.on_edge[edge.a] else 0.0
        trim_b = EDGE_TRIM_M if net.on_edge[edge.b] else 0.0
        cum = _cumulative(coords)
        if cum[-1] - trim_a - trim_b < 5.0:
            continue
        coords = sub_line(coords, cum, trim_a, cum[-1] - trim_b)
        if not shapely.covers(net.district, shapely.LineString(coords)):
            continue  # a shifted main that would leave the district where its edge is jagged
        ends = []
        for street_node, trimmed, xy in ((edge.a, trim_a, coords[0]), (edge.b, trim_b, coords[-1])):
            if trimmed:
                ends.append(network.add_node(xy, kind, street_edge=True))
            else:
                if street_node not in at_node:
                    at_node[street_node] = network.add_node(xy, kind)
                ends.append(at_node[street_node])
        mains.append(Main(e, coords, _cumulative(coords), ends[0], ends[1], trim_a))
    return mains


def inside(net: StreetNetwork, xy: np.ndarray) -> bool:
    """Whether a local point lies in the district (branches and fittings must)."""
    return bool(shapely.contains_xy(net.district, float(xy[0]), float(xy[1])))


def _cumulative(coords: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(coords, axis=0).T))])


def point_at(coords: np.ndarray, cum: np.ndarray, d: float) -> np.ndarray:
    return np.array([np.interp(d, cum, coords[:, 0]), np.interp(d, cum, coords[:, 1])])


def sub_line(coords: np.ndarray, cum: np.ndarray, d0: float, d1: float) -> np.ndarray:
    """The part of a polyline between distances d0 < d1 along it."""
    inside = (cum > d0) & (cum < d1)
    return np.vstack([point_at(coords, cum, d0), coords[inside], point_at(coords, cum, d1)])


def split_main(main: Main, cuts: list[float]) -> list[np.ndarray]:
    """Coordinates of the pieces of a main between its start, the cuts and its end."""
    stops = [0.0, *cuts, main.length]
    return [
        sub_line(main.coords, main.cum, d0, d1) for d0, d1 in zip(stops, stops[1:], strict=False)
    ]


def normal_at(coords: np.ndarray, cum: np.ndarray, d: float) -> np.ndarray:
    """Unit normal (left of the direction of travel) of a polyline at distance d."""
    k = int(np.clip(np.searchsorted(cum, d) - 1, 0, len(coords) - 2))
    t = coords[k + 1] - coords[k]
    t = t / np.hypot(*t)
    return np.array([-t[1], t[0]])
