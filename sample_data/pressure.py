"""Pressure networks: looped water supply (给水 JS/JP) and natural gas (燃气 RQ/TR).

Mains follow the streets and are split at every node: valves a few metres from each junction
on all but one of its mains (so that valve segments exist), tees for hydrants every ~120 m and
for one service line and meter per building. Sources sit at the ends of the main arterials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from sample_data.buildings import Building
from sample_data.network import (
    OFFSETS,
    Main,
    Network,
    inside,
    lay_mains,
    normal_at,
    point_at,
    split_main,
)
from sample_data.terrain import Terrain
from sample_data.topology import StreetNetwork

MATERIAL_NAMES = {"QM": "球墨铸铁", "ZT": "铸铁", "PE": "聚乙烯", "G": "钢"}
VALVE_FROM_JUNCTION_M = 8.0
HYDRANT_SPACING_M = 120.0
MIN_NODE_GAP_M = 1.5
CLOSED_VALVE_SHARE = 0.03


@dataclass(frozen=True)
class Event:
    """Something that splits a main at distance d: a valve, a hydrant tee or a service tee."""

    d: float
    kind: str
    building: Building | None = None


@dataclass(frozen=True)
class MainProps:
    diameter_mm: int
    material: str
    year_laid: int
    depth_m: float


def build_water(
    net: StreetNetwork, buildings: list[Building], terrain: Terrain, rng: np.random.Generator
) -> Network:
    """The water supply network with sources, valves, hydrants and one meter per building."""
    network = Network("JS", "JS", "JP", "六安市供水有限公司")
    mains = lay_mains(net, network, list(range(len(net.edges))))
    props = _water_props(net, rng)
    valves = _valve_events(net, mains, props)
    services = _service_events(net, mains, buildings)
    for k, main in enumerate(mains):
        events = valves[k] + _hydrant_events(main, rng) + services[k]
        _build_main(network, net, main, events, props[net.edges[main.edge].street], rng)
    sources = _mark_sources(network, net, mains, ["六安市第二水厂出水口", "东部加压泵站"])
    network.keep_connected(sources)
    _finish_nodes(network, terrain)
    return network


def build_gas(net: StreetNetwork, terrain: Terrain, rng: np.random.Generator) -> Network:
    """A medium-pressure gas network on arterial and secondary streets, fed by a regulator."""
    network = Network("RQ", "RQ", "TR", "六安市燃气有限公司")
    edges = [
        i
        for i, e in enumerate(net.edges)
        if net.street_of(e).cls != "local" and not e.south_of_river
    ]
    mains = lay_mains(net, network, edges)
    props = _gas_props(net, rng)
    valves = _valve_events(net, mains, props)
    for k, main in enumerate(mains):
        _build_main(network, net, main, valves[k], props[net.edges[main.edge].street], rng)
    sources = _mark_sources(network, net, mains, ["城西高中压调压站"], axes=("ew_west",))
    network.keep_connected(sources)
    _finish_nodes(network, terrain)
    return network


def _water_props(net: StreetNetwork, rng: np.random.Generator) -> list[MainProps]:
    out = []
    for street in net.streets:
        choices = {"arterial": (400,), "secondary": (300, 200), "local": (150, 100)}
        diameter = 600 if street.main else int(rng.choice(choices[street.cls]))
        year = int(rng.integers(1985, 2024))
        if diameter >= 300:
            material = "QM"
        elif year < 2000:
            material = "ZT"
        else:
            material = "PE" if year >= 2005 and rng.random() < 0.6 else "QM"
        depth = round(1.0 + diameter / 1000.0 + rng.uniform(0.0, 0.3), 2)
        out.append(MainProps(diameter, material, year, depth))
    return out


def _gas_props(net: StreetNetwork, rng: np.random.Generator) -> list[MainProps]:
    out = []
    for street in net.streets:
        diameter = {"arterial": 300, "secondary": 200, "local": 160}[street.cls]
        year = int(rng.integers(1998, 2024))
        material = "G" if diameter >= 200 and (year < 2010 or rng.random() < 0.5) else "PE"
        out.append(MainProps(diameter, material, year, round(0.9 + rng.uniform(0.1, 0.4), 2)))
    return out


def _valve_events(
    net: StreetNetwork, mains: list[Main], props: list[MainProps]
) -> list[list[Event]]:
    """At each junction, a valve on every main but the largest (the n-1 rule)."""
    at: dict[int, list[tuple[int, str]]] = {}
    for k, m in enumerate(mains):
        at.setdefault(m.a, []).append((k, "a"))
        at.setdefault(m.b, []).append((k, "b"))
    events: list[list[Event]] = [[] for _ in mains]
    for node in sorted(at):
        ends = at[node]
        if len(ends) < 3:
            continue
        biggest = max(
            ends, key=lambda ke: (props[net.edges[mains[ke[0]].edge].street].diameter_mm, -ke[0])
        )
        for k, end in ends:
            if (k, end) == biggest:
                continue
            d = min(VALVE_FROM_JUNCTION_M, mains[k].length / 4.0)
            events[k].append(Event(d if end == "a" else mains[k].length - d, "valve"))
    return events


def _hydrant_events(main: Main, rng: np.random.Generator) -> list[Event]:
    start = rng.uniform(30.0, 90.0)
    return [
        Event(float(d), "hydrant") for d in np.arange(start, main.length - 20.0, HYDRANT_SPACING_M)
    ]


def _service_events(
    net: StreetNetwork, mains: list[Main], buildings: list[Building]
) -> list[list[Event]]:
    """Each building is served from the nearest main, at the point facing it."""
    events: list[list[Event]] = [[] for _ in mains]
    if not mains or not buildings:
        return events
    lines = [shapely.LineString(m.coords) for m in mains]
    centres = shapely.centroid([b.geom for b in buildings])
    nearest = shapely.STRtree(lines).nearest(centres)
    for b, c, k in zip(buildings, centres, nearest, strict=True):
        main = mains[int(k)]
        d = float(np.clip(lines[int(k)].project(c), 3.0, main.length - 3.0))
        events[int(k)].append(Event(d, "service", b))
    return events


def _build_main(
    network: Network,
    net: StreetNetwork,
    main: Main,
    events: list[Event],
    props: MainProps,
    rng: np.random.Generator,
) -> None:
    """Create the event nodes along one main, their branches, and the main's segments."""
    chain, cuts = [main.a], []
    last = 0.0
    for event in sorted(events, key=lambda e: (e.d, e.kind)):
        d = max(event.d, last + MIN_NODE_GAP_M)
        if d > main.length - MIN_NODE_GAP_M:
            continue
        node = _event_node(network, net, main, event, d, props, rng)
        if node is None:
            continue
        chain.append(node)
        cuts.append(d)
        last = d
    chain.append(main.b)
    pipe = _pipe_attrs(props)
    for (a, b), coords in zip(
        zip(chain, chain[1:], strict=False), split_main(main, cuts), strict=True
    ):
        network.add_pipe(a, b, coords, **pipe)


