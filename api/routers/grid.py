"""The unified grid over HTTP: locate points, aggregate layers by cell."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import READ_ONLY, Catalog, catalog, connection, principal
from api.limits import check_batch
from grid import discrete
from grid import stats as grid_stats_mod
from grid.beidou import level_of
from grid.locate import (
    LEVEL_KEYS,
    OUTSIDE,
    GridIndex,
    check_coordinates,
    current_index,
    locate_codes,
)
from layers.readers import LAT_NAMES, LON_NAMES
from twin.crs import axis_ordered_to_wgs84, parse_crs
from twin.errors import InvalidData, InvalidParameter

router = APIRouter(prefix="/grid", tags=["Unified grid"])

CHUNK_BYTES = 4 << 20


async def grid_index(request: Request, conn: psycopg.AsyncConnection) -> GridIndex:
    """The in-memory unit-cell index, rebuilt when the grid's revision moved on."""
    kept: GridIndex | None = getattr(request.app.state, "grid_index", None)
    index = await current_index(conn, kept)
    if index is not kept:
        request.app.state.grid_index = index
    return index


def _to_lonlat(x: np.ndarray, y: np.ndarray, crs: str | None) -> tuple[np.ndarray, np.ndarray]:
    if not crs:
        return x, y
    xy = axis_ordered_to_wgs84(np.column_stack([x, y]), parse_crs(crs))
    return xy[:, 0], xy[:, 1]


@router.get("/locate", summary="The unit grid, community, street and district of a point")
async def locate_one(
    request: Request,
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    lon: Annotated[float, Query(description="Longitude (or x in crs)")],
    lat: Annotated[float, Query(description="Latitude (or y in crs)")],
    crs: Annotated[str | None, Query(description="CRS of lon/lat: EPSG code or gcj02")] = None,
    h3_resolution: Annotated[int, Query(ge=0, le=15, description="H3 resolution")] = 10,
    beidou_level: Annotated[int, Query(ge=1, le=10, description="Beidou code level")] = 7,
) -> dict:
    x, y = _to_lonlat(np.array([lon]), np.array([lat]), crs)
    check_coordinates(x, y)
    index = await grid_index(request, conn)
    codes = locate_codes(index, x, y)
    inside = codes["unit"][0] != OUTSIDE
    out: dict[str, Any] = {"inside": bool(inside), "lon": float(x[0]), "lat": float(y[0])}
    for level in LEVEL_KEYS:
        code = codes[level][0]
        out[level] = {"code": code, "name": index.names.get(code, "")} if code else None
    # Discrete global grids as alternate keys of the same place.
    out["h3"] = discrete.h3_cell(float(x[0]), float(y[0]), h3_resolution)
    out["beidou"] = discrete.beidou_code(float(x[0]), float(y[0]), beidou_level)
    return out


@router.get("/h3/{cell}", summary="An H3 cell as a GeoJSON polygon")
async def h3_cell(cell: str) -> Response:
    geom = discrete.h3_polygon(cell)
    return _feature(cell, geom, {"h3": cell})


@router.get("/beidou/{code}", summary="A Beidou grid location code (GB/T 39409) as a polygon")
async def beidou_cell(code: str) -> Response:
    geom = discrete.beidou_polygon(code)
    return _feature(code.upper(), geom, {"beidou": code.upper(), "level": level_of(code)})


def _feature(fid: str, geom: Any, props: dict) -> Response:
    import shapely

    doc = {
        "type": "Feature",
        "id": fid,
        "properties": props,
        "geometry": json.loads(shapely.to_geojson(geom)),
    }
    return Response(json.dumps(doc), media_type="application/geo+json")


