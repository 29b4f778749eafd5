"""Editing grid cells: names, notes and boundaries, with versions, history, retire, restore.

Codes, levels and parents change only through `twin grid import`, whose checks keep the
hierarchy whole; an edit here moves a boundary or renames a cell, and every prior state stays
in ``twin.grid_cells_history``.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import shapely
from psycopg import sql

from grid.codes import check_level
from grid.store import REASSIGN_COMPONENTS_SQL
from layers import versioned
from twin.errors import Conflict, InvalidData

EDITABLE = ("name", "note")
READ_ONLY = ("fid", "code", "parent_code", "area_m2", "valid_from", "version")


def table(level: str) -> versioned.VersionedTable:
    check_level(level)  # one of four fixed words, never free text from a request
    return versioned.VersionedTable(
        "grid_cells",
        "grid_cells_history",
        f"valid_to IS NULL AND level = '{level}'",
        f"{level} grid cell",
        scope=f"level = '{level}'",
    )


def parse_cell(feature: Any, *, partial: bool) -> tuple[dict[str, Any], str | None]:
    if not isinstance(feature, dict):
        raise InvalidData("send a GeoJSON Feature with a Polygon geometry and properties")
    props = feature.get("properties") or {}
    changed = sorted(k for k in props if k in READ_ONLY and k != "fid" and k != "version")
    if changed and any(k in ("code", "parent_code") for k in changed):
        raise InvalidData(
            "a cell's code and parent change only by re-importing its level (twin grid import), "
            "whose checks keep the hierarchy whole"
        )
    values = {k: (None if props[k] is None else str(props[k])) for k in EDITABLE if k in props}
    geometry = feature.get("geometry")
    if geometry is None:
        if not partial:
            raise InvalidData("a grid cell needs a Polygon geometry")
        return values, None
    try:
        shape = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.GEOSException, TypeError, ValueError):
        raise InvalidData("geometry is not valid GeoJSON") from None
    if shape.geom_type not in ("Polygon", "MultiPolygon") or shape.is_empty:
        raise InvalidData(f"a grid cell is a polygon, not a {shape.geom_type}")
    if not shape.is_valid:
        raise InvalidData(f"invalid polygon: {shapely.is_valid_reason(shape)}")
    west, south, east, north = shape.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise InvalidData("coordinates must be longitude, latitude (CRS84)")
    return values, str(shapely.to_geojson(shape))


_FITS = """
WITH n AS (SELECT ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(%(g)s), 4326)) AS g),
     me AS (SELECT parent_code, level FROM twin.grid_cells WHERE id = %(id)s)
SELECT
  (SELECT ST_Area(ST_Difference(n.g, p.geom)::geography) FROM twin.grid_cells p, me
   WHERE p.code = me.parent_code AND p.valid_to IS NULL),
  (SELECT string_agg(s.code || ' (' || round(ST_Area(ST_Intersection(n.g, s.geom)::geography))
                     || ' m²)', ', ' ORDER BY s.code)
   FROM twin.grid_cells s, me
   WHERE s.level = me.level AND s.valid_to IS NULL AND s.id <> %(id)s
     AND ST_Intersects(s.geom, n.g)
     AND ST_Area(ST_Intersection(n.g, s.geom)::geography) > %(tol)s)
FROM n
"""


async def check_fit(
    conn: psycopg.AsyncConnection, fid: int, geom: str, tolerance_m2: float = 1.0
) -> None:
    """A new boundary stays inside the parent and off the siblings, as an import requires."""
    cur = await conn.execute(_FITS, {"g": geom, "id": fid, "tol": tolerance_m2})
    row = await cur.fetchone()
    outside, overlaps = row if row else (None, None)
    if outside is not None and outside > tolerance_m2:
        raise InvalidData(f"the new boundary extends {outside:,.1f} m² outside the parent cell")
    if overlaps:
        raise InvalidData(f"the new boundary overlaps {overlaps}")


async def update(
    conn: psycopg.AsyncConnection,
    level: str,
    fid: int,
    feature: Any,
    version: int,
    *,
    partial: bool,
) -> int:
    values, geom = parse_cell(feature, partial=partial)
    sets: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values]
    params: list[Any] = list(values.values())
    if geom is not None:
        await check_fit(conn, fid, geom)
        sets.append(sql.SQL("geom = ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326))"))
        params.append(geom)
    if not sets:
        raise InvalidData("nothing to change: send name, note or a geometry")
    async with conn.transaction():
        new = await versioned.guarded_update(
            conn, table(level), fid, version, sql.SQL(", ").join(sets), params
        )
        if geom is not None and level == "unit":
            await conn.execute(REASSIGN_COMPONENTS_SQL)  # components follow the new boundary
    return new


async def retire(conn: psycopg.AsyncConnection, level: str, fid: int, version: int) -> int:
    return await versioned.guarded_update(
        conn, table(level), fid, version, sql.SQL("valid_to = current_date"), []
    )


async def restore(
    conn: psycopg.AsyncConnection, level: str, fid: int, to_version: int | None
) -> int:
    vt = table(level)
    sets: list[sql.Composable] = [sql.SQL("valid_to = NULL")]
    params: list[Any] = []
    if to_version is not None:
        state = await versioned.prior_state(conn, vt, fid, to_version)
        sets += [
            sql.SQL("name = %s"),
            sql.SQL("note = %s"),
            sql.SQL("geom = ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)"),
        ]
        params += [state.get("name"), state.get("note"), json.dumps(state["geom"])]
    query = sql.SQL(
        "UPDATE twin.grid_cells SET {} WHERE id = %s AND level = %s RETURNING version"
    ).format(sql.SQL(", ").join(sets))
    try:
        new = await versioned.scalar(conn, query, [*params, fid, level])
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"another current cell has this {level} cell's code; retire it first"
        ) from None
    if new is None:
        from twin.errors import NotFound

        raise NotFound(f"no {level} grid cell {fid}")
    return int(new)
