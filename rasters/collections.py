"""Raster collections and their scenes as a caller may read them: the collection a scene
belongs to decides (its read role), and one the caller may not read is as unknown as a missing
one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from layers.access import raster_readable
from rasters.catalog import SCENE_COLUMNS, SCENE_ID, UNKNOWN_SCENE, Scene, get_scene, scene_from_row
from twin.auth import Principal
from twin.errors import InvalidParameter, NotFound

_COLLECTION = "SELECT title, read_role FROM twin.raster_collections WHERE id = %s"
_COLLECTIONS = "SELECT id, title, read_role FROM twin.raster_collections ORDER BY id"
_MOSAIC_EXTENTS = """
            SELECT s.collection, c.read_role, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
            FROM (SELECT collection, ST_Extent(footprint) AS e, max(datetime) AS newest
                  FROM twin.raster_scenes
                  WHERE %(c)s::text IS NULL OR collection = %(c)s
                  GROUP BY collection) AS s
            JOIN twin.raster_collections c ON c.id = s.collection
            ORDER BY newest DESC
            """
_ROLES = "SELECT id, read_role FROM twin.raster_collections ORDER BY id"


async def scenes_of(conn: Any, collection: str, interval: str | None = None) -> list[Scene]:
    """The scenes of a collection, newest first, within a date or an interval when given."""
    query = f"SELECT {SCENE_COLUMNS} FROM twin.raster_scenes WHERE collection = %s"  # noqa: S608
    params: list[Any] = [collection]
    if interval:
        start, end = parse_interval(interval)
        query += " AND datetime >= %s AND datetime <= %s"
        params += [start, end]
    cur = await conn.execute(query + " ORDER BY datetime DESC, id", params)
    return [scene_from_row(r) for r in await cur.fetchall()]


def parse_interval(text: str) -> tuple[datetime, datetime]:
    """A date (the whole day) or an interval ``a/b`` (open ends as ``..`` or empty)."""
    parts = text.split("/")
    try:
        if len(parts) == 1:
            day = datetime.fromisoformat(parts[0])
            return day, day.replace(hour=23, minute=59, second=59)
        lo = datetime.fromisoformat(parts[0]) if parts[0] not in ("", "..") else datetime.min
        hi = datetime.fromisoformat(parts[1]) if parts[1] not in ("", "..") else datetime.max
    except ValueError:
        raise InvalidParameter(
            f"datetime {text!r}: use a date or an interval such as 2023-01-01/2024-12-31"
        ) from None
    return lo, hi.replace(hour=23, minute=59, second=59) if len(parts[1]) == 10 else hi


async def collection_title(conn: Any, cid: str, who: Principal) -> str:
    """A collection the caller may read; any other is as unknown as a missing one."""
    if not SCENE_ID.fullmatch(cid):
        raise NotFound(UNKNOWN_SCENE)
    cur = await conn.execute(_COLLECTION, [cid])
    row = await cur.fetchone()
    if row is None or not raster_readable(who, row[1], cid):
        raise NotFound(UNKNOWN_SCENE)
    return str(row[0])


async def readable_collections(conn: Any, who: Principal) -> list[tuple[str, str]]:
    """The id and title of every collection the caller may read."""
    cur = await conn.execute(_COLLECTIONS)
    return [
        (cid, title) for cid, title, role in await cur.fetchall() if raster_readable(who, role, cid)
    ]


async def collection_access(conn: Any, who: Principal) -> tuple[list[str], list[str]]:
    """Every collection, and those the caller may read."""
    cur = await conn.execute(_ROLES)
    collections = await cur.fetchall()
    readable = [cid for cid, role in collections if raster_readable(who, role, cid)]
    return [cid for cid, _ in collections], readable


async def readable_scene(conn: Any, scene_id: str, who: Principal) -> Scene:
    """A scene of a collection the caller may read."""
    scene = await get_scene(conn, scene_id)
    await collection_title(conn, scene.collection, who)
    return scene


async def mosaic_scenes(conn: Any, cid: str, interval: str | None, who: Principal) -> list[Scene]:
    """A collection's scenes over a date range, newest first; none is a 404."""
    await collection_title(conn, cid, who)
    scenes = await scenes_of(conn, cid, interval)
    if not scenes:
        raise NotFound(f"collection {cid} has no scenes in {interval or 'any time'}")
    return scenes


async def newest_mosaic(
    conn: Any, collection: str | None, who: Principal
) -> tuple[str, list[float]] | None:
    """The collection (``collection``, or the newest the caller may read when None) and the
    extent of its scenes; None when there is none the caller may read."""
    cur = await conn.execute(_MOSAIC_EXTENTS, {"c": collection})
    rows = [r for r in await cur.fetchall() if raster_readable(who, r[1], r[0])]
    if not rows:
        return None
    cid, _, *bbox = rows[0]
    return cid, [float(v) for v in bbox]
