"""Case statistics per unit grid, community, street, district or department, and the cases of
one management area for its report.

Written as plans (`query.plan`), so the API, the CLI and the report run the same SQL.
Overdue is computed at query time; the on-time rate is the share of handled cases handled
by their deadline (handled: 处置 done, whether or not checked and closed since; a case sent
back for rework is not handled until it is handled again).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

from psycopg import sql

from cases import STATES
from query.plan import Plan, Query
from twin.errors import InvalidParameter

# What a statistic groups by: the case column, and the grid level whose names label it.
GROUPS = {
    "grid": ("unit_grid", "unit"),
    "community": ("community", "community"),
    "street": ("street", "street"),
    "district": ("district", "district"),
    "department": ("department_code", None),
}
# The case column holding an area of each grid_cells level, for reports.
AREA_COLUMNS = {"unit": "unit_grid", "community": "community", "street": "street"}
COUNTS = ("open", "overdue", "handled", "on_time")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")

# One row per group and state; the plan adds them up (no SQL per state).
GROUPED_SQL = """
    SELECT {key} AS key, max(c.department_name) AS department_name, c.state,
           count(*) AS n,
           count(*) FILTER (WHERE twin.case_overdue(c.state, c.deadline, c.handled_at)) AS overdue,
           count(*) FILTER (WHERE c.handled_at IS NOT NULL) AS handled,
           count(*) FILTER (WHERE c.handled_at <= c.deadline) AS on_time
    FROM twin.cases c
    WHERE {where}
    GROUP BY 1, c.state
"""
NAMES_SQL = "SELECT code, name FROM twin.grid_cells WHERE valid_to IS NULL AND code = ANY(%s)"


def check_by(by: str) -> str:
    key = by.strip().lower()
    if key == "unit":
        key = "grid"
    if key not in GROUPS:
        raise InvalidParameter(f"by {by!r} is unknown: use one of {', '.join(GROUPS)}")
    return key


def _empty(key: str, name: str) -> dict[str, Any]:
    return (
        {"code": key, "name": name, "total": 0}
        | dict.fromkeys(STATES, 0)
        | dict.fromkeys(COUNTS, 0)
    )


def _add(row: dict[str, Any], state: str, n: int, overdue: int, handled: int, on_time: int):
    row["total"] += n
    row[state] += n
    row["open"] += 0 if state in ("结案", "作废") else n
    row["overdue"] += overdue
    row["handled"] += handled
    row["on_time"] += on_time


def _rate(row: dict[str, Any]) -> dict[str, Any]:
    row["on_time_rate"] = round(row["on_time"] / row["handled"], 4) if row["handled"] else None
    return row


def rollup(
    records: Iterable[tuple], names: dict[str, str] | None = None
) -> tuple[list[dict], dict]:
    """Rows of GROUPED_SQL → one row per group (every state counted, zeros included) and the
    totals. Groups are named from ``names`` (grid cells), else as departments."""
    groups: dict[str, dict[str, Any]] = {}
    total = _empty("", "合计 total")
    for key, dept_name, state, n, overdue, handled, on_time in records:
        code = key or ""
        if names is not None:
            name = names.get(code, "")
        else:
            name = (dept_name or "") if code else "未定 none yet"
        row = groups.setdefault(code, _empty(code, name))
        for target in (row, total):
            _add(target, state, int(n), int(overdue), int(handled), int(on_time))
    rows = [_rate(groups[k]) for k in sorted(groups)]
    return rows, _rate(total)


def _when(value: str | None, what: str) -> str | None:
    if value is not None and not _DAY.match(value):
        raise InvalidParameter(f"{what} {value!r} is not a date or time (YYYY-MM-DD[THH:MM])")
    return value


def case_stats(
    by: str,
    *,
    grid: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Plan[dict[str, Any]]:
    """Counts by state, overdue, handled, on time and the on-time rate per group, for the
    cases created in [since, until) inside a grid prefix."""
    by = check_by(by)
    if grid is not None and not (grid.isascii() and grid.isdigit() and len(grid) <= 15):
        raise InvalidParameter(f"grid {grid!r} must be a code prefix of up to 15 digits")
    column, level = GROUPS[by]
    where = sql.SQL(
        "(%(grid)s::text IS NULL OR c.unit_grid LIKE %(grid)s || '%%') "
        "AND (%(since)s::timestamptz IS NULL OR c.created_at >= %(since)s) "
        "AND (%(until)s::timestamptz IS NULL OR c.created_at < %(until)s)"
    )
    statement = sql.SQL(GROUPED_SQL).format(key=sql.Identifier("c", column), where=where)
    params = {"grid": grid, "since": _when(since, "since"), "until": _when(until, "until")}
    records = yield Query(statement, params, "counting cases")
    names: dict[str, str] | None = None
    codes = sorted({r[0] for r in records if r[0]})
    if level is not None:
        names = dict((yield Query(NAMES_SQL, [codes], "area names"))) if codes else {}
    rows, total = rollup(records, names)
    key = "department_code" if by == "department" else column
    return {"by": by, "key": key, "states": list(STATES), "rows": rows, "total": total}


def area_cases(level: str, code: str) -> Plan[dict[str, Any]]:
    """The cases of one management area (a grid_cells level and code), for its report: by
    state, overdue and on-time figures, and the same per department."""
    column = AREA_COLUMNS.get(level, "district")
    statement = sql.SQL(GROUPED_SQL).format(
        key=sql.Identifier("c", "department_code"),
        where=sql.SQL("{} = %(code)s").format(sql.Identifier("c", column)),
    )
    records = yield Query(statement, {"code": code}, "counting cases")
    rows, total = rollup(records)
    return {
        "total": total,
        "by_state": [{"state": s, "count": total[s]} for s in STATES],
        "by_department": rows,
    }


CSV_TAIL = ("total", *STATES, *COUNTS, "on_time_rate")


def to_csv(stats: dict[str, Any]) -> bytes:
    """One line per group: code, name, total, the states, open, overdue, handled, on time and
    the rate; UTF-8 with a BOM so that spreadsheet programs read the Chinese right."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow([stats["key"], "name", *CSV_TAIL])
    for row in stats["rows"]:
        rate = row["on_time_rate"]
        values = [row[k] for k in CSV_TAIL[:-1]] + ["" if rate is None else rate]
        out.writerow([row["code"], row["name"], *values])
    return buf.getvalue().encode("utf-8-sig")
