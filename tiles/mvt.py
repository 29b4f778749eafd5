"""Vector tiles (MVT) of published layers on the WebMercatorQuad tile matrix set.

Each layer's statement is built once (``LayerTiles``) and executed with only z/x/y bound, so
psycopg prepares it server-side after a few uses. The spatial filter runs in the table's own
SRID (4326) against the tile envelope transformed once per tile, so the GiST index is used. A
table that keeps a Web Mercator copy of its geometry (``geom_3857``, indexed: the components)
is filtered and drawn from that copy instead, with no transformation per feature.
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

MVT_TYPES = {"integer": "Number", "double": "Number", "boolean": "Boolean"}


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


MERCATOR_COLUMN = "geom_3857"


def _geometry(layer: Layer, stored: bool = False) -> sql.Composable:
    """The geometry in Web Mercator; lines and polygons simplified to one tile unit.

    ST_AsMVTGeom snaps to the tile grid anyway; simplifying first to the same tolerance
    drops the vertices that snapping would merge, so low zooms do less work.
    """
    mercator = sql.SQL("t.geom_3857" if stored else "ST_Transform(t.geom, 3857)")
    if "Point" in layer.geometry_type:
        return mercator
    return sql.SQL("ST_Simplify({}, {} / ({} * 2 ^ %(z)s), true)").format(
        mercator, sql.Literal(_EQUATOR), sql.Placeholder("extent")
    )


# The tile envelope in Web Mercator, and the buffered one in the tables' SRID (4326). The
# buffered envelope is clipped to the world before it goes to lon/lat: past ±180° the
# transformation wraps the longitude and the filter box would cover the wrong side of the world
# (edge columns at every zoom, and all of zooms 1 and 2).
BOUNDS_CTE = """
    bounds AS (
        SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS mercator,
               ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => {margin}) AS buffered,
               ST_Transform(ST_Intersection(
                   ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => {margin}),
                   ST_TileEnvelope(0, 0, 0)), 4326) AS storage
    )"""


def bounds_cte(margin: float) -> sql.Composed:
    return sql.SQL(BOUNDS_CTE).format(margin=sql.Literal(margin))


def _in_tile(stored: bool) -> sql.Composable:
    return sql.SQL("t.geom_3857 && bounds.buffered" if stored else "t.geom && bounds.storage")


def features_sql(
    layer: Layer,
    settings: TileSettings,
    *,
    name: str | None = None,
    fields: list[str] | None = None,
    where: sql.Composable | None = None,
    stored: bool = False,
) -> sql.Composed:
    """One layer's MVT layer (bytea, never NULL) over the ``bounds`` CTE, with z/x/y/extent as
    named parameters: the layer's features, or those ``where`` selects, with ``fields``;
    ``stored``: the table has a Web Mercator copy of its geometry."""
    chosen = [f for f in layer.fields if fields is None or f.name in fields]
    cols = [_attribute(f.name, f.type) for f in chosen]
    select = sql.SQL(", ").join([sql.SQL("t.fid"), *cols])
    condition: sql.Composable = _in_tile(stored)
    if where is not None:
        condition = sql.SQL("{} AND ({})").format(condition, where)
    return sql.SQL(
        """
        SELECT coalesce(ST_AsMVT(mvt, {name}, %(extent)s, 'geom', 'fid'), ''::bytea) FROM (
            SELECT {select},
                   ST_AsMVTGeom({geom}, bounds.mercator, %(extent)s, {buffer}, true) AS geom
            FROM {table} AS t, bounds
            WHERE {condition}
            LIMIT {limit}
        ) AS mvt
        WHERE mvt.geom IS NOT NULL
        """
    ).format(
        name=sql.Literal(name or layer.name),
        select=select,
        geom=_geometry(layer, stored),
        buffer=sql.Literal(settings.tile_buffer),
        table=sql.Identifier(layer.schema_name, layer.table_name),
        condition=condition,
        limit=sql.Literal(settings.tile_max_features),
    )


def cells_sql(
    layer: Layer,
    settings: TileSettings,
    *,
    name: str,
    by: str | None = None,
    where: sql.Composable | None = None,
    stored: bool = False,
) -> sql.Composed:
    """A point layer as counts per cell: the tile cut into ``tile_cells`` × ``tile_cells``
    cells, one point per non-empty cell at the mean position of its points, with ``count``
    and, with ``by``, one ``n_<value>`` count per value of that property.

    Cells are aligned to the tile grid, so each cell lies in one tile; the ``bounds`` CTE must
    reach one whole cell beyond the tile (``cell_margin``) so that the cells drawn in the buffer
    are complete and agree with the neighbouring tile's.
    """
    condition: sql.Composable = _in_tile(stored)
    if where is not None:
        condition = sql.SQL("{} AND ({})").format(condition, where)
    key = sql.SQL("coalesce(t.{}::text, '')").format(sql.Identifier(by)) if by else sql.SQL("''")
    breakdown = sql.SQL(", jsonb_object_agg('n_' || k, n) AS counts") if by else sql.SQL("")
    return sql.SQL(
        """
        SELECT coalesce(ST_AsMVT(mvt, {name}, %(extent)s, 'geom'), ''::bytea) FROM (
            SELECT {outer}, ST_AsMVTGeom(a.pt, bounds.mercator, %(extent)s, {buffer}, true) AS geom
            FROM (
                SELECT sum(n)::integer AS count{breakdown},
                       ST_Point(sum(sx) / sum(n), sum(sy) / sum(n), 3857) AS pt
                FROM (
                    SELECT floor(ST_X(p.m) / c.size) AS cx, floor(ST_Y(p.m) / c.size) AS cy,
                           p.k, count(*) AS n, sum(ST_X(p.m)) AS sx, sum(ST_Y(p.m)) AS sy
                    FROM (SELECT {mercator} AS m, {key} AS k
                          FROM {table} AS t, bounds WHERE {condition}) AS p,
                         (SELECT {equator} / (2 ^ %(z)s * {cells}) AS size) AS c
                    GROUP BY 1, 2, 3
                ) AS per_value
                GROUP BY cx, cy
            ) AS a, bounds
        ) AS mvt
        WHERE mvt.geom IS NOT NULL
        """
    ).format(
        name=sql.Literal(name),
        mercator=_geometry(layer, stored),
        outer=sql.SQL("a.count, a.counts" if by else "a.count"),
        breakdown=breakdown,
        buffer=sql.Literal(settings.tile_buffer),
        key=key,
        table=sql.Identifier(layer.schema_name, layer.table_name),
        condition=condition,
        equator=sql.Literal(_EQUATOR),
        cells=sql.Literal(settings.tile_cells),
    )


def cell_margin(settings: TileSettings) -> float:
    """The envelope margin (in tiles) that takes in whole cells beyond the tile's buffer."""
    return max(settings.tile_buffer / settings.tile_extent, 1 / settings.tile_cells)