@router.post(
    "/locate",
    summary="Locate many points (CSV with lon/lat columns, or a GeoJSON FeatureCollection)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/geo+json": {}}}},
    openapi_extra=READ_ONLY,
)
async def locate_many(
    request: Request,
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    crs: Annotated[str | None, Query(description="CRS of the coordinates")] = None,
) -> Response:
    """The whole body is read and checked first (a bad file is a 4xx, never a cut-off 200),
    then the answer streams out block by block as each block is located."""
    if crs:
        parse_crs(crs)
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind not in (
        "text/csv",
        "text/plain",
        "application/csv",
        "application/geo+json",
        "application/json",
    ):
        raise InvalidParameter(
            "send the points as text/csv (with lon and lat columns) or application/geo+json"
        )
    body = bytearray()
    async for piece in request.stream():
        body += piece
    if not body.strip():
        raise InvalidData("the body holds no points")
    most = request.app.state.settings.grid.locate_max_points
    if kind.endswith("json"):
        features, xy = _geojson_points(bytes(body))
        check_batch(len(features), most, "points", "TWIN_LOCATE_MAX_POINTS")
        index = await grid_index(request, conn)
        return StreamingResponse(
            _geojson_answer(features, xy, index, crs), media_type="application/geo+json"
        )
    blocks = _csv_blocks(bytes(body))
    check_batch(sum(t.num_rows for t in blocks), most, "points", "TWIN_LOCATE_MAX_POINTS")
    index = await grid_index(request, conn)
    return StreamingResponse(_csv_answer(blocks, index, crs), media_type="text/csv")


def _codes_table(index: GridIndex, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= 180) & (np.abs(y) <= 90)
    codes = locate_codes(index, np.where(ok, x, 0.0), np.where(ok, y, 0.0))
    status = np.where(~ok, "invalid", np.where(codes["unit"] == OUTSIDE, "outside", "inside"))
    out = {f"{level}_code": np.where(ok, codes[level], "") for level in LEVEL_KEYS}
    out["status"] = status
    return out


def _csv_blocks(body: bytes) -> list[pa.Table]:
    """The CSV as tables of about 4 MB, every column as text; refused whole if unreadable."""
    header_end = body.find(b"\n")
    header_line = (body if header_end < 0 else body[:header_end]).decode("utf-8-sig").strip()
    names = [n.strip() for n in header_line.split(",")]
    lon_col = next((c for c in names if c.lower() in LON_NAMES), None)
    lat_col = next((c for c in names if c.lower() in LAT_NAMES), None)
    if lon_col is None or lat_col is None:
        raise InvalidData(
            "the CSV needs a header line with lon and lat columns (or longitude/latitude, x/y)"
        )
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in names}, strings_can_be_null=False
    )
    blocks, start, first = [], 0, True
    while start < len(body):
        cut = body.rfind(b"\n", start, start + CHUNK_BYTES) + 1
        if cut <= start or start + CHUNK_BYTES >= len(body):
            cut = len(body)
        read = pacsv.ReadOptions() if first else pacsv.ReadOptions(column_names=names)
        try:
            table = pacsv.read_csv(
                io.BytesIO(body[start:cut]), read_options=read, convert_options=convert
            )
        except pa.ArrowInvalid as exc:
            raise InvalidData(f"the CSV cannot be read: {str(exc).splitlines()[0]}") from None
        blocks.append(table)
        start, first = cut, False
    return blocks


