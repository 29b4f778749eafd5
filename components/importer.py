"""Importing city management components (GB/T 30428.2 部件) from survey files into twin.components.

Field names are recognised case-insensitively: ours (code, class_code, status, ...) and those of
real systems (ObjID, ObjName, ObjState, DeptCode1..3, DeptName1..3, BGID, ORDate, CHDate,
DataSource, Note and their Chinese names); any other field is kept in ``attributes``. Every
row is checked before anything is written, and a file with bad rows loads nothing unless
``skip_invalid``. The write is one transaction: sequences moved past the file's codes, codes
generated for rows without one, COPY, and the ``components`` collection registered. The unit
grid of each component is set by the table's trigger from its location, never from the file.

Rows outside every unit grid load with a warning; rows farther than
``component_max_outside_km`` from the district are refused unless ``allow_outside`` (that far
off is nearly always a wrong CRS or swapped lon/lat, and would get the district's codes).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb
from pyproj import CRS

from components.classes import ClassTable, class_table
from components.codes import (
    advance_past,
    code_problem,
    district_problem,
    next_codes,
    split_code,
)
from components.publish import register_components
from layers import checks
from layers.checks import Problem
from layers.importer import Progress, source_crs
from layers.readers import BadRow, SourceData, read_source
from twin.crs import CrsRef, to_wgs84_xy
from twin.errors import Conflict, InvalidData, InvalidParameter
from twin.settings import ComponentSettings

STATUSES = ("完好", "破损", "丢失", "废弃", "移除")
# Our column ← the names it goes by in files (compared in lower case).
ALIASES: dict[str, tuple[str, ...]] = {
    "code": ("code", "objid", "部件标识码", "部件编码"),
    "name": ("name", "objname", "部件名称"),
    "class_code": ("class_code", "minor", "class", "部件小类", "小类代码"),
    "status": ("status", "objstate", "部件状态"),
    "dept_code": ("dept_code", "deptcode1", "主管部门代码"),
    "dept_name": ("dept_name", "deptname1", "主管部门"),
    "owner_code": ("owner_code", "deptcode2", "权属单位代码"),
    "owner_name": ("owner_name", "deptname2", "权属单位"),
    "maint_code": ("maint_code", "deptcode3", "养护单位代码"),
    "maint_name": ("maint_name", "deptname3", "养护单位"),
    "unit_grid": ("unit_grid", "bgid", "所在单元网格", "单元网格标识码"),
    "init_date": ("init_date", "ordate", "初始日期"),
    "change_date": ("change_date", "chdate", "变更日期"),
    "source": ("source", "datasource", "数据来源"),
    "note": ("note", "备注"),
}
# Names of the class table's own columns (the published view joins them in): not kept.
DERIVED = ("major", "class_name", "部件大类", "大类名称", "小类名称")
# 主管部门, 权属单位 and 养护单位 (code and name each), then data source and note.
TEXT_FIELDS = tuple(
    "dept_code dept_name owner_code owner_name maint_code maint_name source note".split()
)
DATE_FIELDS = ("init_date", "change_date")
VALUE_FIELDS = ("name", "status", *TEXT_FIELDS, *DATE_FIELDS)
DATE_FORMATS = ("%Y/%m/%d", "%Y.%m.%d", "%Y/%m/%d %H:%M:%S", "%Y年%m月%d日")
_dumps = partial(json.dumps, ensure_ascii=False, default=str)
NO_DISTRICT = (
    "no code, and the point is outside every unit grid: give a code, or set "
    "TWIN_DISTRICT_CODE for the district of generated codes"
)
NO_GRID = (
    "no grid is loaded: the rows were not placed in unit grids nor checked against the "
    "district (load it first with twin grid import)"
)


@dataclass
class OutsideRow:
    """A component outside every unit grid (loaded with a warning, or to be)."""

    row: int
    code: str  # the file's, or the generated one once loaded ("" before)
    lon: float
    lat: float
    distance_m: float  # from the district: 0 inside it, between its unit grids

    def reason(self, measured_from: str) -> str:
        where = (
            f"{self.distance_m / 1000:,.2f} km from {measured_from}"
            if self.distance_m > 0
            else f"inside {measured_from}"
        )
        return f"outside every unit grid: {self.lon:.6f}, {self.lat:.6f}, {where}"


@dataclass
class ComponentImport:
    file: str
    mode: str
    total: int
    loaded: int = 0
    generated: int = 0  # rows that had no code and were given one
    replaced: int = 0  # components deleted by mode="replace"
    bad_rows: list[BadRow] = field(default_factory=list)
    warnings: list[BadRow] = field(default_factory=list)  # loaded, but worth a look
    source_crs: str = ""
    row_label: str = "feature"
    seconds: float = 0.0
    outside: list[OutsideRow] = field(default_factory=list)  # outside every unit grid
    measured_from: str = ""  # what distances are measured from: "district 341502", ...
    notes: list[str] = field(default_factory=list)  # about the whole file
    report_path: Path | None = None


class ComponentsRejected(InvalidData):
    """The file had bad rows and nothing was loaded; ``report.bad_rows`` names each."""

    def __init__(self, report: ComponentImport) -> None:
        n = len(report.bad_rows)
        first = "; ".join(f"{report.row_label} {b.row}: {b.reason}" for b in report.bad_rows[:3])
        super().__init__(
            f"{report.file}: {n} bad row{'s' if n != 1 else ''} of {report.total}; nothing was "
            f"loaded (fix them, or load the good rows with skip_invalid). {first}"
        )
        self.report = report


@dataclass
class _Context:
    """What every row is checked against."""

    width: int
    classes: ClassTable
    mapped: dict[str, str]  # our field → the file's column

    def label(self, ours: str) -> str:
        return self.mapped.get(ours, ours)

    def bad(self, i: int, reason: str, ours: str | None = None) -> Problem:
        return Problem(i, reason, self.label(ours) if ours else None)


@dataclass
class _Row:
    """A component that passed its own checks, ready to write."""

    index: int
    code: str | None  # None: generated at write time
    class_code: str
    values: dict[str, Any]
    attributes: dict[str, Any]
    lon: float
    lat: float
    bgid: str | None
    district: str | None = None  # of a generated code
    distance_m: float | None = None  # from the district, when outside every unit grid


def import_components(
    conn: psycopg.Connection,
    path: Path,
    settings: ComponentSettings,
    *,
    crs: str | None = None,
    skip_invalid: bool = False,
    allow_outside: bool = False,
    mode: str = "append",
    report_path: Path | None = None,
    progress: Progress | None = None,
) -> ComponentImport:
    """Load a point file (GeoPackage, Shapefile, CSV with lon/lat, ...) into twin.components.

    mode "append" adds to the components (a code already there is a bad row); "replace"
    deletes every component first, in the same transaction. ``allow_outside`` loads rows
    however far from the district. With ``report_path``, bad rows, warnings and the rows
    outside every unit grid are written there as CSV (when there are any). The connection
    should have no work pending: the checking reads are committed before the write
    transaction starts.
    """
    started = time.perf_counter()
    say = progress or (lambda stage, done, total: None)
    if mode not in ("append", "replace"):
        raise InvalidParameter(f"unknown import mode {mode!r}: use append or replace")
    if settings.district_code is not None and district_problem(settings.district_code):
        raise InvalidParameter(f"TWIN_DISTRICT_CODE: {district_problem(settings.district_code)}")
    say("reading", 0, 0)
    src = read_source(path)
    ref, crs_label = source_crs(src, crs)
    report = ComponentImport(path.name, mode, len(src), source_crs=crs_label)
    report.row_label = src.row_label
    say("checking", 0, len(src))
    rows, problems, warnings, measured_from = check_rows(
        conn, src, ref, crs_label, settings, mode, allow_outside
    )
    report.bad_rows = _bad_rows(src, problems)
    report.warnings = _bad_rows(src, warnings)
    report.measured_from = measured_from or ""
    report.outside = _outside(src, rows)
    if measured_from is None and len(src):
        report.notes.append(NO_GRID)
    conn.commit()  # end the checking reads; the write below is a transaction of its own
    if report.bad_rows and not skip_invalid:
        _write_report(report, src, report_path)
        raise ComponentsRejected(report)
    if not rows:
        raise InvalidData(f"{path.name} has no components to load")
    try:
        with conn.transaction():
            _write(conn, rows, report, settings.component_code_width, say)
            register_components(conn)
            conn.execute(
                "UPDATE twin.layers SET source_file = %s, source_crs = %s "
                "WHERE name = 'components'",
                (path.name, crs_label),
            )
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"{path.name}: a component code was taken while the file was being checked "
            "(another import or edit?); nothing was loaded: run the import again"
        ) from None
    report.loaded = len(rows)
    report.outside = _outside(src, rows)  # again, with the generated codes
    _write_report(report, src, report_path)
    report.seconds = time.perf_counter() - started
    say("done", len(rows), len(rows))
    return report


def check_rows(
    conn: psycopg.Connection,
    src: SourceData,
    ref: CrsRef | CRS,
    crs_label: str,
    settings: ComponentSettings,
    mode: str,
    allow_outside: bool = False,
) -> tuple[list[_Row], list[Problem], list[Problem], str | None]:
    """Every check, nothing written: the good rows, the problems, the warnings, and what
    distances were measured from (None: no grid is loaded)."""
    mapped, extra = map_columns(src.attributes.column_names, src.path.name)
    width = settings.component_code_width
    ctx = _Context(width, class_table(conn, width), mapped)
    xy, problems = _points(src, ref, crs_label)
    rows, row_problems = _read_rows(src, ctx, extra, xy)
    problems += row_problems
    problems += _duplicates(rows, src, ctx)
    if mode == "append":
        problems += _taken(conn, rows, ctx)
    bad = {p.index for p in problems}
    rows = [r for r in rows if r.index not in bad]
    place_problems, warnings, measured_from = _locate(conn, rows, settings, ctx, allow_outside)
    bad |= {p.index for p in place_problems}
    good = [r for r in rows if r.index not in bad]
    return good, problems + place_problems, warnings, measured_from


def map_columns(names: list[str], label: str) -> tuple[dict[str, str], list[str]]:
    """Our field → the file's column, and the file's other columns (kept in attributes)."""
    lookup = {alias: ours for ours, aliases in ALIASES.items() for alias in aliases}
    mapped: dict[str, str] = {}
    extra = []
    for col in names:
        key = col.strip().lower()
        ours = lookup.get(key)
        if ours is None:
            if key not in DERIVED:
                extra.append(col)
        elif ours in mapped:
            raise InvalidData(
                f"{label}: columns {mapped[ours]} and {col} both give the {ours}; keep one"
            )
        else:
            mapped[ours] = col
    return mapped, extra


# --- geometry ----------------------------------------------------------------------------------
def _points(src: SourceData, ref: CrsRef | CRS, crs_label: str) -> tuple[np.ndarray, list[Problem]]:
    """WGS84 lon/lat of each row (NaN where there is no usable point), and the problems."""
    position = {int(r): i for i, r in enumerate(src.row_numbers)}
    problems = [Problem(position[b.row], b.reason, b.field) for b in src.bad]
    known = {p.index for p in problems}  # CSV rows whose lon/lat the reader already refused
    geoms, parsed, _ = checks.parse_geometries(src.wkb)
    problems += [p for p in parsed if p.index not in known]
    usable = np.ones(len(src), dtype=bool)
    usable[[p.index for p in problems]] = False
    types = shapely.get_type_id(geoms)
    one_point = usable & (types == 4) & (shapely.get_num_geometries(geoms) == 1)
    geoms[one_point] = shapely.get_geometry(geoms[one_point], 0)  # a 1-part MultiPoint
    wrong = usable & (types != 0) & ~one_point
    problems += [
        Problem(int(i), f"not a point: a {geoms[i].geom_type}") for i in np.flatnonzero(wrong)
    ]
    usable &= ~wrong
    xy = np.full((len(src), 2), np.nan)
    if usable.any():
        xy[usable] = to_wgs84_xy(shapely.get_coordinates(geoms[usable]), ref)
    outside = checks.check_lonlat_bounds(np.column_stack([xy, xy]), usable, crs_label)
    xy[[p.index for p in outside]] = np.nan
    return xy, problems + outside


# --- attributes --------------------------------------------------------------------------------
def _read_rows(
    src: SourceData, ctx: _Context, extra: list[str], xy: np.ndarray
) -> tuple[list[_Row], list[Problem]]:
    table = src.attributes
    columns = {ours: table.column(col).to_pylist() for ours, col in ctx.mapped.items()}
    others = {col: table.column(col).to_pylist() for col in extra}
    rows: list[_Row] = []
    problems: list[Problem] = []
    for i in range(len(src)):
        record = {ours: values[i] for ours, values in columns.items()}
        code, class_code, found = _code_and_class(i, record, ctx)
        values, more = _values(i, record, ctx)
        found += more
        problems += found
        if found or class_code is None or not np.isfinite(xy[i]).all():
            continue
        # Nulls and NaN are left out; dates and other values go in as text.
        attributes = {c: v[i] for c, v in others.items() if v[i] is not None and v[i] == v[i]}
        bgid = _text(record.get("unit_grid")) or None
        lon, lat = float(xy[i, 0]), float(xy[i, 1])
        rows.append(_Row(i, code, class_code, values, attributes, lon, lat, bgid))
    return rows, problems


def _code_and_class(
    i: int, record: dict[str, Any], ctx: _Context
) -> tuple[str | None, str | None, list[Problem]]:
    """The row's code (None: to generate) and class, which must agree when both are given."""
    code = _text(record.get("code")) or None
    why = code_problem(code, ctx.width) if code else None
    problems = [ctx.bad(i, why, "code")] if why else []
    from_code = split_code(code, ctx.width)[1] if code and not why else None
    given, why = ctx.classes.resolve(record.get("class_code"), ctx.label("class_code"))
    problems += [ctx.bad(i, why, "class_code")] if why else []
    said = f"{ctx.label('class_code')} says {given}"
    if given and from_code and given != from_code:
        problems.append(ctx.bad(i, f"code {code} is of class {from_code}, but {said}", "code"))
    elif from_code and not given and from_code not in ctx.classes.names:
        problems.append(ctx.bad(i, ctx.classes.unknown(from_code, f"code {code}"), "code"))
    elif not (given or from_code or problems):
        problems.append(ctx.bad(i, "no class: give class_code (e.g. 0118 路灯) or a code"))
    return code, given or from_code, problems


