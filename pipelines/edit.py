"""Editing pipes and nodes (OGC API Features Part 4), with versions and history.

A collection ``<network>_pipes`` or ``<network>_nodes`` edits the rows of that network. The
topology stays whole: a pipe's ends must lie on its nodes, a node with pipes cannot be deleted,
and moving a node moves the ends of its pipes with it. Every write bumps the network's
revision, so traces and isolation see it on their next request.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb

from layers import versioned
from pipelines.model import FLOWS, NODE_KINDS, STATES, VALVE_KINDS, VALVE_STATES
from pipelines.topology import END_OFF_M
from twin.errors import Conflict, InvalidData, NotFound

COLLECTION = re.compile(r"([a-z][a-z0-9_]{0,30})_(pipes|nodes)")

NUMBERS = {
    "diameter_mm",
    "depth_m",
    "start_depth_m",
    "end_depth_m",
    "start_invert_m",
    "end_invert_m",
    "ground_elev_m",
    "invert_m",
}
SEGMENT_FIELDS = (
    "pipe_id",
    "from_node",
    "to_node",
    "subclass",
    "diameter_mm",
    "section",
    "material",
    "year_laid",
    "depth_m",
    "start_depth_m",
    "end_depth_m",
    "start_invert_m",
    "end_invert_m",
    "flow",
    "state",
    "owner",
    "laying",
    "attributes",
)
NODE_FIELDS = (
    "node_id",
    "kind",
    "valve_state",
    "name",
    "ground_elev_m",
    "invert_m",
    "depth_m",
    "attributes",
)
DERIVED = {
    "fid",
    "utility",
    "utility_name",
    "color",
    "feature_code",
    "length_m",
    "unit_grid",
    "version",
}
CHOICES = {
    "flow": FLOWS,
    "state": STATES,
    "valve_state": VALVE_STATES,
    "kind": tuple(sorted(NODE_KINDS)),
}


@dataclass(frozen=True)
class Target:
    network: str
    what: str  # "pipes" or "nodes"

    @property
    def table(self) -> versioned.VersionedTable:
        name = "pipe_segments" if self.what == "pipes" else "pipe_nodes"
        # the network name matched COLLECTION, so it is safe inside SQL text
        return versioned.VersionedTable(
            name,
            f"{name}_history",
            f"deleted_at IS NULL AND network = '{self.network}'",
            f"{self.network} {'pipe' if self.what == 'pipes' else 'node'}",
            scope=f"network = '{self.network}'",
        )

    @property
    def fields(self) -> tuple[str, ...]:
        return SEGMENT_FIELDS if self.what == "pipes" else NODE_FIELDS


def target_of(collection_id: str) -> Target | None:
    m = COLLECTION.fullmatch(collection_id)
    return Target(m.group(1), m.group(2)) if m else None


async def check_network(conn: psycopg.AsyncConnection, t: Target) -> None:
    if await versioned.scalar(
        conn, "SELECT 1 FROM twin.pipe_networks WHERE name = %s", [t.network]
    ):
        return
    raise NotFound(f"no pipe network {t.network!r}")


def _typed(key: str, value: Any) -> Any:
    if value is None or key == "attributes":
        if key == "attributes" and not isinstance(value, dict | None):
            raise InvalidData("attributes is an object of extra fields")
        return Jsonb(value or {}) if key == "attributes" else None
    if key in NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidData(f"{key} is a number, not {value!r}")
        if not math.isfinite(value) or abs(value) > 1e6:
            raise InvalidData(f"{key} {value!r} is out of range")
        return float(value)
    if key == "year_laid":
        if isinstance(value, bool) or not isinstance(value, int) or not 1800 <= value <= 2200:
            raise InvalidData(f"year_laid is a year such as 1998, not {value!r}")
        return value
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidData(f"{key} is text, not {type(value).__name__}")
    text = str(value).strip()
    if key in CHOICES and text not in CHOICES[key]:
        raise InvalidData(f"{key} {text!r} is not one of {', '.join(CHOICES[key])}")
    if not text and key in ("pipe_id", "node_id", "from_node", "to_node"):
        raise InvalidData(f"{key} cannot be empty")
    return text


def parse(feature: Any, t: Target, *, partial: bool) -> tuple[dict[str, Any], str | None]:
    """The columns to set and the geometry (GeoJSON text) of a Feature."""
    if not isinstance(feature, dict):
        raise InvalidData("send a GeoJSON Feature")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise InvalidData("properties is an object")
    unknown = sorted(k for k in props if k not in t.fields and k not in DERIVED)
    if unknown:
        raise InvalidData(
            f"unknown propert{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
            f"editable: {', '.join(t.fields)}"
        )
    values = {k: _typed(k, props[k]) for k in t.fields if k in props}
    geometry = feature.get("geometry")
    if geometry is None:
        return values, None
    want = "LineString" if t.what == "pipes" else "Point"
    try:
        shape = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.GEOSException, TypeError, ValueError):
        raise InvalidData("geometry is not valid GeoJSON") from None
    shape = shapely.force_2d(shape)  # heights live in the elevation fields, not the geometry
    if shape.geom_type != want or shape.is_empty:
        raise InvalidData(f"a {t.what[:-1]} is a {want}, not a {shape.geom_type}")
    west, south, east, north = shape.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise InvalidData("coordinates must be longitude, latitude (CRS84)")
    return values, shapely.to_geojson(shape)


_ENDS_SQL = """
SELECT s.pipe_id, e.which, e.node, n.node_id IS NULL,
       ST_Distance(e.pt::geography, n.geom::geography)
