"""Editing components (OGC API Features Part 4) with versions, history and soft delete.

Every change is an UPDATE guarded by the version the client last read (its ETag): a stale
version changes nothing and is refused. The table's trigger keeps each replaced state in
``twin.components_history`` and bumps the version, so any prior state can be restored.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb

from components import codes
from layers import versioned
from twin.errors import Conflict, InvalidData, NotFound
from twin.settings import ComponentSettings

STATUSES = ("完好", "破损", "丢失", "废弃", "移除")
TEXT_FIELDS = (
    "name",
    "dept_code",
    "dept_name",
    "owner_code",
    "owner_name",
    "maint_code",
    "maint_name",
    "source",
    "note",
)
DATE_FIELDS = ("init_date", "change_date")
READ_ONLY = ("fid", "major", "class_name", "unit_grid", "version")
_CODE = re.compile(r"^[0-9]{16,17}$")


@dataclass
class Change:
    """Validated column values of a create, replace or patch."""

    values: dict[str, Any]
    geom: str | None  # GeoJSON text of the point, lon/lat


def parse_version(if_match: str | None) -> int:
    return versioned.parse_version(if_match, "component")


def parse_feature(feature: Any, *, partial: bool) -> Change:
    """Check a GeoJSON Feature (or the changed part of one, for PATCH)."""
    if not isinstance(feature, dict) or feature.get("type", "Feature") != "Feature":
        raise InvalidData("send a GeoJSON Feature with a Point geometry and properties")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise InvalidData("properties must be a JSON object")
    values: dict[str, Any] = {}
    extra = {
        k: v
        for k, v in props.items()
        if k
        not in (
            *TEXT_FIELDS,
            *DATE_FIELDS,
            "code",
            "class_code",
            "status",
            "attributes",
            *READ_ONLY,
        )
    }
    for key in TEXT_FIELDS:
        if key in props:
            values[key] = None if props[key] is None else str(props[key])
    for key in DATE_FIELDS:
        if key in props:
            values[key] = _date(key, props[key])
    if "status" in props or not partial:
        status = props.get("status", "完好")
        if status not in STATUSES:
            raise InvalidData(f"status {status!r} is unknown; use one of {', '.join(STATUSES)}")
        values["status"] = status
    for key in ("code", "class_code"):
        if key in props and props[key] is not None:
            values[key] = str(props[key])
    attributes = props.get("attributes", {})
    if not isinstance(attributes, dict):
        raise InvalidData("attributes must be a JSON object")
    if attributes or extra or not partial:
        values["attributes"] = Jsonb({**extra, **attributes})
    geom = _point(feature.get("geometry"), required=not partial)
    return Change(values, geom)


def _date(key: str, value: Any) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidData(f"{key} {value!r} is not a date (YYYY-MM-DD)") from None


def _point(geometry: Any, *, required: bool) -> str | None:
    if geometry is None:
        if required:
            raise InvalidData("a component needs a Point geometry (lon, lat)")
        return None
    try:
        shape = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.GEOSException, TypeError, ValueError):
        raise InvalidData("geometry is not valid GeoJSON") from None
    if shape.geom_type != "Point" or shape.is_empty:
        raise InvalidData(f"a component is a Point, not a {shape.geom_type}")
    if not (-180 <= shape.x <= 180 and -90 <= shape.y <= 90):
        raise InvalidData("coordinates must be longitude, latitude (CRS84)")
    return str(shapely.to_geojson(shape))


_scalar = versioned.scalar
TABLE = versioned.VersionedTable(
    "components", "components_history", "deleted_at IS NULL", "component"
)


async def _check_code(
    conn: psycopg.AsyncConnection, values: dict[str, Any], settings: ComponentSettings
) -> None:
    """class_code and code agree, the class exists, the code has the configured width."""
    width = settings.component_code_width
    code = values.get("code")
    if code is not None:
        if not _CODE.match(code) or len(code) != width:
            raise InvalidData(
                f"code {code!r} must have {width} digits: 6 district + class + 6 sequence"
            )
        why = codes.code_problem(code, width)
        if why:
            raise InvalidData(why)
        from_code = code[6:-6]
        if values.setdefault("class_code", from_code) != from_code:
            raise InvalidData(f"code {code} is of class {from_code}, not {values['class_code']}")
    if "class_code" in values:
        known = await _scalar(
            conn,
            "SELECT 1 FROM twin.component_classes WHERE class_code = %s",
            [values["class_code"]],
        )
        if not known:
            raise InvalidData(
                f"class {values['class_code']!r} is unknown: see the component "
                "classes (or add a local one with TWIN_COMPONENT_CLASSES_FILE)"
            )


async def create(
    conn: psycopg.AsyncConnection, change: Change, settings: ComponentSettings
) -> tuple[int, int]:
    values = dict(change.values)
    if "class_code" not in values and "code" not in values:
        raise InvalidData("a new component needs class_code (e.g. 0118 for a street lamp)")
    await _check_code(conn, values, settings)
    async with conn.transaction():
        if "code" not in values:
            values["code"] = await _generate_code(conn, change.geom, values["class_code"], settings)
        else:
            await _advance_sequence(conn, values["code"])
        cols = [*values, "geom"]
        query = sql.SQL(
            "INSERT INTO twin.components ({}) VALUES ({}, ST_SetSRID("
            "ST_GeomFromGeoJSON(%s), 4326)) RETURNING id, version"
        ).format(
            sql.SQL(", ").join(sql.Identifier(c) for c in cols),
            sql.SQL(", ").join(sql.Placeholder() for _ in values),
        )
        try:
            cur = await conn.execute(query, [*values.values(), change.geom])
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"a component with code {values['code']} exists already") from None
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def _generate_code(
    conn: psycopg.AsyncConnection, geom: str | None, class_code: str, settings: ComponentSettings
) -> str:
    district = (
        await _scalar(
            conn,
            "SELECT left(twin.unit_grid_at(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)), 6)",
            [geom],
        )
        or settings.district_code
    )
    if not district:
        raise InvalidData(
            "the point is outside every unit grid and TWIN_DISTRICT_CODE is not "
            "set, so no district code can be given: send a code"
        )
    last = await _scalar(conn, codes.TAKE_SQL, [district, class_code, 1])
    return codes.codes_ending_at(district, class_code, int(last), 1)[0]


async def _advance_sequence(conn: psycopg.AsyncConnection, code: str) -> None:
    """A code given by hand moves its sequence on, so generated codes never collide with it."""
    params = codes.advance_params([code])
    if params is not None:
        await conn.execute(codes.ADVANCE_SQL, params)


async def update(
    conn: psycopg.AsyncConnection,
    fid: int,
    change: Change,
    version: int,
    settings: ComponentSettings,
    *,
    partial: bool = False,
) -> int:
    """Replace (PUT) or patch (PATCH) the component at ``version``; returns the new version.

    A PATCH merges ``attributes`` into the stored ones; a PUT replaces them.
    """
    values = dict(change.values)
    await _check_code(conn, values, settings)
    if "class_code" in values and "code" not in values:
        current = await _scalar(conn, "SELECT code FROM twin.components WHERE id = %s", [fid])
        if current is not None and current[6:-6] != values["class_code"]:
            raise InvalidData(
                f"component {fid} has code {current} of class {current[6:-6]}: changing the "
                f"class changes the code, so send a code of class {values['class_code']} too"
            )
    sets: list[sql.Composable] = [
        sql.SQL("attributes = attributes || {}").format(sql.Placeholder())
        if partial and k == "attributes"
        else sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder())
        for k in values
    ]
    params: list[Any] = list(values.values())
    if "code" in values:
        await _advance_sequence(conn, values["code"])
    if change.geom is not None:
        sets.append(sql.SQL("geom = ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)"))
        params.append(change.geom)
    if not sets:
        raise InvalidData("nothing to change: send properties or a geometry")
    return await versioned.guarded_update(
        conn, TABLE, fid, version, sql.SQL(", ").join(sets), params
    )


async def soft_delete(conn: psycopg.AsyncConnection, fid: int, version: int) -> int:
    return await versioned.guarded_update(
        conn, TABLE, fid, version, sql.SQL("deleted_at = now()"), []
    )


async def history(conn: psycopg.AsyncConnection, fid: int) -> list[dict[str, Any]]:
    return await versioned.history(conn, TABLE, fid)


RESTORABLE = ("code", "class_code", "status", *TEXT_FIELDS, *DATE_FIELDS, "attributes")


async def restore(conn: psycopg.AsyncConnection, fid: int, to_version: int | None) -> int:
    """Undelete, and with ``to_version`` bring back that version's values and place."""
    if to_version is None:
        try:
            cur = await conn.execute(
                "UPDATE twin.components SET deleted_at = NULL WHERE id = %s "
                "AND deleted_at IS NOT NULL RETURNING version",
                [fid],
            )
        except psycopg.errors.UniqueViolation:
            raise Conflict(
                f"component {fid}'s code belongs to another current component "
                "now; change or delete that one first"
            ) from None
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no deleted component {fid}: give ?version= to restore a prior state")
        return int(row[0])
    state = await versioned.prior_state(conn, TABLE, fid, to_version)
    sets = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in RESTORABLE]
    params = [Jsonb(state[k]) if k == "attributes" else state.get(k) for k in RESTORABLE]
    query = sql.SQL(
        "UPDATE twin.components SET {}, deleted_at = NULL, geom = ST_SetSRID("
        "ST_GeomFromGeoJSON(%s), 4326) WHERE id = %s RETURNING version"
    ).format(sql.SQL(", ").join(sets))
    try:
        new = await _scalar(conn, query, [*params, json.dumps(state["geom"]), fid])
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"code {state.get('code')} belongs to another current component now; "
            "change or delete that one first"
        ) from None
    if new is None:
        raise NotFound(f"no component {fid}")
    return int(new)
