"""Request dependencies: the pool connection and the catalog of published layers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import psycopg
from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from layers.access import can_read, raster_readable
from layers.registry import Layer, list_layers_async
from query.scope import EVERYTHING, Scope
from tiles.cache import NoCache, TileCache
from tiles.composite import MapTiles, build_map_tiles
from tiles.maps import MapDef, get_map
from tiles.mvt import MERCATOR_COLUMN, LayerTiles
from twin.auth import ANONYMOUS, Principal
from twin.errors import NotFound, SetupError, TwinError
from twin.settings import Settings


@dataclass
class Catalog:
    """Published layers and their compiled tile statements, reloaded when the registry changes.

    The registry is re-read at most every ``ttl`` seconds (an import from the CLI shows up
    within that time); tile SQL is rebuilt only for layers whose registry row changed. Cached
    tiles carry the layers' data versions in their keys, so a re-import is never answered from
    tiles of the data before it.
    """

    settings: Settings
    ttl: float = 2.0
    layers: dict[str, Layer] = field(default_factory=dict)
    tiles: dict[str, LayerTiles] = field(default_factory=dict)
    maps: dict[str, MapDef] = field(default_factory=dict)
    cache: TileCache = field(default_factory=NoCache)
    map_tiles: dict[str, MapTiles] = field(default_factory=dict)
    map_errors: dict[str, str] = field(default_factory=dict)
    stored: frozenset[str] = frozenset()  # layers whose table keeps a Web Mercator copy
    _map_views: dict[tuple[str, str], MapTiles] = field(default_factory=dict)
    _loaded_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def refresh(self, conn: psycopg.AsyncConnection, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < self.ttl:
            return
        async with self._lock:
            fresh = {layer.name: layer for layer in await list_layers_async(conn)}
            changed = {
                n for n in fresh.keys() | self.layers.keys() if fresh.get(n) != self.layers.get(n)
            }
            if changed:
                self.stored = await _stored_mercator(conn)
            for name, layer in fresh.items():
                if name in changed or name not in self.tiles:
                    self.tiles[name] = LayerTiles.build(
                        layer, self.settings.tiles, name in self.stored
                    )
            for gone in set(self.tiles) - set(fresh):
                del self.tiles[gone]
            self.layers = fresh
            if changed or not self.map_tiles:
                await self._bind_maps(conn)
            self._loaded_at = time.monotonic()

    async def _bind_maps(self, conn: psycopg.AsyncConnection) -> None:
        """Compile every map over the layers published now; a broken map definition answers
        with its problem and does not stop the others."""
        self.map_tiles, self.map_errors, self._map_views = {}, {}, {}
        for map_id, map_def in self.maps.items():
            try:
                self.map_tiles[map_id] = await build_map_tiles(
                    conn, map_def, self.layers, self.settings.tiles, self.stored
                )
            except TwinError as exc:
                self.map_errors[map_id] = exc.message

    def map(self, map_id: str, who: Principal = ANONYMOUS) -> MapTiles:
        """A map as ``who`` sees it: the layers they may not read are not in it at all (not
        in its tiles, its TileJSON or its style)."""
        get_map(self.maps, map_id)
        if map_id in self.map_errors:
            raise SetupError(self.map_errors[map_id])
        key = (map_id, who.access_key)
        if key not in self._map_views:
            self._map_views[key] = self.map_tiles[map_id].readable_by(
                lambda layer: can_read(who, layer)
            )
        return self._map_views[key]

    def layer(self, name: str, who: Principal = ANONYMOUS) -> Layer:
        """A layer ``who`` may read; one they may not is as unknown as a missing one."""
        layer = self.layers.get(name)
        if layer is None or not can_read(who, layer):
            raise NotFound(f"no collection named {name!r}; see /collections")
        return layer

    def visible(self, who: Principal) -> list[Layer]:
        return [layer for layer in self.layers.values() if can_read(who, layer)]

    def networks(self, who: Principal) -> tuple[list[str], list[str]]:
        """Every pipe network, and those ``who`` may read: a network is as readable as its
        pipes collection (the view ``twin.pipes_<network>`` the network store publishes)."""
        pipes = [
            layer
            for layer in self.layers.values()
            if layer.schema_name == "twin" and layer.table_name.startswith("pipes_")
        ]
        every = sorted(layer.table_name.removeprefix("pipes_") for layer in pipes)
        readable = sorted(
            layer.table_name.removeprefix("pipes_") for layer in pipes if can_read(who, layer)
        )
        return every, readable


async def _stored_mercator(conn: psycopg.AsyncConnection) -> frozenset[str]:
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


async def connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


async def catalog(request: Request) -> Catalog:
    cat: Catalog = request.app.state.catalog
    pool: AsyncConnectionPool = request.app.state.pool
    if time.monotonic() - cat._loaded_at >= cat.ttl:
        async with pool.connection() as conn:
            await cat.refresh(conn)
    return cat


def settings(request: Request) -> Settings:
    return request.app.state.settings


def access_level(request: Request) -> str:
    """The caller's access level, the first part of every cache key: callers who may read
    different layers never share a cached tile."""
    return principal(request).access_key


def cache_headers(request: Request, max_age: int) -> dict[str, str]:
    """Cache-Control and Vary of a tile or image. What a caller with credentials gets may hold
    what others must not see: no shared cache (a proxy, a CDN) may keep it for anyone else."""
    scope = "public" if principal(request).anonymous else "private"
    return {
        "Cache-Control": f"{scope}, max-age={max_age}" + ("" if max_age else ", must-revalidate"),
        "Vary": "Accept-Encoding, Authorization, X-API-Key",
    }


def principal(request: Request) -> Principal:
    """The caller, resolved once per request by the application-wide dependency."""
    return getattr(request.state, "principal", ANONYMOUS)


async def query_scope(request: Request, conn: psycopg.AsyncConnection) -> Scope:
    """What the caller's summaries and reports may draw on: the layers, pipe networks and
    raster collections they may read."""
    who = principal(request)
    if who.role == "admin":
        return EVERYTHING
    cat = await catalog(request)

    def readable(name: str) -> bool:
        layer = cat.layers.get(name)
        return layer is None or can_read(who, layer)

    networks, nets = cat.networks(who)
    cur = await conn.execute("SELECT id, read_role FROM twin.raster_collections ORDER BY id")
    collections = await cur.fetchall()
    cols = [cid for cid, role in collections if raster_readable(who, role, cid)]
    cfg: Settings = request.app.state.settings
    return Scope(
        components=readable("components"),
        buildings=readable(cfg.query.buildings_layer),
        unit_grids=readable("grid_unit"),
        changes=readable("raster_changes"),
        cases=readable("cases"),
        networks=None if len(nets) == len(networks) else tuple(nets),
        rasters=None if len(cols) == len(collections) else tuple(cols),
    )


def needs(role: str) -> Callable[[Request], Principal]:
    """A route dependency: the caller must have ``role`` (401 anonymous, 403 too low). As a
    dependency it runs before the body is read, so a refused caller learns nothing else."""
    from layers.access import require_role

    def check(request: Request) -> Principal:
        who = principal(request)
        require_role(who, role)
        return who

    return check


# Marks a POST route that reads only (a query); every other POST/PUT/PATCH/DELETE writes and
# needs credentials. The contract tests walk the OpenAPI document with it.
READ_ONLY = {"x-citytwin-read-only": True}
