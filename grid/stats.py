"""Aggregation of any layer by grid cell: count of features, length of lines, area of polygons.

Every current cell of the level gets a row, zero included, so a choropleth has no holes.
Lengths and areas are measured on the spheroid (geography), in metres and square metres, of
the part of each feature inside the cell.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from grid.codes import check_level
from layers.registry import Layer
from twin.errors import InvalidParameter

MEASURES = ("count", "length", "area")
MAX_GROUPS = 50


def check_measure(measure: str, layer: Layer) -> None:
    if measure not in MEASURES:
        raise InvalidParameter(f"unknown measure {measure!r}; use count, length or area")
    kind = layer.geometry_type.replace("Multi", "")
    if measure == "length" and kind != "LineString":
        raise InvalidParameter(
            f"measure=length needs a line layer; {layer.name!r} holds {layer.geometry_type}"
        )
    if measure == "area" and kind != "Polygon":
        raise InvalidParameter(
            f"measure=area needs a polygon layer; {layer.name!r} holds {layer.geometry_type}"
        )


def _owned_sql(layer: Layer, measure: str, group_col: sql.Composable) -> sql.Composable:
    """(code, grp, value) rows where every point, and every piece of a line, has one owner.

    A point on a shared edge belongs to the cell with the smallest code (as in locate); a
    piece of line lying along a shared edge is clipped into both cells with the same
    midpoint, and also goes to the smaller code, so nothing is counted twice.
    """
    table = sql.Identifier(layer.schema_name, layer.table_name)
    pairs = sql.SQL("FROM cells c JOIN {} t ON ST_Intersects(c.geom, t.geom)").format(table)
    if measure == "count" and "Point" in layer.geometry_type:
        return sql.SQL(
            "SELECT DISTINCT ON (t.fid) c.code, {g} AS grp, 1.0 AS value {pairs} "
            "ORDER BY t.fid, c.code"
        ).format(g=group_col, pairs=pairs)
    if measure == "count":
        return sql.SQL("SELECT c.code, {g} AS grp, 1.0 AS value {pairs}").format(
            g=group_col, pairs=pairs
        )
    if measure == "area":
        return sql.SQL(
            "SELECT c.code, {g} AS grp, ST_Area(ST_Intersection(t.geom, c.geom)::geography) "
            "AS value {pairs}"
        ).format(g=group_col, pairs=pairs)
    return sql.SQL(
        """
        SELECT DISTINCT ON (p.fid, ST_AsBinary(p.mid)) p.code, p.grp,
               ST_Length(p.piece::geography) AS value
        FROM (
            SELECT c.code, {g} AS grp, t.fid, d.geom AS piece,
                   ST_SnapToGrid(ST_LineInterpolatePoint(d.geom, 0.5), 1e-9) AS mid
            {pairs}, ST_Dump(ST_CollectionExtract(ST_Intersection(t.geom, c.geom), 2)) d
        ) p
        ORDER BY p.fid, ST_AsBinary(p.mid), p.code
        """
    ).format(g=group_col, pairs=pairs)


def stats_sql(level: str, layer: Layer, measure: str, group: str | None) -> sql.Composed:
    """Rows of (code, name, group value, measure) for every cell of the level."""
    check_level(level)
    check_measure(measure, layer)
    if group is not None and group not in layer.field_names:
        raise InvalidParameter(
            f"unknown group field {group!r} in {layer.name!r}; it has: "
            f"{', '.join(layer.field_names)}"
        )
    group_col = sql.SQL("t.{}::text").format(sql.Identifier(group)) if group else sql.SQL("NULL")
    return sql.SQL(
        """
        WITH cells AS (
            SELECT code, name, geom FROM twin.grid_cells WHERE level = %s AND valid_to IS NULL
        ), owned AS ({owned})
        SELECT c.code, c.name, o.grp, coalesce(sum(o.value), 0) AS value
        FROM cells c LEFT JOIN owned o ON o.code = c.code
        GROUP BY c.code, c.name, o.grp
        ORDER BY c.code, o.grp
        """
    ).format(owned=_owned_sql(layer, measure, group_col))


async def grid_stats(
    conn: psycopg.AsyncConnection, level: str, layer: Layer, measure: str, group: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """One dict per cell: code, name, total and (with a group) a key "FIELD=value" per value."""
    cur = await conn.execute(stats_sql(level, layer, measure, group), [level])
    rows = await cur.fetchall()
    cells: dict[str, dict[str, Any]] = {}
    groups: list[str] = []
    for code, name, grp, value in rows:
        cell = cells.setdefault(code, {"code": code, "name": name, "total": 0.0})
        cell["total"] += float(value)
        if group is not None and grp is not None:
            key = f"{group}={grp}"  # never collides with code, name or total
            if key not in groups:
                groups.append(key)
            cell[key] = float(value)
    if len(groups) > MAX_GROUPS:
        raise InvalidParameter(
            f"group field {group!r} has {len(groups)} values; at most {MAX_GROUPS} can be columns"
        )
    groups.sort()
    for cell in cells.values():
        for g in groups:
            cell.setdefault(g, 0.0)
        if measure == "count":
            for key in ("total", *groups):
                cell[key] = int(cell[key])
        else:
            for key in ("total", *groups):
                cell[key] = round(cell[key], 2)
    return list(cells.values()), groups


_CELL_SHAPES = (
    "SELECT code, ST_AsGeoJSON(geom, 7) FROM twin.grid_cells WHERE level = %s AND valid_to IS NULL"
)


async def cell_shapes(conn: psycopg.AsyncConnection, level: str) -> dict[str, str]:
    """The GeoJSON geometry text of each current cell of ``level``, by code."""
    cur = await conn.execute(_CELL_SHAPES, [level])
    return dict(await cur.fetchall())
