"""Cases in the database: report one, move it through its lifecycle, read it back.

Each change is one transaction holding the case row, its step, its audit row and its event
(``twin.emit_event``, streamed live only once committed), so a refused or failed change
leaves nothing behind. Transitions lock the case row and are guarded by the version the
caller read (its ETag).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cases import KINDS, TARGET
from cases.lifecycle import REWORK, check_actor, next_move
from cases.rules import MATCH_SQL, no_rule_message
from twin import audit
from twin.auth import Principal
from twin.crs import axis_ordered_to_wgs84, parse_crs
from twin.errors import (
    Conflict,
    InvalidData,
    InvalidParameter,
    NotFound,
    PreconditionFailed,
    SetupError,
)

# Case codes carry the day in China Standard Time, whatever the server's time zone.
CODE_TIME_ZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class NewCase:
    title: str
    kind: str | None = None  # 部件 when a component is named, else 事件
    class_code: str | None = None  # a component's own class when it is named
    description: str = ""
    point: tuple[float, float] | None = None  # x, y in ``crs`` (its own axis order)
    crs: str | None = None
    component: str | None = None
    source: str = "api"
    source_ref: str | None = None


@dataclass(frozen=True)
class Place:
    lon: float
    lat: float
    unit_grid: str
    community: str | None
    street: str | None
    district: str | None


CASE_SQL = """
    SELECT c.id, c.code, c.kind, c.class_code, c.class_name, c.major_name, c.title,
           c.description, c.source, c.source_ref, c.component_code, c.reporter,
           ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
           c.unit_grid, u.name AS unit_grid_name, c.community, cm.name AS community_name,
           c.street, st.name AS street_name, c.district, d.name AS district_name,
           c.department_code, c.department_name, c.dispatch_basis, c.dispatch_rule, c.state,
           c.deadline_hours, c.dispatched_at, c.deadline, c.handled_at, c.closed_at,
           twin.case_overdue(c.state, c.deadline, c.handled_at) AS overdue, c.rework_count,
           c.version, c.created_at, c.updated_at
    FROM twin.cases c
    LEFT JOIN twin.grid_cells u ON u.code = c.unit_grid AND u.valid_to IS NULL
    LEFT JOIN twin.grid_cells cm ON cm.code = c.community AND cm.valid_to IS NULL
    LEFT JOIN twin.grid_cells st ON st.code = c.street AND st.valid_to IS NULL
    LEFT JOIN twin.grid_cells d ON d.code = c.district AND d.valid_to IS NULL
"""

# The unit grid holding a point (the smallest code on a shared edge, as grid.locate does)
# and its community, street and district.
LOCATE_SQL = """
    WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g)
    SELECT u.code, cm.code, st.code, d.code
    FROM p
    JOIN LATERAL (
        SELECT code, parent_code FROM twin.grid_cells
        WHERE level = 'unit' AND valid_to IS NULL AND ST_Intersects(geom, p.g)
        ORDER BY code LIMIT 1) u ON true
    LEFT JOIN twin.grid_cells cm ON cm.code = u.parent_code AND cm.valid_to IS NULL
    LEFT JOIN twin.grid_cells st ON st.code = cm.parent_code AND st.valid_to IS NULL
    LEFT JOIN twin.grid_cells d ON d.code = st.parent_code AND d.valid_to IS NULL
"""

COMPONENT_SQL = """
    SELECT code, class_code, class_name, dept_code, dept_name, maint_code, maint_name,
           ST_X(geom), ST_Y(geom)
    FROM twin.components_current WHERE code = %s
"""

# A department named at 派遣 must be one the city knows: from a rule, a component or a case.
DEPARTMENT_SQL = """
    SELECT name FROM (
        SELECT department_code AS code, department_name AS name, 1 AS o
        FROM twin.case_dispatch_rules
        UNION ALL SELECT dept_code, dept_name, 2 FROM twin.components WHERE deleted_at IS NULL
        UNION ALL SELECT maint_code, maint_name, 3 FROM twin.components WHERE deleted_at IS NULL
        UNION ALL SELECT department_code, department_name, 4 FROM twin.cases) k
    WHERE code = %s ORDER BY (name IS NULL OR name = ''), o LIMIT 1
