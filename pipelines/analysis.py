"""Traces, burst isolation and excavation conflict checks over HTTP-shaped inputs.

The graph work happens in memory (`pipelines.graph`); the database resolves starts
(ids, or the nearest pipe to a point), returns the geometries of what was found, and answers
the spatial questions around it: components on the affected nodes, unit grids crossed, the
outage area.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from pipelines.graph import Graph, GraphCache, Isolation, Trace
from pipelines.model import CONTROL_VALVE_RULES, SERVICE_KINDS
from query.scope import EVERYTHING, Scope
from twin.crs import axis_ordered_to_wgs84, epsg_xy, parse_crs, utm_or_gk_epsg
from twin.errors import InvalidData, InvalidParameter, LimitExceeded, NotFound

DIRECTIONS = ("upstream", "downstream", "connected")
OUTAGE_BUFFER_M = 25.0  # the outage area reaches this far from the pipes that lose water
COMPONENT_REACH_DEG = 2e-5  # about 2 m: a component this close to a node sits on it
MAX_FOOTPRINT_M2 = 1_000_000.0


@dataclass
class Start:
    network: str
    segment: int | None = None  # index in the graph
    node: int | None = None
    snapped: dict[str, Any] | None = None  # for a point: the pipe found and how far it was


# --- finding the start -------------------------------------------------------------------
async def _networks_having(conn: Any, table: str, column: str, value: str, net: str | None) -> list:
    # table and column are one of two fixed pairs, never request text
    query = f"SELECT DISTINCT network FROM twin.{table} WHERE {column} = %s"  # noqa: S608
    query += " AND deleted_at IS NULL"
    params: list[Any] = [value]
    if net:
        query += " AND network = %s"
        params.append(net)
    cur = await conn.execute(query, params)
    return [r[0] for r in await cur.fetchall()]


def point_lonlat(point: list[float], crs: str | None) -> tuple[float, float]:
    if len(point) != 2 or not all(np.isfinite(point)):
        raise InvalidParameter("point is [x, y]: two finite numbers (lon, lat by default)")
    if not crs:
        lon, lat = point
    else:
        lon, lat = axis_ordered_to_wgs84(np.array([point], dtype=float), parse_crs(crs))[0]
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidParameter(f"point {point} is outside lon/lat range: is the crs right?")
    return float(lon), float(lat)


NEAREST_SQL = """
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g),
     c AS (SELECT s.network, s.pipe_id, s.geom FROM twin.pipe_segments s
           JOIN twin.pipe_networks n ON n.name = s.network, p
           WHERE s.deleted_at IS NULL AND (%(net)s::text IS NULL OR s.network = %(net)s)
             AND (NOT %(pressure)s OR NOT n.gravity)
           ORDER BY s.geom <-> p.g LIMIT 8)