def _values(i: int, record: dict[str, Any], ctx: _Context) -> tuple[dict[str, Any], list[Problem]]:
    problems = []
    status = _text(record.get("status")) or STATUSES[0]
    if status not in STATUSES:
        known = ", ".join(STATUSES)
        problems.append(ctx.bad(i, f"status {status!r} is unknown; use one of {known}", "status"))
    values: dict[str, Any] = {"name": _text(record.get("name")), "status": status}
    for name in TEXT_FIELDS:
        values[name] = _text(record.get(name)) or None
    for name in DATE_FIELDS:
        values[name], ok = _date(record.get(name))
        if not ok:
            text = f"{ctx.label(name)} {_text(record.get(name))[:40]!r}"
            problems.append(ctx.bad(i, f"{text} is not a date (YYYY-MM-DD)", name))
    return values, problems


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        # Codes read as numbers (DBF, CSV): exact up to 2**53; beyond that the digits are
        # not trustworthy, and the float's text fails the code check instead.
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
    return str(value).strip()


def _date(value: Any) -> tuple[dt.date | None, bool]:
    """A date from a date, a datetime or text (ISO, 2020/01/31, 20200131, 2020年1月31日)."""
    if isinstance(value, dt.datetime):
        return value.date(), True
    if isinstance(value, dt.date):
        return value, True
    text = _text(value)
    if not text:
        return None, True
    try:
        return dt.datetime.fromisoformat(text).date(), True
    except ValueError:
        pass
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date(), True
        except ValueError:
            continue
    return None, False


