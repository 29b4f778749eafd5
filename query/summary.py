"""What is inside an area: components, pipes, unit grids, buildings and imagery."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from components.edit import STATUSES
from pipelines.model import SUBCLASSES, UTILITIES
from query import imagery
from query import sql as q
from query.area import Area
from query.plan import Plan, Query
from query.scope import EVERYTHING, WITHHELD, Scope
from twin.settings import QuerySettings

SLIVER_M2 = 1.0  # a unit grid overlapping the area by less is a shared edge, not a cell inside
UNKNOWN = "unknown"


def summarise(
    area: Area, settings: QuerySettings, scope: Scope = EVERYTHING
) -> Plan[dict[str, Any]]:
    """The whole summary of an area, in the order a planner reads it. What ``scope`` withholds
    is counted over nothing and marked ``withheld``."""
    params = {"g": area.wkb}
    out: dict[str, Any] = {"area": area.describe()}
    rows = []
    if scope.components:
        rows = yield Query(q.COMPONENTS_SQL, params, "counting components")
    out["components"] = _mark(components_summary(rows), scope.components)
    rows = yield Query(q.PIPES_SQL, params | {"nets": scope.network_list}, "measuring pipes")
    out["pipes"] = pipes_summary(rows)
    if scope.networks is not None:
        out["pipes"]["networks"] = list(scope.networks)
    rows = []
    if scope.unit_grids:
        rows = yield Query(
            q.UNIT_GRIDS_SQL, params | {"sliver": SLIVER_M2, "area": area.area_m2}, "unit grids"
        )
    out["unit_grids"] = _mark(unit_grids_summary(rows), scope.unit_grids)
    if scope.buildings:
        out["buildings"] = yield from buildings_summary(area, settings.buildings_layer)
    else:
        out["buildings"] = {
            "available": False,
            "layer": settings.buildings_layer,
            "reason": WITHHELD,
            "withheld": True,
        }
    out["imagery"] = yield from imagery.imagery_summary(area, scope)
    return out


def _mark(section: dict[str, Any], readable: bool) -> dict[str, Any]:
    return section if readable else section | {"withheld": True, "note": WITHHELD}


# --- components ----------------------------------------------------------------------------
def components_summary(rows: list[tuple]) -> dict[str, Any]:
    """Counts by class, by status (every status, zeros included) and class × status."""
    by_status = dict.fromkeys(STATUSES, 0)
    classes: dict[str, dict[str, Any]] = {}
    for class_code, class_name, status, count in rows:
        row = classes.setdefault(
            class_code,
            {"class_code": class_code, "class_name": class_name, "count": 0}
            | dict.fromkeys(STATUSES, 0),
        )
        row["count"] += count
        row[status] = row.get(status, 0) + count
        by_status[status] = by_status.get(status, 0) + count
    by_class = sorted(classes.values(), key=lambda r: (-r["count"], r["class_code"]))
    return {
        "total": sum(by_status.values()),
        "statuses": list(by_status),
        "by_status": [{"status": s, "count": n} for s, n in by_status.items()],
        "by_class": [{k: r[k] for k in ("class_code", "class_name", "count")} for r in by_class],
        "by_class_status": by_class,
    }


# --- pipes ---------------------------------------------------------------------------------
def decade_label(decade: int | None) -> str:
    return f"{decade}s" if decade is not None else UNKNOWN


def _grouped(totals: dict[str, list[float]], key: str, order: list[str]) -> list[dict]:
    return [
        {key: k, "length_m": round(totals[k][0], 1), "segments": int(totals[k][1])} for k in order
    ]


def pipes_summary(rows: list[tuple]) -> dict[str, Any]:
    """Clipped length by CJJ 61 class and sub-class, by material and by decade laid."""
    utility: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    subclass: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    material: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    decade: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for util, sub, mat, dec, count, length in rows:
        keys = (
            (utility, util),
            (subclass, f"{util}/{sub or UNKNOWN}"),
            (material, mat or UNKNOWN),
            (decade, decade_label(dec)),
        )
        for table, key in keys:
            table[key][0] += float(length)
            table[key][1] += count
    by_utility = _grouped(utility, "utility", sorted(utility, key=_utility_order))
    for row in by_utility:
        _, name_zh, name_en, rgb = UTILITIES.get(row["utility"], ("", "", "", (0, 0, 0)))
        row |= {"name": name_zh, "name_en": name_en, "colour": "#{:02x}{:02x}{:02x}".format(*rgb)}
    by_subclass = _grouped(subclass, "subclass", sorted(subclass, key=_utility_order))
    for row in by_subclass:
        util, _, sub = row.pop("subclass").partition("/")
        row |= {"utility": util, "subclass": sub, "name": SUBCLASSES.get(util, {}).get(sub, "")}
    decades = sorted(decade, key=lambda d: (d == UNKNOWN, d))
    by_material = sorted(material, key=lambda m: (-material[m][0], m))
    return {
        "total_length_m": round(sum(v[0] for v in utility.values()), 1),
        "segments": int(sum(v[1] for v in utility.values())),
        "by_utility": by_utility,
        "by_subclass": by_subclass,
        "by_material": _grouped(material, "material", by_material),
        "by_decade": _grouped(decade, "decade", decades),
        "method": "pipes clipped to the area; lengths on the ellipsoid (geography), in metres",
    }


def _utility_order(key: str) -> tuple[str, str]:
    code = key.partition("/")[0]
    return (UTILITIES[code][0] if code in UTILITIES else "9", key)


# --- unit grids ----------------------------------------------------------------------------
def unit_grids_summary(rows: list[tuple]) -> dict[str, Any]:
    cells = [
        {
            "code": code,
            "name": name,
            "area_inside_m2": round(float(inside), 1),
            "share_inside": round(min(1.0, float(inside) / whole), 4) if whole else 0.0,
        }
        for code, name, inside, whole in rows
    ]
    return {"count": len(cells), "cells": cells}


# --- buildings -----------------------------------------------------------------------------
def _field_named(fields: list[dict], *names: str) -> str | None:
    numeric = {f["name"] for f in fields if f.get("type") in ("integer", "double")}
    return next((n for n in names if n in numeric), None)


def buildings_summary(area: Area, layer: str) -> Plan[dict[str, Any]]:
    """Building count and floor area from the published buildings layer, when there is one."""
    rows = yield Query(q.LAYER_SQL, [layer], "buildings")
    if not rows:
        return {
            "available": False,
            "layer": layer,
            "reason": f"not available: no published layer named {layer!r} "
            "(TWIN_BUILDINGS_LAYER names the layer of building footprints)",
        }
    schema, table, geometry_type, fields = rows[0]
    if geometry_type not in ("Polygon", "MultiPolygon"):
        return {
            "available": False,
            "layer": layer,
            "reason": f"not available: layer {layer!r} holds {geometry_type}, not footprints",
        }
    floors = _field_named(fields, "floors", "storeys", "层数")
    footprint = _field_named(fields, "area_m2", "footprint_m2", "基底面积")
    use = next((f["name"] for f in fields if f["name"] in ("use", "用途")), None)
    statement = q.buildings_sql(schema, table, floors, footprint, use)
    rows = yield Query(statement, {"g": area.wkb}, "buildings")
    return building_totals(layer, rows, floors is not None)


def building_totals(layer: str, rows: list[tuple], has_floors: bool) -> dict[str, Any]:
    by_use = [
        {
            "use": use or UNKNOWN,
            "count": counted,
            "touching": touching,
            "footprint_inside_m2": round(float(inside), 1),
            "floor_area_m2": round(float(floor_area), 1) if floor_area is not None else None,
        }
        for use, counted, touching, inside, floor_area, _ in rows
    ]
    floor_total = sum(r["floor_area_m2"] or 0.0 for r in by_use)
    return {
        "available": True,
        "layer": layer,
        "count": sum(r["count"] for r in by_use),
        "touching": sum(r["touching"] for r in by_use),
        "footprint_inside_m2": round(sum(r["footprint_inside_m2"] for r in by_use), 1),
        "floor_area_m2": round(floor_total, 1) if has_floors else None,
        "without_floors": sum(r[5] for r in rows),
        "by_use": by_use,
        "method": "count: buildings whose inner point lies in the area (a building is counted "
        "in one area only); floor area: area_m2 × floors of each building, pro rata to the "
        "share of its footprint inside the area",
    }
