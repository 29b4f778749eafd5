"""The sensor registry: what each sensor measures, where it stands, what it is attached to and
the thresholds its readings are checked against; published as the ``sensors`` collection."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, ValidationError, model_validator

from twin.errors import InvalidData, InvalidParameter

KINDS = ("pressure", "flow", "level", "gas", "air", "rain", "temperature", "quality", "other")
Kind = Literal["pressure", "flow", "level", "gas", "air", "rain", "temperature", "quality", "other"]

FIELDS = [
    ("sensor_id", "text"),
    ("name", "text"),
    ("kind", "text"),
    ("unit", "text"),
    ("network", "text"),
    ("node_id", "text"),
    ("segment_id", "text"),
    ("component_code", "text"),
    ("unit_grid", "text"),
    ("department", "text"),
    ("threshold_low", "double"),
    ("threshold_high", "double"),
    ("threshold_rate", "double"),
    ("last_time", "timestamp"),
    ("last_value", "double"),
    ("state", "text"),
    ("state_since", "timestamp"),
]


class SensorIn(BaseModel):
    """One sensor as registered: a location, or an attachment the location is taken from."""

    sensor_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    name: str | None = None
    kind: Kind
    unit: str = Field(min_length=1, max_length=20)
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    network: str | None = None
    node_id: str | None = None
    segment_id: str | None = None
    component_code: str | None = None
    department: str | None = None
    threshold_low: float | None = None
    threshold_high: float | None = None
    threshold_rate: float | None = Field(default=None, gt=0, description="per minute")
    stale_after_s: int = Field(default=900, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SensorIn:
        if (self.lon is None) != (self.lat is None):
            raise ValueError("give both lon and lat, or neither")
        attached = self.node_id or self.segment_id or self.component_code
        if self.lon is None and not attached:
            raise ValueError(
                "a sensor needs a location: lon and lat, or a node_id/segment_id (with its "
                "network) or a component_code to take it from"
            )
        if (self.node_id or self.segment_id) and not self.network:
            raise ValueError("node_id and segment_id need the network they belong to")
        low, high = self.threshold_low, self.threshold_high
        if low is not None and high is not None and low >= high:
            raise ValueError(f"threshold_low ({low}) must be below threshold_high ({high})")
        return self


def _feature_record(feature: dict[str, Any]) -> dict[str, Any]:
    props = dict(feature.get("properties") or {})
    geometry = feature.get("geometry")
    if geometry is not None:
        if geometry.get("type") != "Point":
            raise ValueError(f"a sensor is a Point, not a {geometry.get('type')}")
        props["lon"], props["lat"] = geometry["coordinates"][:2]
    props.setdefault("sensor_id", feature.get("id"))
    return props


def parse_sensors(data: bytes, content_type: str = "application/json") -> list[SensorIn]:
    """Sensors from GeoJSON (a FeatureCollection of Points), a JSON list, or CSV with lon/lat
    columns; every bad record is named with the reason before anything is stored."""
    records: list[dict[str, Any]]
    if "csv" in content_type:
        text = data.decode("utf-8-sig")
        records = [
            {k: v for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(io.StringIO(text))
        ]
    else:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidParameter(f"the body is not JSON: {exc}") from None
        if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
            records = []
            for i, feature in enumerate(doc.get("features") or [], start=1):
                try:
                    records.append(_feature_record(feature))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    raise InvalidData(f"feature {i}: {exc}") from None
        elif isinstance(doc, list):
            records = doc
        else:
            raise InvalidParameter(
                "send a GeoJSON FeatureCollection of Points, a JSON list of sensors or CSV"
            )
    sensors, problems = [], []
    for i, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            problems.append(f"sensor {i}: not a JSON object")
            continue
        try:
            sensors.append(SensorIn.model_validate(rec))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            problems.append(f"sensor {i} ({rec.get('sensor_id', '?')}): {where}: {first['msg']}")
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidData("nothing was registered: " + "; ".join(problems[:10]) + more)
    if not sensors:
        raise InvalidData("no sensors in the body")
    seen: set[str] = set()
    for s in sensors:
        if s.sensor_id in seen:
            raise InvalidData(f"sensor {s.sensor_id!r} appears twice; nothing was registered")
        seen.add(s.sensor_id)
    return sensors


# The location of an attached sensor comes from what it is attached to when none is given.
_PLACE = """
    SELECT COALESCE(
        CASE WHEN %(lon)s::float8 IS NOT NULL
             THEN ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) END,
        (SELECT n.geom FROM twin.pipe_nodes n WHERE n.network = %(network)s
           AND n.node_id = %(node_id)s AND n.deleted_at IS NULL),
        (SELECT ST_LineInterpolatePoint(ST_LineMerge(s.geom), 0.5) FROM twin.pipe_segments s
          WHERE s.network = %(network)s AND s.pipe_id = %(segment_id)s AND s.deleted_at IS NULL),
        (SELECT c.geom FROM twin.components_current c WHERE c.code = %(component_code)s))
