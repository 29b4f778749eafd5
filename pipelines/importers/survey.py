"""Pipe survey tables (管线点成果表 + 管线段成果表) joined by survey point numbers (物探点号).

A survey delivers a points table (point number, X/Y, ground elevation, feature or fitting) and a
lines table (start and end point numbers, depths or pipe elevations at both ends, size,
material...). Coordinates follow the Chinese survey convention: X is the northing and Y the
easting. The checks are the ones survey QA runs (CJJ 61): start ≠ end, no duplicate line
(reversed included), ground elevation = depth + pipe elevation, one point one elevation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from pyproj import CRS

from pipelines import codes
from pipelines.importers.columns import (
    LINE_COLUMNS,
    POINT_COLUMNS,
    Table,
    Where,
    attr_value,
    cell_text,
    line_fields,
    match_columns,
    parse_class_arguments,
    parse_number,
    read_table,
    row_class,
)
from pipelines.model import (
    GRAVITY_UTILITIES,
    VALVE_KINDS,
    Finding,
    NetworkData,
    Node,
    Segment,
)
from twin.crs import parse_crs
from twin.errors import InvalidData, InvalidParameter

Class = tuple[str, str | None]
_ROUNDING = 1e-9  # survey figures have 2-3 decimals: 20.00 - (1.05 + 18.90) is not exactly 0.05


@dataclass
class _Point:
    row: int
    node: Node | None  # None when the point has no usable coordinates
    cls: Class | None  # from the points table's class column
    feature_text: str | None = None


@dataclass
class _Line:
    row: int
    segment: Segment


@dataclass
class _Survey:
    points: dict[str, _Point] = field(default_factory=dict)
    lines: list[_Line] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def read_survey(
    points: Path,
    lines: Path,
    *,
    crs: str,
    utility: str | None = None,
    subclass: str | None = None,
    elevation_tolerance_m: float = 0.05,
) -> NetworkData:
    """Read a survey's points and lines tables into a network in the tables' CRS.

    ``utility`` / ``subclass`` give the class where the tables have none (a sub-class such as YS
    implies its class). Problems are findings, not exceptions: rows with errors are kept where
    they can be built; a line naming an unknown point cannot be and is left out.
    """
    crs_text, crs_obj = _check_crs(crs)
    if not elevation_tolerance_m >= 0:
        raise InvalidParameter("elevation_tolerance_m must be zero or more")
    default = parse_class_arguments(utility, subclass)
    point_table = read_table(Path(points), hints=("点", "point"))
    line_table = read_table(Path(lines), hints=("线", "line", "段"))
    pcols = match_columns(list(point_table.frame.columns), POINT_COLUMNS)
    lcols = match_columns(list(line_table.frame.columns), LINE_COLUMNS)
    _require(point_table, pcols, ("point_no",), "物探点号 (point_no)")
    _require(line_table, lcols, ("start",), "起点点号 (start_point)")
    _require(line_table, lcols, ("end",), "终点点号 (end_point)")
    has_class = any(k in c for k in ("utility", "subclass") for c in (pcols, lcols))
    if default is None and not has_class:
        raise InvalidParameter(
            "the survey tables have no class column (管线类别): pass the utility class, e.g. "
            "utility='JS' for water supply or subclass='YS' for storm drainage"
        )
    survey = _Survey()
    _read_points(point_table, pcols, crs_obj, default, survey)
    _read_lines(line_table, lcols, default, survey)
    _check_elevations(survey, elevation_tolerance_m)
    nodes = _finish_nodes(survey, default)
    return NetworkData(
        nodes=nodes,
        segments=[line.segment for line in survey.lines],
        crs=crs_text,
        findings=survey.findings,
        source=f"{Path(points).name} + {Path(lines).name}",
    )


def _check_crs(crs: str) -> tuple[str, CRS]:
    ref = parse_crs(crs, allow_gcj02=False)
    text = "OGC:CRS84" if ref.kind == "crs84" else f"EPSG:{ref.epsg}"
    return text, CRS.from_user_input(text)


def _require(table: Table, cols: Mapping[str, str], fields: tuple[str, ...], label: str) -> None:
    if not all(f in cols for f in fields):
        raise InvalidData(
            f"{table.path.name} has no {label} column; its columns are: "
            f"{', '.join(map(str, table.frame.columns))}"
        )


# --- points ---------------------------------------------------------------------------------
def _coordinate_columns(table: Table, cols: Mapping[str, str], crs: CRS) -> tuple[str, str] | None:
    """(easting column, northing column), or None to use the file's point geometry."""
    pairs = [("lon", "lat"), ("easting", "northing")]
    if not crs.is_geographic:
        pairs = pairs[1:]
        if "lon" in cols and "lat" in cols and not ("easting" in cols and "northing" in cols):
            raise InvalidParameter(
                f"{table.path.name} gives lon/lat (经度/纬度) but the CRS {crs.name} is "
                "projected: pass a geographic CRS such as EPSG:4490, or give X/Y columns"
            )
    for east, north in pairs:
        if east in cols and north in cols:
            return cols[east], cols[north]
    if table.geometry is not None:
        if table.crs is not None and not CRS.from_user_input(table.crs).equals(crs):
            raise InvalidParameter(
                f"{table.path.name} is in {table.crs.name} but crs says {crs.name}: pass the "
                "file's CRS"
            )
        return None
    raise InvalidData(
        f"{table.path.name} has no coordinate columns: give X坐标/Y坐标 (X = northing, "
        "Y = easting), 北坐标/东坐标, northing/easting, or 经度/纬度 for lon/lat"
    )


