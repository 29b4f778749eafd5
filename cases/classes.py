"""The classes a case may have, with their 处置时限 (deadline hours, counted from 派遣).

事件 classes ship as ``data/event_classes.csv``; a city adds its own (扩展事件) with
``twin cases classes import FILE``, stored as local rows that a later sync leaves alone. 部件
classes are the component classes already in the database; their deadlines come from
``data/component_deadlines.csv`` by class prefix (the longest prefix wins).
"""

from __future__ import annotations

import csv
import io
from dataclasses import astuple, dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

import psycopg

from twin.errors import InvalidData, InvalidParameter

EVENT_COLUMNS = (
    "class_code",
    "major",
    "name_zh",
    "name_en",
    "major_name_zh",
    "major_name_en",
    "deadline_hours",
)
EVENTS_FILE = "event_classes.csv"
DEADLINES_FILE = "component_deadlines.csv"


@dataclass(frozen=True)
class EventClass:
    class_code: str
    major: str
    name_zh: str
    name_en: str
    major_name_zh: str
    major_name_en: str
    deadline_hours: Decimal
    local: bool = False


def _packaged(name: str) -> str:
    return resources.files("cases").joinpath("data", name).read_text("utf-8")


def _reader(text: str, label: str, required: tuple[str, ...]) -> csv.DictReader:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in required if c not in header]
    if missing:
        raise InvalidData(f"{label}: no {', '.join(missing)} column (needs {', '.join(required)})")
    reader.fieldnames = header
    return reader


def hours(value: str, where: str) -> Decimal:
    """A deadline in hours: a positive number (0.5 is half an hour)."""
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise InvalidData(f"{where}: deadline_hours {value!r} is not a number of hours") from None
    if not number.is_finite() or number <= 0 or number > 24 * 366:
        raise InvalidData(f"{where}: deadline_hours {value!r} must be more than 0, at most a year")
    return number


def parse_event_classes(text: str, label: str, *, local: bool) -> list[EventClass]:
    """Check a 事件 class CSV whole; the first bad row is refused with its file and line."""
    out: list[EventClass] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(
        _reader(text, label, ("class_code", "name_zh", "deadline_hours")), 2
    ):
        where = f"{label} line {line}"
        values = {c: (row.get(c) or "").strip() for c in EVENT_COLUMNS}
        code = values["class_code"]
        if not (code.isascii() and code.isdigit() and len(code) == 4) or code[2:] == "00":
            raise InvalidData(f"{where}: class_code {code!r} must be 4 digits, major + minor")
        major = values["major"] or code[:2]
        if major != code[:2]:
            raise InvalidData(f"{where}: class_code {code} does not start with its major {major}")
        if not values["name_zh"]:
            raise InvalidData(f"{where}: class {code} has no name_zh")
        if code in seen:
            raise InvalidData(f"{where}: class {code} is already on line {seen[code]}")
        seen[code] = line
        deadline = hours(values.pop("deadline_hours"), where)
        out.append(EventClass(**(values | {"major": major}), deadline_hours=deadline, local=local))
    return out


def parse_deadlines(text: str, label: str) -> list[tuple[str, Decimal, str]]:
    """(class prefix, hours, note) rows of the 部件 deadline table."""
    out, seen = [], set()
    for line, row in enumerate(_reader(text, label, ("class_prefix", "deadline_hours")), 2):
        where = f"{label} line {line}"
        prefix = (row.get("class_prefix") or "").strip()
        if not (prefix == "" or (prefix.isascii() and prefix.isdigit() and len(prefix) <= 5)):
            raise InvalidData(f"{where}: class_prefix {prefix!r} must be up to 5 digits")
        if prefix in seen:
            raise InvalidData(f"{where}: class_prefix {prefix!r} is given twice")
        seen.add(prefix)
        note = (row.get("note") or "").strip()
        out.append((prefix, hours(row.get("deadline_hours") or "", where), note))
    return out


UPSERT_EVENT = """
    INSERT INTO twin.case_event_classes (class_code, major, name_zh, name_en, major_name_zh,
                                         major_name_en, deadline_hours, local)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (class_code) DO UPDATE SET
        major = EXCLUDED.major, name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en,
        major_name_zh = EXCLUDED.major_name_zh, major_name_en = EXCLUDED.major_name_en,
        deadline_hours = EXCLUDED.deadline_hours, local = EXCLUDED.local
"""


def sync_case_classes(conn: psycopg.Connection) -> int:
    """Upsert the packaged 事件 classes (a local row of the same code stays) and the 部件
    deadlines; loading twice changes nothing. Returns how many 事件 classes were synced."""
    events = parse_event_classes(_packaged(EVENTS_FILE), EVENTS_FILE, local=False)
    deadlines = parse_deadlines(_packaged(DEADLINES_FILE), DEADLINES_FILE)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            UPSERT_EVENT + " WHERE NOT twin.case_event_classes.local",
            [astuple(c) for c in events],
        )
        cur.executemany(
            """
            INSERT INTO twin.case_component_deadlines (class_prefix, deadline_hours, note)
            VALUES (%s, %s, %s)
            ON CONFLICT (class_prefix) DO UPDATE SET
                deadline_hours = EXCLUDED.deadline_hours, note = EXCLUDED.note
            """,
            deadlines,
        )
    return len(events)


def import_local_classes(conn: psycopg.Connection, path: Path) -> list[EventClass]:
    """Local 事件 classes (扩展事件) from a CSV of the packaged file's columns; a row replaces
    the packaged class of its code. All rows are checked before any is written."""
    try:
        text = path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise InvalidParameter(f"file not found: {path}") from None
    except UnicodeDecodeError:
        raise InvalidData(f"{path.name} is not UTF-8 text: save the CSV as UTF-8") from None
    classes = parse_event_classes(text, path.name, local=True)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(UPSERT_EVENT, [astuple(c) for c in classes])
    return classes


def list_classes(kind: str | None = None) -> tuple[str, dict[str, object]]:
    """The statement listing classes (of one kind, or both) with deadlines."""
    return (
        """
        SELECT kind, class_code, major, name_zh, major_name_zh, deadline_hours, local
        FROM twin.case_classes
        WHERE %(kind)s::text IS NULL OR kind = %(kind)s
        ORDER BY kind DESC, class_code
        """,
        {"kind": kind},
    )
