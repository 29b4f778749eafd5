"""OGC API Features queries on a published layer, framework-free.

One builder per clause (select, where, order/page) joined at the end. Values are always bound
parameters; identifiers come from the registry and are quoted with ``sql.Identifier``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import shapely
from psycopg import sql

from layers.registry import Layer
from twin.crs import CrsRef, from_wgs84_xy, parse_crs, to_wgs84_xy
from twin.errors import InvalidParameter, LimitExceeded, NotFound

_FID = re.compile(r"^[0-9]{1,18}$")


@dataclass
class ItemsQuery:
    """A parsed and checked /items request."""

    limit: int
    offset: int = 0
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: CrsRef = field(default_factory=lambda: parse_crs("CRS84"))
    crs: CrsRef = field(default_factory=lambda: parse_crs("CRS84"))
    properties: list[str] | None = None
    datetime: tuple[datetime | None, datetime | None] | None = None
    equals: dict[str, str] = field(default_factory=dict)
    filter: tuple[sql.Composable, list[Any]] | None = None  # compiled CQL2 (Part 3)


# --- parameter parsing -------------------------------------------------------------------------
def parse_bbox(text: str, bbox_crs: CrsRef) -> tuple[float, float, float, float]:
    """bbox=minx,miny,maxx,maxy (or 6 numbers with heights), in bbox-crs axis order.

    With bbox-crs EPSG:4326/4490 or a Gauss-Krüger CRS the authority order is northing first,
    so the values arrive as (minlat, minlon, maxlat, maxlon) and are swapped here. A lower
    longitude larger than the upper one would mean crossing the antimeridian: not supported
    (no city we serve is near it), so it is refused as inverted.
    """
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InvalidParameter(
            f"bbox {text!r} is malformed: give 4 numbers minx,miny,maxx,maxy"
        ) from None
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidParameter(f"bbox {text!r} is malformed: give 4 numbers minx,miny,maxx,maxy")
    if bbox_crs.northing_first:
        values = [values[1], values[0], values[3], values[2]]
    minx, miny, maxx, maxy = values
    if minx > maxx or miny > maxy:
        raise InvalidParameter(
            f"bbox {text!r} is inverted: the lower corner must come first (min <= max)"
        )
    if bbox_crs.kind in ("crs84", "gcj02") or bbox_crs.same_as_storage:
        if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
            raise InvalidParameter(f"bbox {text!r} is outside longitude/latitude range")
    else:
        corners = np.array([[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy]])
        lonlat = to_wgs84_xy(corners, bbox_crs)
        if (
            not np.isfinite(lonlat).all()
            or (np.abs(lonlat[:, 0]) > 180).any()
            or (np.abs(lonlat[:, 1]) > 90).any()
        ):
            raise InvalidParameter(
                f"bbox {text!r} lies outside the area where {bbox_crs.uri} is defined"
            )
    return minx, miny, maxx, maxy


# Radius of the sphere with the WGS84 ellipsoid's area (km).
_AUTHALIC_KM = 6371.0072


def _lonlat_box_km2(west: float, south: float, east: float, north: float) -> float:
    """A lon/lat box on the authalic sphere: exact for its parallels and meridians, and right
    for the whole world too (a ring around the globe is no polygon for a geodesic area)."""
    band = math.sin(math.radians(north)) - math.sin(math.radians(south))
    return _AUTHALIC_KM**2 * math.radians(east - west) * band


def bbox_area_km2(bbox: tuple[float, float, float, float], bbox_crs: CrsRef) -> float:
    """The area a bbox covers on the ground, in km², whatever its CRS.

    A lon/lat bbox is measured as such. A projected one is densified (64 points a side), taken
    to lon/lat and measured as a geodesic polygon on WGS84, so map-projection scale (Web
    Mercator's, say) does not count.
    """
    minx, miny, maxx, maxy = bbox
    if bbox_crs.kind in ("crs84", "gcj02") or bbox_crs.same_as_storage:
        return _lonlat_box_km2(minx, miny, maxx, maxy)
    from pyproj import Geod

    t = np.linspace(0.0, 1.0, 64, endpoint=False)
    xs = np.concatenate(
        [minx + (maxx - minx) * t, np.full(64, maxx), maxx - (maxx - minx) * t, np.full(64, minx)]
    )
    ys = np.concatenate(
        [np.full(64, miny), miny + (maxy - miny) * t, np.full(64, maxy), maxy - (maxy - miny) * t]
    )
    lonlat = to_wgs84_xy(np.column_stack([xs, ys]), bbox_crs)
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    if (np.abs(np.diff(lon)) > 180).any():  # wraps the antimeridian: as wide as the globe
        return _lonlat_box_km2(-180.0, float(lat.min()), 180.0, float(lat.max()))
    area, _ = Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)
    # The ring runs counter-clockwise; a signed area comes back within +-half the globe, so
    # a negative one is a box larger than half the globe.
    if area < 0:
        area += 4 * math.pi * (_AUTHALIC_KM * 1e3) ** 2
    return float(area) / 1e6


def check_bbox_area(
    bbox: tuple[float, float, float, float], bbox_crs: CrsRef, max_km2: float
) -> None:
    """Refuse a bbox larger than one items request may cover (the limit is in the message)."""
    area = bbox_area_km2(bbox, bbox_crs)
    if area > max_km2:
        raise LimitExceeded(
            f"the bbox covers {area:,.0f} km², more than the limit of {max_km2:,g} km² of one "
            "items request (TWIN_ITEMS_MAX_BBOX_KM2): ask for a smaller area, or split it into "
            "several boxes"
        )


def parse_datetime(text: str) -> tuple[datetime | None, datetime | None]:
    """An instant or an interval 'start/end' with '..' (or empty) for an open end.

    A date alone means the whole day: from its first instant as a start, to its last as an
    end. Times without an offset are taken as UTC.
    """

    def one(value: str, end: bool) -> datetime | None:
        if value in ("", ".."):
            return None
        try:
            if len(value) == 10:
                day = datetime.fromisoformat(value).replace(tzinfo=UTC)
                return day + timedelta(days=1, microseconds=-1) if end else day
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidParameter(
                f"datetime {text!r} is malformed: use RFC 3339, e.g. 2024-05-01T00:00:00Z or "
                "an interval 2024-01-01/2024-12-31"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    if "/" in text:
        start, end = text.split("/", 1)
        lo, hi = one(start, False), one(end, True)
        if lo and hi and lo > hi:
            raise InvalidParameter(f"datetime interval {text!r} ends before it starts")
        return lo, hi
    lo, hi = one(text, False), one(text, True)
    if lo is None:
        raise InvalidParameter("datetime needs an instant or an interval")
    return lo, hi


def check_properties(layer: Layer, names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in layer.field_names]
    if unknown:
        raise InvalidParameter(
            f"unknown properties {', '.join(unknown)} in collection {layer.name!r}; it has: "
            f"{', '.join(layer.field_names)}"
        )
    return names


# --- clauses ----------------------------------------------------------------------------------
def _table(layer: Layer) -> sql.Identifier:
    return sql.Identifier(layer.schema_name, layer.table_name)


def geometry_sql(target: CrsRef) -> sql.Composable:
    """The geometry in the output CRS, in the authority's axis order (OGC API Part 2)."""
    if target.kind == "gcj02":  # offset applied in Python after the query
        return sql.SQL("geom")
    expr: sql.Composable = sql.SQL("geom")
    if not target.same_as_storage:
        expr = sql.SQL("ST_Transform(geom, {})").format(sql.Literal(target.srid))
    if target.northing_first:
        expr = sql.SQL("ST_FlipCoordinates({})").format(expr)
    return expr


def _digits(target: CrsRef) -> int:
    return 7 if (target.kind != "epsg" or target.same_as_storage) else 3


def properties_sql(layer: Layer, names: list[str] | None) -> sql.Composable:
    chosen = names if names is not None else layer.field_names
    if not chosen:
        return sql.SQL("'{}'::json")
    pairs = [sql.SQL("{}, {}").format(sql.Literal(n), sql.Identifier(n)) for n in chosen]
    return sql.SQL("json_build_object({})").format(sql.SQL(", ").join(pairs))


def where_sql(layer: Layer, q: ItemsQuery) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if q.bbox is not None:
        clauses.append(_bbox_clause(q.bbox_crs))
        params += list(q.bbox)
    if q.datetime is not None:
        if not layer.time_field:
            raise InvalidParameter(f"collection {layer.name!r} has no time field to filter on")
        lo, hi = q.datetime
        col = sql.Identifier(layer.time_field)
        # A date column compares with UTC days, never through the session's time zone.
        is_date = any(f.name == layer.time_field and f.type == "date" for f in layer.fields)
        if lo is not None:
            clauses.append(sql.SQL("{} >= %s").format(col))
            params.append(lo.astimezone(UTC).date() if is_date else lo)
        if hi is not None:
            clauses.append(sql.SQL("{} <= %s").format(col))
            params.append(hi.astimezone(UTC).date() if is_date else hi)
    for name, value in q.equals.items():
        clauses.append(sql.SQL("{}::text = %s").format(sql.Identifier(name)))
        params.append(value)
    if q.filter is not None:
        clauses.append(sql.SQL("({})").format(q.filter[0]))
        params += q.filter[1]
    if not clauses:
        return sql.SQL("TRUE"), params
    return sql.SQL(" AND ").join(clauses), params


def _bbox_clause(bbox_crs: CrsRef) -> sql.Composable:
    if bbox_crs.kind == "gcj02":
        raise InvalidParameter("bbox-crs gcj02 is not supported; use CRS84 or an EPSG code")
    if bbox_crs.same_as_storage:
        return sql.SQL("geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)")
    # A projected box is transformed by its corners; over a city-sized box its edges curve by
    # well under a metre in lon/lat, so no densification is done.
    return sql.SQL(
        "ST_Intersects(geom, ST_Transform(ST_MakeEnvelope(%s, %s, %s, %s, {srid}), 4326))"
    ).format(srid=sql.Literal(bbox_crs.srid))


# --- queries ----------------------------------------------------------------------------------
def items_sql(layer: Layer, q: ItemsQuery) -> tuple[sql.Composed, list[Any]]:
    where, params = where_sql(layer, q)
    geom = geometry_sql(q.crs)
    if q.crs.kind == "gcj02":
        geom_out: sql.Composable = sql.SQL("ST_AsBinary({})").format(geom)
    else:
        geom_out = sql.SQL("ST_AsGeoJSON({}, {}, 0)").format(geom, sql.Literal(_digits(q.crs)))
    query = sql.SQL(
        "SELECT fid, {geom}, {props}::text FROM {table} WHERE {where} "
        "ORDER BY fid LIMIT %s OFFSET %s"
    ).format(
        geom=geom_out, props=properties_sql(layer, q.properties), table=_table(layer), where=where
    )
    return query, params + [q.limit, q.offset]


def count_sql(layer: Layer, q: ItemsQuery) -> tuple[sql.Composed, list[Any]]:
    where, params = where_sql(layer, q)
    return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(_table(layer), where), params


def feature_json(fid: int, geometry: str | bytes | None, props: str, crs: CrsRef) -> str:
    """One GeoJSON Feature as text, splicing the JSON PostGIS already produced."""
    if isinstance(geometry, bytes | memoryview):
        geometry = _gcj02_geojson(bytes(geometry))
    return f'{{"type":"Feature","id":{fid},"geometry":{geometry or "null"},"properties":{props}}}'


def _gcj02_geojson(wkb: bytes) -> str:
    geom = shapely.from_wkb(wkb)
    moved = shapely.transform(geom, lambda xy: from_wgs84_xy(np.asarray(xy), parse_crs("gcj02")))
    return str(shapely.to_geojson(moved))


async def fetch_items(
    conn: psycopg.AsyncConnection, layer: Layer, q: ItemsQuery
) -> tuple[list[str], int]:
    query, params = items_sql(layer, q)
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    features = [feature_json(r[0], r[1], r[2], q.crs) for r in rows]
    if q.offset == 0 and len(rows) < q.limit:
        return features, len(rows)
    count_query, count_params = count_sql(layer, q)
    cur = await conn.execute(count_query, count_params)
    row = await cur.fetchone()
    return features, int(row[0]) if row else 0


async def fetch_item(
    conn: psycopg.AsyncConnection, layer: Layer, fid: str, crs: CrsRef, props: list[str] | None
) -> str:
    if not _FID.match(fid):
        raise NotFound(f"no feature {fid!r} in collection {layer.name!r}")
    geom = geometry_sql(crs)
    geom_out = (
        sql.SQL("ST_AsBinary({})").format(geom)
        if crs.kind == "gcj02"
        else sql.SQL("ST_AsGeoJSON({}, {}, 0)").format(geom, sql.Literal(_digits(crs)))
    )
    query = sql.SQL("SELECT fid, {}, {}::text FROM {} WHERE fid = %s").format(
        geom_out, properties_sql(layer, props), _table(layer)
    )
    cur = await conn.execute(query, [int(fid)])
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no feature {fid!r} in collection {layer.name!r}")
    return feature_json(row[0], row[1], row[2], crs)


async def temporal_extent(conn: psycopg.AsyncConnection, layer: Layer) -> list[str | None]:
    if not layer.time_field:
        return [None, None]
    col = sql.Identifier(layer.time_field)
    cur = await conn.execute(
        sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(c=col, t=_table(layer))
    )
    row = await cur.fetchone()
    return [_iso(v) for v in row] if row else [None, None]


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return f"{value.isoformat()}T00:00:00Z"


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