def _point_xy(
    rec: Mapping[str, Any], xy_cols: tuple[str, str] | None, geom: Any, where: Where
) -> tuple[float, float] | Finding:
    if xy_cols is None:
        if geom is None or shapely.is_empty(geom) or geom.geom_type != "Point":
            return where.finding(
                "no_coordinates",
                f"point {where.ref} (points row {where.row}) has no point geometry; "
                "give it a position",
            )
        return float(geom.x), float(geom.y)
    east_col, north_col = xy_cols
    try:
        east, north = parse_number(rec[east_col]), parse_number(rec[north_col])
    except (TypeError, ValueError):
        east = north = None
    if east is None or north is None:
        return where.finding(
            "no_coordinates",
            f"point {where.ref} (points row {where.row}) has no usable coordinates: "
            f"{north_col} {_shown(rec[north_col])}, {east_col} {_shown(rec[east_col])}; "
            "give both as numbers",
        )
    return east, north


def _shown(value: Any) -> str:
    text = cell_text(value)
    return "empty" if text is None else repr(text)


def _number(
    rec: Mapping[str, Any], cols: Mapping[str, str], key: str, where: Where, survey: _Survey
) -> float | None:
    if key not in cols:
        return None
    try:
        return parse_number(rec[cols[key]])
    except (TypeError, ValueError):
        survey.findings.append(
            where.finding(
                "bad_number",
                f"{where.table} row {where.row} ({where.ref}): column {cols[key]} holds "
                f"{rec[cols[key]]!r}, which is not a number; correct it or leave it empty",
            )
        )
        return None


def _valve_state(text: str | None, where: Where, survey: _Survey) -> str:
    if text is None:
        return "open"
    state = codes.parse_valve_state(text)
    if state is None:
        survey.findings.append(
            where.finding(
                "unknown_valve_state",
                f"point {where.ref} (points row {where.row}): unknown valve state {text!r}; use "
                "开/open, 关/closed or 失效/inoperable (read as open for now)",
            )
        )
        return "open"
    return state


def _read_points(
    table: Table, cols: Mapping[str, str], crs: CRS, default: Class | None, survey: _Survey
) -> None:
    xy_cols = _coordinate_columns(table, cols, crs)
    matched = set(cols.values())
    others = [c for c in table.frame.columns if c not in matched]
    geoms = table.geometry.to_numpy() if table.geometry is not None else None
    for i, rec in enumerate(table.frame.to_dict("records")):
        row = table.row_number(i)
        number = cell_text(rec[cols["point_no"]])
        where = Where("points", row, number)
        if number is None:
            survey.findings.append(
                where.finding(
                    "missing_point_no",
                    f"points row {row} has no point number (物探点号); fill it in (row left out)",
                )
            )
            continue
        if number in survey.points:
            first = survey.points[number].row
            survey.findings.append(
                where.finding(
                    "duplicate_point",
                    f"point number {number} is repeated: points row {row} repeats row {first}; "
                    "give each point its own number (the first row is used)",
                )
            )
            continue
        xy = _point_xy(rec, xy_cols, geoms[i] if geoms is not None else None, where)
        cls, class_findings = row_class(rec, cols, None, where)
        survey.findings += class_findings
        fitting = cell_text(rec[cols["fitting"]]) if "fitting" in cols else None
        feature = cell_text(rec[cols["feature"]]) if "feature" in cols else None
        point = _Point(row, None, cls, feature_text=feature)
        survey.points[number] = point
        if isinstance(xy, Finding):
            survey.findings.append(xy)
            continue
        kind = codes.node_kind(fitting, feature)
        state = cell_text(rec[cols["valve_state"]]) if "valve_state" in cols else None
        attrs = {c: attr_value(rec[c]) for c in others}
        if feature is not None:
            attrs["feature"] = feature
        if fitting is not None:
            attrs["appurtenance"] = fitting
        point.node = Node(
            node_id=number,
            kind=kind,
            x=xy[0],
            y=xy[1],
            valve_state=_valve_state(state, where, survey) if kind in VALVE_KINDS else None,
            ground_elev_m=_number(rec, cols, "ground_elev", where, survey),
            depth_m=_number(rec, cols, "depth", where, survey),
            name=cell_text(rec[cols["name"]]) if "name" in cols else None,
            attrs=attrs,
        )