def _pipe_attrs(props: MainProps) -> dict:
    return {
        "diameter_mm": props.diameter_mm,
        "material": props.material,
        "year_laid": props.year_laid,
        "depth_m": props.depth_m,
    }


def _event_node(
    network: Network,
    net: StreetNetwork,
    main: Main,
    event: Event,
    d: float,
    props: MainProps,
    rng: np.random.Generator,
) -> int | None:
    """The node of one event; None when its branch would end outside the district."""
    xy = point_at(main.coords, main.cum, d)
    if event.kind == "valve":
        state = "closed" if rng.random() < CLOSED_VALVE_SHARE else "open"
        return network.add_node(xy, "valve", valve_state=state, depth_m=props.depth_m)
    street = net.street_of(net.edges[main.edge])
    normal = normal_at(main.coords, main.cum, d)
    centre = xy - np.array(OFFSETS[network.prefix])
    if event.kind == "hydrant":
        side = 1.0 if float(np.dot(OFFSETS[network.prefix], normal)) >= 0 else -1.0
        kerb = centre + side * normal * (street.width / 2.0 - street.sidewalk + 0.5)
        if not inside(net, kerb):
            return None
        tee = network.add_node(xy, "junction", depth_m=props.depth_m)
        hydrant = network.add_node(kerb, "hydrant", depth_m=1.2)
        network.add_pipe(
            tee, hydrant, [xy, kerb], **_pipe_attrs(MainProps(100, "QM", props.year_laid, 1.2))
        )
        return tee
    assert event.building is not None
    c = np.asarray(event.building.geom.centroid.coords[0])
    side = 1.0 if float(np.dot(c - centre, normal)) >= 0 else -1.0
    meter_xy = centre + side * normal * (street.width / 2.0 + 1.0)
    if not inside(net, meter_xy):
        return None
    tee = network.add_node(xy, "junction", depth_m=props.depth_m)
    meter = network.add_node(meter_xy, "meter", building_id=event.building.bldg_id, depth_m=0.8)
    year = max(props.year_laid, event.building.year)
    network.add_pipe(tee, meter, [xy, meter_xy], **_pipe_attrs(MainProps(50, "PE", year, 0.8)))
    return tee


def _mark_sources(
    network: Network,
    net: StreetNetwork,
    mains: list[Main],
    names: list[str],
    axes: tuple[str, ...] = ("ns_north", "ew_east"),
) -> list[int]:
    """Turn the cut ends of the main arterials into sources (plant outlet, booster, regulator)."""
    found: list[int] = []
    for axis_end, name in zip(axes, names, strict=False):
        axis, end = axis_end.split("_")
        candidates = [
            node
            for m in mains
            if net.street_of(net.edges[m.edge]).axis == axis
            and net.street_of(net.edges[m.edge]).main
            for node in (m.a, m.b)
            if network.nodes[node].attrs.get("street_edge")
        ]
        if not candidates:
            continue
        key = {"north": 1, "east": 0, "west": 0}[end]
        sign = -1.0 if end == "west" else 1.0
        node = max(candidates, key=lambda n: sign * network.nodes[n].xy[key])
        network.nodes[node].kind = "source"
        network.nodes[node].attrs["name"] = name
        found.append(node)
    if not found:  # the main arterials were cut away: feed from the northernmost node
        found.append(max(range(len(network.nodes)), key=lambda n: network.nodes[n].xy[1]))
        network.nodes[found[0]].kind = "source"
        network.nodes[found[0]].attrs["name"] = names[0]
    return found


def _finish_nodes(network: Network, terrain: Terrain) -> None:
    """Ground elevation everywhere; junction depth is that of the deepest pipe meeting there."""
    deepest: dict[int, float] = {}
    for p in network.pipes:
        for n in (p.a, p.b):
            deepest[n] = max(deepest.get(n, 0.0), p.attrs["depth_m"])
    ground = terrain.ground(np.array([n.xy for n in network.nodes]))
    for i, node in enumerate(network.nodes):
        node.attrs["ground_elev_m"] = float(ground[i])
        node.attrs.setdefault("depth_m", deepest.get(i, 1.0))
        node.attrs.pop("street_edge", None)
