"""Gravity networks: sewer (污水 PS/WS) to a treatment plant, storm (雨水 PS/YS) to river outfalls.

Every street north of the river gets a sewer and a storm main. Flow goes to the nearest sink
along the network (Dijkstra from the sinks); where a street is reached from both ends it is split
at the point of equal distance, so the network is a forest that drains to the sinks. Pipes are
cut at manholes every 40 m, diameters grow with the length drained upstream, and inverts fall
downstream at the minimum slope of the diameter while keeping the minimum cover.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from sample_data.network import (
    OFFSETS,
    Main,
    Network,
    inside,
    lay_mains,
    normal_at,
    point_at,
    sub_line,
)
from sample_data.terrain import Terrain
from sample_data.topology import StreetNetwork

MANHOLE_SPACING_M = 40.0
SPLIT_MIN_M = 10.0


@dataclass(frozen=True)
class GravitySpec:
    prefix: str
    owner: str
    # (upstream length drained up to, diameter mm, minimum slope)
    sizes: tuple[tuple[float, int, float], ...]
    min_cover_m: float
    max_depth_m: float
    pump_name: str
    year_range: tuple[int, int]


SEWER = GravitySpec(
    "WS",
    "六安市排水管理处",
    (
        (400, 300, 0.003),
        (1500, 400, 0.002),
        (3500, 500, 0.0015),
        (7000, 600, 0.0012),
        (15000, 800, 0.001),
        (math.inf, 1000, 0.0008),
    ),
    1.5,
    7.0,
    "污水提升泵站",
    (1990, 2023),
)
STORM = GravitySpec(
    "YS",
    "六安市排水管理处",
    (
        (250, 400, 0.002),
        (800, 600, 0.0015),
        (2000, 800, 0.0012),
        (4000, 1000, 0.001),
        (8000, 1200, 0.0009),
        (math.inf, 1500, 0.0008),
    ),
    1.2,
    5.0,
    "雨水泵站",
    (1990, 2023),
)


def build_sewer(net: StreetNetwork, terrain: Terrain, rng: np.random.Generator) -> Network:
    """Sewers draining to a treatment plant at the downstream (east) end of the riverside."""
    network = Network("WS", "PS", "WS", SEWER.owner)
    mains = lay_mains(net, network, _gravity_edges(net), kind="manhole")
    sinks = _plant(network, net, mains)
    _drain(network, net, mains, sinks, inlets=False)
    network.keep_connected(sorted(sinks))
    _size_and_invert(network, SEWER, terrain, rng)
    return network


def build_storm(net: StreetNetwork, terrain: Terrain, rng: np.random.Generator) -> Network:
    """Storm drains with gutter inlets, discharging to outfalls on the river bank."""
    network = Network("YS", "PS", "YS", STORM.owner)
    mains = lay_mains(net, network, _gravity_edges(net), kind="manhole")
    sinks = _outfalls(network, net, mains)
    _drain(network, net, mains, sinks, inlets=True)
    network.keep_connected(sorted(sinks))
    _size_and_invert(network, STORM, terrain, rng)
    return network


def _gravity_edges(net: StreetNetwork) -> list[int]:
    return [i for i, e in enumerate(net.edges) if not e.south_of_river]


def _riverside_junctions(network: Network, net: StreetNetwork, mains: list[Main]) -> list[int]:
    """Pipe nodes where a street meets the riverside road, west to east."""
    count: dict[int, int] = {}
    for m in mains:
        if net.street_of(net.edges[m.edge]).axis == "riverside":
            for n in (m.a, m.b):
                count[n] = count.get(n, 0) + 1
    nodes = [n for n, c in count.items() if c >= 2]
    return sorted(nodes, key=lambda n: network.nodes[n].xy[0])


def _outfalls(network: Network, net: StreetNetwork, mains: list[Main]) -> dict[int, float]:
    """An outfall on the river bank below each riverside junction."""
    sinks: dict[int, float] = {}
    river = net.river
    for node in _riverside_junctions(network, net, mains):
        xy = network.nodes[node].xy
        bank = float(river.road_v(xy[0])) - river.offset + river.half_width + 1.0
        if not inside(net, np.array([xy[0], bank])):
            continue
        outfall = network.add_node([xy[0], bank], "outfall", name="雨水排口")
        network.add_pipe(node, outfall, [xy, [xy[0], bank]], lateral=False)
        sinks[node] = abs(xy[1] - bank)
    return sinks or {max(range(len(network.nodes)), key=lambda n: -network.nodes[n].xy[1]): 0.0}


def _plant(network: Network, net: StreetNetwork, mains: list[Main]) -> dict[int, float]:
    """The treatment plant between the riverside road and the river, at the east end."""
    river = net.river
    for node in reversed(_riverside_junctions(network, net, mains)):
        xy = network.nodes[node].xy
        u = xy[0] + 25.0
        site = np.array([u, float(river.road_v(u)) - 0.5 * (river.offset - river.half_width)])
        if inside(net, site):
            break
    else:  # no room by the river: the plant takes the southernmost node's place
        node = min(range(len(network.nodes)), key=lambda n: network.nodes[n].xy[1])
        xy = network.nodes[node].xy
        site = xy + np.array([0.0, -5.0])
    plant = network.add_node(site, "treatment_plant", name="城东污水处理厂")
    network.add_pipe(node, plant, [xy, site], lateral=False)
    return {node: float(np.hypot(*(site - xy)))}


def _distances(network: Network, mains: list[Main], sinks: dict[int, float]) -> np.ndarray:
    """Network distance of every node to its nearest sink (Dijkstra)."""
    adj: dict[int, list[tuple[int, float]]] = {}
    for m in mains:
        adj.setdefault(m.a, []).append((m.b, m.length))
        adj.setdefault(m.b, []).append((m.a, m.length))
    dist = np.full(len(network.nodes), np.inf)
    heap = [(d, n) for n, d in sorted(sinks.items())]
    for d, n in heap:
        dist[n] = d
    heapq.heapify(heap)
    while heap:
        d, n = heapq.heappop(heap)
        if d > dist[n]:
            continue
        for other, w in adj.get(n, []):
            if d + w < dist[other]:
                dist[other] = d + w
                heapq.heappush(heap, (d + w, other))
    return dist


def _drain(
    network: Network,
    net: StreetNetwork,
    mains: list[Main],
    sinks: dict[int, float],
    inlets: bool,
) -> None:
    """Orient every main towards the nearer sink, splitting it at its summit if needed."""
    dist = _distances(network, mains, sinks)
    for main in mains:
        da, db, length = dist[main.a], dist[main.b], main.length
        if not (np.isfinite(da) and np.isfinite(db)):
            continue  # cut off from every sink (only where the district edge splits the city)
        if da >= db + length - 1e-6:  # a is upstream of b on the shortest-path tree
            _run(network, net, main, 0.0, length, main.a, main.b, inlets)
        elif db >= da + length - 1e-6:
            _run(network, net, main, length, 0.0, main.b, main.a, inlets)
        else:  # reached from both ends: split at the point of equal distance (kept off the ends)
            margin = min(SPLIT_MIN_M, length / 2.0)
            summit = float(np.clip((length + db - da) / 2.0, margin, length - margin))
            top = network.add_node(point_at(main.coords, main.cum, summit), "manhole")
            _run(network, net, main, summit, 0.0, top, main.a, inlets)
            _run(network, net, main, summit, length, top, main.b, inlets)


def _run(
    network: Network,
    net: StreetNetwork,
    main: Main,
    d_from: float,
    d_to: float,
    up: int,
    down: int,
    inlets: bool,
) -> None:
    """Pipes from distance d_from to d_to along a main, with manholes at most 40 m apart."""
    span = abs(d_to - d_from)
    count = max(1, math.ceil(span / MANHOLE_SPACING_M))
    stops = np.linspace(d_from, d_to, count + 1)
    chain = [up]
    for d in stops[1:-1]:
        node = network.add_node(point_at(main.coords, main.cum, d), "manhole")
        chain.append(node)
        if inlets:
            _gutter_inlets(network, net, main, float(d), node)
    chain.append(down)
    for k in range(count):
        d0, d1 = stops[k], stops[k + 1]
        coords = sub_line(main.coords, main.cum, min(d0, d1), max(d0, d1))
        coords = coords if d1 > d0 else coords[::-1]
        network.add_pipe(chain[k], chain[k + 1], coords, lateral=False, edge=main.edge)


def _gutter_inlets(
    network: Network, net: StreetNetwork, main: Main, d: float, manhole: int
) -> None:
    """Gutter inlets (雨水箅子) at the kerbs beside a storm manhole, piped to it."""
    street = net.street_of(net.edges[main.edge])
    xy = network.nodes[manhole].xy
    normal = normal_at(main.coords, main.cum, d)
    centre = xy - np.array(OFFSETS[network.prefix])
    sides = (1.0, -1.0) if street.cls != "local" else (1.0,)
    for side in sides:
        kerb = centre + side * normal * (street.width / 2.0 - street.sidewalk - 0.3)
        if not inside(net, kerb):
            continue
        inlet = network.add_node(kerb, "inlet")
        network.add_pipe(inlet, manhole, [kerb, xy], lateral=True, edge=main.edge)


def _topological(network: Network) -> list[int]:
    """Nodes ordered so that every pipe runs from an earlier node to a later one."""
    indegree = [0] * len(network.nodes)
    out: list[list[int]] = [[] for _ in network.nodes]
    for k, p in enumerate(network.pipes):
        indegree[p.b] += 1
        out[p.a].append(k)
    ready = [n for n in range(len(network.nodes)) if indegree[n] == 0]
    order = []
    while ready:
        n = ready.pop()
        order.append(n)
        for k in out[n]:
            b = network.pipes[k].b
            indegree[b] -= 1
            if indegree[b] == 0:
                ready.append(b)
    if len(order) != len(network.nodes):
        raise RuntimeError(f"{network.prefix} network has a cycle")
    return order


MATERIALS = {"T": "混凝土", "PVC": "聚氯乙烯", "PE": "聚乙烯"}
LATERAL_MM, LATERAL_SLOPE, INLET_DEPTH_M = 300, 0.01, 1.0


def _size_and_invert(
    network: Network, spec: GravitySpec, terrain: Terrain, rng: np.random.Generator
) -> None:
    """Diameters from the length drained upstream, then inverts falling downstream."""
    order = _topological(network)
    incoming: list[list[int]] = [[] for _ in network.nodes]
    outgoing: list[list[int]] = [[] for _ in network.nodes]
    for k, p in enumerate(network.pipes):
        incoming[p.b].append(k)
        outgoing[p.a].append(k)
    _size(network, spec, order, incoming, outgoing)
    ground = terrain.ground(np.array([n.xy for n in network.nodes]))
    years: dict[int, int] = {}
    for n in order:
        node = network.nodes[n]
        ends = [network.pipes[k].attrs["end_invert_m"] for k in incoming[n]]
        start = _node_invert(network, spec, n, float(ground[n]), ends, outgoing[n])
        invert = min([start, *ends]) if node.kind == "pump_station" else start
        node.attrs.update(
            ground_elev_m=float(ground[n]),
            invert_m=invert,
            depth_m=round(float(ground[n]) - invert, 3),
        )
        for k in outgoing[n]:
            _fall(network.pipes[k], start, spec, years, rng)
    for p in network.pipes:
        ga = network.nodes[p.a].attrs["ground_elev_m"]
        gb = network.nodes[p.b].attrs["ground_elev_m"]
        depth = ((ga - p.attrs["start_invert_m"]) + (gb - p.attrs["end_invert_m"])) / 2.0
        p.attrs["depth_m"] = round(depth, 2)


def _node_invert(
    network: Network, spec: GravitySpec, n: int, ground: float, ends: list[float], out: list[int]
) -> float:
    """Invert at which a node's outgoing pipes start.

    The lowest incoming invert, or the minimum cover where that is lower; where the pipes would
    run deeper than the spec allows, the node becomes a pump station that lifts the flow back
    to minimum cover (its wet well keeps the incoming invert).
    """
    node = network.nodes[n]
    if node.kind == "inlet":
        return round(ground - INLET_DEPTH_M, 3)
    widest = max((network.pipes[k].attrs["diameter_mm"] for k in out), default=0)
    cover = ground - spec.min_cover_m - widest / 1000.0
    if not out:
        return round(min(ends, default=cover), 3)
    invert = min([cover, *ends])
    if ground - invert > spec.max_depth_m:
        node.kind = "pump_station"
        node.attrs["name"] = spec.pump_name
        invert = cover
    return round(invert, 3)


def _size(
    network: Network,
    spec: GravitySpec,
    order: list[int],
    incoming: list[list[int]],
    outgoing: list[list[int]],
) -> None:
    drained = np.zeros(len(network.pipes))
    for n in order:
        upstream = sum(drained[k] for k in incoming[n] if not network.pipes[k].attrs["lateral"])
        share = upstream / max(1, len(outgoing[n]))
        for k in outgoing[n]:
            pipe = network.pipes[k]
            if pipe.attrs["lateral"]:
                pipe.attrs.update(diameter_mm=LATERAL_MM, slope=LATERAL_SLOPE, material="PVC")
                continue
            drained[k] = share + pipe.length
            _limit, diameter, slope = next(s for s in spec.sizes if drained[k] <= s[0])
            material = "T" if diameter > 400 else ("PVC" if spec.prefix == "WS" else "PE")
            pipe.attrs.update(diameter_mm=diameter, slope=slope, material=material)


def _fall(pipe, start: float, spec: GravitySpec, years: dict[int, int], rng) -> None:
    """Start the pipe at its upstream node's invert and let it fall at its slope."""
    drop = max(pipe.attrs["slope"] * pipe.length, 0.001)
    edge = pipe.attrs.get("edge", -1)
    if edge not in years:
        years[edge] = int(rng.integers(spec.year_range[0], spec.year_range[1] + 1))
    pipe.attrs.update(
        start_invert_m=start,
        end_invert_m=round(start - drop, 3),
        year_laid=years[edge],
    )
