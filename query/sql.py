"""The SQL of the area summary, shared by the sync and async runners.

Every statement takes the area as WKB in lon/lat (``%(g)s``). Lengths and areas are measured on
the ellipsoid (``::geography``), which is metric and needs no zone choice; a feature crossing
the area's edge counts only for its part inside (``ST_Intersection``).
"""

from __future__ import annotations

from psycopg import sql

COMPONENTS_SQL = """WITH a AS (SELECT ST_GeomFromWKB(%(g)s, 4326) AS g)
SELECT c.class_code, c.class_name, c.status, count(*)
FROM twin.components_current c, a
WHERE ST_Intersects(c.geom, a.g)
GROUP BY c.class_code, c.class_name, c.status
ORDER BY c.class_code, c.status
"""

# Pipes inside the area, clipped; one row per class, sub-class, material and decade laid.
PIPES_SQL = """WITH a AS (SELECT ST_GeomFromWKB(%(g)s, 4326) AS g),
p AS (
    SELECT s.utility, s.subclass, s.material, s.year_laid,
           CASE WHEN ST_CoveredBy(s.geom, a.g) THEN s.geom
                ELSE ST_Intersection(s.geom, a.g) END AS part
    FROM twin.pipe_segments s, a
    WHERE s.deleted_at IS NULL AND ST_Intersects(s.geom, a.g)
      AND (%(nets)s::text[] IS NULL OR s.network = ANY(%(nets)s)))
SELECT utility, subclass, material, (year_laid / 10) * 10 AS decade, count(*),
       coalesce(sum(ST_Length(part::geography)), 0)
FROM p
GROUP BY utility, subclass, material, decade
ORDER BY utility, subclass, material, decade
"""

# Unit grids overlapping the area (cells that only touch its edge are left out), with the
# share of each cell's area inside.
UNIT_GRIDS_SQL = """WITH a AS (SELECT ST_GeomFromWKB(%(g)s, 4326) AS g),
u AS (
    SELECT c.code, c.name,
           ST_Area(ST_Intersection(c.geom, a.g)::geography) AS inside,
           ST_Area(c.geom::geography) AS whole
    FROM twin.grid_cells c, a
    WHERE c.level = 'unit' AND c.valid_to IS NULL AND ST_Intersects(c.geom, a.g))
SELECT code, name, inside, whole FROM u
WHERE inside > least(%(sliver)s, 0.01 * %(area)s)
ORDER BY code
"""

LAYER_SQL = "SELECT schema_name, table_name, geometry_type, fields FROM twin.layers WHERE name = %s"


def buildings_sql(
    schema: str, table: str, floors: str | None, area: str | None, use: str | None
) -> sql.Composed:
    """Buildings of a published layer: counted where their inner point lies, floor area
    pro rata to the share of each footprint inside the area."""
    whole = sql.SQL("ST_Area(b.geom::geography)")
    footprint = sql.SQL("{}::float8").format(sql.Identifier(area)) if area else whole
    floors_sql = sql.SQL("{}::float8").format(sql.Identifier(floors)) if floors else sql.NULL
    use_sql = sql.SQL("{}::text").format(sql.Identifier(use)) if use else sql.NULL
    return sql.SQL(
        """WITH a AS (SELECT ST_GeomFromWKB(%(g)s, 4326) AS g),
b AS (
    SELECT {use} AS use, {floors} AS floors, {footprint} AS footprint, {whole} AS whole,
           ST_Area(ST_Intersection(b.geom, a.g)::geography) AS inside,
           ST_Intersects(ST_PointOnSurface(b.geom), a.g) AS counted
    FROM {table} b, a
    WHERE ST_Intersects(b.geom, a.g))
SELECT use, count(*) FILTER (WHERE counted), count(*),
       coalesce(sum(inside), 0),
       sum(footprint * floors * inside / NULLIF(whole, 0)),
       count(*) FILTER (WHERE floors IS NULL)
FROM b
GROUP BY use
ORDER BY use NULLS LAST
"""
    ).format(
        use=use_sql,
        floors=floors_sql,
        footprint=footprint,
        whole=whole,
        table=sql.Identifier(schema, table),
    )


# The newest scene touching the area, and the one before it in the same collection.
SCENES_SQL = """WITH a AS (SELECT ST_GeomFromWKB(%(g)s, 4326) AS g),
newest AS (
    SELECT s.id, s.collection, s.datetime FROM twin.raster_scenes s, a
    WHERE ST_Intersects(s.footprint, a.g)
      AND (%(cols)s::text[] IS NULL OR s.collection = ANY(%(cols)s))
    ORDER BY s.datetime DESC, s.id LIMIT 1)
SELECT s.id FROM twin.raster_scenes s, a, newest n
WHERE ST_Intersects(s.footprint, a.g) AND s.collection = n.collection
  AND s.datetime <= n.datetime
ORDER BY s.datetime DESC, s.id
LIMIT 2
"""

CHANGES_SQL = """WITH a AS (SELECT ST_GeomFromWKB(%(g)s, 4326) AS g)
SELECT c.change_set, c.scene_before, c.scene_after, c.date_before, c.date_after, c.kind,
       count(*), coalesce(sum(ST_Area(ST_Intersection(c.geom, a.g)::geography)), 0)
FROM twin.raster_changes_current c, a
WHERE ST_Intersects(c.geom, a.g)
GROUP BY c.change_set, c.scene_before, c.scene_after, c.date_before, c.date_after, c.kind
ORDER BY c.date_after DESC, c.change_set, c.kind
"""