"""

# built from the constant _PLACE; every value is bound
_UPSERT = f"""
    WITH p AS ({_PLACE} AS geom),
    g AS (SELECT (SELECT code FROM twin.grid_cells c, p
                  WHERE c.level = 'unit' AND c.valid_to IS NULL AND ST_Intersects(c.geom, p.geom)
                  ORDER BY code LIMIT 1) AS unit_grid)
    INSERT INTO twin.sensors (sensor_id, name, kind, unit, geom, network, node_id, segment_id,
        component_code, unit_grid, department, threshold_low, threshold_high, threshold_rate,
        stale_after_s)
    SELECT %(sensor_id)s, %(name)s, %(kind)s, %(unit)s, p.geom, %(network)s, %(node_id)s,
        %(segment_id)s, %(component_code)s, g.unit_grid, %(department)s, %(threshold_low)s,
        %(threshold_high)s, %(threshold_rate)s, %(stale_after_s)s
    FROM p, g
    ON CONFLICT (sensor_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
        unit = EXCLUDED.unit, geom = EXCLUDED.geom, network = EXCLUDED.network,
        node_id = EXCLUDED.node_id, segment_id = EXCLUDED.segment_id,
        component_code = EXCLUDED.component_code, unit_grid = EXCLUDED.unit_grid,
        department = EXCLUDED.department, threshold_low = EXCLUDED.threshold_low,
        threshold_high = EXCLUDED.threshold_high, threshold_rate = EXCLUDED.threshold_rate,
        stale_after_s = EXCLUDED.stale_after_s
    RETURNING fid, (xmax = 0) AS inserted, geom IS NULL AS unplaced
"""  # noqa: S608


async def register(conn: psycopg.AsyncConnection, sensors: list[SensorIn]) -> dict[str, int]:
    """Insert or update sensors in one transaction; a sensor whose attachment does not exist
    stops the whole registration with its name."""
    created = updated = 0
    async with conn.transaction():
        for s in sensors:
            cur = await conn.execute(
                f"WITH p AS ({_PLACE} AS geom) SELECT geom IS NULL FROM p",  # noqa: S608
                s.model_dump(),
            )
            row = await cur.fetchone()
            if row is None or row[0]:
                what = (
                    f"node {s.node_id!r} of network {s.network!r}"
                    if s.node_id
                    else f"pipe {s.segment_id!r} of network {s.network!r}"
                    if s.segment_id
                    else f"component {s.component_code!r}"
                )
                raise InvalidData(
                    f"sensor {s.sensor_id!r}: no {what} to take its location from; give lon and "
                    "lat, or fix the attachment. Nothing was registered"
                )
            cur = await conn.execute(_UPSERT, s.model_dump())
            fid, inserted, _ = await cur.fetchone()  # type: ignore[misc]
            created += bool(inserted)
            updated += not inserted
        await publish(conn)
    return {"created": created, "updated": updated}


async def publish(conn: psycopg.AsyncConnection) -> None:
    """Upsert the registry row of the ``sensors`` collection with its count and extent."""
    cur = await conn.execute(
        "SELECT count(*), ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), "
        "ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom)) FROM twin.sensors"
    )
    count, *bbox = await cur.fetchone()  # type: ignore[misc]
    await conn.execute(
        """
        INSERT INTO twin.layers (name, title, description, schema_name, table_name,
                                 geometry_type, fields, time_field, feature_count, bbox)
        VALUES ('sensors', '物联感知 sensors',
                'Sensors with their latest reading and state (normal, alarm, stale)',
                'twin', 'sensors_current', 'Point', %s, 'last_time', %s, %s)
        ON CONFLICT (name) DO UPDATE SET fields = EXCLUDED.fields,
            feature_count = EXCLUDED.feature_count, bbox = EXCLUDED.bbox, updated_at = now()
        """,
        (
            Jsonb([{"name": n, "type": t} for n, t in FIELDS]),
            count,
            bbox if bbox and bbox[0] is not None else None,
        ),
    )


async def sensor_ids(conn: psycopg.AsyncConnection, names: list[str]) -> dict[str, int]:
    """Registry keys of the named sensors (unknown names are simply absent)."""
    cur = await conn.execute(
        "SELECT sensor_id, fid FROM twin.sensors WHERE sensor_id = ANY(%s)", [names]
    )
    return {name: int(fid) for name, fid in await cur.fetchall()}
