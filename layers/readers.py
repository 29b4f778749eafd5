"""Reading vector files into columns + WKB geometries, without judging them yet.

OGR-readable files (GeoPackage, Shapefile, GeoJSON, FlatGeobuf, ...) are read with pyogrio's
Arrow reader, the fastest path GDAL offers from Python. CSV is read with pyarrow so that a row
with a bad lon/lat is reported by its line number instead of silently getting no geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyogrio
import shapely
from pyproj import CRS

from twin.errors import InvalidData, InvalidParameter

LON_NAMES = ("lon", "lng", "long", "longitude", "x", "经度")
LAT_NAMES = ("lat", "latitude", "y", "纬度")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom")


@dataclass
class BadRow:
    row: int  # 1-based feature number in the file (for CSV: the line number)
    reason: str
    fid: str | None = None
    field: str | None = None


@dataclass
class SourceData:
    """What a file holds: attribute columns, WKB geometries and the file's CRS."""

    path: Path
    attributes: pa.Table
    wkb: np.ndarray  # object array of bytes or None
    crs: CRS | None
    row_numbers: np.ndarray  # 1-based row number of each feature (lines for CSV)
    fids: np.ndarray | None = None
    wkb_arrow: pa.Array | None = None  # the same WKB as Arrow binary, when read by GDAL
    bad: list[BadRow] = field(default_factory=list)
    row_label: str = "feature"

    def __len__(self) -> int:
        return len(self.wkb)


def read_source(path: Path, source_layer: str | None = None) -> SourceData:
    if not path.exists():
        raise InvalidParameter(f"file not found: {path}")
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return read_csv(path)
    return read_ogr(path, source_layer)


def _pick_layer(path: Path, source_layer: str | None) -> str | None:
    try:
        layers = pyogrio.list_layers(path)
    except pyogrio.errors.DataSourceError:
        raise InvalidData(
            f"{path.name} is not a vector file GDAL can read (GeoPackage, Shapefile, GeoJSON, "
            "FlatGeobuf, CSV...)"
        ) from None
    names = [str(n) for n, _ in layers]
    if source_layer is not None:
        if source_layer not in names:
            raise InvalidParameter(
                f"{path.name} has no layer {source_layer!r}; it has: {', '.join(names)}"
            )
        return source_layer
    if len(names) > 1:
        raise InvalidParameter(
            f"{path.name} holds several layers ({', '.join(names)}): name one with --source-layer"
        )
    return names[0] if names else None


def read_ogr(path: Path, source_layer: str | None) -> SourceData:
    layer = _pick_layer(path, source_layer)
    try:
        meta, table = pyogrio.read_arrow(path, layer=layer, return_fids=True)
    except pyogrio.errors.DataSourceError:
        raise InvalidData(f"{path.name} could not be read as a vector file") from None
    except pyogrio.errors.FeatureError as exc:
        raise InvalidData(f"{path.name}: a feature could not be read ({exc})") from None
    geom_name = meta.get("geometry_name") or "wkb_geometry"
    if geom_name not in table.column_names:
        raise InvalidData(f"{path.name} has no geometry column")
    wkb_arrow = table.column(geom_name).combine_chunks()
    wkb = wkb_arrow.to_numpy(zero_copy_only=False)
    fids = None
    fid_column = meta.get("fid_column") or "OGC_FID"
    if fid_column in table.column_names:
        fids = table.column(fid_column).to_numpy(zero_copy_only=False)
        table = table.drop([fid_column])
    attributes = table.drop([geom_name])
    crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else None
    return SourceData(
        path=path,
        attributes=attributes,
        wkb=wkb,
        crs=crs,
        row_numbers=np.arange(1, len(wkb) + 1),
        fids=fids,
        wkb_arrow=wkb_arrow,
    )


def _find_column(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {n.lower().strip(): n for n in names}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def read_csv(path: Path) -> SourceData:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with pacsv.open_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter)) as r:
            column_names = r.schema.names
    except pa.ArrowInvalid as exc:
        raise InvalidData(f"{path.name} is not a readable CSV file: {exc}") from None
    lon_col = _find_column(column_names, LON_NAMES)
    lat_col = _find_column(column_names, LAT_NAMES)
    wkt_col = _find_column(column_names, WKT_NAMES)
    if not ((lon_col and lat_col) or wkt_col):
        raise InvalidData(
            f"{path.name} has no geometry columns: name them lon/lat (or longitude/latitude, "
            "x/y), or give a WKT column named wkt"
        )
    geo_cols = [lon_col, lat_col] if (lon_col and lat_col) else [wkt_col]
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in geo_cols if c}, strings_can_be_null=False
        ),
    )
    lines = np.arange(2, table.num_rows + 2)  # line 1 is the header
    if lon_col and lat_col:
        wkb, bad = _points_from_columns(table, lon_col, lat_col, lines)
    else:
        wkb, bad = _geoms_from_wkt(table, str(wkt_col), lines)
    return SourceData(
        path=path,
        attributes=table.drop([c for c in geo_cols if c]),
        wkb=wkb,
        crs=None,
        row_numbers=lines,
        bad=bad,
        row_label="line",
    )


def _points_from_columns(
    table: pa.Table, lon_col: str, lat_col: str, lines: np.ndarray
) -> tuple[np.ndarray, list[BadRow]]:
    import pandas as pd  # lazy: only CSV needs it

    bad: list[BadRow] = []
    coords = []
    for col in (lon_col, lat_col):
        raw = table.column(col).to_pandas()
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64")
        for i in np.flatnonzero(~np.isfinite(values)):
            text = raw.iloc[i]
            reason = (
                f"missing required field {col}"
                if text is None or str(text).strip() == ""
                else f"field {col}: {str(text)[:40]!r} is not a number"
            )
            bad.append(BadRow(int(lines[i]), reason, field=col))
        coords.append(values)
    points = shapely.points(coords[0], coords[1])
    ok = np.isfinite(coords[0]) & np.isfinite(coords[1])
    wkb = np.full(len(points), None, dtype=object)
    wkb[ok] = shapely.to_wkb(points[ok])
    return wkb, bad


def _geoms_from_wkt(
    table: pa.Table, wkt_col: str, lines: np.ndarray
) -> tuple[np.ndarray, list[BadRow]]:
    text = table.column(wkt_col).to_numpy(zero_copy_only=False)
    geoms = shapely.from_wkt(text, on_invalid="ignore")
    bad = [
        BadRow(int(lines[i]), f"field {wkt_col}: not valid WKT", field=wkt_col)
        for i in np.flatnonzero(shapely.is_missing(geoms) & (text != ""))
    ]
    wkb = np.full(len(geoms), None, dtype=object)
    present = ~shapely.is_missing(geoms)
    wkb[present] = shapely.to_wkb(geoms[present])
    return wkb, bad
