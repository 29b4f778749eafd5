"""Importing grid cells of one level, checked against the standard and their parents.

The whole level loads or nothing does: every check runs first, then one transaction retires the
cells being replaced (their rows stay, with ``valid_to`` set), inserts the new ones and
registers the level as a published collection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb

from grid import checks
from grid.codes import LEVELS, PARENT, check_level, code_problem, parent_code
from layers.checks import parse_geometries
from layers.importer import source_crs
from layers.readers import read_source
from twin.crs import to_wgs84_xy
from twin.errors import InvalidData
from twin.settings import GridSettings

CODE_FIELDS = ("code", "bgid", "grid_code", "gridcode", "单元网格标识码", "网格编码", "编码")
NAME_FIELDS = ("name", "bgname", "grid_name", "名称", "网格名称")
FROM_FIELDS = ("valid_from", "start_date", "ordate", "初始日期", "启用日期")
NOTE_FIELDS = ("note", "备注")
FIELDS = [
    {"name": "code", "type": "text"},
    {"name": "name", "type": "text"},
    {"name": "parent_code", "type": "text"},
    {"name": "area_m2", "type": "double"},
    {"name": "valid_from", "type": "date"},
    {"name": "note", "type": "text"},
    {"name": "version", "type": "integer"},
]


@dataclass
class GridImport:
    level: str
    file: str
    cells: int = 0
    retired: int = 0
    findings: list[checks.Finding] = field(default_factory=list)

    @property
    def fatal(self) -> list[checks.Finding]:
        return [f for f in self.findings if f.fatal]


class GridRejected(InvalidData):
    def __init__(self, report: GridImport) -> None:
        n = len(report.fatal)
        super().__init__(
            f"{report.file}: {n} problem{'s' if n != 1 else ''} in the {report.level} cells; "
            "nothing was loaded"
        )
        self.report = report


def column_of(table: pa.Table, names: tuple[str, ...]) -> list | None:
    lower = {c.lower(): c for c in table.column_names}
    for n in names:
        if n in lower:
            return table.column(lower[n]).to_pylist()
    return None


def text_of(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def codes_and_names(attributes: pa.Table, file: str) -> tuple[list[str], list[str]]:
    """The cells' codes and names, under any of the field names real grid data uses."""
    raw_codes = column_of(attributes, CODE_FIELDS)
    if raw_codes is None:
        raise InvalidData(f"{file} has no code field: name it code (or BGID, 单元网格标识码)")
    codes = [text_of(c) for c in raw_codes]
    names = [text_of(n) for n in (column_of(attributes, NAME_FIELDS) or [""] * len(codes))]
    return codes, names


