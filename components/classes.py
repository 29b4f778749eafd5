"""The component class table (GB/T 30428.2 大类/小类, plus local 扩展部件) in the database.

The standard classes ship as ``data/classes.csv``; a deployment adds its own in a CSV of the
same columns (``TWIN_COMPONENT_CLASSES_FILE``). Both are checked whole before anything is
written, then upserted, so loading twice changes nothing.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import astuple, dataclass, replace
from importlib import resources
from pathlib import Path

import psycopg

from twin.errors import InvalidData, InvalidParameter

COLUMNS = ("class_code", "major", "name_zh", "name_en", "major_name_zh", "major_name_en")
REQUIRED = ("class_code", "name_zh")
PACKAGED = "classes.csv"


@dataclass(frozen=True)
class ComponentClass:
    class_code: str
    major: str
    name_zh: str
    name_en: str = ""
    major_name_zh: str = ""
    major_name_en: str = ""
    local: bool = False


def class_width(code_width: int) -> int:
    """Digits of a class code: 4 for 16-digit component codes, 5 for 17-digit ones."""
    if code_width not in (16, 17):
        raise InvalidParameter(f"component code width must be 16 or 17, not {code_width}")
    return code_width - 12


def standard_classes(width: int = 16) -> list[ComponentClass]:
    """The packaged GB/T 30428.2 table; in 17-digit mode the minor class is padded to 3 digits."""
    text = resources.files("components").joinpath("data", PACKAGED).read_text("utf-8")
    classes = parse_classes(text, PACKAGED, width=16, local=False)
    if width == 17:
        # An assumption (GB/T 47678 is unverified): minor 18 becomes 018.
        classes = [replace(c, class_code=f"{c.major}0{c.class_code[2:]}") for c in classes]
    return classes


def read_classes(path: Path, width: int = 16) -> list[ComponentClass]:
    """A local extension file (扩展部件): the same columns, rows marked local."""
    try:
        text = path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise InvalidParameter(
            f"component classes file not found: {path} (TWIN_COMPONENT_CLASSES_FILE)"
        ) from None
    except UnicodeDecodeError:
        raise InvalidData(f"{path.name} is not UTF-8 text: save the CSV as UTF-8") from None
    return parse_classes(text, path.name, width=width, local=True)


def parse_classes(text: str, label: str, *, width: int, local: bool) -> list[ComponentClass]:
    """Check and parse a class CSV; the first bad row is refused with its file and line."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InvalidData(
            f"{label}: no {' or '.join(missing)} column; the columns are {', '.join(COLUMNS)}"
        )
    reader.fieldnames = header
    digits = class_width(width)
    seen: dict[str, int] = {}
    out = []
    for line, row in enumerate(reader, start=2):
        cls = _parse_row(row, digits, local, f"{label} line {line}")
        if cls.class_code in seen:
            raise InvalidData(
                f"{label} line {line}: class {cls.class_code} is already on line "
                f"{seen[cls.class_code]}"
            )
        seen[cls.class_code] = line
        out.append(cls)
    return out


def _parse_row(row: dict[str, str | None], digits: int, local: bool, where: str) -> ComponentClass:
    values = {c: (row.get(c) or "").strip() for c in COLUMNS}
    code, major = values["class_code"], values["major"] or values["class_code"][:2]
    if not (code.isascii() and code.isdigit() and len(code) == digits):
        raise InvalidData(f"{where}: class_code {code!r} must have {digits} digits")
    if major != code[:2]:
        raise InvalidData(f"{where}: class_code {code} does not start with its major {major!r}")
    if code[:2] == "00" or code[2:].strip("0") == "":
        raise InvalidData(f"{where}: class_code {code} has a zero major or minor class")
    if not values["name_zh"]:
        raise InvalidData(f"{where}: class {code} has no name_zh")
    values["major"] = major
    return ComponentClass(**values, local=local)


def merged_classes(extra: Path | None = None, width: int = 16) -> list[ComponentClass]:
    """The standard table overlaid with the extension file (a local row replaces a standard one).

    Major names the extension leaves empty are taken from the standard major of the same code.
    """
    standard = standard_classes(width)
    majors = {c.major: (c.major_name_zh, c.major_name_en) for c in standard}
    by_code = {c.class_code: c for c in standard}
    for cls in read_classes(extra, width) if extra is not None else []:
        zh, en = majors.get(cls.major, ("", ""))
        by_code[cls.class_code] = replace(
            cls, major_name_zh=cls.major_name_zh or zh, major_name_en=cls.major_name_en or en
        )
    return sorted(by_code.values(), key=lambda c: c.class_code)


def sync_classes(conn: psycopg.Connection, extra: Path | None = None, *, width: int = 16) -> int:
    """Upsert the standard classes and the optional extension file; returns how many classes."""
    classes = merged_classes(extra, width)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO twin.component_classes
                (class_code, major, name_zh, name_en, major_name_zh, major_name_en, local)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (class_code) DO UPDATE SET
                major = EXCLUDED.major, name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en,
                major_name_zh = EXCLUDED.major_name_zh, major_name_en = EXCLUDED.major_name_en,
                local = EXCLUDED.local
            """,
            [astuple(c) for c in classes],
        )
    return len(classes)


def class_names(conn: psycopg.Connection) -> dict[str, str]:
    """Class code → Chinese name, of every class in the database."""
    rows = conn.execute(
        "SELECT class_code, name_zh FROM twin.component_classes ORDER BY class_code"
    ).fetchall()
    return {str(code): str(name) for code, name in rows}


@dataclass(frozen=True)
class ClassTable:
    """The classes of one code width, for resolving what a survey file gives as a class."""

    digits: int
    names: dict[str, str]  # class code → name
    by_name: dict[str, str]  # class name → code, for names only one class has

    def resolve(self, raw: object, where: str) -> tuple[str | None, str | None]:
        """(class code, None), or (None, why not); (None, None) when nothing is given.

        Accepts a code, a number that lost its leading zero (0101 read as 101) or a name.
        """
        text = "" if raw is None else str(raw).strip()
        if isinstance(raw, float) and raw.is_integer():
            text = str(int(raw))
        if not text:
            return None, None
        if isinstance(raw, int | float) and text.isdigit() and len(text) < self.digits:
            text = text.zfill(self.digits)
        if text in self.by_name:
            return self.by_name[text], None
        if not (text.isascii() and text.isdigit() and len(text) == self.digits):
            return None, f"class {text!r} is neither a {self.digits}-digit class code nor a name"
        if text not in self.names:
            return None, self.unknown(text, where)
        return text, None

    def unknown(self, class_code: str, where: str) -> str:
        return (
            f"unknown class {class_code!r} ({where}): not in the class table; local classes "
            "(扩展部件) go in TWIN_COMPONENT_CLASSES_FILE"
        )


def class_table(conn: psycopg.Connection, width: int = 16) -> ClassTable:
    """The database's classes of the configured width; an empty table is a setup error."""
    digits = class_width(width)
    names = {c: n for c, n in class_names(conn).items() if len(c) == digits}
    if not names:
        raise InvalidData(
            f"the component class table has no {digits}-digit classes: run `twin db migrate` "
            "(which loads them) or check TWIN_COMPONENT_CODE_WIDTH"
        )
    count = Counter(names.values())
    by_name = {name: code for code, name in names.items() if count[name] == 1}
    return ClassTable(digits, names, by_name)
