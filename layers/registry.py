"""The registry of published layers (``twin.layers``): what the API serves as collections."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from twin.errors import InvalidParameter, NotFound

LAYER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

_COLUMNS = (
    "name, title, description, schema_name, table_name, geometry_type, srid, fields, "
    "time_field, feature_count, bbox, updated_at::text AS updated_at, read_role, edit_role, "
    "department"
)


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # integer, double, text, boolean, date, timestamp, time, json


@dataclass(frozen=True)
class Layer:
    name: str
    title: str
    description: str
    schema_name: str
    table_name: str
    geometry_type: str
    srid: int = 4326
    fields: tuple[Field, ...] = ()
    time_field: str | None = None
    feature_count: int = 0
    bbox: tuple[float, float, float, float] | None = None
    updated_at: str | None = None
    read_role: str = "public"  # public, viewer, editor or admin
    edit_role: str = "editor"  # editor or admin
    department: str | None = None  # when set, only this department's editors edit it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def data_version(self) -> str:
        """Changes whenever the layer is imported or registered again: part of tile cache keys,
        so tiles of an earlier import are never served after it."""
        text = f"{self.schema_name}.{self.table_name}|{self.updated_at}|{self.feature_count}"
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Layer:
        bbox = row.get("bbox")
        return cls(
            name=row["name"],
            title=row["title"],
            description=row["description"],
            schema_name=row["schema_name"],
            table_name=row["table_name"],
            geometry_type=row["geometry_type"],
            srid=row["srid"],
            fields=tuple(Field(f["name"], f["type"]) for f in row["fields"]),
            time_field=row["time_field"],
            feature_count=int(row["feature_count"]),
            bbox=(bbox[0], bbox[1], bbox[2], bbox[3]) if bbox else None,
            updated_at=row.get("updated_at"),
            read_role=row.get("read_role") or "public",
            edit_role=row.get("edit_role") or "editor",
            department=row.get("department"),
        )


def check_layer_name(name: str) -> str:
    if not LAYER_NAME.match(name):
        raise InvalidParameter(
            f"layer name {name!r} is not allowed: use lowercase letters, digits and '_', "
            "starting with a letter, at most 63 characters"
        )
    return name


def list_layers(conn: psycopg.Connection) -> list[Layer]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM twin.layers ORDER BY name")  # noqa: S608
        return [Layer.from_row(r) for r in cur.fetchall()]


async def list_layers_async(conn: psycopg.AsyncConnection) -> list[Layer]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM twin.layers ORDER BY name")  # noqa: S608
        return [Layer.from_row(r) for r in await cur.fetchall()]


def get_layer(conn: psycopg.Connection, name: str) -> Layer:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM twin.layers WHERE name = %s", (name,))  # noqa: S608
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"no layer named {name!r}")
    return Layer.from_row(row)


def find_layer(conn: psycopg.Connection, name: str) -> Layer | None:
    try:
        return get_layer(conn, name)
    except NotFound:
        return None


def save_layer(
    conn: psycopg.Connection, layer: Layer, *, source_file: str, source_crs: str
) -> None:
    """Insert or replace the registry row (inside the caller's transaction)."""
    from psycopg.types.json import Jsonb

    conn.execute(
        """
        INSERT INTO twin.layers (name, title, description, schema_name, table_name, geometry_type,
                                 srid, fields, time_field, source_file, source_crs,
                                 feature_count, bbox)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (name) DO UPDATE SET
            title = EXCLUDED.title, description = EXCLUDED.description,
            schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name,
            geometry_type = EXCLUDED.geometry_type, srid = EXCLUDED.srid,
            fields = EXCLUDED.fields, time_field = EXCLUDED.time_field,
            source_file = EXCLUDED.source_file, source_crs = EXCLUDED.source_crs,
            feature_count = EXCLUDED.feature_count, bbox = EXCLUDED.bbox, updated_at = now()
        """,
        (
            layer.name,
            layer.title,
            layer.description,
            layer.schema_name,
            layer.table_name,
            layer.geometry_type,
            layer.srid,
            Jsonb([{"name": f.name, "type": f.type} for f in layer.fields]),
            layer.time_field,
            source_file,
            source_crs,
            layer.feature_count,
            list(layer.bbox) if layer.bbox else None,
        ),
    )


def drop_layer(conn: psycopg.Connection, name: str) -> None:
    """Remove a layer and its table, in one transaction."""
    from psycopg import sql

    layer = get_layer(conn, name)
    with conn.transaction():
        conn.execute("DELETE FROM twin.layers WHERE name = %s", (name,))
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.Identifier(layer.schema_name, layer.table_name)
            )
        )


