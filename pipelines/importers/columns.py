"""Reading pipeline source tables and matching their columns by Chinese and English names.

Survey tables come as CSV (UTF-8 or GB18030), spreadsheets, DBF or GIS files; their headers
vary between surveyors (物探点号 / 点号 / point_no, 管径 / 规格 / 断面 ...). Headers are compared
case-insensitively, ignoring spaces, underscores and a bracketed unit such as ``(m)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from pyproj import CRS

from pipelines import codes
from pipelines.model import Finding
from twin.errors import InvalidData, InvalidParameter

# Field -> accepted headers, best first. X/Y follow the Chinese survey convention: X = northing.
POINT_COLUMNS: dict[str, tuple[str, ...]] = {
    "point_no": ("物探点号", "点号", "管点编号", "管点号", "point_no", "point_id", "id"),
    "northing": ("x", "x坐标", "北坐标", "纵坐标", "northing", "north"),
    "easting": ("y", "y坐标", "东坐标", "横坐标", "easting", "east"),
    "lon": ("经度", "lon", "lng", "longitude"),
    "lat": ("纬度", "lat", "latitude"),
    "ground_elev": ("地面高程", "地面标高", "ground_elev", "ground_elev_m", "ground_elevation"),
    "feature": ("特征", "特征点", "feature"),
    "fitting": ("附属物", "fitting", "appurtenance"),
    "depth": ("井深", "埋深", "depth", "depth_m", "well_depth"),
    "valve_state": ("阀门状态", "阀门开关", "valve_state"),
    "utility": ("管线类别", "类别", "管类", "utility", "class"),
    "subclass": ("管线子类", "子类", "subclass", "sub_class"),
    "name": ("名称", "管点名称", "name"),
}
LINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "start": (
        "起点点号",
        "起点",
        "起始点号",
        "起点号",
        "start_point",
        "start",
        "from",
        "from_node",
    ),
    "end": ("终点点号", "终点", "终止点号", "终点号", "end_point", "end", "to", "to_node"),
    "pipe_id": ("管线编号", "线号", "管段编号", "pipe_id", "line_id", "id"),
    "start_depth": ("起点埋深", "start_depth", "start_depth_m", "from_depth"),
    "end_depth": ("终点埋深", "end_depth", "end_depth_m", "to_depth"),
    "depth": ("埋深", "depth", "depth_m"),
    "start_invert": (
        "起点高程",
        "起点管底高程",
        "起点管顶高程",
        "起点管线高程",
        "start_invert",
        "start_invert_m",
        "start_elev",
        "start_elev_m",
    ),
    "end_invert": (
        "终点高程",
        "终点管底高程",
        "终点管顶高程",
        "终点管线高程",
        "end_invert",
        "end_invert_m",
        "end_elev",
        "end_elev_m",
    ),
    "size": ("管径", "规格", "断面", "断面尺寸", "管径或断面", "diameter", "diameter_mm", "size"),
    "material": ("材质", "管材", "material"),
    "laying": ("埋设方式", "敷设方式", "laying"),
    "year": ("埋设年代", "建设年代", "敷设年代", "埋设日期", "year_laid", "year"),
    "owner": ("权属单位", "权属", "owner"),
    "state": ("状态", "使用状态", "state", "status"),
    "utility": ("管线类别", "类别", "管类", "utility", "class"),
    "subclass": ("管线子类", "子类", "subclass", "sub_class"),
    "flow": ("流向", "flow", "flow_direction"),
}
_NUMERIC_LINE_FIELDS = {
    "start_depth": "start_depth_m",
    "end_depth": "end_depth_m",
    "depth": "depth_m",
    "start_invert": "start_invert_m",
    "end_invert": "end_invert_m",
}
_UNIT = re.compile(r"[(（][^)）]*[)）]")
_SEPARATORS = re.compile(r"[\s_\-.]+")


def normalise(header: str) -> str:
    return _SEPARATORS.sub("", _UNIT.sub("", str(header))).casefold()


def match_columns(names: Sequence[str], fields: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """Field -> the column that holds it; each column serves one field, fields in order."""
    by_norm: dict[str, str] = {}
    for name in names:
        by_norm.setdefault(normalise(name), name)
    found: dict[str, str] = {}
    used: set[str] = set()
    for field_name, synonyms in fields.items():
        for synonym in synonyms:
            column = by_norm.get(normalise(synonym))
            if column is not None and column not in used:
                found[field_name] = column
                used.add(column)
                break
    return found


# --- reading tables -------------------------------------------------------------------------
@dataclass
class Table:
    """A source table: attribute columns, point/line geometry if the file has any."""

    path: Path
    frame: pd.DataFrame
    geometry: gpd.GeoSeries | None
    crs: CRS | None
    first_row: int  # the row number a person sees for the first record

    def row_number(self, index: int) -> int:
        return self.first_row + index


_SPREADSHEET = {".csv", ".tsv", ".txt", ".xlsx", ".xls", ".ods"}


def csv_encoding(path: Path) -> str | None:
    """None for UTF-8 (GDAL's default), else GB18030, which Chinese spreadsheets export."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "GB18030"
    return None


def pick_layer(path: Path, hints: Sequence[str] = (), source_layer: str | None = None) -> str:
    """The layer (or sheet) to read: the one named, the only one, or the one a hint names."""
    try:
        names = [str(n) for n, _ in pyogrio.list_layers(path)]
    except pyogrio.errors.DataSourceError:
        raise InvalidData(
            f"{path.name} is not a file GDAL can read (CSV, XLSX, DBF, GeoPackage, Shapefile, "
            "GeoJSON, FlatGeobuf...)"
        ) from None
    if source_layer is not None:
        if source_layer not in names:
            raise InvalidParameter(
                f"{path.name} has no layer {source_layer!r}; it has: {', '.join(names)}"
            )
        return source_layer
    if len(names) == 1:
        return names[0]
    hinted = [n for n in names if any(h in n.lower() for h in hints)]
    if len(hinted) == 1:
        return hinted[0]
    raise InvalidParameter(f"{path.name} holds several layers ({', '.join(names)}): name one")


def read_table(path: Path, hints: Sequence[str] = (), source_layer: str | None = None) -> Table:
    if not path.exists():
        raise InvalidParameter(f"file not found: {path}")
    suffix = path.suffix.lower()
    options: dict[str, Any] = {}
    encoding = None
    if suffix in (".csv", ".tsv", ".txt"):
        encoding = csv_encoding(path)
        options["HEADERS"] = "YES"
    elif suffix in (".xlsx", ".xls", ".ods"):
        options["HEADERS"] = "FORCE"
    layer = pick_layer(path, hints, source_layer)
    try:
        frame = pyogrio.read_dataframe(path, layer=layer, encoding=encoding, **options)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.FieldError) as exc:
        raise InvalidData(f"{path.name} could not be read: {exc}") from None
    geometry: gpd.GeoSeries | None = None
    crs = None
    if isinstance(frame, gpd.GeoDataFrame):
        geometry = frame.geometry
        crs = frame.crs
        frame = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    first_row = 2 if suffix in _SPREADSHEET else 1
    return Table(path, frame.reset_index(drop=True), geometry, crs, first_row)