async def _csv_answer(
    blocks: list[pa.Table], index: GridIndex, crs: str | None
) -> AsyncIterator[bytes]:
    for i, table in enumerate(blocks):
        names = table.column_names
        lon_col = next(c for c in names if c.lower() in LON_NAMES)
        lat_col = next(c for c in names if c.lower() in LAT_NAMES)
        x, y = _to_lonlat(_numbers(table.column(lon_col)), _numbers(table.column(lat_col)), crs)
        for name, values in _codes_table(index, x, y).items():
            table = table.append_column(name, pa.array(values.astype(str), type=pa.string()))
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=i == 0))
        yield buf.getvalue()


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(column.combine_chunks())
    numeric = pc.match_substring_regex(text, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    safe = pc.if_else(numeric, text, "nan")
    return pc.cast(safe, pa.float64()).to_numpy(zero_copy_only=False)


def _geojson_points(body: bytes) -> tuple[list[dict], np.ndarray]:
    """Features and their point coordinates; a feature without a geometry is 'invalid'."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise InvalidData("the body is not JSON: send a GeoJSON FeatureCollection") from None
    if not isinstance(doc, dict) or doc.get("type") not in ("FeatureCollection", "Feature"):
        raise InvalidData("send a GeoJSON FeatureCollection (or one Feature) of points")
    features = doc.get("features") if doc["type"] == "FeatureCollection" else [doc]
    if not isinstance(features, list):
        raise InvalidData("features must be a list")
    xy = np.full((len(features), 2), np.nan)
    for i, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if geometry is None:
            continue  # answered with status 'invalid'
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
        if (geometry.get("type") if isinstance(geometry, dict) else None) != "Point" or not (
            isinstance(coords, list)
            and len(coords) >= 2
            and all(isinstance(c, int | float) for c in coords[:2])
        ):
            raise InvalidData(
                f"feature {i + 1} is not a Point with numeric coordinates; locate takes points only"
            )
        xy[i] = coords[:2]
    return features, xy


async def _geojson_answer(
    features: list[dict], xy: np.ndarray, index: GridIndex, crs: str | None
) -> AsyncIterator[bytes]:
    x, y = _to_lonlat(xy[:, 0], xy[:, 1], crs)
    table = _codes_table(index, x, y)
    parts: list[str] = []
    size = 0
    yield b'{"type":"FeatureCollection","features":['
    for i, feature in enumerate(features):
        props = feature.get("properties") if isinstance(feature, dict) else None
        props = dict(props) if isinstance(props, dict) else {}
        props.update({k: str(v[i]) for k, v in table.items()})
        out = {"type": "Feature", "geometry": feature.get("geometry"), "properties": props}
        if "id" in feature:
            out["id"] = feature["id"]
        text = ("," if i else "") + json.dumps(out, ensure_ascii=False)
        parts.append(text)
        size += len(text)
        if size > 1 << 20:  # about 1 MB a chunk
            yield "".join(parts).encode()
            parts, size = [], 0
    yield ("".join(parts) + "]}").encode()


@router.get("/stats", summary="Aggregate a layer by grid cell (count, length or area)")
async def stats(
    request: Request,
    cat: Annotated[Catalog, Depends(catalog)],
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    layer: Annotated[str, Query(description="Collection to aggregate")],
    level: Annotated[str, Query(description="district, street, community or unit")] = "unit",
    measure: Annotated[str, Query(description="count, length (m) or area (m²)")] = "count",
    group: Annotated[str | None, Query(description="A field whose values become columns")] = None,
    f: Annotated[str, Query(description="geojson (choropleth) or csv")] = "geojson",
) -> Response:
    source = cat.layer(layer, principal(request))
    rows, groups = await grid_stats_mod.grid_stats(conn, level, source, measure, group)
    if f == "csv":
        buf = io.StringIO()
        keys = ["code", "name", "total", *groups]
        buf.write(",".join(keys) + "\n")
        for r in rows:
            buf.write(",".join(_csv_cell(r[k]) for k in keys) + "\n")
        return Response(buf.getvalue(), media_type="text/csv")
    if f != "geojson":
        raise InvalidParameter("f must be geojson or csv")
    shapes = await grid_stats_mod.cell_shapes(conn, level)
    parts = [
        json.dumps({"type": "Feature", "id": r["code"], "properties": r}, ensure_ascii=False)[:-1]
        + f',"geometry":{shapes[r["code"]]}}}'
        for r in rows
    ]
    body = '{"type":"FeatureCollection","features":[' + ",".join(parts) + "]}"
    return Response(body, media_type="application/geo+json")


def _csv_cell(value: Any) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