# --- checks against each other and the database ------------------------------------------------
def _duplicates(rows: list[_Row], src: SourceData, ctx: _Context) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for r in rows:
        seen = first.setdefault(r.code, r.index) if r.code else r.index
        if seen != r.index:
            where = f"{src.row_label} {src.row_numbers[seen]}"
            problems.append(ctx.bad(r.index, f"code {r.code} repeats {where}", "code"))
    return problems


def _taken(conn: psycopg.Connection, rows: list[_Row], ctx: _Context) -> list[Problem]:
    codes = [r.code for r in rows if r.code]
    found = conn.execute(
        "SELECT code FROM twin.components WHERE code = ANY(%s) AND deleted_at IS NULL", (codes,)
    ).fetchall()
    taken = {str(c) for (c,) in found}
    why = "is already in the components (import with mode replace to reload them all)"
    return [ctx.bad(r.index, f"code {r.code} {why}", "code") for r in rows if r.code in taken]


def _locate(
    conn: psycopg.Connection,
    rows: list[_Row],
    settings: ComponentSettings,
    ctx: _Context,
    allow_outside: bool,
) -> tuple[list[Problem], list[Problem], str | None]:
    """The unit grid of every row and, outside them all, its distance from the district.

    Districts of new codes come from the unit grid. A BGID that disagrees is a warning (the
    trigger assigns the unit grid from the location). Rows too far from the district are
    refused unless ``allow_outside``.
    """
    measured_from = _reference(conn)
    found = conn.execute(PLACE_SQL, ([r.lon for r in rows], [r.lat for r in rows])).fetchall()
    problems, warnings = [], []
    label = ctx.label("unit_grid")
    limit_m = settings.component_max_outside_km * 1000
    for r, (unit, distance) in zip(rows, found, strict=True):
        r.distance_m = distance
        if r.bgid and r.bgid != unit:
            where = f"unit grid {unit}" if unit else "no unit grid"
            reason = f"{label} {r.bgid}, but the point is in {where}"
            warnings.append(ctx.bad(r.index, reason, "unit_grid"))
        if r.code is None:
            r.district = unit[:6] if unit else settings.district_code
            if r.district is None:
                problems.append(ctx.bad(r.index, NO_DISTRICT, "code"))
        if distance is not None and distance > limit_m and not allow_outside:
            problems.append(ctx.bad(r.index, _too_far(r, distance, measured_from, settings)))
    return problems, warnings, measured_from


