"""Publishing a vector file as a layer: read, check every row, transform, COPY, register.

A file loads whole or not at all: every check runs before anything is written, and the write
(staging table, COPY, swap, index, registry row) is one transaction under a per-layer lock.
The connection should have no work pending: the import commits its registry read before the
long part. With ``skip_invalid`` the good rows load and the report names the rest. Rows go in
with binary COPY built by numpy and pyarrow (see ``layers.pgcopy``), which is what makes a
million points load faster than ogr2ogr.
"""

from __future__ import annotations

import csv
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import shapely
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from pyproj import CRS

from layers import checks, pgcopy
from layers.readers import BadRow, SourceData, read_source
from layers.registry import Field, Layer, check_layer_name, find_layer, save_layer
from twin.crs import CrsRef, parse_crs, to_wgs84_xy
from twin.errors import Conflict, InvalidData, InvalidParameter

SCHEMA = "published"
COPY_BATCH = 100_000

Progress = Callable[[str, int, int], None]


@dataclass
class ImportReport:
    layer: str
    file: str
    mode: str
    total: int
    loaded: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    geometry_type: str = ""
    source_crs: str = ""
    seconds: float = 0.0
    report_path: Path | None = None
    row_label: str = "feature"


class ImportRejected(InvalidData):
    """The file had bad rows and nothing was loaded."""

    def __init__(self, report: ImportReport) -> None:
        n = len(report.bad_rows)
        super().__init__(
            f"{report.file}: {n} bad row{'s' if n != 1 else ''} of {report.total}; nothing "
            "was loaded (fix them, or load the good rows with --skip-invalid)"
        )
        self.report = report


@dataclass
class _Prepared:
    geoms: np.ndarray | None  # shapely geometries in storage CRS (None on the points path)
    keep: np.ndarray
    columns: list[tuple[Field, pa.Array]]
    geometry_type: str
    xy: np.ndarray | None = None  # (n, 2) storage coordinates of a plain point layer
    fids: np.ndarray | None = None  # the file's own feature ids, kept when unique
    wkb: pa.Array | None = None  # the file's WKB, sent as is when no geometry was changed


def default_layer_name(path: Path) -> str:
    """The file name as a layer name; names that are not ASCII get a stable numbered name."""
    stem = checks.column_name(path.stem, set())
    if stem[0].isascii() and stem[0].isalpha() and stem.isascii():
        return stem.lower()[:63]
    return f"layer_{zlib.crc32(path.stem.encode()) % 10**8:08d}"


