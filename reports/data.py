"""Everything a report shows, gathered from the database in one plan."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from psycopg import sql

from cases.stats import area_cases
from query.area import Area, grid_area, to_metric
from query.plan import Plan, Query
from query.scope import EVERYTHING, WITHHELD, Scope
from query.sql import LAYER_SQL
from query.summary import summarise
from twin.settings import QuerySettings

MAP_MARGIN = 0.05  # the map shows this share of the area's size around it

CHAIN_SQL = """
WITH RECURSIVE chain AS (
    SELECT level, code, name, parent_code, 0 AS depth
    FROM twin.grid_cells WHERE code = %(code)s AND valid_to IS NULL
    UNION ALL
    SELECT g.level, g.code, g.name, g.parent_code, c.depth + 1
    FROM twin.grid_cells g JOIN chain c ON g.code = c.parent_code AND g.valid_to IS NULL
    WHERE c.depth < 6)
SELECT level, code, name FROM chain WHERE depth > 0 ORDER BY depth DESC
"""
# The map shows everything touching the area's box (grown by MAP_MARGIN), for context.
MAP_SQL = {
    "unit_grids": """SELECT code, ST_AsBinary(geom) FROM twin.grid_cells
        WHERE level = 'unit' AND valid_to IS NULL
          AND ST_Intersects(geom, ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326))""",
    "pipes": """SELECT utility, ST_AsBinary(geom) FROM twin.pipe_segments
        WHERE deleted_at IS NULL AND (%(nets)s::text[] IS NULL OR network = ANY(%(nets)s))
          AND ST_Intersects(geom, ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326))""",
    "components": """SELECT status, ST_AsBinary(geom) FROM twin.components_current
        WHERE ST_Intersects(geom, ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326))""",
}
BUILDINGS_MAP_SQL = sql.SQL(
    """SELECT NULL, ST_AsBinary(geom) FROM {}
    WHERE ST_Intersects(geom, ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326))"""
)


@dataclass
class MapLayer:
    """Geometries in the area's metric CRS, with one attribute each (class, status, code)."""

    geoms: np.ndarray
    values: list[Any]


@dataclass
class ReportData:
    level: str  # grid_cells level: unit, community, street, district
    cell: dict[str, Any]
    chain: list[dict[str, Any]]
    area: Area
    summary: dict[str, Any]
    layers: dict[str, MapLayer] = field(default_factory=dict)
    outline: shapely.Geometry | None = None  # the area in the metric CRS
    cases: dict[str, Any] = field(default_factory=dict)  # the area's cases (案件)
    generated: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def collect(
    level: str, code: str, settings: QuerySettings, scope: Scope = EVERYTHING
) -> Plan[ReportData]:
    """The cell, its parents, the area summary and the map's layers (what ``scope`` withholds
    is not drawn)."""
    area = yield from grid_area(code, level)
    assert area.grid is not None
    chain_rows = yield Query(CHAIN_SQL, {"code": area.grid["code"]}, "parent areas")
    chain = [{"level": lv, "code": c, "name": n} for lv, c, n in chain_rows]
    summary = yield from summarise(area, settings, scope)
    data = ReportData(level, area.grid, chain, area, summary)
    data.outline = to_metric(area.shape, area.metric_epsg)
    box = _map_box(area)
    shown = {"unit_grids": scope.unit_grids, "pipes": True, "components": scope.components}
    for name, statement in MAP_SQL.items():
        rows = []
        if shown[name]:
            params = box | {"nets": scope.network_list}
            rows = yield Query(statement, params, f"map: {name.replace('_', ' ')}")
        data.layers[name] = _map_layer(rows, area.metric_epsg)
    rows = []
    if scope.buildings:
        rows = yield from _building_rows(settings.buildings_layer, box)
    data.layers["buildings"] = _map_layer(rows, area.metric_epsg)
    if scope.cases:
        data.cases = yield from area_cases(level, area.grid["code"])
    else:
        data.cases = {"withheld": True, "note": WITHHELD}
    return data


def _map_box(area: Area) -> dict[str, float]:
    west, south, east, north = area.shape.bounds
    dx, dy = (east - west) * MAP_MARGIN, (north - south) * MAP_MARGIN
    return {"w": west - dx, "s": south - dy, "e": east + dx, "n": north + dy}


def _map_layer(rows: list[tuple], epsg: int) -> MapLayer:
    if not rows:
        return MapLayer(np.array([], dtype=object), [])
    geoms = shapely.from_wkb([bytes(r[1]) for r in rows])
    return MapLayer(to_metric(geoms, epsg), [r[0] for r in rows])


def _building_rows(layer: str, box: dict[str, float]) -> Plan[list[tuple]]:
    found = yield Query(LAYER_SQL, [layer], "map: buildings")
    if not found or found[0][2] not in ("Polygon", "MultiPolygon"):
        return []
    schema, table = found[0][0], found[0][1]
    statement = BUILDINGS_MAP_SQL.format(sql.Identifier(schema, table))
    rows = yield Query(statement, box, "map: buildings")
    return list(rows)