# Distances in metres on the spheroid (geography), not degrees, and only for points outside
# every unit grid (the rest are inside the district). The area is the districts, or every
# cell when none is loaded; it is one value on every row, so PostGIS builds its distance
# tree once.
PLACE_SQL = """
WITH area AS (
    SELECT ST_Collect(geom)::geography AS g FROM twin.grid_cells
    WHERE valid_to IS NULL AND (level = 'district' OR NOT EXISTS (
        SELECT FROM twin.grid_cells d WHERE d.level = 'district' AND d.valid_to IS NULL))
), located AS (
    SELECT i, p, twin.unit_grid_at(p) AS unit
    FROM unnest(%s::float8[], %s::float8[]) WITH ORDINALITY AS u(x, y, i),
         LATERAL ST_SetSRID(ST_MakePoint(x, y), 4326) AS p
)
SELECT l.unit, CASE WHEN l.unit IS NULL THEN ST_Distance(l.p::geography, area.g) END
FROM located l CROSS JOIN area ORDER BY l.i
"""


def _reference(conn: psycopg.Connection) -> str | None:
    """What distances are measured from: the districts loaded, else every grid cell."""
    row = conn.execute(
        "SELECT array_agg(code ORDER BY code) FILTER (WHERE level = 'district'), count(*) "
        "FROM twin.grid_cells WHERE valid_to IS NULL"
    ).fetchone()
    districts, cells = row if row else (None, 0)
    if districts:
        more = f" and {len(districts) - 5} more" if len(districts) > 5 else ""
        return f"district{'s' if len(districts) > 1 else ''} {', '.join(districts[:5])}{more}"
    return "the loaded grid cells" if cells else None