def import_file(
    conn: psycopg.Connection,
    path: Path,
    *,
    layer_name: str | None = None,
    crs: str | None = None,
    skip_invalid: bool = False,
    mode: str = "create",
    source_layer: str | None = None,
    require: Sequence[str] = (),
    title: str | None = None,
    report_path: Path | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Load ``path`` into a published layer (mode: create, replace or append)."""
    started = time.perf_counter()
    say = progress or (lambda stage, done, total: None)
    name = check_layer_name(layer_name or default_layer_name(path))
    if mode not in ("create", "replace", "append"):
        raise InvalidParameter(f"unknown import mode {mode!r}")
    existing = find_layer(conn, name)
    if existing and existing.schema_name != SCHEMA:
        raise InvalidParameter(
            f"layer {name!r} is a domain layer, not a published file; load it with its own "
            "command (grid cells: twin grid import) or choose another --layer name"
        )
    if existing and mode == "create":
        raise InvalidParameter(
            f"layer {name!r} already exists: use --replace to swap it or --append to add rows"
        )
    if existing is None and mode == "append":
        mode = "create"
    # End the registry read: the file is read and checked outside any transaction, and the
    # write below is a transaction of its own.
    conn.commit()

    say("reading", 0, 0)
    src = read_source(path, source_layer)
    ref, crs_label = source_crs(src, crs)
    report = ImportReport(name, path.name, mode, len(src), source_crs=crs_label)
    report.row_label = src.row_label

    say("checking", 0, len(src))
    prepared, problems = prepare(
        src, ref, crs_label, existing if mode == "append" else None, require
    )
    report.geometry_type = prepared.geometry_type
    report.bad_rows = sorted(
        src.bad + [_bad_row(src, p) for p in problems], key=lambda b: (b.row, b.reason)
    )
    bad_positions = {p.index for p in problems} | _positions_of(src, src.bad)
    prepared.keep[list(bad_positions)] = False
    if report.bad_rows:
        report.report_path = write_report(report, report_path or Path(f"{name}.import-report.csv"))
        if not skip_invalid:
            raise ImportRejected(report)
    n_rows = int(prepared.keep.sum())
    if n_rows == 0:
        raise InvalidData(f"{path.name} has no rows to load")

    with conn.transaction():
        # One import of a layer at a time; the layer must still be as it was when checked.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"twin.layer.{name}",))
        if find_layer(conn, name) != existing:
            raise Conflict(
                f"layer {name!r} changed while {path.name} was being checked (another import?); "
                "nothing was loaded: run the import again"
            )
        layer = write_layer(conn, name, prepared, existing, mode, title or name, say)
        save_layer(conn, layer, source_file=path.name, source_crs=crs_label)
    report.loaded = n_rows
    report.seconds = time.perf_counter() - started
    say("done", n_rows, n_rows)
    return report


def source_crs(src: SourceData, option: str | None) -> tuple[CrsRef | CRS, str]:
    """The CRS of the file's coordinates: --crs wins, then the file's own (.prj, GPKG, ...)."""
    if option:
        ref = parse_crs(option)
        return ref, ref.uri if ref.kind != "gcj02" else "GCJ-02"
    if src.crs is not None:
        epsg = src.crs.to_epsg()
        if epsg is not None:
            return parse_crs(epsg), f"EPSG:{epsg}"
        return src.crs, src.crs.name
    if src.row_label == "line":  # CSV lon/lat: WGS84 unless told otherwise
        return parse_crs("EPSG:4326"), "EPSG:4326 (assumed for lon/lat columns; see --crs)"
    raise InvalidParameter(
        f"{src.path.name} does not say its CRS (no .prj or CRS in the file): pass --crs, "
        "e.g. --crs EPSG:4490 or --crs gcj02"
    )


def prepare(
    src: SourceData,
    ref: CrsRef | CRS,
    crs_label: str,
    existing: Layer | None,
    require: Sequence[str],
) -> tuple[_Prepared, list[checks.Problem]]:
    """Check every row and bring geometries to storage; nothing is written here."""
    xy = _plain_points(src, existing)
    if xy is not None:
        prepared, problems = _prepare_points(xy, ref, crs_label)
    else:
        prepared, problems = _prepare_geometries(src, ref, crs_label, existing)
    prepared.columns, attr_problems = _columns(src.attributes, existing, require, len(src))
    if existing is None and src.fids is not None and _unique(src.fids):
        prepared.fids = src.fids.astype("int64")
    return prepared, problems + attr_problems


def _plain_points(src: SourceData, existing: Layer | None) -> np.ndarray | None:
    """Coordinates when every row is a plain 2D point (decoded without shapely), else None."""
    if src.wkb_arrow is None or src.bad:
        return None
    if existing is not None and existing.geometry_type != "Point":
        return None
    return pgcopy.decode_points(src.wkb_arrow)


def _prepare_points(
    xy: np.ndarray, ref: CrsRef | CRS, crs_label: str
) -> tuple[_Prepared, list[checks.Problem]]:
    usable = np.isfinite(xy).all(axis=1)  # POINT EMPTY is NaN, NaN in WKB
    problems = [checks.Problem(int(i), "empty geometry") for i in np.flatnonzero(~usable)]
    if not (isinstance(ref, CrsRef) and ref.same_as_storage):
        xy = to_wgs84_xy(xy, ref)
    bounds = np.column_stack([xy, xy])
    problems += _drop(usable, checks.check_lonlat_bounds(bounds, usable, crs_label))
    keep = np.ones(len(xy), dtype=bool)
    return _Prepared(None, keep, [], "Point", xy=xy), problems


def _prepare_geometries(
    src: SourceData, ref: CrsRef | CRS, crs_label: str, existing: Layer | None
) -> tuple[_Prepared, list[checks.Problem]]:
    geoms, problems, forced_2d = checks.parse_geometries(src.wkb)
    known_bad = _positions_of(src, src.bad)  # rows the reader already reported (CSV lon/lat)
    problems = [p for p in problems if p.index not in known_bad]
    usable = np.ones(len(src), dtype=bool)
    usable[[p.index for p in problems]] = False
    usable[list(known_bad)] = False
    layer_type = existing.geometry_type if existing else checks.layer_geometry_type(geoms, usable)
    problems += _drop(usable, checks.check_geometry_type(geoms, usable, layer_type))
    singles, multi_problems = checks.single_parts(geoms, usable, layer_type)
    problems += _drop(usable, multi_problems)
    problems += _drop(usable, checks.check_validity(singles, usable))
    stored = _to_storage(singles, usable, ref)
    bounds = np.full((len(src), 4), np.nan)
    bounds[usable] = shapely.bounds(stored[usable])
    problems += _drop(usable, checks.check_lonlat_bounds(bounds, usable, crs_label))
    final = checks.promote_to_multi(stored, layer_type)
    prepared = _Prepared(final, np.ones(len(src), dtype=bool), [], layer_type)
    if final is geoms and not forced_2d:
        prepared.wkb = src.wkb_arrow
    return prepared, problems


def _ewkb(prep: _Prepared, idx: np.ndarray, take: pa.Array) -> pa.Array:
    """EWKB of the rows: the file's own bytes with an SRID added, or shapely's encoding."""
    if prep.xy is not None:
        return pgcopy.points_ewkb(prep.xy[idx], 4326)
    if prep.wkb is not None:
        patched = pgcopy.ewkb_from_wkb(prep.wkb.take(take), 4326)
        if patched is not None:
            return patched
    assert prep.geoms is not None
    geoms = shapely.set_srid(prep.geoms[idx], 4326)
    return pa.array(shapely.to_wkb(geoms, include_srid=True), type=pa.binary())


def _unique(values: np.ndarray) -> bool:
    """Whether ids are unique; file ids are usually increasing, which is checked in O(n)."""
    if len(values) < 2 or bool(np.all(np.diff(values) > 0)):
        return True
    return len(np.unique(values)) == len(values)


def _drop(usable: np.ndarray, problems: list[checks.Problem]) -> list[checks.Problem]:
    usable[[p.index for p in problems]] = False
    return problems


def _to_storage(geoms: np.ndarray, usable: np.ndarray, ref: CrsRef | CRS) -> np.ndarray:
    if isinstance(ref, CrsRef) and ref.same_as_storage:
        return geoms
    out = geoms.copy()
    out[usable] = shapely.transform(geoms[usable], lambda xy: to_wgs84_xy(xy, ref))
    return out


def _columns(
    attributes: pa.Table, existing: Layer | None, require: Sequence[str], n: int
) -> tuple[list[tuple[Field, pa.Array]], list[checks.Problem]]:
    plan = checks.plan_fields(attributes)
    problems: list[checks.Problem] = []
    if existing is not None:
        known = {f.name: f for f in existing.fields}
        extra = [f.name for _, f in plan if f.name not in known]
        if extra:
            raise InvalidData(
                f"fields not in layer {existing.name!r}: {', '.join(extra)} (the layer has: "
                f"{', '.join(known) or 'no fields'}); rename them or import as a new layer"
            )
        plan = [(orig, known[f.name]) for orig, f in plan]
    columns: list[tuple[Field, pa.Array]] = []
    for orig, fld in plan:
        arr, bad = checks.coerce_column(attributes.column(orig), fld.type, fld.name)
        problems += bad
        columns.append((fld, arr))
    if existing is not None:  # fields the file lacks load as NULL
        have = {f.name for f, _ in columns}
        for fld in existing.fields:
            if fld.name not in have:
                columns.append((fld, pa.nulls(n, checks._ARROW.get(fld.type, pa.string()))))
    by_name = {f.name: a for f, a in columns}
    for req in require:
        key = checks.column_name(req, set())
        problems += checks.check_required(by_name.get(key), req, n)
    return columns, problems


def _positions_of(src: SourceData, bad: list[BadRow]) -> set[int]:
    if not bad:
        return set()
    index = {int(r): i for i, r in enumerate(src.row_numbers)}
    return {index[b.row] for b in bad if b.row in index}


def _bad_row(src: SourceData, p: checks.Problem) -> BadRow:
    fid = None if src.fids is None else str(src.fids[p.index])
    return BadRow(int(src.row_numbers[p.index]), p.reason, fid=fid, field=p.field)


def write_report(report: ImportReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([report.row_label, "fid", "field", "reason"])
        for b in report.bad_rows:
            w.writerow([b.row, b.fid or "", b.field or "", b.reason])
    return path


# --- writing -----------------------------------------------------------------------------------
def write_layer(
    conn: psycopg.Connection,
    name: str,
    prep: _Prepared,
    existing: Layer | None,
    mode: str,
    title: str,
    say: Progress,
) -> Layer:
    fields = [f for f, _ in prep.columns]
    table = sql.Identifier(SCHEMA, name)
    if mode == "append" and existing is not None:
        target = table
    else:
        # A staging name no layer can have (layer names start with a letter).
        target = sql.Identifier(SCHEMA, f"_load_{uuid.uuid4().hex[:16]}")
        conn.execute(_create_table_sql(target, prep.geometry_type, fields))
    _copy_rows(conn, target, prep, say)
    if target is not table:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(target, sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} USING gist (geom)").format(
                sql.Identifier(f"{name}_geom_idx"), table
            )
        )
    say("indexing", 0, 0)
    # Kept file ids: move the identity past them so later appends get fresh ids.
    conn.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence({}, 'fid'), coalesce(max(fid), 0) + 1, false) "
            "FROM {}"
        ).format(sql.Literal(f"{SCHEMA}.{name}"), table)
    )
    conn.execute(sql.SQL("ANALYZE {}").format(table))
    count, bbox = _count_and_bbox(conn, table, prep, existing if mode == "append" else None)
    time_field = next((f.name for f in fields if f.type in ("date", "timestamp")), None)
    return Layer(
        name=name,
        title=existing.title if existing and mode == "append" else title,
        description=existing.description if existing else "",
        schema_name=SCHEMA,
        table_name=name,
        geometry_type=prep.geometry_type,
        fields=tuple(fields),
        time_field=time_field,
        feature_count=count,
        bbox=bbox,
    )


def _count_and_bbox(
    conn: psycopg.Connection, table: sql.Identifier, prep: _Prepared, existing: Layer | None
) -> tuple[int, tuple[float, float, float, float] | None]:
    """Feature count and extent from what was loaded, without scanning the new table."""
    if prep.xy is not None:
        kept = prep.xy[prep.keep]
        bounds = np.concatenate([kept.min(axis=0), kept.max(axis=0)])
    else:
        assert prep.geoms is not None
        kept = prep.geoms[prep.keep]
        bounds = shapely.total_bounds(kept)
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    if existing is None:
        return len(kept), (minx, miny, maxx, maxy)
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    if existing.bbox:
        ex = existing.bbox
        minx, miny = min(minx, ex[0]), min(miny, ex[1])
        maxx, maxy = max(maxx, ex[2]), max(maxy, ex[3])
    return int(row[0]) if row else 0, (minx, miny, maxx, maxy)


def _create_table_sql(
    target: sql.Identifier, geometry_type: str, fields: list[Field]
) -> sql.Composed:
    cols = [
        sql.SQL("fid bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
        sql.SQL("geom geometry({}, 4326) NOT NULL").format(sql.SQL(geometry_type)),
    ]
    cols += [
        sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(checks.sql_type(f.type)))
        for f in fields
    ]
    return sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(cols))


def _copy_rows(
    conn: psycopg.Connection, target: sql.Identifier, prep: _Prepared, say: Progress
) -> None:
    """COPY BINARY in batches; the client encodes the next batch while the server parses."""
    keep = np.flatnonzero(prep.keep)
    fields = [f for f, _ in prep.columns]
    names = [sql.Identifier("geom")] + [sql.Identifier(f.name) for f in fields]
    if prep.fids is not None:
        names.insert(0, sql.Identifier("fid"))
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        target, sql.SQL(", ").join(names)
    )
    cur = conn.cursor()
    # The queued writer sends from a thread, so the next batch is encoded while the server
    # parses the last one.
    with cur.copy(copy_sql, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(pgcopy.HEADER)
        for start in range(0, len(keep), COPY_BATCH):
            idx = keep[start : start + COPY_BATCH]
            take = pa.array(idx)
            ewkb = _ewkb(prep, idx, take)
            columns = [(ewkb, "bytes")] + [(arr.take(take), f.type) for f, arr in prep.columns]
            if prep.fids is not None:
                columns.insert(0, (pa.array(prep.fids[idx]), "integer"))
            copy.write(pgcopy.encode_rows(columns))
            say("loading", start + len(idx), len(keep))
        copy.write(pgcopy.TRAILER)
