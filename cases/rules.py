"""Dispatch rules: which department handles a case of a class in a place.

A rule names a kind (部件/事件, or empty for both), a class-code prefix, a grid-code prefix and
a priority. The rule that decides is the first by priority (highest first), then the most
specific: longest class prefix, then longest grid prefix, then a named kind. A case about a
component goes to the component's own department before any rule is asked.
"""

from __future__ import annotations

import csv
import io
from dataclasses import astuple, dataclass
from pathlib import Path

import psycopg

from cases import KINDS
from twin.errors import InvalidData, InvalidParameter

COLUMNS = (
    "kind",
    "class_prefix",
    "grid_prefix",
    "priority",
    "department_code",
    "department_name",
    "note",
)
REQUIRED = ("department_code",)


@dataclass(frozen=True)
class Rule:
    kind: str  # '' for both kinds
    class_prefix: str
    grid_prefix: str
    priority: int
    department_code: str
    department_name: str
    note: str = ""


# The first rule of a case's kind, class and unit grid (one statement for every caller).
MATCH_SQL = """
    SELECT id, department_code, department_name FROM twin.case_dispatch_rules
    WHERE (kind = '' OR kind = %(kind)s)
      AND starts_with(%(class_code)s, class_prefix)
      AND starts_with(%(unit_grid)s, grid_prefix)
    ORDER BY priority DESC, length(class_prefix) DESC, length(grid_prefix) DESC,
             (kind <> '') DESC, id
    LIMIT 1
"""

LIST_SQL = """
    SELECT id, kind, class_prefix, grid_prefix, priority, department_code, department_name, note
    FROM twin.case_dispatch_rules
    ORDER BY priority DESC, length(class_prefix) DESC, length(grid_prefix) DESC,
             (kind <> '') DESC, id
"""


def _digits(value: str, what: str, most: int, where: str) -> str:
    if value and not (value.isascii() and value.isdigit() and len(value) <= most):
        raise InvalidData(f"{where}: {what} {value!r} must be empty or up to {most} digits")
    return value


def parse_rule(row: dict[str, str | None], where: str) -> Rule:
    values = {c: (row.get(c) or "").strip() for c in COLUMNS}
    kind = values["kind"]
    if kind not in ("", *KINDS):
        raise InvalidData(f"{where}: kind {kind!r} is not 部件, 事件 or empty (both)")
    class_prefix = _digits(values["class_prefix"], "class_prefix", 5, where)
    if class_prefix and not kind:
        raise InvalidData(
            f"{where}: class_prefix {class_prefix} needs a kind (部件 or 事件): the two kinds "
            "number their classes alike (部件 0101 上水井盖, 事件 0101 暴露垃圾)"
        )
    grid_prefix = _digits(values["grid_prefix"], "grid_prefix", 15, where)
    try:
        priority = int(values["priority"] or 0)
    except ValueError:
        raise InvalidData(f"{where}: priority {values['priority']!r} is not an integer") from None
    if not values["department_code"]:
        raise InvalidData(f"{where}: department_code is empty: say who handles these cases")
    return Rule(
        kind,
        class_prefix,
        grid_prefix,
        priority,
        values["department_code"],
        values["department_name"],
        values["note"],
    )


def parse_rules(text: str, label: str) -> list[Rule]:
    """Every row checked; the first bad one is refused with its line, and a (kind, class
    prefix, grid prefix) given twice is refused (which of the two would decide?)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InvalidData(f"{label}: no {', '.join(missing)} column; the columns are {COLUMNS}")
    reader.fieldnames = header
    rules: list[Rule] = []
    seen: dict[tuple[str, str, str], int] = {}
    for line, row in enumerate(reader, start=2):
        rule = parse_rule(row, f"{label} line {line}")
        key = (rule.kind, rule.class_prefix, rule.grid_prefix)
        if key in seen:
            raise InvalidData(
                f"{label} line {line}: the rule for kind {rule.kind or '(any)'}, class prefix "
                f"{rule.class_prefix or '(any)'}, grid prefix {rule.grid_prefix or '(any)'} "
                f"is already on line {seen[key]}"
            )
        seen[key] = line
        rules.append(rule)
    if not rules:
        raise InvalidData(f"{label}: no rules in the file")
    return rules


def read_rules(path: Path) -> list[Rule]:
    try:
        text = path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise InvalidParameter(f"rules file not found: {path}") from None
    except UnicodeDecodeError:
        raise InvalidData(f"{path.name} is not UTF-8 text: save the CSV as UTF-8") from None
    return parse_rules(text, path.name)


def save_rules(conn: psycopg.Connection, rules: list[Rule], *, replace: bool = False) -> int:
    """Upsert rules by (kind, class prefix, grid prefix), or replace the whole table; one
    transaction either way. Returns how many rules there are now."""
    with conn.transaction(), conn.cursor() as cur:
        if replace:
            cur.execute("DELETE FROM twin.case_dispatch_rules")
        cur.executemany(
            """
            INSERT INTO twin.case_dispatch_rules (kind, class_prefix, grid_prefix, priority,
                                                  department_code, department_name, note)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (kind, class_prefix, grid_prefix) DO UPDATE SET
                priority = EXCLUDED.priority, department_code = EXCLUDED.department_code,
                department_name = EXCLUDED.department_name, note = EXCLUDED.note
            """,
            [astuple(r) for r in rules],
        )
        row = cur.execute("SELECT count(*) FROM twin.case_dispatch_rules").fetchone()
    return int(row[0]) if row else 0


def no_rule_message(kind: str, class_code: str, class_name: str, unit_grid: str) -> str:
    return (
        f"no dispatch rule covers {kind} class {class_code} {class_name} in unit grid "
        f"{unit_grid}: add one (`twin cases rules import RULES.csv`, a row with kind {kind}, a "
        f"class prefix of {class_code} and a grid prefix of {unit_grid}, or empty prefixes for "
        "a wider rule), or give the department in the 派遣 transition"
    )