def _too_far(r: _Row, distance: float, measured_from: str | None, s: ComponentSettings) -> str:
    return (
        f"{r.lon:.6f}, {r.lat:.6f} is {distance / 1000:,.1f} km from {measured_from}, farther "
        f"than TWIN_COMPONENT_MAX_OUTSIDE_KM ({s.component_max_outside_km:g} km): check the "
        "CRS (--crs) and the coordinate order (lon, lat; X and Y swapped?), or load it "
        "anyway with --allow-outside"
    )


def _outside(src: SourceData, rows: list[_Row]) -> list[OutsideRow]:
    return [
        OutsideRow(int(src.row_numbers[r.index]), r.code or "", r.lon, r.lat, r.distance_m)
        for r in rows
        if r.distance_m is not None
    ]


def _bad_rows(src: SourceData, problems: list[Problem]) -> list[BadRow]:
    out = [BadRow(int(src.row_numbers[p.index]), p.reason, field=p.field) for p in problems]
    return sorted(out, key=lambda b: (b.row, b.reason))


# --- the report --------------------------------------------------------------------------------
def _write_report(report: ComponentImport, src: SourceData, path: Path | None) -> None:
    """Bad rows, warnings, rows outside every unit grid and notes, one line each, as CSV."""
    if path is None or not (report.bad_rows or report.warnings or report.outside or report.notes):
        return
    codes = _file_codes(src)
    rows = [
        (b.row, codes.get(b.row, ""), b.field or "", "error", b.reason) for b in report.bad_rows
    ]
    rows += [
        (b.row, codes.get(b.row, ""), b.field or "", "warning", b.reason) for b in report.warnings
    ]
    rows += [(o.row, o.code, "", "outside", o.reason(report.measured_from)) for o in report.outside]
    rows.sort(key=lambda line: line[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([report.row_label, "code", "field", "kind", "reason"])
        w.writerows(("", "", "", "note", note) for note in report.notes)
        w.writerows(rows)
    report.report_path = path


def _file_codes(src: SourceData) -> dict[int, str]:
    """The code each row of the file gives (row number → code), to name rows in the report."""
    mapped, _ = map_columns(src.attributes.column_names, src.path.name)
    if "code" not in mapped:
        return {}
    values = src.attributes.column(mapped["code"]).to_pylist()
    return {int(n): _text(v) for n, v in zip(src.row_numbers, values, strict=True)}


# --- writing -----------------------------------------------------------------------------------
def _write(
    conn: psycopg.Connection, rows: list[_Row], report: ComponentImport, width: int, say: Progress
) -> None:
    # One component import at a time: a replace must not interleave with another's append.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('twin.components.import'))")
    if report.mode == "replace":
        # Soft: replaced components keep their last state and history, and can be restored.
        report.replaced = conn.execute(
            "UPDATE twin.components SET deleted_at = now() WHERE deleted_at IS NULL"
        ).rowcount
    # First past the file's own codes, so the codes generated next come after them.
    advance_past(conn, [r.code for r in rows if r.code])
    report.generated = _generate_codes(conn, rows, width)
    say("loading", 0, len(rows))
    _copy(conn, rows)
    say("loading", len(rows), len(rows))


def _generate_codes(conn: psycopg.Connection, rows: list[_Row], width: int) -> int:
    groups: dict[tuple[str, str], list[_Row]] = defaultdict(list)
    for r in rows:
        if r.code is None:
            assert r.district is not None
            groups[(r.district, r.class_code)].append(r)
    for (district, class_code), members in sorted(groups.items()):
        codes = next_codes(conn, district, class_code, len(members), width)
        for r, code in zip(members, codes, strict=True):
            r.code = code
    return sum(len(m) for m in groups.values())


def _copy(conn: psycopg.Connection, rows: list[_Row]) -> None:
    points = shapely.points(np.array([(r.lon, r.lat) for r in rows], dtype="float64"))
    ewkb = shapely.to_wkb(shapely.set_srid(points, 4326), hex=True, include_srid=True)
    columns = ("code", "class_code", *VALUE_FIELDS, "attributes", "geom")
    query = sql.SQL("COPY twin.components ({}) FROM STDIN").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with conn.cursor().copy(query) as copy:
        for r, geom in zip(rows, ewkb, strict=True):
            values = (r.values[c] for c in VALUE_FIELDS)
            attributes = Jsonb(r.attributes, dumps=_dumps)
            copy.write_row((r.code, r.class_code, *values, attributes, geom))