def register_view(
    conn: psycopg.Connection,
    layer: str,
    title: str,
    view: str,
    geometry_type: str,
    fields: list[tuple[str, str]],
    description: str,
) -> None:
    """Publish a view of schema twin (a domain table's current rows) as a collection, with
    its current count and extent; a plain layer of that name from an earlier generic import
    gives way."""
    from psycopg import sql
    from psycopg.types.json import Jsonb

    old = conn.execute(
        "SELECT schema_name, table_name FROM twin.layers WHERE name = %s AND schema_name <> 'twin'",
        [layer],
    ).fetchone()
    if old is not None:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*old)))
    count, *bbox = conn.execute(
        sql.SQL(
            "SELECT count(*), ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), "
            "ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom)) FROM twin.{}"
        ).format(sql.Identifier(view))
    ).fetchone() or (0, None)
    conn.execute(
        """
        INSERT INTO twin.layers (name, title, description, schema_name, table_name,
                                 geometry_type, fields, feature_count, bbox)
        VALUES (%s, %s, %s, 'twin', %s, %s, %s, %s, %s)
        ON CONFLICT (name) DO UPDATE SET title = EXCLUDED.title, schema_name = 'twin',
            table_name = EXCLUDED.table_name, geometry_type = EXCLUDED.geometry_type,
            fields = EXCLUDED.fields, feature_count = EXCLUDED.feature_count,
            bbox = EXCLUDED.bbox, updated_at = now()
        """,
        [
            layer,
            title,
            description,
            view,
            geometry_type,
            Jsonb([{"name": n, "type": t} for n, t in fields]),
            count,
            bbox if bbox and bbox[0] is not None else None,
        ],
    )


def set_access(
    conn: psycopg.Connection,
    name: str,
    *,
    read_role: str | None = None,
    edit_role: str | None = None,
    department: str | None = None,
    clear_department: bool = False,
) -> Layer:
    """Change who may read and edit a layer; returns the layer as it is now."""
    layer = get_layer(conn, name)
    check_access_roles(read_role, edit_role)
    conn.execute(SET_ACCESS_SQL, [read_role, edit_role, clear_department, department, layer.name])
    return get_layer(conn, name)


# Who may read and edit a layer (None leaves a value as it is); for the CLI and the admin API.
SET_ACCESS_SQL = """
    UPDATE twin.layers SET read_role = coalesce(%s, read_role),
           edit_role = coalesce(%s, edit_role),
           department = CASE WHEN %s THEN NULL ELSE coalesce(%s, department) END,
           updated_at = now()
    WHERE name = %s RETURNING read_role, edit_role, department
"""


async def set_access_async(
    conn: psycopg.AsyncConnection,
    name: str,
    read_role: str | None,
    edit_role: str | None,
    department: str | None,
    clear_department: bool,
) -> dict[str, Any]:
    """Set who may read and edit a layer (None leaves a value as it is); what holds now."""
    cur = await conn.execute(
        SET_ACCESS_SQL, [read_role, edit_role, clear_department, department, name]
    )
    row = await cur.fetchone()
    assert row is not None
    return {"read_role": row[0], "edit_role": row[1], "department": row[2]}


def check_access_roles(read_role: str | None, edit_role: str | None) -> None:
    if read_role is not None and read_role not in ("public", "viewer", "editor", "admin"):
        raise InvalidParameter(f"read role {read_role!r}: public, viewer, editor or admin")
    if edit_role is not None and edit_role not in ("editor", "admin"):
        raise InvalidParameter(f"edit role {edit_role!r}: editor or admin")
