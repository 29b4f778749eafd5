"""The components collection in the layer registry (served from ``twin.components_current``)."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

FIELDS = [
    ("code", "text"),
    ("class_code", "text"),
    ("major", "text"),
    ("class_name", "text"),
    ("name", "text"),
    ("status", "text"),
    ("dept_code", "text"),
    ("dept_name", "text"),
    ("owner_code", "text"),
    ("owner_name", "text"),
    ("maint_code", "text"),
    ("maint_name", "text"),
    ("unit_grid", "text"),
    ("init_date", "date"),
    ("change_date", "date"),
    ("source", "text"),
    ("note", "text"),
    ("attributes", "json"),
    ("version", "integer"),
]


def register_components(conn: psycopg.Connection) -> None:
    """Upsert the registry row, with the current count and extent (a published file layer
    of the same name, from an older generic import, gives way)."""
    old = conn.execute(
        "SELECT schema_name, table_name FROM twin.layers WHERE name = 'components' "
        "AND schema_name <> 'twin'"
    ).fetchone()
    if old is not None:
        from psycopg import sql

        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*old)))
    count, *bbox = conn.execute(
        "SELECT count(*), ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), "
        "ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom)) FROM twin.components_current"
    ).fetchone() or (0, None)
    conn.execute(
        """
        INSERT INTO twin.layers (name, title, description, schema_name, table_name,
                                 geometry_type, fields, time_field, feature_count, bbox)
        VALUES ('components', '城市部件 city components',
                'GB/T 30428.2 city management components', 'twin', 'components_current',
                'Point', %s, 'change_date', %s, %s)
        ON CONFLICT (name) DO UPDATE SET schema_name = 'twin', table_name = 'components_current',
            geometry_type = 'Point', fields = EXCLUDED.fields, time_field = 'change_date',
            feature_count = EXCLUDED.feature_count, bbox = EXCLUDED.bbox, updated_at = now()
        """,
        (
            Jsonb([{"name": n, "type": t} for n, t in FIELDS]),
            count,
            bbox if bbox and bbox[0] is not None else None,
        ),
    )
