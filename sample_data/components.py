"""City management components (GB/T 30428.2 部件) along the streets, in blocks and on the pipes.

Street furniture is placed on the sidewalks at realistic spacing (lamps every 30-40 m, trees
every 8-10 m, bins every 70 m, signals and signs at major crossings, bus stops with benches);
manhole covers and hydrants sit on the nodes of the pipe networks, including the duct manholes
of the power and telecom networks (which are not written as layers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import shapely

from sample_data.blocks import Land
from sample_data.network import Network, lay_mains
from sample_data.topology import Edge, StreetNetwork

LAMP_SPACING = {"arterial": 30.0, "secondary": 35.0, "local": 40.0}
BIN_SPACING_M = 70.0
DUCT_SPACING = {"DL": 60.0, "TX": 70.0}
# Pipe-network node kinds that carry a component, by utility prefix.
NODE_COMPONENTS = {
    "JS": {"valve": "0101", "meter": "0101", "hydrant": "0113"},
    "WS": {"manhole": "0102"},
    "YS": {"manhole": "0103", "inlet": "0104"},
    "RQ": {"valve": "0111", "source": "0135"},
}


@dataclass(frozen=True)
class Placed:
    minor: str
    xy: tuple[float, float]  # local frame


def place_components(
    net: StreetNetwork, land: Land, networks: list[Network], rng: np.random.Generator
) -> list[Placed]:
    """Every component of the city, in a deterministic order (codes are assigned later)."""
    out: list[Placed] = []
    for i, edge in enumerate(net.edges):
        out.extend(_street_furniture(net, i, edge, rng))
    out.extend(_crossings(net))
    out.extend(_in_blocks(land, rng))
    for network in networks:
        out.extend(_on_nodes(network))
    out.extend(_ducts(net, "DL", "0105"))
    out.extend(_ducts(net, "TX", "0107"))
    return out


class _Sidewalk:
    """Positions on one street edge: distance along it and side offset from the centre line."""

    def __init__(self, net: StreetNetwork, edge: Edge) -> None:
        self.street = net.street_of(edge)
        self.geom = edge.geom
        self.length = edge.geom.length
        self.start = 10.0 if net.on_edge[edge.a] else net.node_reach(edge.a) + 4.0
        self.end = self.length - (10.0 if net.on_edge[edge.b] else net.node_reach(edge.b) + 4.0)

    @property
    def kerb(self) -> float:
        """Offset of the kerb line (edge of carriageway) from the centre line."""
        return self.street.width / 2.0 - self.street.sidewalk

    def every(self, spacing: float, phase: float) -> np.ndarray:
        if self.end - self.start < 5.0:
            return np.empty(0)
        return np.arange(self.start + phase % spacing, self.end, spacing)

    def points(self, d: np.ndarray, offset: float) -> np.ndarray:
        """Points at distances d along the street, offset to the left (+) or right (-)."""
        if d.size == 0:
            return np.empty((0, 2))
        d = np.clip(d, 0.5, max(self.length - 0.5, 0.5))  # crossings on very short edges
        on = shapely.get_coordinates(shapely.line_interpolate_point(self.geom, d))
        ahead = shapely.get_coordinates(
            shapely.line_interpolate_point(self.geom, np.minimum(d + 0.5, self.length))
        )
        behind = shapely.get_coordinates(
            shapely.line_interpolate_point(self.geom, np.maximum(d - 0.5, 0.0))
        )
        t = ahead - behind
        t /= np.hypot(t[:, 0], t[:, 1])[:, None]
        return on + offset * np.column_stack([-t[:, 1], t[:, 0]])


def _emit(minor: str, xy: np.ndarray) -> Iterator[Placed]:
    for x, y in xy:
        yield Placed(minor, (float(x), float(y)))


def _street_furniture(
    net: StreetNetwork, index: int, edge: Edge, rng: np.random.Generator
) -> Iterator[Placed]:
    """Lamps, trees, bins, bus stops and benches along both sidewalks of one street edge."""
    walk = _Sidewalk(net, edge)
    cls = walk.street.cls
    sides = (1.0, -1.0) if cls != "local" else ((1.0,) if index % 2 else (-1.0,))
    tree_spacing = float(rng.uniform(8.0, 10.0))
    for side in sides:
        lamps = walk.every(LAMP_SPACING[cls], 0.0 if side > 0 else LAMP_SPACING[cls] / 2)
        yield from _emit("0118", walk.points(lamps, side * (walk.kerb + 0.5)))
        bins = walk.every(BIN_SPACING_M, 15.0 if side > 0 else 50.0)
        yield from _emit("0305", walk.points(bins, side * (walk.kerb + 0.8)))
    if cls != "local" or walk.street.width >= 16.0:
        yield from _trees(net, walk, tree_spacing)
    if cls != "local" and walk.end - walk.start > 160.0 and rng.random() < 0.45:
        yield from _bus_stops(walk)


def _trees(net: StreetNetwork, walk: _Sidewalk, spacing: float) -> Iterator[Placed]:
    """Street trees on both sidewalks, not on bridges and not on top of a lamp."""
    lamp_spacing = LAMP_SPACING[walk.street.cls]
    for side in (1.0, -1.0):
        d = walk.every(spacing, 4.0)
        lamp_phase = 0.0 if side > 0 else lamp_spacing / 2
        to_lamp = np.abs(
            (d - walk.start - lamp_phase + lamp_spacing / 2) % lamp_spacing - lamp_spacing / 2
        )
        xy = walk.points(d[to_lamp > 2.5], side * (walk.kerb + 1.5))
        if xy.size:
            xy = xy[~shapely.contains_xy(net.river_polygon, xy[:, 0], xy[:, 1])]
        yield from _emit("0402", xy)


def _bus_stops(walk: _Sidewalk) -> Iterator[Placed]:
    """A pair of bus shelters, staggered across the street, each with a bench."""
    mid = (walk.start + walk.end) / 2.0
    for side, shift in ((1.0, -25.0), (-1.0, 25.0)):
        d = np.array([mid + shift])
        yield from _emit("0203", walk.points(d, side * (walk.kerb + 1.5)))
        yield from _emit("0407", walk.points(d + 4.0, side * (walk.kerb + 2.0)))


def _crossings(net: StreetNetwork) -> Iterator[Placed]:
    """Signals at major crossings, signs on major approaches, a name plate per street end."""
    for node, incident in enumerate(net.adjacency):
        if len(incident) < 3 or net.on_edge[node]:
            continue
        classes = [net.street_of(net.edges[e]).cls for e in incident]
        signals = classes.count("arterial") >= 2 or (
            "arterial" in classes and "secondary" in classes
        )
        for e in incident:
            edge = net.edges[e]
            walk = _Sidewalk(net, edge)
            at_start = edge.a == node
            reach = walk.start if at_start else walk.length - walk.end
            d = np.array([reach - 2.0 if at_start else walk.length - reach + 2.0])
            right = -1.0 if at_start else 1.0  # right-hand traffic approaching the node
            if signals:
                yield from _emit("0210", walk.points(d, right * (walk.kerb + 0.4)))
            if walk.street.cls != "local":
                sign_d = d + (6.0 if at_start else -6.0)
                yield from _emit("0209", walk.points(sign_d, right * (walk.kerb + 0.6)))
            yield from _emit("0213", walk.points(d, -right * (walk.kerb + 1.0)))


def _in_blocks(land: Land, rng: np.random.Generator) -> Iterator[Placed]:
    """Toilets and transformer boxes at block edges, benches in parks."""
    for block in land.blocks:
        inset = block.geom.buffer(-4.0)
        if block.geom.area < 2500 or inset.is_empty:
            continue
        edge_in = max(shapely.get_parts(inset), key=lambda g: g.area).exterior
        toilet_p = {"park": 0.6, "commercial": 0.4, "public": 0.4}.get(block.landuse, 0.08)
        if rng.random() < toilet_p:
            yield _on_line("0301", edge_in, rng.random())
        if block.landuse in ("residential", "commercial", "industrial") and rng.random() < 0.7:
            yield _on_line("0134", edge_in, rng.random())
        if block.landuse == "park":
            yield from _park_benches(land, block.geom, rng)


def _on_line(minor: str, line: shapely.Geometry, share: float) -> Placed:
    p = line.interpolate(share, normalized=True)
    return Placed(minor, (p.x, p.y))


def _park_benches(land: Land, park: shapely.Polygon, rng: np.random.Generator) -> Iterator[Placed]:
    count = int(min(20, park.area // 2500))
    minx, miny, maxx, maxy = park.bounds
    xy = np.column_stack([rng.uniform(minx, maxx, 4 * count), rng.uniform(miny, maxy, 4 * count)])
    inside = shapely.contains_xy(park.buffer(-3.0), xy[:, 0], xy[:, 1])
    for pond in land.ponds:
        inside &= ~shapely.contains_xy(pond.buffer(3.0), xy[:, 0], xy[:, 1])
    yield from _emit("0407", xy[inside][:count])


def _on_nodes(network: Network) -> Iterator[Placed]:
    kinds = NODE_COMPONENTS.get(network.prefix, {})
    for node in network.nodes:
        minor = kinds.get(node.kind)
        if minor is not None:
            yield Placed(minor, (float(node.xy[0]), float(node.xy[1])))


def _ducts(net: StreetNetwork, prefix: str, minor: str) -> Iterator[Placed]:
    """Manholes of a duct bank (power or telecom): at every junction and every 60-70 m."""
    edges = [
        i
        for i, e in enumerate(net.edges)
        if not e.south_of_river and (prefix == "TX" or net.street_of(e).cls != "local")
    ]
    ducts = Network(prefix, prefix, prefix, "")
    mains = lay_mains(net, ducts, edges)
    yield from _emit(minor, np.array([n.xy for n in ducts.nodes]).reshape(-1, 2))
    for main in mains:
        line = shapely.LineString(main.coords)
        count = int(main.length // DUCT_SPACING[prefix])
        if count:
            d = np.linspace(0.0, main.length, count + 2)[1:-1]
            yield from _emit(
                minor, shapely.get_coordinates(shapely.line_interpolate_point(line, d))
            )