SELECT c.network, c.pipe_id, ST_Distance(c.geom::geography, p.g::geography) AS d
FROM c, p ORDER BY d LIMIT 1
"""


async def resolve_start(
    conn: Any,
    start: dict[str, Any],
    network: str | None,
    *,
    pressure_only: bool = False,
    allow_node: bool = True,
) -> tuple[str, str | None, str | None, dict | None]:
    """(network, pipe id, node id, snapped) for a start given as a segment, node or point."""
    given = [k for k in ("segment", "node", "point") if start.get(k) is not None]
    if len(given) != 1 or (given[0] == "node" and not allow_node):
        kinds = "segment, node or point" if allow_node else "segment or point"
        raise InvalidParameter(f"start names exactly one of {kinds}")
    kind = given[0]
    if kind == "point":
        lon, lat = point_lonlat(start["point"], start.get("crs"))
        limit = float(start.get("max_distance_m") or 50.0)
        cur = await conn.execute(
            NEAREST_SQL, {"lon": lon, "lat": lat, "net": network, "pressure": pressure_only}
        )
        row = await cur.fetchone()
        if row is None:
            where = f"in network {network!r}" if network else "in any network"
            raise NotFound(f"there are no pipes {where} to snap the point to")
        net, pipe_id, dist = row
        if dist > limit:
            raise InvalidParameter(
                f"the nearest pipe ({pipe_id} in {net}) is {dist:.1f} m from the point, farther "
                f"than max_distance_m = {limit:g}: start closer to a pipe or raise the limit"
            )
        return net, pipe_id, None, {"pipe_id": pipe_id, "distance_m": round(dist, 2)}
    value = str(start[kind])
    table, column = ("pipe_segments", "pipe_id") if kind == "segment" else ("pipe_nodes", "node_id")
    nets = await _networks_having(conn, table, column, value, network)
    what = "pipe" if kind == "segment" else "node"
    if not nets:
        where = f" in network {network!r}" if network else ""
        raise NotFound(f"no {what} {value!r}{where}")
    if len(nets) > 1:
        raise InvalidParameter(
            f"{what} {value!r} exists in networks {', '.join(sorted(nets))}: name the network"
        )
    return (nets[0], value, None, None) if kind == "segment" else (nets[0], None, value, None)


def check_readable(scope: Scope, network: str) -> None:
    """A network the caller may not read is as unknown as a missing one."""
    if scope.networks is not None and network not in scope.networks:
        raise NotFound(f"no pipe network {network!r}; see /pipelines")


async def start_in_graph(
    conn: Any,
    cache: GraphCache,
    start: dict,
    network: str | None,
    scope: Scope = EVERYTHING,
    **kw: Any,
) -> tuple[Graph, Start]:
    """The graph of the start's network and the start in it; a network outside ``scope``
    is refused before its graph is read."""
    net, pipe_id, node_id, snapped = await resolve_start(conn, start, network, **kw)
    check_readable(scope, net)
    for _ in range(2):
        g = await cache.get(conn, net)
        if pipe_id is not None and pipe_id in g.seg_index:
            return g, Start(net, segment=g.seg_index[pipe_id], snapped=snapped)
        if node_id is not None and node_id in g.node_index:
            return g, Start(net, node=g.node_index[node_id])
        cache.forget(net)  # written between our two reads: build again from a fresh snapshot
    raise NotFound(f"{pipe_id or node_id} changed while it was being read; ask again")


# --- output --------------------------------------------------------------------------------
def _totals(g: Graph, segs: np.ndarray, nodes: np.ndarray) -> dict[str, Any]:
    by_diameter: dict[str, float] = {}
    by_material: dict[str, float] = {}
    for s in segs.tolist():
        d = g.seg_diameter[s]
        key = "unknown" if d is None else f"{float(d):g}"
        by_diameter[key] = by_diameter.get(key, 0.0) + g.seg_length[s]
        m = g.seg_material[s] or "unknown"
        by_material[m] = by_material.get(m, 0.0) + g.seg_length[s]
    kinds, counts = np.unique(g.node_kind[nodes].astype(str), return_counts=True)
    return {
        "segments": len(segs),
        "length_m": round(float(g.seg_length[segs].sum()), 2),
        "length_by_diameter_mm": {k: round(v, 2) for k, v in sorted(by_diameter.items())},
        "length_by_material": {k: round(v, 2) for k, v in sorted(by_material.items())},
        "nodes": len(nodes),
        "nodes_by_kind": {str(k): int(c) for k, c in zip(kinds, counts, strict=True)},
    }


SEG_FEATURES_SQL = """
SELECT id, pipe_id, from_node, to_node, utility, subclass, diameter_mm, material, year_laid,
       length_m, owner, ST_AsGeoJSON(geom, 7)
