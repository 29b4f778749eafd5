"""Vector tiles (MVT) of published layers on the WebMercatorQuad tile matrix set.

Each layer's statement is built once (``LayerTiles``) and executed with only z/x/y bound, so
psycopg prepares it server-side after a few uses. The spatial filter runs in the table's own
SRID (4326) against the tile envelope transformed once per tile, so the GiST index is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from layers.registry import Layer
from twin.errors import TileOutOfRange
from twin.settings import TileSettings

TMS_ID = "WebMercatorQuad"
# Web Mercator equator length in metres: a tile unit at zoom z is this / (extent * 2**z).
_EQUATOR = 40075016.68557849

_MVT_TYPES = {"integer": "Number", "double": "Number", "boolean": "Boolean"}


def check_tile(z: int, x: int, y: int, max_zoom: int) -> None:
    if not 0 <= z <= max_zoom:
        raise TileOutOfRange(f"zoom {z} is outside the tile matrix set (0 to {max_zoom})")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise TileOutOfRange(
            f"tile {z}/{x}/{y} is outside the tile matrix: at zoom {z}, x and y run 0 to {n - 1}"
        )


def _attribute(field_name: str, field_type: str) -> sql.Composable:
    col = sql.Identifier(field_name)
    if field_type in ("integer", "double", "boolean", "text"):
        return col
    # MVT values are strings, numbers or booleans: dates, times and JSON travel as text.
    return sql.SQL("{}::text AS {}").format(col, col)


def _geometry(layer: Layer) -> sql.Composable:
    """The geometry in Web Mercator; lines and polygons simplified to one tile unit.

    ST_AsMVTGeom snaps to the tile grid anyway; simplifying first to the same tolerance
    drops the vertices that snapping would merge, so low zooms do less work.
    """
    mercator = sql.SQL("ST_Transform(t.geom, 3857)")
    if "Point" in layer.geometry_type:
        return mercator
    return sql.SQL("ST_Simplify({}, {} / ({} * 2 ^ %(z)s), true)").format(
        mercator, sql.Literal(_EQUATOR), sql.Placeholder("extent")
    )


@dataclass(frozen=True)
class LayerTiles:
    """The compiled tile statement of one layer.

    The buffered envelope is clipped to the world before it goes to lon/lat: past ±180° the
    transformation wraps the longitude and the filter box would cover the wrong side of the
    world (edge columns at every zoom, and all of zooms 1 and 2).
    """

    layer: Layer
    query: sql.Composed

    @classmethod
    def build(cls, layer: Layer, settings: TileSettings) -> LayerTiles:
        cols = [_attribute(f.name, f.type) for f in layer.fields]
        select = sql.SQL(", ").join([sql.SQL("t.fid"), *cols]) if cols else sql.SQL("t.fid")
        margin = settings.tile_buffer / settings.tile_extent
        query = sql.SQL(
            """
            WITH bounds AS (
                SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS mercator,
                       ST_Transform(ST_Intersection(
                           ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => {margin}),
                           ST_TileEnvelope(0, 0, 0)), 4326) AS storage
            )
            SELECT ST_AsMVT(mvt, {name}, %(extent)s, 'geom', 'fid') FROM (
                SELECT {select},
                       ST_AsMVTGeom({geom}, bounds.mercator, %(extent)s, {buffer}, true) AS geom
                FROM {table} AS t, bounds
                WHERE t.geom && bounds.storage
                LIMIT {limit}
            ) AS mvt
            WHERE mvt.geom IS NOT NULL
            """
        ).format(
            margin=sql.Literal(margin),
            name=sql.Literal(layer.name),
            select=select,
            geom=_geometry(layer),
            buffer=sql.Literal(settings.tile_buffer),
            table=sql.Identifier(layer.schema_name, layer.table_name),
            limit=sql.Literal(settings.tile_max_features),
        )
        return cls(layer, query)

    async def render(
        self, conn: psycopg.AsyncConnection, z: int, x: int, y: int, extent: int
    ) -> bytes:
        cur = await conn.execute(self.query, {"z": z, "x": x, "y": y, "extent": extent})
        row = await cur.fetchone()
        return bytes(row[0]) if row and row[0] is not None else b""


def tilejson(layer: Layer, tiles_url: str, settings: TileSettings) -> dict:
    """TileJSON 3.0.0 for one layer."""
    bbox = list(layer.bbox) if layer.bbox else [-180.0, -85.0511, 180.0, 85.0511]
    center_zoom = 14 if layer.bbox and (bbox[2] - bbox[0]) < 0.5 else 10
    return {
        "tilejson": "3.0.0",
        "name": layer.name,
        "description": layer.description or layer.title,
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": 0,
        "maxzoom": settings.tile_max_zoom,
        "bounds": bbox,
        "center": [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, center_zoom],
        "vector_layers": [
            {
                "id": layer.name,
                "description": layer.title,
                "minzoom": 0,
                "maxzoom": settings.tile_max_zoom,
                "fields": {f.name: _MVT_TYPES.get(f.type, "String") for f in layer.fields},
                "geometry_type": layer.geometry_type,
            }
        ],
    }