FROM twin.pipe_segments s
CROSS JOIN LATERAL (VALUES ('starts', s.from_node, ST_StartPoint(s.geom)),
                           ('ends', s.to_node, ST_EndPoint(s.geom))) e(which, node, pt)
LEFT JOIN twin.pipe_nodes n ON n.network = s.network AND n.node_id = e.node
                           AND n.deleted_at IS NULL
WHERE s.id = %s
"""


async def _check_ends(conn: psycopg.AsyncConnection, fid: int) -> None:
    cur = await conn.execute(_ENDS_SQL, [fid])
    rows = await cur.fetchall()
    if rows and rows[0][2] == rows[1][2]:
        raise InvalidData(
            f"pipe {rows[0][0]} starts and ends at node {rows[0][2]}: a pipe joins two nodes"
        )
    for pipe_id, which, node, missing, dist in rows:
        if missing:
            raise InvalidData(f"pipe {pipe_id} {which} at node {node}, which does not exist")
        if dist > END_OFF_M:
            raise InvalidData(
                f"pipe {pipe_id} {which} {dist:.1f} m from its node {node}: a pipe's ends lie "
                f"on its nodes (within {END_OFF_M:g} m); move the node or fix the line"
            )


def _sets(values: dict[str, Any], geom: str | None, partial: bool) -> tuple[sql.Composed, list]:
    parts: list[sql.Composable] = []
    for k in values:
        if partial and k == "attributes":
            parts.append(sql.SQL("attributes = attributes || %s"))
        else:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(k)))
    params = list(values.values())
    if geom is not None:
        parts.append(sql.SQL("geom = ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)"))
        params.append(geom)
    if not parts:
        raise InvalidData("nothing to change: send properties or a geometry")
    return sql.SQL(", ").join(parts), params


async def _write(conn: psycopg.AsyncConnection, coro: Any) -> Any:
    try:
        return await coro
    except psycopg.errors.UniqueViolation:
        raise Conflict("another current feature of this network has that id") from None
    except psycopg.errors.CheckViolation as exc:
        raise InvalidData(f"a value is out of range ({exc.diag.constraint_name})") from None


async def update(
    conn: psycopg.AsyncConnection,
    t: Target,
    fid: int,
    feature: Any,
    version: int,
    *,
    partial: bool,
) -> int:
    await check_network(conn, t)
    values, geom = parse(feature, t, partial=partial)
    if not partial and geom is None:
        raise InvalidData(f"a replaced {t.what[:-1]} needs its geometry (or PATCH)")
    if t.what == "nodes" and values.get("kind") not in (None, *VALVE_KINDS):
        values.setdefault("valve_state", None)
    if values.get("kind") in VALVE_KINDS and "valve_state" not in values:
        # a valve stays as it is; a node becoming a valve starts open
        current = await versioned.scalar(
            conn, "SELECT valve_state FROM twin.pipe_nodes WHERE id = %s", [fid]
        )
        values["valve_state"] = current or "open"
    sets, params = _sets(values, geom, partial)
    async with conn.transaction():
        before = await _node_state(conn, t, fid) if t.what == "nodes" else None
        new = await _write(
            conn, versioned.guarded_update(conn, t.table, fid, version, sets, params)
        )
        if t.what == "pipes":
            await _check_ends(conn, fid)
        else:
            await _follow_node(conn, t, before, fid)
    return int(new)


async def _node_state(conn: psycopg.AsyncConnection, t: Target, fid: int) -> tuple | None:
    cur = await conn.execute(
        "SELECT node_id, ST_AsEWKB(geom) FROM twin.pipe_nodes WHERE id = %s AND network = %s",
        [fid, t.network],
    )
    return await cur.fetchone()


async def _follow_node(
    conn: psycopg.AsyncConnection, t: Target, before: tuple | None, fid: int
) -> None:
    """Pipes follow their node: its new place and its new id."""
    after = await _node_state(conn, t, fid)
    if before is None or after is None or tuple(before) == tuple(after):
        return
    await conn.execute(
        """
        UPDATE twin.pipe_segments s SET
          from_node = CASE WHEN s.from_node = %(old)s THEN %(new)s ELSE s.from_node END,
          to_node = CASE WHEN s.to_node = %(old)s THEN %(new)s ELSE s.to_node END,
          geom = CASE
            WHEN s.from_node = %(old)s AND s.to_node = %(old)s THEN s.geom
            WHEN s.from_node = %(old)s THEN ST_SetPoint(s.geom, 0, n.geom)
            ELSE ST_SetPoint(s.geom, ST_NPoints(s.geom) - 1, n.geom) END
        FROM twin.pipe_nodes n
        WHERE n.id = %(fid)s AND s.network = %(net)s AND s.deleted_at IS NULL
          AND (s.from_node = %(old)s OR s.to_node = %(old)s)
        """,
        {"old": before[0], "new": after[0], "fid": fid, "net": t.network},
    )


async def create(conn: psycopg.AsyncConnection, t: Target, feature: Any) -> tuple[int, int]:
    await check_network(conn, t)
    values, geom = parse(feature, t, partial=False)
    key = "pipe_id" if t.what == "pipes" else "node_id"
    needed = [key, "from_node", "to_node"] if t.what == "pipes" else [key, "kind"]
    missing = [k for k in needed if not values.get(k)]
    if missing:
        raise InvalidData(f"a new {t.what[:-1]} needs {', '.join(missing)}")
    if t.what == "nodes":
        if geom is None:
            raise InvalidData("a new node needs a Point geometry")
        if values["kind"] in VALVE_KINDS:
            values.setdefault("valve_state", "open")
    values["network"] = t.network
    cols = sql.SQL(", ").join(sql.Identifier(k) for k in values)
    if t.what == "pipes":
        geom_sql = sql.SQL(
            "coalesce(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326), (SELECT ST_MakeLine(a.geom, "
            "b.geom) FROM twin.pipe_nodes a, twin.pipe_nodes b WHERE a.network = %s AND "
            "b.network = a.network AND a.node_id = %s AND b.node_id = %s AND a.deleted_at IS "
            "NULL AND b.deleted_at IS NULL))"
        )
        extra = [geom, t.network, values["from_node"], values["to_node"]]
        cols = sql.SQL("{}, utility").format(cols)
        utility = sql.SQL(", (SELECT utility FROM twin.pipe_networks WHERE name = %s)")
        extra_after = [t.network]
    else:
        geom_sql = sql.SQL("ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)")
        extra, utility, extra_after = [geom], sql.SQL(""), []
    query = sql.SQL(
        "INSERT INTO twin.{} ({}, geom) VALUES ({}{}, {}) RETURNING id, version"
    ).format(
        sql.Identifier(t.table.table),
        cols,
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
        utility,
        geom_sql,
    )
    params = [*values.values(), *extra_after, *extra]
    async with conn.transaction():
        try:
            cur = await _write(conn, conn.execute(query, params))
        except psycopg.errors.NotNullViolation:
            raise InvalidData(
                f"pipe {values[key]}: node {values['from_node']} or {values['to_node']} does "
                "not exist; add the nodes first or send the line"
            ) from None
        fid, version = await cur.fetchone()
        if t.what == "pipes":
            await _check_ends(conn, fid)
    return int(fid), int(version)


async def delete(conn: psycopg.AsyncConnection, t: Target, fid: int, version: int) -> int:
    await check_network(conn, t)
    if t.what == "nodes":
        cur = await conn.execute(
            """
            SELECT string_agg(s.pipe_id, ', ' ORDER BY s.pipe_id), count(*)
            FROM twin.pipe_nodes n JOIN twin.pipe_segments s ON s.network = n.network
              AND s.deleted_at IS NULL AND n.node_id IN (s.from_node, s.to_node)
            WHERE n.id = %s AND n.network = %s
            """,
            [fid, t.network],
        )
        row = await cur.fetchone()
        if row and row[1]:
            raise Conflict(
                f"node {fid} still has {row[1]} pipe(s) ({row[0]}): delete or reconnect them first"
            )
    return await versioned.guarded_update(
        conn, t.table, fid, version, sql.SQL("deleted_at = now()"), []
    )


async def restore(
    conn: psycopg.AsyncConnection, t: Target, fid: int, to_version: int | None
) -> int:
    await check_network(conn, t)
    table = sql.Identifier("twin", t.table.table)
    if to_version is None:
        async with conn.transaction():
            cur = await _write(
                conn,
                conn.execute(
                    sql.SQL(
                        "UPDATE {} SET deleted_at = NULL WHERE id = %s AND network = %s "
                        "AND deleted_at IS NOT NULL RETURNING version"
                    ).format(table),
                    [fid, t.network],
                ),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound(
                    f"no deleted {t.table.label} {fid}: give ?version= for a prior state"
                )
            if t.what == "pipes":  # its nodes may have gone or moved meanwhile
                await _check_ends(conn, fid)
        return int(row[0])
    state = await versioned.prior_state(conn, t.table, fid, to_version)
    cols = [k for k in t.fields if k in state]
    sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in cols)
    params = [Jsonb(state[k]) if k == "attributes" else state[k] for k in cols]
    query = sql.SQL(
        "UPDATE {} SET {}, deleted_at = NULL, geom = ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326) "
        "WHERE id = %s AND network = %s RETURNING version"
    ).format(table, sets)
    async with conn.transaction():
        before = await _node_state(conn, t, fid) if t.what == "nodes" else None
        new = await _write(
            conn,
            versioned.scalar(conn, query, [*params, json.dumps(state["geom"]), fid, t.network]),
        )
        if new is None:
            raise NotFound(f"no {t.table.label} {fid}")
        if t.what == "pipes":
            await _check_ends(conn, fid)
        else:  # its pipes follow the restored place and id
            await _follow_node(conn, t, before, fid)
    return int(new)
