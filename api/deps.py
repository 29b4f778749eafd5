"""Request dependencies: the pool connection and the catalog of published layers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psycopg
from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from layers.registry import Layer, list_layers_async
from tiles.mvt import LayerTiles
from twin.errors import NotFound
from twin.settings import Settings


@dataclass
class Catalog:
    """Published layers and their compiled tile statements, reloaded when the registry changes.

    The registry is re-read at most every ``ttl`` seconds (an import from the CLI shows up
    within that time); tile SQL is rebuilt only for layers whose registry row changed.
    """

    settings: Settings
    ttl: float = 2.0
    layers: dict[str, Layer] = field(default_factory=dict)
    tiles: dict[str, LayerTiles] = field(default_factory=dict)
    _loaded_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def refresh(self, conn: psycopg.AsyncConnection, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < self.ttl:
            return
        async with self._lock:
            fresh = {layer.name: layer for layer in await list_layers_async(conn)}
            for name, layer in fresh.items():
                if self.layers.get(name) != layer or name not in self.tiles:
                    self.tiles[name] = LayerTiles.build(layer, self.settings.tiles)
            for gone in set(self.tiles) - set(fresh):
                del self.tiles[gone]
            self.layers = fresh
            self._loaded_at = time.monotonic()

    def layer(self, name: str) -> Layer:
        try:
            return self.layers[name]
        except KeyError:
            raise NotFound(f"no collection named {name!r}; see /collections") from None


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