# --- lines ----------------------------------------------------------------------------------
@dataclass
class _Seen:
    pairs: dict[frozenset[str], tuple[int, str]] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)


def _line_ends_ok(start: str, end: str, where: Where, survey: _Survey) -> bool:
    """Check a line's ends against the points table; False when it cannot be built."""
    ok = True
    if start == end:
        survey.findings.append(
            where.finding(
                "same_ends",
                f"line {where.ref} (lines row {where.row}) starts and ends at point {start}; "
                "correct its start or end point number",
            )
        )
    for label, number in (("start", start), ("end", end)):
        point = survey.points.get(number)
        if point is None:
            survey.findings.append(
                where.finding(
                    "unknown_point",
                    f"line {where.ref} (lines row {where.row}): its {label} point {number} is not "
                    "in the points table; add the point or correct the number (line left out)",
                )
            )
            ok = False
        elif point.node is None:
            survey.findings.append(
                where.finding(
                    "unplaced_point",
                    f"line {where.ref} (lines row {where.row}): its {label} point {number} has no "
                    f"coordinates (points row {point.row}); line left out until it has",
                )
            )
            ok = False
    return ok


def _line_unique(
    start: str, end: str, pipe_id: str, where: Where, seen: _Seen, survey: _Survey
) -> bool:
    pair = frozenset((start, end))
    if pair in seen.pairs:
        first_row, first_id = seen.pairs[pair]
        survey.findings.append(
            where.finding(
                "duplicate_line",
                f"line {pipe_id} (lines row {where.row}) joins {start} and {end} like line "
                f"{first_id} in row {first_row} (direction ignored); remove one of them",
            )
        )
    else:
        seen.pairs[pair] = (where.row, pipe_id)
    if pipe_id in seen.ids:
        survey.findings.append(
            where.finding(
                "duplicate_pipe_id",
                f"pipe id {pipe_id} (lines row {where.row}) is already used in row "
                f"{seen.ids[pipe_id]}; give each line its own id (this row is left out)",
            )
        )
        return False
    seen.ids[pipe_id] = where.row
    return True


def _read_lines(
    table: Table, cols: Mapping[str, str], default: Class | None, survey: _Survey
) -> None:
    matched = set(cols.values())
    others = [c for c in table.frame.columns if c not in matched]
    seen = _Seen()
    for i, rec in enumerate(table.frame.to_dict("records")):
        row = table.row_number(i)
        start, end = cell_text(rec[cols["start"]]), cell_text(rec[cols["end"]])
        given_id = cell_text(rec[cols["pipe_id"]]) if "pipe_id" in cols else None
        pipe_id = given_id or f"{start or ''}-{end or ''}"
        where = Where("lines", row, pipe_id)
        if start is None or end is None:
            missing = " and ".join(n for n, v in (("start", start), ("end", end)) if v is None)
            survey.findings.append(
                where.finding(
                    "missing_end",
                    f"lines row {row} ({pipe_id}) has no {missing} point number; fill it in "
                    "(line left out)",
                )
            )
            continue
        if not _line_ends_ok(start, end, where, survey):
            continue
        if not _line_unique(start, end, pipe_id, where, seen, survey):
            continue
        values, findings = line_fields(rec, cols, where)
        cls, class_findings = row_class(rec, cols, default, where)
        survey.findings += findings + class_findings
        cls = cls or survey.points[start].cls or survey.points[end].cls
        if cls is None and class_findings:
            continue  # an unknown class, already reported
        if cls is None:
            survey.findings.append(
                where.finding(
                    "missing_class",
                    f"line {pipe_id} (lines row {row}) has no class: fill in 管线类别 or pass "
                    "the utility class (line left out)",
                )
            )
            continue
        a, b = survey.points[start].node, survey.points[end].node
        assert a is not None and b is not None  # checked by _line_ends_ok
        if values.get("flow") is None and cls[0] in GRAVITY_UTILITIES:
            values["flow"] = "forward"
        segment = Segment(
            pipe_id=pipe_id,
            from_node=start,
            to_node=end,
            coords=[(a.x, a.y), (b.x, b.y)],
            utility=cls[0],
            subclass=cls[1],
            feature_code=codes.segment_code(cls[0], cls[1]),
            attrs={c: attr_value(rec[c]) for c in others},
            **values,
        )
        survey.lines.append(_Line(row, segment))


