"""Finding cases (by state, department, grid, overdue, place, class) and their JSON form."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cases import KINDS, STATES
from cases.store import CASE_SQL
from twin.errors import InvalidParameter

HIDDEN = ("id",)  # the row id stays inside; the case code is the public key


@dataclass
class CaseFilter:
    states: tuple[str, ...] = ()
    department: str | None = None
    grid: str | None = None  # a code prefix of any level
    overdue: bool | None = None
    bbox: tuple[float, float, float, float] | None = None  # lon/lat
    kind: str | None = None
    class_prefix: str | None = None


def parse_states(text: str | None) -> tuple[str, ...]:
    states = tuple(s.strip() for s in (text or "").split(",") if s.strip())
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise InvalidParameter(f"state {unknown[0]!r} is unknown: use {', '.join(STATES)}")
    return states


def _digits(value: str | None, what: str, most: int) -> str | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= most):
        raise InvalidParameter(f"{what} {value!r} must be a code prefix of 1 to {most} digits")
    return value


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameter(
            f"bbox {text!r} is not four numbers west,south,east,north (lon/lat)"
        ) from None
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise InvalidParameter(
            f"bbox {text!r} is not west,south,east,north in lon/lat with west < east and "
            "south < north"
        )
    return (w, s, e, n)


def make_filter(
    *,
    state: str | None = None,
    department: str | None = None,
    grid: str | None = None,
    overdue: bool | None = None,
    bbox: str | None = None,
    kind: str | None = None,
    class_prefix: str | None = None,
) -> CaseFilter:
    if kind is not None and kind not in KINDS:
        raise InvalidParameter(f"kind {kind!r} is 部件 or 事件")
    if department is not None and ("\x00" in department or not department.strip()):
        raise InvalidParameter("department is a department code, e.g. 34150202")
    return CaseFilter(
        states=parse_states(state),
        department=department,
        grid=_digits(grid, "grid", 15),
        overdue=overdue,
        bbox=parse_bbox(bbox),
        kind=kind,
        class_prefix=_digits(class_prefix, "class", 5),
    )


def where(f: CaseFilter) -> tuple[sql.Composable, dict[str, Any]]:
    """The WHERE clause of a filter and its parameters (every value bound)."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    if f.states:
        parts.append("c.state = ANY(%(states)s)")
        params["states"] = list(f.states)
    if f.department is not None:
        parts.append("c.department_code = %(department)s")
        params["department"] = f.department
    if f.grid is not None:
        # a prefix of digits only, so LIKE has no wildcard but its own (and uses the index)
        parts.append("c.unit_grid LIKE %(grid)s")
        params["grid"] = f.grid + "%"
    if f.overdue is not None:
        parts.append("twin.case_overdue(c.state, c.deadline, c.handled_at) = %(overdue)s")
        params["overdue"] = f.overdue
    if f.bbox is not None:
        parts.append("c.geom && ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)")
        params |= dict(zip(("w", "s", "e", "n"), f.bbox, strict=True))
    if f.kind is not None:
        parts.append("c.kind = %(kind)s")
        params["kind"] = f.kind
    if f.class_prefix is not None:
        parts.append("c.class_code LIKE %(class_prefix)s")
        params["class_prefix"] = f.class_prefix + "%"
    clause = sql.SQL(" AND ").join(map(sql.SQL, parts)) if parts else sql.SQL("TRUE")
    return sql.SQL(" WHERE {}").format(clause), params


async def list_cases(
    conn: psycopg.AsyncConnection, f: CaseFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of cases, newest first, and how many match in all."""
    clause, params = where(f)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("SELECT count(*) AS n FROM twin.cases c{}").format(clause), params
        )
        total = await cur.fetchone()
        page = sql.SQL(
            "{}{} ORDER BY c.created_at DESC, c.id DESC LIMIT %(limit)s OFFSET %(offset)s"
        ).format(sql.SQL(CASE_SQL), clause)
        await cur.execute(page, params | {"limit": limit, "offset": offset})
        rows = await cur.fetchall()
    return rows, int(total["n"]) if total else 0


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def case_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: _plain(v) for k, v in row.items() if k not in HIDDEN}
    out["lon"], out["lat"] = round(row["lon"], 7), round(row["lat"], 7)
    return out


def step_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in row.items()}