FROM twin.pipe_segments WHERE id = ANY(%s)
"""
NODE_FEATURES_SQL = """
SELECT id, node_id, kind, valve_state, name, ST_AsGeoJSON(geom, 7)
FROM twin.pipe_nodes WHERE id = ANY(%s)
"""


async def _features(
    conn: Any, g: Graph, roles: dict[str, np.ndarray], node_roles: dict[str, np.ndarray]
) -> list[dict]:
    role_of = {int(g.seg_db[s]): r for r, segs in roles.items() for s in segs.tolist()}
    node_role = {int(g.node_db[n]): r for r, ns in node_roles.items() for n in ns.tolist()}
    out: list[dict] = []
    if role_of:
        cur = await conn.execute(SEG_FEATURES_SQL, [list(role_of)])
        for fid, pid, a, b, util, sub, dia, mat, year, length, owner, geo in await cur.fetchall():
            props = {
                "kind": "segment",
                "role": role_of[fid],
                "pipe_id": pid,
                "from_node": a,
                "to_node": b,
                "utility": util,
                "subclass": sub,
                "diameter_mm": dia,
                "material": mat,
                "year_laid": year,
                "length_m": length,
                "owner": owner,
            }
            out.append(
                {"type": "Feature", "id": fid, "geometry": json.loads(geo), "properties": props}
            )
    if node_role:
        cur = await conn.execute(NODE_FEATURES_SQL, [list(node_role)])
        for fid, nid, kind, state, name, geo in await cur.fetchall():
            props = {
                "kind": kind,
                "role": node_role[fid],
                "node_id": nid,
                "valve_state": state,
                "name": name,
            }
            out.append(
                {"type": "Feature", "id": fid, "geometry": json.loads(geo), "properties": props}
            )
    return out


# --- traces --------------------------------------------------------------------------------
async def trace(
    conn: Any,
    cache: GraphCache,
    start: dict,
    direction: str,
    network: str | None,
    scope: Scope = EVERYTHING,
) -> dict[str, Any]:
    """What is upstream of, downstream of or connected to the start, in a network ``scope``
    lets the caller read."""
    if direction not in DIRECTIONS:
        raise InvalidParameter(
            f"direction {direction!r} is unknown: use one of {', '.join(DIRECTIONS)}"
        )
    g, at = await start_in_graph(conn, cache, start, network, scope)
    if direction != "connected" and not g.gravity and len(g.sources) == 0:
        raise InvalidData(
            f"network {g.network} has no sources (plant, reservoir, tank, regulator), so "
            f"'{direction}' has no meaning there; add a source node or trace 'connected'"
        )
    result: Trace = g.trace(seg=at.segment, node=at.node, direction=direction)
    warnings = []
    if not g.gravity and direction != "connected" and not _start_supplied(g, at):
        warnings.append(
            "the start is not supplied by any source now (behind a closed valve, or on a part "
            "of the network no source reaches), so flow directions there are unknown"
        )
    stopped = np.array(result.stopped_at, dtype=np.int64)
    features = await _features(
        conn,
        g,
        {"traced": result.segments},
        {"traced": np.setdiff1d(result.nodes, stopped), "closed_valve": stopped},
    )
    return {
        "type": "FeatureCollection",
        "network": g.network,
        "direction": direction,
        "flow_rule": "flow direction" if g.gravity else "away from the sources",
        "start": _start_info(g, at),
        "totals": _totals(g, result.segments, result.nodes),
        "stopped_at_closed_valves": [g.node_name[v] for v in result.stopped_at],
        "warnings": warnings,
        "features": features,
    }


def _start_supplied(g: Graph, at: Start) -> bool:
    if at.segment is not None:
        return g.supplied(at.segment)
    assert at.node is not None
    return bool(np.isfinite(g.distance_to_sources()[at.node]))


def _start_info(g: Graph, at: Start) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if at.segment is not None:
        info["segment"] = g.seg_name[at.segment]
    if at.node is not None:
        info["node"] = g.node_name[at.node]
    if at.snapped:
        info["snapped"] = at.snapped
    return info


# --- isolation -----------------------------------------------------------------------------
def _valve_ids(g: Graph, names: list[str]) -> set[int]:
    out = set()
    for name in names:
        i = g.node_index.get(name)
        if i is None or not g.is_valve[i]:
            raise InvalidParameter(f"{name!r} is not a valve of network {g.network}")
        out.add(i)
    return out


def _affected_nodes(g: Graph, segs: np.ndarray, exclude: set[int]) -> np.ndarray:
    ends = np.unique(np.concatenate([g.seg_a[segs], g.seg_b[segs]])) if len(segs) else segs
    return np.array([n for n in ends.tolist() if n >= 0 and n not in exclude], dtype=np.int64)


async def _components_on(conn: Any, node_ids: list[int]) -> list[dict[str, Any]]:
    """The components sitting on the affected nodes."""
    cur = await conn.execute(
        """
        SELECT DISTINCT c.code, c.class_code, c.class_name, c.status
        FROM twin.pipe_nodes n JOIN twin.components_current c
          ON ST_DWithin(c.geom, n.geom, %s)
        WHERE n.id = ANY(%s) ORDER BY c.code
        """,
        [COMPONENT_REACH_DEG, node_ids],
    )
    return [
        {"code": a, "class_code": b, "class_name": c, "status": d}
        for a, b, c, d in await cur.fetchall()
    ]


async def _impact(conn: Any, g: Graph, iso: Isolation, scope: Scope) -> dict[str, Any]:
    boundary = set(iso.to_close) | set(iso.already_closed)
    lost = np.concatenate([iso.isolated, iso.cut_off])
    nodes = _affected_nodes(g, lost, boundary)
    kinds = g.node_kind[nodes].astype(str) if len(nodes) else np.array([], dtype=str)
    service = nodes[np.isin(kinds, list(SERVICE_KINDS))]
    seg_ids = [int(x) for x in g.seg_db[lost]]
    node_ids = [int(x) for x in g.node_db[nodes]]
    # Components the caller may not read are not fetched, and the answer has no such key.
    components = await _components_on(conn, node_ids) if scope.components else None
    cur = await conn.execute(
        "SELECT DISTINCT g.code FROM twin.grid_unit g JOIN twin.pipe_segments s "
        "ON ST_Intersects(g.geom, s.geom) WHERE s.id = ANY(%s) ORDER BY g.code",
        [seg_ids],
    )
    grids = [r[0] for r in await cur.fetchall()]
    area, area_m2 = await _outage_area(conn, g, lost)
    impact: dict[str, Any] = {
        "isolated": _totals(g, iso.isolated, np.array([], dtype=np.int64))
        | {"pipe_ids": [g.seg_name[s] for s in iso.isolated.tolist()]},
        "cut_off": _totals(g, iso.cut_off, np.array([], dtype=np.int64))
        | {"pipe_ids": [g.seg_name[s] for s in iso.cut_off.tolist()]},
        "service_points": {
            "count": len(service),
            "node_ids": [g.node_name[n] for n in service.tolist()],
        },
        "affected_nodes_by_kind": _totals(g, np.array([], dtype=np.int64), nodes)["nodes_by_kind"],
        "components": components,
        "unit_grids": grids,
        "outage_area": area,
        "outage_area_m2": area_m2,
    }
    if components is None:
        del impact["components"]
    return impact


# Buffering hundreds of pipes one by one is slow in GEOS; snapped to a 1 m grid and merged into
# long lines first, the same area (within a fraction of a percent) comes several times faster.
async def _outage_area(conn: Any, g: Graph, segs: np.ndarray) -> tuple[dict | None, float]:
    if not len(segs):
        return None, 0.0
    lon = float(np.nanmean(g.node_xy[:, 0])) if g.n_nodes else 117.0
    cur = await conn.execute(
        """
        WITH a AS (SELECT ST_Buffer(ST_LineMerge(ST_Collect(ST_SnapToGrid(
                       ST_Transform(geom, %(srid)s), %(snap)s))), %(m)s, 2) AS g
                   FROM twin.pipe_segments WHERE id = ANY(%(ids)s))
        SELECT ST_AsGeoJSON(ST_Transform(g, 4326), 7), ST_Area(g) FROM a
        """,
        {
            "srid": utm_or_gk_epsg(lon),
            "m": OUTAGE_BUFFER_M,
            # a coarser grid for outages of thousands of pipes keeps the answer in seconds
            "snap": 1.0 if len(segs) < 2000 else 5.0,
            "ids": [int(x) for x in g.seg_db[segs]],
        },
    )
    row = await cur.fetchone()
    return (json.loads(row[0]), round(float(row[1]), 1)) if row and row[0] else (None, 0.0)


def _valves(g: Graph, nodes: list[int]) -> list[dict]:
    return [
        {
            "node_id": g.node_name[v],
            "kind": g.node_kind[v],
            "state": g.valve_state[v],
            "lon": round(float(g.node_xy[v][0]), 7),
            "lat": round(float(g.node_xy[v][1]), 7),
        }
        for v in nodes
    ]


async def _isolation_body(conn: Any, g: Graph, iso: Isolation, scope: Scope) -> dict[str, Any]:
    body: dict[str, Any] = {
        "valves_to_close": _valves(g, iso.to_close),
        "valves_already_closed": _valves(g, iso.already_closed),
        "valves_inoperable": _valves(g, iso.inoperable),
        "sources": iso.sources,
        "warnings": [],
    }
    if iso.sources == 0:
        body["warnings"].append(
            f"network {g.network} has no sources (plant, reservoir, tank, regulator): the "
            "isolated segment is known, but which further pipes lose supply is not"
        )
    elif not g.supplied(iso.burst):
        body["warnings"].append(
            "the burst pipe gets no water now (behind a closed valve, or on a part no source "
            "reaches): nothing needs closing to stop it losing supply"
        )
    if not iso.to_close and g.supplied(iso.burst):
        body["warnings"].append(
            "no valve can isolate this pipe: every path out of it has no operable valve"
        )
    passed = _control_valves_passed(g, iso)
    if passed:
        shown = ", ".join(passed[:5]) + (f" and {len(passed) - 5} more" if len(passed) > 5 else "")
        body["warnings"].append(
            f"{len(passed)} control valve(s) inside the isolated area ({shown}) were passed, "
            'not closed; ask with "control_valves": "closable" to let them bound it'
        )
    return body | await _impact(conn, g, iso, scope)


def _control_valves_passed(g: Graph, iso: Isolation) -> list[str]:
    """Open control valves the isolated area runs through (none when they are closable)."""
    if iso.control_valves == "closable" or not g.is_control_valve.any():
        return []
    ends = np.concatenate([g.seg_a[iso.isolated], g.seg_b[iso.isolated]])
    ends = np.unique(ends[ends >= 0])
    inside = ends[g.is_control_valve[ends] & ~g.closed[ends] & ~g.stored_inoperable[ends]]
    return [g.node_name[v] for v in inside.tolist()]


async def isolate(
    conn: Any,
    cache: GraphCache,
    start: dict,
    network: str | None,
    inoperable: list[str],
    second_pass: bool,
    control_valves: str = CONTROL_VALVE_RULES[0],
    scope: Scope = EVERYTHING,
) -> dict[str, Any]:
    """Valves to close for a burst and what loses supply; ``control_valves`` is
    ``passable`` (water passes control valves, as in WNTR) or ``closable``. Only the networks
    and components ``scope`` lets the caller read are drawn on."""
    if control_valves not in CONTROL_VALVE_RULES:
        raise InvalidParameter(
            f"control_valves {control_valves!r} is not one of {', '.join(CONTROL_VALVE_RULES)}"
        )
    if network:
        cur = await conn.execute(
            "SELECT gravity FROM twin.pipe_networks WHERE name = %s", [network]
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no pipe network {network!r}; see /pipelines")
        if row[0]:
            raise InvalidParameter(
                f"network {network} is a gravity network: it has no valves to close; "
                "isolation applies to pressure networks (water, gas, heat)"
            )
    g, at = await start_in_graph(
        conn, cache, start, network, scope, pressure_only=True, allow_node=False
    )
    if g.gravity:
        raise InvalidParameter(
            f"network {g.network} is a gravity network: it has no valves to close; isolation "
            "applies to pressure networks (water, gas, heat)"
        )
    assert at.segment is not None
    failed = _valve_ids(g, inoperable)
    first = g.isolate(at.segment, failed, control_valves)
    out: dict[str, Any] = {
        "type": "FeatureCollection",
        "network": g.network,
        "burst": _start_info(g, at),
        "control_valves": control_valves,
    }
    out |= await _isolation_body(conn, g, first, scope)
    if second_pass:
        again = g.isolate(at.segment, failed | set(first.to_close), control_valves)
        out["second_pass"] = await _isolation_body(conn, g, again, scope)
        out["second_pass"]["assumes_failed"] = [g.node_name[v] for v in first.to_close]
    out["features"] = await _features(
        conn,
        g,
        {
            "burst": np.array([at.segment]),
            "isolated": np.setdiff1d(first.isolated, [at.segment]),
            "cut_off": first.cut_off,
        },
        {
            "valve_to_close": np.array(first.to_close, dtype=np.int64),
            "valve_already_closed": np.array(first.already_closed, dtype=np.int64),
        },
    )
    return out


# --- excavation conflicts ------------------------------------------------------------------
CONFLICTS_SQL = """
WITH f AS (SELECT ST_SetSRID(ST_GeomFromGeoJSON(%(g)s), 4326) AS g),
     s AS (SELECT s.*, LEAST(s.depth_m, s.start_depth_m, s.end_depth_m) AS cover
           FROM twin.pipe_segments s, f
           WHERE s.deleted_at IS NULL AND ST_Intersects(s.geom, f.g)
             AND (%(nets)s::text[] IS NULL OR s.network = ANY(%(nets)s)))