# --- cells ----------------------------------------------------------------------------------
def is_blank(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def cell_text(value: Any) -> str | None:
    """A cell as text: None when blank; 12.0 (a spreadsheet's number) as "12"."""
    if is_blank(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_number(value: Any) -> float | None:
    """A cell as a number: None when blank; ValueError when it is not a number."""
    if is_blank(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def attr_value(value: Any) -> Any:
    """A cell kept in attrs: as given, with blanks as None and numpy scalars as Python ones."""
    if is_blank(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


_SECTION = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:mm)?\s*[x×*＊]\s*(\d+(?:\.\d+)?)\s*(?:mm)?$", re.I)
_DIAMETER = re.compile(r"^(?:DN|DE|D|Φ|φ|Ø|ø|⌀)?\s*(\d+(?:\.\d+)?)\s*(?:mm)?$", re.I)


def _figure(text: str) -> str:
    number = float(text)
    return str(int(number)) if number.is_integer() else str(number)


def parse_size(value: Any) -> tuple[float | None, str | None]:
    """管径 / 断面: "300", "DN300", "Φ300" -> (300, None); "800X600" -> (None, "800x600")."""
    text = cell_text(value)
    if text is None:
        return None, None
    section = _SECTION.match(text)
    if section:
        return None, f"{_figure(section.group(1))}x{_figure(section.group(2))}"
    diameter = _DIAMETER.match(text)
    if diameter:
        return float(diameter.group(1)), None
    raise ValueError(text)


_YEAR = re.compile(r"^(\d{4})(?:\D.*)?$")


def parse_year(value: Any) -> int | None:
    """埋设年代: 2009, "2009", "2009-05", "2009年5月" or a date cell -> 2009."""
    if is_blank(value):
        return None
    if hasattr(value, "year") and not isinstance(value, str):
        return int(value.year)
    text = cell_text(value) or ""
    match = _YEAR.match(text)
    if match and 1800 <= int(match.group(1)) <= 2100:
        return int(match.group(1))
    raise ValueError(text)


# --- line attributes, shared by survey line tables and GIS lines -----------------------------
@dataclass
class Where:
    """Where a row is, for findings."""

    table: str
    row: int
    ref: str | None

    def finding(self, kind: str, message: str, severity: str = "error") -> Finding:
        return Finding(kind, message, severity, self.row, self.ref, self.table)


def _bad_number(where: Where, column: str, value: Any, expected: str) -> Finding:
    return where.finding(
        "bad_number",
        f"{where.table} row {where.row} ({where.ref}): column {column} holds {value!r}, which is "
        f"not {expected}; correct the value or leave it empty",
    )


def line_fields(
    row: Mapping[str, Any], cols: Mapping[str, str], where: Where
) -> tuple[dict[str, Any], list[Finding]]:
    """Segment keyword values from a row of a line table (class and flow default elsewhere).

    Returns the values that parsed and a finding for each that did not.
    """
    out: dict[str, Any] = {}
    findings: list[Finding] = []
    for field_name, key in _NUMERIC_LINE_FIELDS.items():
        if field_name in cols:
            try:
                out[key] = parse_number(row[cols[field_name]])
            except (TypeError, ValueError):
                findings.append(
                    _bad_number(where, cols[field_name], row[cols[field_name]], "a number")
                )
    if "size" in cols:
        try:
            out["diameter_mm"], out["section"] = parse_size(row[cols["size"]])
        except ValueError:
            findings.append(
                _bad_number(
                    where, cols["size"], row[cols["size"]], "a size (300, DN300, Φ300 or 800x600)"
                )
            )
    if "year" in cols:
        try:
            out["year_laid"] = parse_year(row[cols["year"]])
        except ValueError:
            findings.append(_bad_number(where, cols["year"], row[cols["year"]], "a year"))
    if "owner" in cols:
        out["owner"] = cell_text(row[cols["owner"]])
    findings += _coded_fields(row, cols, where, out)
    return out, findings


def _coded_fields(
    row: Mapping[str, Any], cols: Mapping[str, str], where: Where, out: dict[str, Any]
) -> list[Finding]:
    findings: list[Finding] = []
    text = cell_text(row[cols["material"]]) if "material" in cols else None
    if text is not None:
        out["material"] = codes.parse_material(text)
        if out["material"] is None:
            findings.append(
                where.finding(
                    "unknown_material",
                    f"{where.table} row {where.row} ({where.ref}): unknown material {text!r} in "
                    f"column {cols['material']}; use a CJJ 61 code or name: "
                    f"{codes.accepted_materials()}",
                )
            )
    text = cell_text(row[cols["state"]]) if "state" in cols else None
    if text is not None:
        state = codes.parse_state(text)
        if state is None:
            findings.append(
                where.finding(
                    "unknown_state",
                    f"{where.table} row {where.row} ({where.ref}): unknown state {text!r} in "
                    f"column {cols['state']}; use {codes.accepted_states()}",
                )
            )
        else:
            out["state"] = state
    text = cell_text(row[cols["laying"]]) if "laying" in cols else None
    if text is not None:
        out["laying"] = codes.parse_laying(text) or text
        if codes.parse_laying(text) is None:
            findings.append(
                where.finding(
                    "unknown_laying",
                    f"{where.table} row {where.row} ({where.ref}): laying method {text!r} is not "
                    f"a CJJ 61 one ({', '.join(f'{c} {n}' for c, n in codes.LAYING.items())}); "
                    "it is kept as given",
                    "warning",
                )
            )
    text = cell_text(row[cols["flow"]]) if "flow" in cols else None
    if text is not None:
        out["flow"] = codes.parse_flow(text)
        if out["flow"] is None:
            findings.append(
                where.finding(
                    "unknown_flow",
                    f"{where.table} row {where.row} ({where.ref}): unknown flow {text!r} in "
                    f"column {cols['flow']}; use forward/正向, reverse/反向 or none",
                )
            )
    return findings


def parse_class_arguments(
    utility: str | None, subclass: str | None
) -> tuple[str, str | None] | None:
    """The ``utility``/``subclass`` arguments as (class, sub-class); InvalidParameter if unknown."""
    if utility is None and subclass is None:
        return None
    parsed = [codes.parse_class(v) if v is not None else None for v in (utility, subclass)]
    for given, result in zip((utility, subclass), parsed, strict=True):
        if given is not None and result is None:
            raise InvalidParameter(
                f"unknown utility class {given!r}: use a CJJ 61 class ({codes.accepted_classes()})"
                " or a sub-class such as YS 雨水, WS 污水"
            )
    cls = parsed[0][0] if parsed[0] else None
    sub = (parsed[0][1] if parsed[0] else None) or (parsed[1][1] if parsed[1] else None)
    sub_cls = parsed[1][0] if parsed[1] else None
    if cls is not None and sub_cls is not None and cls != sub_cls:
        raise InvalidParameter(f"sub-class {subclass!r} does not belong to class {utility!r}")
    return (cls or sub_cls or ""), sub


def row_class(
    row: Mapping[str, Any],
    cols: Mapping[str, str],
    default: tuple[str, str | None] | None,
    where: Where,
) -> tuple[tuple[str, str | None] | None, list[Finding]]:
    """A row's (class, sub-class) from its class / sub-class columns, else ``default``."""
    found: list[tuple[str, str | None]] = []
    for field_name in ("utility", "subclass"):
        text = cell_text(row[cols[field_name]]) if field_name in cols else None
        if text is None:
            continue
        parsed = codes.parse_class(text)
        if parsed is None:
            return default, [
                where.finding(
                    "unknown_class",
                    f"{where.table} row {where.row} ({where.ref}): unknown class {text!r} in "
                    f"column {cols[field_name]}; use a CJJ 61 class ({codes.accepted_classes()}) "
                    "or a sub-class such as YS 雨水, WS 污水",
                )
            ]
        found.append(parsed)
    if not found:
        return default, []
    classes = {c for c, _ in found}
    if len(classes) > 1:
        return default, [
            where.finding(
                "unknown_class",
                f"{where.table} row {where.row} ({where.ref}): class and sub-class disagree "
                f"({' / '.join(sorted(classes))}); correct one of them",
            )
        ]
    cls = found[0][0]
    sub = next((s for _, s in found if s), None)
    if sub is None and default is not None and default[0] == cls:
        sub = default[1]
    return (cls, sub), []
