"""Editable kinds of collection: what the edit routes, the tile cache and TileJSON need from
components, grid levels and pipe networks, so none of them branches on collection names.

A kind is bound to one collection (``components``, ``grid_unit``, ``water_pipes``...). Each
domain package offers a finder, ``collection id -> kind or None``; the API's catalog holds the
finders and asks them in turn (``Catalog.kind``). Adding an editable kind of collection is one
new class in its package and one finder in the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from layers.registry import Layer
from layers.versioned import VersionedTable
from twin.auth import Principal

Box = tuple[float, float, float, float]  # lon/lat: west, south, east, north (as tiles.cache)

_BOX = "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ({}) AS q"


class CollectionKind(Protocol):
    """What an editable collection provides; every method works on one feature id."""

    @property
    def collection(self) -> str:
        """The collection id this kind is bound to."""
        ...

    @property
    def name(self) -> str:
        """ "components", "grid" or "pipes": what /collections/{id} says as ``kind``."""
        ...

    @property
    def label(self) -> str:
        """What one feature is called in messages ("component", "grid cell", ...)."""
        ...

    @property
    def table(self) -> VersionedTable:
        """The versioned table behind the collection: its history and restores."""
        ...

    def describe(self) -> dict[str, str]:
        """What /collections/{id} says as ``kind``: at least ``name``, and what a client
        needs besides (a grid level, a pipe network)."""
        ...

    def parse(self, feature: Any, *, partial: bool) -> Any:
        """Check a posted GeoJSON Feature (or the changed part of one, for PATCH); what
        ``create`` and ``update`` take."""
        ...

    async def create(self, conn: psycopg.AsyncConnection, change: Any) -> tuple[int, int]:
        """Add a feature; its id and version. Kinds that cannot add raise ``ReadOnly``."""
        ...

    async def update(
        self, conn: psycopg.AsyncConnection, fid: int, change: Any, version: int, *, partial: bool
    ) -> int:
        """Replace or patch a feature at ``version``; the new version."""
        ...

    async def delete(self, conn: psycopg.AsyncConnection, fid: int, version: int) -> int:
        """Delete (softly) or retire a feature; the new version."""
        ...

    async def restore(self, conn: psycopg.AsyncConnection, fid: int, version: int | None) -> int:
        """Undelete a feature, or bring back one of its prior versions; the new version."""
        ...

    async def state(self, conn: psycopg.AsyncConnection, fid: int) -> dict[str, Any] | None:
        """The feature's version (its ETag) and what access rules look at, deleted or not."""
        ...

    def check_rows(self, who: Principal, state: dict[str, Any] | None) -> None:
        """Refuse the edit when a row rule (a department's components) does not allow it."""
        ...

    async def footprints(self, conn: psycopg.AsyncConnection, fid: int) -> dict[str, Box]:
        """The boxes whose cached tiles an edit of ``fid`` changes, by collection."""
        ...

    async def tile_extras(self, conn: psycopg.AsyncConnection, layer: Layer, doc: dict) -> None:
        """Add what clients style this kind by to its TileJSON (in place)."""
        ...


KindFinder = Callable[[str], CollectionKind | None]


def union(a: Box | None, b: Box) -> Box:
    """The box around two boxes."""
    if a is None:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


async def extent_of(conn: psycopg.AsyncConnection, query: str, fid: int) -> Box | None:
    """The lon/lat box of ``query`` (one ``ST_Extent(...) AS e`` row, bound to ``fid``)."""
    cur = await conn.execute(_BOX.format(query), [fid])
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return None
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


async def add_extent(
    conn: psycopg.AsyncConnection, out: dict[str, Box], name: str, query: str, fid: int
) -> None:
    """Widen ``out[name]`` by the box of ``query`` for ``fid``, when there is one."""
    box = await extent_of(conn, query, fid)
    if box is not None:
        out[name] = union(out.get(name), box)


async def row_state(conn: psycopg.AsyncConnection, query: str, fid: int) -> dict[str, Any] | None:
    """One row of ``query`` (bound to ``fid``) as a dict: a feature's state for its ETag."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, [fid])
        return await cur.fetchone()


async def extents(
    conn: psycopg.AsyncConnection, fid: int, queries: list[tuple[str, str]]
) -> dict[str, Box]:
    """The boxes of ``(collection, query)`` pairs for ``fid``, by collection."""
    out: dict[str, Box] = {}
    for name, query in queries:
        await add_extent(conn, out, name, query, fid)
    return out


class NoRowRules:
    """Mixin for kinds without row rules or TileJSON extras."""

    def check_rows(self, who: Principal, state: dict[str, Any] | None) -> None:
        return None

    async def tile_extras(self, conn: psycopg.AsyncConnection, layer: Layer, doc: dict) -> None:
        return None
