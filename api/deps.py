"""Request dependencies: the pool connection and the catalog of published layers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import psycopg
from fastapi import Depends, Path, Request
from psycopg_pool import AsyncConnectionPool

from components import kind as component_kind
from grid import kind as grid_kind
from layers.access import can_read
from layers.kinds import Box, CollectionKind, KindFinder
from layers.registry import Layer, list_layers_async
from pipelines import kind as pipe_kind
from query.scope import EVERYTHING, Scope
from rasters.collections import collection_access
from tiles.cache import CachedTile, NoCache, TileCache, TileKey
from tiles.composite import MapTiles, build_map_tiles
from tiles.invalidation import invalidate
from tiles.maps import MapDef, get_map
from tiles.mvt import LayerTiles, stored_mercator
from twin.auth import ANONYMOUS, Principal
from twin.errors import NotFound, ReadOnly, SetupError, TwinError
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
    kinds: tuple[KindFinder, ...] = ()  # the editable kinds of collection; default: all
    _map_views: dict[tuple[str, str], MapTiles] = field(default_factory=dict)
    _loaded_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if not self.kinds:
            self.kinds = editable_kinds(self.settings)

    @property
    def due(self) -> bool:
        """Whether the registry is to be read again before it is used."""
        return time.monotonic() - self._loaded_at >= self.ttl

    def expire(self) -> None:
        """Read the registry again on the next request (a layer was added or replaced)."""
        self._loaded_at = 0.0

    async def refresh(self, conn: psycopg.AsyncConnection, force: bool = False) -> None:
        if not force and not self.due:
            return
        async with self._lock:
            fresh = {layer.name: layer for layer in await list_layers_async(conn)}
            changed = {
                n for n in fresh.keys() | self.layers.keys() if fresh.get(n) != self.layers.get(n)
            }
            if changed:
                self.stored = await stored_mercator(conn)
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

    def kind(self, name: str) -> CollectionKind | None:
        """The editable kind of collection ``name``; None when it is read-only."""
        for find in self.kinds:
            if (kind := find(name)) is not None:
                return kind
        return None

    def editable(self, name: str) -> CollectionKind:
        """The kind of collection ``name``, refused (read-only) when it has none."""
        kind = self.kind(name)
        if kind is None:
            raise ReadOnly(
                f"collection {name!r} is read-only; components, grid cells and pipe "
                "networks (<network>_pipes, <network>_nodes) can be edited"
            )
        return kind

    async def cached_tile(
        self, key: TileKey, collections: list[str], render: Callable[[], Awaitable[bytes]]
    ) -> tuple[CachedTile, bool]:
        """A tile from the cache (True: a hit), or rendered now and kept. The generations are
        read before rendering, so a tile drawn while an edit commits is not kept stale."""
        tile = await self.cache.get(key)
        if tile is not None:
            return tile, True
        seen = await self.cache.generations(collections)
        return await self.cache.put(key, await render(), collections, seen), False

    async def invalidate(self, collection: str, box: Box | None = None) -> int:
        """Drop the cached tiles of ``collection`` (those meeting ``box``, when given): in this
        process here and now; the number of tiles dropped."""
        return await self.cache.invalidate(collection, box)

    async def invalidate_edit(self, before: dict[str, Box], after: dict[str, Box]) -> int:
        """Drop the cached tiles an edit changed: the boxes it touched before and after it."""
        return await invalidate(self.cache, before, after)

    def visible(self, who: Principal) -> list[Layer]:
        return [layer for layer in self.layers.values() if can_read(who, layer)]

    def networks(self, who: Principal) -> tuple[list[str], list[str]]:
        """Every pipe network, and those ``who`` may read: a network is as readable as its
        pipes collection (the view ``twin.pipes_<network>`` the network store publishes)."""
        pipes = [
            (network, layer)
            for layer in self.layers.values()
            if (network := pipe_kind.network_of(layer)) is not None
        ]
        every = sorted(network for network, _ in pipes)
        readable = sorted(network for network, layer in pipes if can_read(who, layer))
        return every, readable


def editable_kinds(settings: Settings) -> tuple[KindFinder, ...]:
    """The editable kinds of collection: components, the grid levels and pipe networks."""
    return (component_kind.finder(settings.components), grid_kind.find, pipe_kind.find)


async def connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


async def catalog(request: Request) -> Catalog:
    cat: Catalog = request.app.state.catalog
    pool: AsyncConnectionPool = request.app.state.pool
    if cat.due:
        async with pool.connection() as conn:
            await cat.refresh(conn)
    return cat


async def readable_layer(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    cat: Annotated[Catalog, Depends(catalog)],
) -> Layer:
    """The collection a route names, if the caller may read it: one they may not is as unknown
    as a missing one (404)."""
    return cat.layer(collection_id, principal(request))


ReadableLayer = Annotated[Layer, Depends(readable_layer)]


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
    collections, cols = await collection_access(conn, who)
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
