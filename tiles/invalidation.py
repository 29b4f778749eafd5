"""What an edit touches: per collection, the lon/lat box whose cached tiles it changes.

Read once before the edit and once after it; the union of the two is invalidated, so a feature
moved from A to B clears the tiles of both places, and a delete or a restore clears where the
feature was or is. Rows are read from the tables by id, deleted or not.
"""

from __future__ import annotations

import re

import psycopg

from tiles.cache import Box, TileCache

_PIPES = re.compile(r"^([a-z][a-z0-9_]{0,30})_(pipes|nodes)$")
_GRID = ("grid_district", "grid_street", "grid_community", "grid_unit")
_PIPE_ROW = "SELECT ST_Extent(geom) AS e FROM twin.pipe_segments WHERE id = %s"
_NODE_ROW = "SELECT ST_Extent(geom) AS e FROM twin.pipe_nodes WHERE id = %s"
_BOX = "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ({}) AS q"

# Pipes attached to a node: they move with it (and carry its new id when it is renamed).
_ATTACHED = """
    SELECT ST_Extent(p.geom) AS e
    FROM twin.pipe_nodes n
    JOIN twin.pipe_segments p ON p.network = n.network AND p.deleted_at IS NULL
     AND (p.from_node = n.node_id OR p.to_node = n.node_id)
    WHERE n.id = %s
"""


async def _box(conn: psycopg.AsyncConnection, query: str, fid: int) -> Box | None:
    cur = await conn.execute(_BOX.format(query), [fid])
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return None
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


async def footprints(conn: psycopg.AsyncConnection, collection: str, fid: int) -> dict[str, Box]:
    """The boxes an edit of feature ``fid`` of ``collection`` touches, by collection."""
    out: dict[str, Box] = {}

    async def add(name: str, query: str) -> None:
        box = await _box(conn, query, fid)
        if box is not None:
            out[name] = union(out.get(name), box)

    if collection == "components":
        await add(collection, "SELECT ST_Extent(geom) AS e FROM twin.components WHERE id = %s")
    elif collection in _GRID:
        await add(collection, "SELECT ST_Extent(geom) AS e FROM twin.grid_cells WHERE id = %s")
    elif m := _PIPES.match(collection):
        network, what = m.groups()
        await add(collection, _PIPE_ROW if what == "pipes" else _NODE_ROW)
        if what == "nodes":
            await add(f"{network}_pipes", _ATTACHED)
        # Low points of drainage networks depend on the nodes and pipes around them.
        for name in list(out):
            out["low_points"] = union(out.get("low_points"), out[name])
    return out


def union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


async def invalidate(cache: TileCache, before: dict[str, Box], after: dict[str, Box]) -> int:
    """Drop the cached tiles the edit changed; the number of tiles dropped."""
    dropped = 0
    for name in before.keys() | after.keys():
        box = before.get(name)
        box = union(box, after[name]) if name in after else box
        assert box is not None
        dropped += await cache.invalidate(name, box)
    return dropped
