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


def _measure_sql(measure: str) -> sql.Composable:
    if measure == "count":
        return sql.SQL("count(t.geom)::double precision")
    if measure == "length":
        return sql.SQL("coalesce(sum(ST_Length(ST_Intersection(t.geom, c.geom)::geography)), 0)")
    return sql.SQL("coalesce(sum(ST_Area(ST_Intersection(t.geom, c.geom)::geography)), 0)")


def stats_sql(level: str, layer: Layer, measure: str, group: str | None) -> sql.Composed:
    """Rows of (code, name, group value, measure) for every cell of the level."""
    check_level(level)
    check_measure(measure, layer)
    if group is not None and group not in layer.field_names:
        raise InvalidParameter(
            f"unknown group field {group!r} in {layer.name!r}; it has: "
            f"{', '.join(layer.field_names)}"
        )
    table = sql.Identifier(layer.schema_name, layer.table_name)
    group_col = sql.SQL("t.{}::text").format(sql.Identifier(group)) if group else sql.SQL("NULL")
    return sql.SQL(
        """
        SELECT c.code, c.name, {group_col} AS grp, {measure} AS value
        FROM twin.grid_cells c
        LEFT JOIN {table} t ON ST_Intersects(c.geom, t.geom)
        WHERE c.level = %s AND c.valid_to IS NULL
        GROUP BY c.code, c.name, grp
        ORDER BY c.code, grp
        """
    ).format(group_col=group_col, measure=_measure_sql(measure), table=table)


async def grid_stats(
    conn: psycopg.AsyncConnection, level: str, layer: Layer, measure: str, group: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """One dict per cell: code, name, total and (with a group) one key per group value."""
    cur = await conn.execute(stats_sql(level, layer, measure, group), [level])
    rows = await cur.fetchall()
    cells: dict[str, dict[str, Any]] = {}
    groups: list[str] = []
    for code, name, grp, value in rows:
        cell = cells.setdefault(code, {"code": code, "name": name, "total": 0.0})
        cell["total"] += float(value)
        if group is not None and grp is not None:
            if grp not in groups:
                groups.append(grp)
            cell[grp] = float(value)
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