def import_grid(
    conn: psycopg.Connection,
    path: Path,
    level: str,
    settings: GridSettings,
    *,
    crs: str | None = None,
    allow_gaps: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GridImport:
    say = progress or (lambda message: None)
    check_level(level)
    report = GridImport(level, path.name)
    say("reading")
    src = read_source(path)
    ref, _ = source_crs(src, crs)
    codes, names = codes_and_names(src.attributes, path.name)
    say("checking")
    geoms, problems, _ = parse_geometries(src.wkb)
    for p in problems:
        report.findings.append(
            checks.Finding(
                codes[p.index] or f"row {p.index + 1}", "geometry", f"row {p.index + 1}: {p.reason}"
            )
        )
    ok = np.array([g is not None and not shapely.is_empty(g) for g in geoms], dtype=bool)
    lonlat = geoms.copy()
    lonlat[ok] = shapely.transform(geoms[ok], lambda xy: to_wgs84_xy(xy, ref))
    wrong_type = ok & ~np.isin(shapely.get_type_id(lonlat), [3, 6])
    for i in np.flatnonzero(wrong_type):
        report.findings.append(
            checks.Finding(codes[i], "geometry", f"cell {codes[i]} is not a polygon")
        )
    ok &= ~wrong_type
    report.findings += _code_findings(codes, level, settings)
    parents = [parent_code(c, level, settings.grid_unit_code_width) for c in codes]
    # The zone of the area's middle (bounds, not a union: cells may still be invalid here).
    west, _, east, _ = shapely.total_bounds(lonlat[ok]) if ok.any() else (117.0, 0, 117.0, 0)
    metric = checks.Metric((west + east) / 2)
    report.findings += checks.repair(codes, lonlat, metric) if ok.any() else []
    ok &= np.array([g is not None and shapely.is_valid(g) for g in lonlat], dtype=bool)
    metres = lonlat.copy()
    metres[ok] = metric.to_metres(lonlat[ok])
    parent_geoms = _parent_geometries(conn, level, {p for p in parents if p}, metric)
    report.findings += _parent_findings(codes, parents, parent_geoms, level)
    tol = checks.Tolerance(settings.grid_tolerance_m2, settings.grid_sliver_width_m)
    idx = np.flatnonzero(ok)
    sub_codes = [codes[i] for i in idx]
    sub_parents = [parents[i] for i in idx]
    report.findings += checks.outside_parent(
        sub_codes, sub_parents, metres[idx], parent_geoms, metric, tol
    )
    report.findings += checks.overlaps(sub_codes, metres[idx], metric, tol)
    if level == "district":  # districts have no parent to keep them apart: compare with the rest
        report.findings += _overlaps_with_others(conn, sub_codes, metres[idx], metric, tol)
    report.findings += checks.gaps(
        sub_parents, metres[idx], parent_geoms, metric, tol, fatal=not allow_gaps
    )
    valid_from, date_findings = _dates(src.attributes, codes)
    report.findings += date_findings
    if report.fatal:
        raise GridRejected(report)
    say("writing")
    notes = [
        text_of(n) or None for n in (column_of(src.attributes, NOTE_FIELDS) or [None] * len(codes))
    ]
    final = lonlat  # the file's own vertices, repaired cells included
    with conn.transaction():
        report.retired = _retire(conn, level, codes, sorted({p for p in parents if p}))
        _insert(conn, level, codes, names, parents, final, metres, valid_from, notes, path.name)
        register_level(conn, level)
        if level == "unit":
            conn.execute(REASSIGN_COMPONENTS_SQL)
    report.cells = len(codes)
    return report


def _overlaps_with_others(
    conn: psycopg.Connection,
    codes: list[str],
    geoms_m: np.ndarray,
    metric: checks.Metric,
    tol: checks.Tolerance,
) -> list[checks.Finding]:
    """New districts against the current districts this import does not replace."""
    rows = conn.execute(
        "SELECT code, ST_AsBinary(geom) FROM twin.grid_cells WHERE level = 'district' "
        "AND valid_to IS NULL AND NOT (code = ANY(%s))",
        (codes,),
    ).fetchall()
    findings = []
    for other, wkb in rows:
        other_m = metric.to_metres(np.array([shapely.from_wkb(bytes(wkb))]))[0]
        for code, geom in zip(codes, geoms_m, strict=True):
            shared = shapely.intersection(geom, other_m)
            area = tol.significant(shared)
            if area:
                lon, lat = checks.where(metric, shared)
                findings.append(
                    checks.Finding(
                        code,
                        "overlap",
                        f"district {code} overlaps district {other} by {area:,.1f} m²",
                        lon,
                        lat,
                        area,
                    )
                )
    return findings


def _code_findings(codes: list[str], level: str, settings: GridSettings) -> list[checks.Finding]:
    findings = []
    seen: set[str] = set()
    for code in codes:
        why = code_problem(code, level, settings.grid_unit_code_width)
        if why:
            findings.append(checks.Finding(code or "?", "code", why))
        elif code in seen:
            findings.append(checks.Finding(code, "duplicate", f"code {code} appears twice"))
        seen.add(code)
    return findings


def _parent_geometries(
    conn: psycopg.Connection, level: str, parents: set[str], metric: checks.Metric
) -> dict[str, shapely.Geometry]:
    if level == "district" or not parents:
        return {}
    rows = conn.execute(
        "SELECT code, ST_AsBinary(geom) FROM twin.grid_cells "
        "WHERE level = %s AND valid_to IS NULL AND code = ANY(%s)",
        (PARENT[level], sorted(parents)),
    ).fetchall()
    if not rows:
        return {}
    geoms = metric.to_metres(shapely.from_wkb([bytes(r[1]) for r in rows]))
    return {r[0]: g for r, g in zip(rows, geoms, strict=True)}


def _parent_findings(
    codes: list[str], parents: list[str | None], parent_geoms: dict, level: str
) -> list[checks.Finding]:
    if level == "district":
        return []
    missing = sorted({p for p in parents if p and p not in parent_geoms})
    findings = []
    for p in missing:
        cells = ", ".join(c for c, q in zip(codes, parents, strict=True) if q == p)
        findings.append(
            checks.Finding(
                p,
                "parent",
                f"parent {PARENT[level]} {p} does not exist (cells {cells[:120]}): "
                f"import the {PARENT[level]} level first, or check the code prefix",
            )
        )
    return findings


def _dates(attributes: pa.Table, codes: list[str]) -> tuple[list[dt.date], list[checks.Finding]]:
    """valid_from of each cell (today when the file has none); unreadable dates are findings."""
    values = column_of(attributes, FROM_FIELDS) or [None] * len(codes)
    out, findings = [], []
    for code, v in zip(codes, values, strict=True):
        if isinstance(v, dt.datetime):
            out.append(v.date())
        elif isinstance(v, dt.date):
            out.append(v)
        elif v is None or str(v).strip() == "":
            out.append(dt.date.today())
        else:
            text = str(v).strip().replace("/", "-").replace(".", "-")
            try:
                out.append(dt.date.fromisoformat(text[:10]))
            except ValueError:
                out.append(dt.date.today())
                findings.append(
                    checks.Finding(
                        code, "date", f"cell {code}: valid_from {v!r} is not a date (YYYY-MM-DD)"
                    )
                )
    return out, findings


def _retire(conn: psycopg.Connection, level: str, codes: list[str], parents: list[str]) -> int:
    """End the current cells this import replaces: the same codes, and for levels below the
    district every cell under the parents the file covers (the file is their whole level)."""
    cur = conn.execute(
        "UPDATE twin.grid_cells SET valid_to = greatest(current_date, valid_from) "
        "WHERE level = %s AND valid_to IS NULL "
        "AND (code = ANY(%s) OR parent_code = ANY(%s))",
        (level, codes, parents),
    )
    return cur.rowcount


def _insert(conn, level, codes, names, parents, lonlat, metres, valid_from, notes, source) -> None:
    areas = shapely.area(metres)
    multi = [shapely.multipolygons(shapely.get_parts(g)) for g in lonlat]
    with conn.cursor().copy(
        "COPY twin.grid_cells (level, code, name, parent_code, area_m2, valid_from, note, "
        "source, geom) FROM STDIN"
    ) as copy:
        for i, code in enumerate(codes):
            copy.write_row(
                (
                    level,
                    code,
                    names[i],
                    parents[i],
                    round(float(areas[i]), 2),
                    valid_from[i],
                    notes[i],
                    source,
                    shapely.to_wkb(shapely.set_srid(multi[i], 4326), hex=True, include_srid=True),
                )
            )


# Components whose unit grid no longer holds them get the one that does (and a new version);
# run by a unit-level import here and by a boundary edit in grid.edit.
REASSIGN_COMPONENTS_SQL = (
    "UPDATE twin.components SET unit_grid = twin.unit_grid_at(geom) "
    "WHERE deleted_at IS NULL AND unit_grid IS DISTINCT FROM twin.unit_grid_at(geom)"
)


def import_grid_folder(
    conn: psycopg.Connection, folder: Path, settings: GridSettings
) -> list[GridImport]:
    """grid_district.gpkg ... grid_unit.gpkg of a folder, parents first (the demo's path)."""
    reports = []
    for level in LEVELS:
        path = folder / f"grid_{level}.gpkg"
        if path.exists():
            reports.append(import_grid(conn, path, level, settings))
    return reports


def register_level(conn: psycopg.Connection, level: str) -> None:
    """Publish the level's view as a collection (grid_district ... grid_unit).

    A published file layer of the same name (an older import of the same file) gives way.
    """
    old = conn.execute(
        "SELECT schema_name, table_name FROM twin.layers WHERE name = %s AND schema_name <> 'twin'",
        (f"grid_{level}",),
    ).fetchone()
    if old is not None:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(old[0], old[1])))
    count, *bbox = conn.execute(
        "SELECT count(*), ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), "
        "ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom)) FROM twin.grid_cells "
        "WHERE level = %s AND valid_to IS NULL",
        (level,),
    ).fetchone() or (0, None)
    titles = {
        "district": "区/县 districts",
        "street": "街道/乡镇 streets",
        "community": "社区/村 communities",
        "unit": "单元网格 unit grids",
    }
    conn.execute(
        """
        INSERT INTO twin.layers (name, title, description, schema_name, table_name,
                                 geometry_type, fields, time_field, feature_count, bbox)
        VALUES (%s, %s, %s, 'twin', %s, 'MultiPolygon', %s, 'valid_from', %s, %s)
        ON CONFLICT (name) DO UPDATE SET feature_count = EXCLUDED.feature_count,
            bbox = EXCLUDED.bbox, schema_name = 'twin', table_name = EXCLUDED.table_name,
            fields = EXCLUDED.fields, geometry_type = 'MultiPolygon', updated_at = now()
        """,
        (
            f"grid_{level}",
            titles[level],
            f"GB/T 30428.1 {level} level of the management grid",
            f"grid_{level}",
            Jsonb(FIELDS),
            count,
            bbox if bbox[0] is not None else None,
        ),
    )