# Fields that move with every sensor reading: a cached tile would show them stale at once
# (sensor tiles are dropped when a state changes, not on every value). Items and the live
# stream carry them; tiles carry the state.
VOLATILE_FIELDS = {("twin", "sensors_current"): frozenset({"last_value", "last_time"})}


def tile_fields(layer: Layer) -> list[str] | None:
    """The fields a layer's tiles carry: all of them, but for the volatile ones."""
    volatile = VOLATILE_FIELDS.get((layer.schema_name, layer.table_name))
    return None if volatile is None else [f for f in layer.field_names if f not in volatile]


@dataclass(frozen=True)
class LayerTiles:
    """The compiled tile statement of one layer."""

    layer: Layer
    query: sql.Composed

    @classmethod
    def build(cls, layer: Layer, settings: TileSettings, stored: bool = False) -> LayerTiles:
        margin = settings.tile_buffer / settings.tile_extent
        body = features_sql(layer, settings, fields=tile_fields(layer), stored=stored)
        query = sql.SQL("WITH {} {}").format(bounds_cte(margin), body)
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
                "fields": {
                    f.name: MVT_TYPES.get(f.type, "String")
                    for f in layer.fields
                    if f.name in (tile_fields(layer) or layer.field_names)
                },
                "geometry_type": layer.geometry_type,
            }
        ],
    }


async def stored_mercator(conn: psycopg.AsyncConnection) -> frozenset[str]:
    """The published layers whose table or view has the Web Mercator column of tiles."""
    cur = await conn.execute(
        """
        SELECT l.name FROM twin.layers l
        JOIN information_schema.columns c
          ON c.table_schema = l.schema_name AND c.table_name = l.table_name
        WHERE c.column_name = %s
        """,
        [MERCATOR_COLUMN],
    )
    return frozenset(r[0] for r in await cur.fetchall())
