"""The nearest components to a point, with distances on the spheroid in metres."""

from __future__ import annotations

import json
import math
from typing import Any

import psycopg

from twin.errors import InvalidParameter

_CLASS_EXISTS = "SELECT 1 FROM twin.component_classes WHERE class_code = %s"
_NEAREST = """
        WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g)
        SELECT c.fid, c.code, c.class_code, c.class_name, c.name, c.status, c.unit_grid,
               round(ST_Distance(c.geom::geography, p.g::geography)::numeric, 2) AS d,
               ST_AsGeoJSON(c.geom, 7)
        FROM twin.components_current c, p
        WHERE c.geom && ST_Expand(p.g, %(deg)s)
          AND (%(cls)s::text IS NULL OR c.class_code = %(cls)s)
          AND ST_DWithin(c.geom::geography, p.g::geography, %(radius)s)
        ORDER BY d, c.fid
        LIMIT %(limit)s
        """


async def nearby_components(
    conn: psycopg.AsyncConnection,
    lon: float,
    lat: float,
    radius: float,
    class_: str | None,
    limit: int,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the ``limit`` components nearest to lon/lat within
    ``radius`` metres (of class ``class_`` when given), nearest first."""
    if class_ is not None:
        cur = await conn.execute(_CLASS_EXISTS, [class_])
        if await cur.fetchone() is None:
            raise InvalidParameter(f"class {class_!r} is unknown: use a class code such as 0118")
    # The index finds candidates inside a box a little larger than the circle (degrees of
    # longitude shrink with latitude); exact distances on the spheroid then filter and sort.
    cur = await conn.execute(
        _NEAREST,
        {
            "lon": lon,
            "lat": lat,
            "deg": radius / 100_000 / max(0.05, math.cos(math.radians(lat))),
            "cls": class_,
            "radius": radius,
            "limit": limit,
        },
    )
    rows = await cur.fetchall()
    features = [
        {
            "type": "Feature",
            "id": r[0],
            "geometry": json.loads(r[8]),
            "properties": {
                "code": r[1],
                "class_code": r[2],
                "class_name": r[3],
                "name": r[4],
                "status": r[5],
                "unit_grid": r[6],
                "distance_m": float(r[7]),
            },
        }
        for r in rows
    ]
    return {"type": "FeatureCollection", "features": features, "numberReturned": len(features)}
