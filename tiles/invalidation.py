"""What an edit touches: per collection, the lon/lat box whose cached tiles it changes.

Each editable kind of collection (layers/kinds.py) says which boxes an edit of one of its
features touches. They are read once before the edit and once after it; the union of the two is
invalidated, so a feature moved from A to B clears the tiles of both places, and a delete or a
restore clears where the feature was or is. Rows are read from the tables by id, deleted or not.
"""

from __future__ import annotations

import psycopg

from layers.kinds import Box, CollectionKind, union
from tiles.cache import TileCache

__all__ = ["footprints", "invalidate", "union"]


async def footprints(
    conn: psycopg.AsyncConnection, kind: CollectionKind, fid: int
) -> dict[str, Box]:
    """The boxes an edit of feature ``fid`` of the collection of ``kind`` touches."""
    return await kind.footprints(conn, fid)


async def invalidate(cache: TileCache, before: dict[str, Box], after: dict[str, Box]) -> int:
    """Drop the cached tiles the edit changed; the number of tiles dropped."""
    dropped = 0
    for name in before.keys() | after.keys():
        box = before.get(name)
        box = union(box, after[name]) if name in after else box
        assert box is not None
        dropped += await cache.invalidate(name, box)
    return dropped
