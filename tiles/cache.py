"""The tile cache: an in-process LRU by default, Redis as an option, invalidated precisely.

Each cached tile records the collections drawn in it. An edit names the collection and the
lon/lat box it touched (old and new geometry); every cached tile of that collection, at any
zoom and in any map, whose buffered footprint meets the box is dropped, and nothing else.

The key starts with the caller's access level, so a tile rendered for one level is never
served to another; today every caller is ``public``.

A tile rendered while an edit commits could be stored after the edit's invalidation and stay
stale. Each collection has a generation, moved on by every invalidation: a tile is stored only
if the generations of its collections are those read before it was rendered.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from tiles.mvt import cell_margin
from twin.settings import TileSettings

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # lon/lat: west, south, east, north


@dataclass(frozen=True)
class TileKey:
    """What a cached tile is: who may see it, what it shows, where, and any query variant."""

    access: str
    scope: str  # "layer:<collection>" or "map:<map id>"
    z: int
    x: int
    y: int
    variant: str = ""

    def text(self) -> str:
        return f"{self.access}|{self.scope}|{self.variant}|{self.z}/{self.x}/{self.y}"

    @classmethod
    def parse(cls, text: str) -> TileKey:
        access, scope, variant, zxy = text.split("|")
        z, x, y = (int(v) for v in zxy.split("/"))
        return cls(access, scope, z, x, y, variant)


GZIP_MIN_BYTES = 1024  # smaller tiles travel as they are


class CachedTile:
    """A tile as served, with its ETag. Its gzip form is made at most once, and only when a
    client takes gzip (a kept tile is compressed once for every later hit)."""

    __slots__ = ("_gz", "_plain", "etag")

    def __init__(self, plain: bytes | None, etag: str, gz: bytes | None = None) -> None:
        self._plain, self._gz, self.etag = plain, gz, etag

    @property
    def data(self) -> bytes:
        if self._plain is None:
            assert self._gz is not None
            self._plain = gzip.decompress(self._gz)
        return self._plain

    @property
    def compressible(self) -> bool:
        return self._gz is not None or len(self.data) > GZIP_MIN_BYTES

    def gzipped(self) -> bytes:
        if self._gz is None:
            self._gz = gzip.compress(self.data, compresslevel=5, mtime=0)
        return self._gz

    @property
    def size(self) -> int:
        return len(self._plain or b"") + len(self._gz or b"")


def etag_of(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


def pack(data: bytes) -> CachedTile:
    return CachedTile(data, etag_of(data))


def tile_box(z: int, x: int, y: int, margin: float) -> Box:
    """A tile's lon/lat box, grown by ``margin`` tiles on each side (the MVT buffer)."""
    n = 1 << z

    def lon(col: float) -> float:
        return col / n * 360.0 - 180.0

    def lat(row: float) -> float:
        row = min(max(row, 0.0), float(n))
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return (lon(x - margin), lat(y + 1 + margin), lon(x + 1 + margin), lat(y - margin))


def meets(a: Box, b: Box) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class TileCache(Protocol):
    async def get(self, key: TileKey) -> CachedTile | None: ...

    async def generations(self, collections: Iterable[str]) -> tuple[int, ...]: ...

    async def put(
        self, key: TileKey, data: bytes, collections: Iterable[str], seen: tuple[int, ...]
    ) -> CachedTile: ...

    async def invalidate(self, collection: str, box: Box | None = None) -> int: ...

    async def clear(self) -> None: ...


class NoCache:
    """tile_cache=off: every tile is rendered."""

    async def get(self, key: TileKey) -> CachedTile | None:
        return None

    async def generations(self, collections: Iterable[str]) -> tuple[int, ...]:
        return ()

    async def put(
        self, key: TileKey, data: bytes, collections: Iterable[str], seen: tuple[int, ...]
    ) -> CachedTile:
        return pack(data)

    async def invalidate(self, collection: str, box: Box | None = None) -> int:
        return 0

    async def clear(self) -> None:
        return None