SELECT s.network, s.pipe_id, s.utility, s.subclass, s.owner, s.diameter_mm, s.material,
       s.cover, round(ST_Length(ST_Intersection(s.geom, f.g)::geography)::numeric, 2),
       ST_AsGeoJSON(ST_Intersection(s.geom, f.g), 7)
FROM s, f
WHERE s.cover IS NULL OR s.cover < %(limit)s
ORDER BY s.cover NULLS FIRST, s.network, s.pipe_id
"""


def footprint(geometry: Any, crs: str | None, width_m: float) -> tuple[shapely.Geometry, float]:
    """The dig footprint in lon/lat, and its area: a polygon as given, a line widened."""
    try:
        shape = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.GEOSException, TypeError, ValueError):
        raise InvalidParameter("geometry is not valid GeoJSON") from None
    if shape.is_empty or shape.geom_type not in (
        "Polygon",
        "MultiPolygon",
        "LineString",
        "MultiLineString",
    ):
        raise InvalidParameter(
            f"a dig footprint is a Polygon or a LineString with width_m, not "
            f"{'an empty geometry' if shape.is_empty else shape.geom_type}"
        )
    if not shape.is_valid:
        raise InvalidParameter(f"invalid geometry: {shapely.is_valid_reason(shape)}")
    if crs:
        ref = parse_crs(crs)
        shape = shapely.transform(shape, lambda xy: axis_ordered_to_wgs84(xy, ref))
    west, south, east, north = shape.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise InvalidParameter("coordinates are outside lon/lat range: give the crs they are in")
    zone = utm_or_gk_epsg((west + east) / 2)
    metric = shapely.transform(shape, lambda xy: epsg_xy(xy, 4326, zone))
    if metric.geom_type in ("LineString", "MultiLineString"):
        if width_m <= 0:
            raise InvalidParameter("a line footprint needs width_m > 0 (the trench width)")
        metric = metric.buffer(width_m / 2, cap_style="flat")
    area = float(metric.area)
    if area > MAX_FOOTPRINT_M2:
        raise LimitExceeded(
            f"the footprint is {area:,.0f} m², more than the {MAX_FOOTPRINT_M2:,.0f} m² limit "
            "of one conflict check; split the work area"
        )
    ll = shapely.transform(metric, lambda xy: epsg_xy(xy, zone, 4326))
    return ll, area


async def conflicts(
    conn: Any,
    geometry: Any,
    crs: str | None,
    width_m: float,
    dig_depth_m: float,
    clearance_m: float,
    networks: list[str] | None,
) -> dict[str, Any]:
    shape, area = footprint(geometry, crs, width_m)
    limit = dig_depth_m + clearance_m
    if networks:
        cur = await conn.execute(
            "SELECT array_agg(n) FROM unnest(%s::text[]) n "
            "WHERE n NOT IN (SELECT name FROM twin.pipe_networks)",
            [networks],
        )
        unknown = (await cur.fetchone() or [None])[0]
        if unknown:
            raise NotFound(f"no pipe network {', '.join(unknown)}; see /pipelines")
    else:
        networks = None
    cur = await conn.execute(
        CONFLICTS_SQL, {"g": shapely.to_geojson(shape), "nets": networks, "limit": limit}
    )
    features: list[dict] = []
    owners: dict[str, int] = {}
    for net, pid, util, sub, owner, dia, mat, cover, inside, geo in await cur.fetchall():
        features.append(
            {
                "type": "Feature",
                "geometry": json.loads(geo),
                "properties": {
                    "network": net,
                    "pipe_id": pid,
                    "utility": util,
                    "subclass": sub,
                    "owner": owner,
                    "diameter_mm": dia,
                    "material": mat,
                    "depth_m": cover,
                    "depth_known": cover is not None,
                    "length_in_footprint_m": float(inside),
                },
            }
        )
        key = owner or "unknown owner"
        owners[key] = owners.get(key, 0) + 1
    return {
        "type": "FeatureCollection",
        "dig_depth_m": dig_depth_m,
        "clearance_m": clearance_m,
        "conflict_depth_m": limit,
        "footprint": json.loads(shapely.to_geojson(shape)),
        "footprint_area_m2": round(area, 1),
        "conflicts": len(features),
        "by_owner": dict(sorted(owners.items())),
        "note": "pipes with no recorded depth are listed as conflicts (depth_known false)",
        "features": features,
    }