"""


def _text(value: str | None, what: str) -> str | None:
    if value is not None and "\x00" in value:
        raise InvalidParameter(f"{what} holds a NUL character: send plain text")
    return value


def point_lonlat(point: tuple[float, float], crs: str | None) -> tuple[float, float]:
    """A point given in ``crs`` (lon, lat by default; northing first for the Gauss-Krüger
    CRSs, as their axes go) as lon/lat."""
    xy = np.array([point], dtype="float64")
    if not np.isfinite(xy).all():
        raise InvalidParameter("point is [x, y]: two finite numbers (lon, lat by default)")
    if crs:
        xy = axis_ordered_to_wgs84(xy, parse_crs(crs))
    lon, lat = float(xy[0, 0]), float(xy[0, 1])
    if not (np.isfinite([lon, lat]).all() and abs(lon) <= 180 and abs(lat) <= 90):
        raise InvalidParameter(
            f"point {list(point)} is not a longitude/latitude"
            + (f" once read in {crs}" if crs else ": give crs for projected coordinates")
        )
    return lon, lat


async def _one(conn: psycopg.AsyncConnection, query: str, params: Any) -> Any:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def locate(conn: psycopg.AsyncConnection, lon: float, lat: float) -> Place:
    """The unit grid, community, street and district of a point; a point outside every unit
    grid is refused (a case nobody's grid holds has nobody to handle it)."""
    row = await _one(conn, LOCATE_SQL, {"lon": lon, "lat": lat})
    if row is None:
        any_unit = await _one(
            conn, "SELECT 1 FROM twin.grid_cells WHERE level = 'unit' AND valid_to IS NULL", []
        )
        if any_unit is None:
            raise SetupError("there are no unit grids yet: load the grid (`twin grid import`)")
        raise InvalidData(
            f"the point ({lon:.7f}, {lat:.7f}) is outside every unit grid: cases are located "
            "to the unit grid that holds them; check the coordinates (longitude first) and crs"
        )
    return Place(lon, lat, row[0], row[1], row[2], row[3])


async def _component(conn: psycopg.AsyncConnection, code: str) -> tuple:
    row = await _one(conn, COMPONENT_SQL, [code])
    if row is None:
        raise InvalidData(f"no current component has code {code}: check the code (16 digits)")
    return tuple(row)


async def case_class(
    conn: psycopg.AsyncConnection, kind: str, class_code: str
) -> tuple[str, str, Decimal]:
    """(name, major name, deadline hours) of a class; an unknown class says where to look."""
    row = await _one(
        conn,
        "SELECT name_zh, major_name_zh, deadline_hours FROM twin.case_classes "
        "WHERE kind = %s AND class_code = %s",
        [kind, class_code],
    )
    if row is None:
        raise InvalidData(
            f"unknown {kind} class {class_code!r}: GET /cases/classes lists the classes "
            "(事件 classes of the city's own go in with `twin cases classes import`)"
        )
    if row[2] is None:
        raise SetupError("no 部件 deadlines are loaded: run `twin db migrate`")
    return str(row[0]), str(row[1]), Decimal(row[2])


async def match_rule(
    conn: psycopg.AsyncConnection, kind: str, class_code: str, unit_grid: str
) -> tuple[int, str, str] | None:
    row = await _one(
        conn, MATCH_SQL, {"kind": kind, "class_code": class_code, "unit_grid": unit_grid}
    )
    return (int(row[0]), str(row[1]), str(row[2])) if row else None


def _classify(new: NewCase, component: tuple | None) -> tuple[str, str]:
    kind = new.kind or ("部件" if component else "事件")
    if kind not in KINDS:
        raise InvalidParameter(f"kind {kind!r} is 部件 (a component's problem) or 事件 (an event)")
    class_code = new.class_code
    if component is not None and kind == "部件":
        if class_code and class_code != component[1]:
            raise InvalidData(
                f"component {component[0]} is of class {component[1]} {component[2]}, not "
                f"{class_code}: leave class_code out to take the component's class"
            )
        class_code = component[1]
    if not class_code:
        raise InvalidParameter(f"class_code is missing: a {kind} case needs its class")
    return kind, class_code


async def _place_of(
    conn: psycopg.AsyncConnection, new: NewCase
) -> tuple[tuple[float, float], tuple | None]:
    if (new.point is None) == (new.component is None):
        raise InvalidParameter(
            "say where the case is: a point [x, y] (with crs when not lon/lat) or the code of "
            "a component, one of the two"
        )
    if new.component is not None:
        component = await _component(conn, new.component)
        return (float(component[7]), float(component[8])), component
    assert new.point is not None
    return point_lonlat(new.point, new.crs), None


async def _next_code(conn: psycopg.AsyncConnection, district: str) -> str:
    row = await _one(
        conn,
        """
        INSERT INTO twin.case_sequences (district, day, last)
        VALUES (%s, (now() AT TIME ZONE %s)::date, 1)
        ON CONFLICT (district, day) DO UPDATE SET last = twin.case_sequences.last + 1
        RETURNING to_char(day, 'YYYYMMDD'), last
        """,
        [district, CODE_TIME_ZONE],
    )
    return f"{district}{row[0]}{int(row[1]):05d}"


async def _step(
    conn: psycopg.AsyncConnection,
    who: Principal,
    case: dict[str, Any],
    action: str,
    to: str,
    version: int,
    note: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO twin.case_steps (case_id, action, from_state, to_state, actor, role,
                                     actor_department, department_code, department_name,
                                     note, version)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        [
            case["id"],
            action,
            case.get("state"),
            to,
            who.subject,
            who.role,
            who.department,
            case.get("department_code"),
            case.get("department_name"),
            note,
            version,
        ],
    )


async def _emit(conn: psycopg.AsyncConnection, action: str, case: dict[str, Any]) -> None:
    """The change on the event stream (streamed once committed), and its tiles redrawn."""
    payload = {
        k: case.get(k)
        for k in ("code", "kind", "class_code", "class_name", "title", "state", "version")
    }
    payload["department_name"] = case.get("department_name")
    payload["deadline"] = case["deadline"].isoformat() if case.get("deadline") else None
    await conn.execute(
        "SELECT twin.emit_event('case', %s, %s, %s, %s, %s, %s, %s)",
        [
            action,
            TARGET,
            case.get("department_code"),
            case["unit_grid"],
            case["lon"],
            case["lat"],
            Jsonb(payload),
        ],
    )
    # Every server process drops the case's tiles on commit (each keeps its own tile cache).
    tiles = {"collection": TARGET, "points": [[round(case["lon"], 7), round(case["lat"], 7)]]}
    await conn.execute("SELECT pg_notify('twin_tiles', %s)", [json.dumps(tiles)])


async def create_case(conn: psycopg.AsyncConnection, who: Principal, new: NewCase) -> str:
    """Report (上报) a case: located, classified, its department proposed (the component's,
    else the first rule's, else none yet). Returns its code."""
    for value, what in ((new.title, "title"), (new.description, "description")):
        _text(value, what)
    _text(new.source_ref, "source_ref")
    if not new.title.strip():
        raise InvalidParameter("title is empty: say what the problem is, e.g. 井盖缺失")
    async with conn.transaction():
        (lon, lat), component = await _place_of(conn, new)
        kind, class_code = _classify(new, component)
        class_name, major_name, hours = await case_class(conn, kind, class_code)
        place = await locate(conn, lon, lat)
        department, basis, rule_id = _component_department(component), "component", None
        if department is None:
            rule = await match_rule(conn, kind, class_code, place.unit_grid)
            if rule is not None:
                rule_id, department, basis = rule[0], (rule[1], rule[2]), "rule"
        code = await _next_code(conn, place.district or place.unit_grid[:6])
        row = await _one(
            conn,
            """
            INSERT INTO twin.cases (code, kind, class_code, class_name, major_name, title,
                description, source, source_ref, component_code, reporter, geom, unit_grid,
                community, street, district, department_code, department_name, dispatch_basis,
                dispatch_rule, deadline_hours)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                    ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING id
            """,
            [
                code,
                kind,
                class_code,
                class_name,
                major_name,
                new.title.strip(),
                new.description,
                new.source,
                new.source_ref,
                component[0] if component else None,
                who.subject,
                lon,
                lat,
                place.unit_grid,
                place.community,
                place.street,
                place.district,
                department[0] if department else None,
                department[1] if department else None,
                basis if department else None,
                rule_id,
                hours,
            ],
        )
        case = await read_case(conn, code)
        await _step(conn, who, case | {"state": None}, "上报", "上报", 1, "")
        await audit.record(
            conn, who, "create", TARGET, feature_id=row[0], after=1, detail={"code": code}
        )
        await _emit(conn, "created", case)
    return code


def _component_department(component: tuple | None) -> tuple[str, str] | None:
    """A component's 主管部门, else its 养护单位: the department answerable for it."""
    if component is None:
        return None
    if component[3]:
        return str(component[3]), str(component[4] or "")
    if component[5]:
        return str(component[5]), str(component[6] or "")
    return None


async def read_case(
    conn: psycopg.AsyncConnection, code: str, *, lock: bool = False
) -> dict[str, Any]:
    query = CASE_SQL + " WHERE c.code = %s" + (" FOR UPDATE OF c" if lock else "")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, [code])
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no case {code}; GET /cases lists them")
    return row