class MemoryCache:
    """A byte-bounded LRU in this process, with an index from collection to its tiles."""

    def __init__(self, max_bytes: int, margin: float) -> None:
        self.max_bytes = max_bytes
        self.margin = margin
        self.size = 0
        self._tiles: OrderedDict[TileKey, tuple[CachedTile, tuple[str, ...]]] = OrderedDict()
        self._by_collection: dict[str, set[TileKey]] = {}
        self._generation: dict[str, int] = {}

    async def get(self, key: TileKey) -> CachedTile | None:
        entry = self._tiles.get(key)
        if entry is None:
            return None
        self._tiles.move_to_end(key)
        return entry[0]

    async def generations(self, collections: Iterable[str]) -> tuple[int, ...]:
        return tuple(self._generation.get(c, 0) for c in collections)

    async def put(
        self, key: TileKey, data: bytes, collections: Iterable[str], seen: tuple[int, ...]
    ) -> CachedTile:
        tile = pack(data)
        names = tuple(collections)
        if await self.generations(names) != seen or len(data) > self.max_bytes:
            return tile  # an edit landed while it was rendered: serve it, do not keep it
        if tile.compressible:
            tile.gzipped()  # once, here, rather than on a later hit
        self._drop(key)
        self._tiles[key] = (tile, names)
        self.size += tile.size
        for name in names:
            self._by_collection.setdefault(name, set()).add(key)
        while self.size > self.max_bytes:
            self._drop(next(iter(self._tiles)))
        return tile

    def _drop(self, key: TileKey) -> None:
        entry = self._tiles.pop(key, None)
        if entry is None:
            return
        self.size -= entry[0].size
        for name in entry[1]:
            self._by_collection.get(name, set()).discard(key)

    async def invalidate(self, collection: str, box: Box | None = None) -> int:
        self._generation[collection] = self._generation.get(collection, 0) + 1
        keys = list(self._by_collection.get(collection, ()))
        hit = [k for k in keys if box is None or meets(tile_box(k.z, k.x, k.y, self.margin), box)]
        for key in hit:
            self._drop(key)
        return len(hit)

    async def clear(self) -> None:
        self._tiles.clear()
        self._by_collection.clear()
        self.size = 0


class RedisCache:
    """Tiles in Redis, shared by every replica; a set per collection indexes its tiles."""

    PREFIX = "citytwin:"

    def __init__(self, url: str, margin: float) -> None:
        import redis.asyncio as redis  # optional dependency: pip install 'citytwin[redis]'

        self.redis = redis.from_url(url)
        self.margin = margin

    def _k(self, kind: str, name: str) -> str:
        return f"{self.PREFIX}{kind}:{name}"

    async def get(self, key: TileKey) -> CachedTile | None:
        data = await self.redis.get(self._k("tile", key.text()))
        if data is None:
            return None
        raw = data if isinstance(data, bytes) else str(data).encode()
        if raw[:2] == b"\x1f\x8b":  # kept compressed (see put); an MVT starts with 0x1a
            plain = gzip.decompress(raw)
            return CachedTile(plain, etag_of(plain), raw)
        return CachedTile(raw, etag_of(raw))

    async def generations(self, collections: Iterable[str]) -> tuple[int, ...]:
        names = list(collections)
        if not names:
            return ()
        values = await self.redis.mget([self._k("gen", c) for c in names])
        return tuple(int(v or 0) for v in values)

    async def put(
        self, key: TileKey, data: bytes, collections: Iterable[str], seen: tuple[int, ...]
    ) -> CachedTile:
        tile = pack(data)
        names = tuple(collections)
        if await self.generations(names) != seen:
            return tile
        text = key.text()
        body = tile.gzipped() if tile.compressible else tile.data
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._k("tile", text), body)
            for name in names:
                pipe.sadd(self._k("tiles-of", name), text)
            await pipe.execute()
        return tile

    async def invalidate(self, collection: str, box: Box | None = None) -> int:
        await self.redis.incr(self._k("gen", collection))
        index = self._k("tiles-of", collection)
        hit: list[str] = []
        async for member in self.redis.sscan_iter(index, count=1000):
            text = member.decode() if isinstance(member, bytes) else str(member)
            k = TileKey.parse(text)
            if box is None or meets(tile_box(k.z, k.x, k.y, self.margin), box):
                hit.append(text)
        for start in range(0, len(hit), 500):
            chunk = hit[start : start + 500]
            await self.redis.delete(*[self._k("tile", t) for t in chunk])
            await self.redis.srem(index, *chunk)
        return len(hit)

    async def clear(self) -> None:
        async for key in self.redis.scan_iter(match=f"{self.PREFIX}*", count=1000):
            await self.redis.delete(key)


def make_cache(settings: TileSettings) -> TileCache:
    # A cached tile shows what lies within the buffer, or within a whole aggregation cell
    # beyond the tile: an edit that far outside still changes it.
    margin = cell_margin(settings) * 1.01
    if settings.tile_cache == "off":
        return NoCache()
    if settings.tile_cache == "redis":
        return RedisCache(settings.tile_cache_redis_url, margin)
    return MemoryCache(settings.tile_cache_max_mb * 1024 * 1024, margin)