# --- elevation checks -----------------------------------------------------------------------
def _check_ground(line: _Line, survey: _Survey, tolerance: float) -> None:
    seg = line.segment
    ends = (
        ("start", seg.from_node, seg.start_depth_m, seg.start_invert_m),
        ("end", seg.to_node, seg.end_depth_m, seg.end_invert_m),
    )
    for label, number, depth, elev in ends:
        node = survey.points[number].node
        ground = node.ground_elev_m if node is not None else None
        if ground is None or depth is None or elev is None:
            continue
        diff = ground - (depth + elev)
        if abs(diff) > tolerance + _ROUNDING:
            survey.findings.append(
                Finding(
                    "elevation_mismatch",
                    f"line {seg.pipe_id}, {label} point {number}: ground elevation {ground:.3f} m "
                    f"≠ depth {depth:.3f} m + pipe elevation {elev:.3f} m = {depth + elev:.3f} m "
                    f"(off by {diff:+.3f} m, tolerance {tolerance} m); check the depth, the pipe "
                    "elevation or the point's ground elevation",
                    "warning",
                    line.row,
                    seg.pipe_id,
                    "lines",
                )
            )


def _check_uphill(line: _Line, survey: _Survey) -> None:
    seg = line.segment
    if seg.utility not in GRAVITY_UTILITIES or seg.flow not in ("forward", "reverse"):
        return
    if seg.start_invert_m is None or seg.end_invert_m is None:
        return
    up, down = (seg.start_invert_m, seg.end_invert_m)
    a, b = seg.from_node, seg.to_node
    if seg.flow == "reverse":
        up, down, a, b = down, up, b, a
    if up < down:
        survey.findings.append(
            Finding(
                "runs_uphill",
                f"gravity line {seg.pipe_id} flows from {a} (invert {up:.3f} m) to {b} (invert "
                f"{down:.3f} m), rising {down - up:.3f} m; check the inverts or its flow direction",
                "warning",
                line.row,
                seg.pipe_id,
                "lines",
            )
        )


def _check_elevations(survey: _Survey, tolerance: float) -> None:
    at_point: dict[str, list[tuple[str, float]]] = {}
    for line in survey.lines:
        _check_ground(line, survey, tolerance)
        _check_uphill(line, survey)
        seg = line.segment
        if seg.utility in GRAVITY_UTILITIES:
            continue
        for number, elev in ((seg.from_node, seg.start_invert_m), (seg.to_node, seg.end_invert_m)):
            if elev is not None:
                at_point.setdefault(number, []).append((seg.pipe_id, elev))
    for number, figures in at_point.items():
        values = [e for _, e in figures]
        if max(values) - min(values) > tolerance + _ROUNDING:
            listed = ", ".join(f"{pid} {e:.3f} m" for pid, e in figures)
            survey.findings.append(
                Finding(
                    "point_elevations_differ",
                    f"point {number}: the lines meeting there give different pipe elevations "
                    f"({listed}; spread {max(values) - min(values):.3f} m, tolerance "
                    f"{tolerance} m); one point has one elevation: correct the lines' "
                    "elevations",
                    "warning",
                    survey.points[number].row,
                    number,
                    "points",
                )
            )


# --- nodes ----------------------------------------------------------------------------------
def _finish_nodes(survey: _Survey, default: Class | None) -> list[Node]:
    """Fill each node's pipe elevation and feature code from the lines that use it."""
    inverts: dict[str, list[float]] = {}
    line_class: dict[str, Class] = {}
    for line in survey.lines:
        seg = line.segment
        for number, elev in ((seg.from_node, seg.start_invert_m), (seg.to_node, seg.end_invert_m)):
            line_class.setdefault(number, (seg.utility, seg.subclass))
            if elev is not None:
                inverts.setdefault(number, []).append(elev)
    nodes = []
    for number, point in survey.points.items():
        node = point.node
        if node is None:
            continue
        cls = point.cls or line_class.get(number) or default
        figures = inverts.get(number)
        if figures:
            gravity = cls is not None and cls[0] in GRAVITY_UTILITIES
            node.invert_m = min(figures) if gravity else figures[0]
        elif node.ground_elev_m is not None and node.depth_m is not None:
            node.invert_m = node.ground_elev_m - node.depth_m
        if cls is not None:
            node.feature_code = codes.node_code(cls[0], cls[1], node.kind, point.feature_text)
        nodes.append(node)
    return nodes