async def read_steps(conn: psycopg.AsyncConnection, case_id: int) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT action, from_state, to_state, at, actor, role, actor_department,
                   department_code, department_name, note, version
            FROM twin.case_steps WHERE case_id = %s ORDER BY id
            """,
            [case_id],
        )
        return await cur.fetchall()


async def _department_name(conn: psycopg.AsyncConnection, code: str) -> str:
    _text(code, "department")
    row = await _one(conn, DEPARTMENT_SQL, [code])
    if row is None:
        raise InvalidData(
            f"department {code!r} is unknown: no dispatch rule, component or case names it; "
            "add a rule for it first (`twin cases rules import`)"
        )
    return str(row[0] or "")


async def _dispatch(
    conn: psycopg.AsyncConnection, case: dict[str, Any], override: str | None
) -> dict[str, Any]:
    """The columns 派遣 sets: the department (named, proposed or by rule) and the deadline."""
    if override is not None:
        name = await _department_name(conn, override)
        dept: dict[str, Any] = {"code": override, "name": name, "basis": "override", "rule": None}
    elif case["department_code"]:
        dept = {
            "code": case["department_code"],
            "name": case["department_name"],
            "basis": case["dispatch_basis"],
            "rule": case["dispatch_rule"],
        }
    else:
        rule = await match_rule(conn, case["kind"], case["class_code"], case["unit_grid"])
        if rule is None:
            raise Conflict(
                no_rule_message(
                    case["kind"], case["class_code"], case["class_name"], case["unit_grid"]
                )
            )
        dept = {"code": rule[1], "name": rule[2], "basis": "rule", "rule": rule[0]}
    return dept


async def transition(
    conn: psycopg.AsyncConnection,
    who: Principal,
    code: str,
    to: str,
    version: int,
    *,
    note: str = "",
    department: str | None = None,
) -> None:
    """Move a case one step, as ``who``, from the version they read."""
    _text(note, "note")
    async with conn.transaction():
        case = await read_case(conn, code, lock=True)
        if case["version"] != version:
            raise PreconditionFailed(
                f"case {code} is at version {case['version']} (state {case['state']}), not "
                f"{version}: GET /cases/{code} again, see what changed, and retry"
            )
        move = next_move(code, case["state"], to)
        if department is not None and move.action != "派遣":
            raise InvalidParameter("department is given only with 派遣: it says who handles it")
        check_actor(who, move, code, case["department_code"])
        sets = ["state = %(to)s", "version = version + 1", "updated_at = now()"]
        params: dict[str, Any] = {"to": move.to, "id": case["id"]}
        if move.action == "派遣":
            dept = await _dispatch(conn, case, department)
            sets += [
                "department_code = %(dc)s",
                "department_name = %(dn)s",
                "dispatch_basis = %(basis)s",
                "dispatch_rule = %(rule)s",
                "dispatched_at = now()",
                "deadline = now() + deadline_hours * interval '1 hour'",
            ]
            params |= {"dc": dept["code"], "dn": dept["name"]}
            params |= {"basis": dept["basis"], "rule": dept["rule"]}
        elif move.action == REWORK:
            sets += ["handled_at = NULL", "rework_count = rework_count + 1"]
        elif move.action == "处置":
            sets.append("handled_at = now()")
        elif move.action in ("结案", "作废"):
            sets.append("closed_at = now()")
        update = sql.SQL("UPDATE twin.cases SET {} WHERE id = %(id)s")
        await conn.execute(update.format(sql.SQL(", ").join(map(sql.SQL, sets))), params)
        after = await read_case(conn, code)
        before = after | {"state": case["state"]}
        await _step(conn, who, before, move.action, move.to, after["version"], note)
        await audit.record(
            conn,
            who,
            "transition",
            TARGET,
            feature_id=case["id"],
            before=version,
            after=after["version"],
            detail={"code": code, "from": case["state"], "to": move.to, "action": move.action},
        )
        await _emit(conn, move.action, after)
