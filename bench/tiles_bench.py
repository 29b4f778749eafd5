"""Vector tiles: citytwin's MVT endpoints against tipg's, on the same views of one database.

Two parts, over one fixed list of WebMercatorQuad tiles (z12-z18, a fixed-seed sample per zoom
over the extent of the single layer, in the sample city):

- ``layer``: one dense layer (default ``components``, ~130,000 points at scale 10) from
  citytwin's ``/collections/{id}/tiles/...`` and from tipg's tiles of the same view;
- ``map``: one-map views listed at citytwin's ``GET /maps`` (default ``city-management`` and
  ``pipelines``), as one composite MVT from ``/maps/{map}/tiles/...``. tipg has no composite
  tiles: its figure is what a client would have to do, one tipg request per layer of the view
  drawn at that zoom (with the layer's filter and properties), so one "tile" is all of them.

citytwin runs twice, as two ``twin serve`` processes: ``TWIN_TILE_CACHE=off`` and
``TWIN_TILE_CACHE=memory`` (warmed by one untimed pass over the list). tipg (no tile cache) runs
under uvicorn, configured by environment variables to serve the same views with the same
buffer (64), extent (4096) and feature cap as citytwin. All three run at once on free loopback
ports, against one scratch embedded PostGIS holding the sample city (loaded as ``twin demo``
does). Every request accepts gzip, as browsers do (``--accept-encoding identity``: no
compression asked for).

Before timing: every server must answer 200 or 204 for every tile (an httpx pass, which also
warms the cache), and for a sample of tiles the features are compared: decoded with
mapbox_vector_tile, per layer, by feature id (tipg's ``fid`` property), counting only what lies
inside the tile (citytwin also draws the buffer); an aggregated layer's cell counts must add up
to tipg's points.

Timing: ``--rounds`` rounds; in each, every server takes the whole list with ``--concurrency``
concurrent clients over keep-alive connections (a lean asyncio HTTP/1.1 client, so that the
load generator leaves the CPU to the servers; ``--client httpx`` for httpx), the order of the
servers rotating; tiles/s = tiles / wall clock. The median round is reported with the ratios
citytwin uncached / tipg and citytwin cached / tipg, and the CPU each server process and the
client spent per tile. For the layer, a sample of tiles is also timed over HTTP and in process
(citytwin's tile statement through psycopg, tipg's ``get_tile`` through asyncpg), taking turns,
and explained (EXPLAIN ANALYZE), to tell SQL time from HTTP time.

Results: the terminal, bench/out/tiles.json and, with matplotlib, bench/out/tiles.png.

    .venv/bin/python bench/tiles_bench.py [--scale 10] [--per-zoom 80] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import psycopg
from common import (  # bench/common.py, beside this script
    OUT,
    ScratchDatabase,
    ServerProcess,
    Tile,
    console,
    ensure_city,
    free_port,
    load_demo_city,
    machine,
    median_or_nan,
    p95,
    package_versions,
    parse_zooms,
    print_written,
    pyplot,
    save_figure,
    start_scratch,
    tile_list,
    twin_serve,
    write_json,
)
from rich.table import Table

TMS = "WebMercatorQuad"
MVT = "application/vnd.mapbox-vector-tile"
HEADERS = {"Accept-Encoding": "gzip"}  # as browsers ask; --accept-encoding identity: none
TARGET_UNCACHED = 2.0  # citytwin uncached / tipg
TARGET_CACHED = 20.0  # citytwin cached / tipg (uncached)
EDGE = 2.0  # tile units: a feature this close to the tile's edge may fall either way
OURS_OFF, OURS_ON, PEER = "citytwin uncached", "citytwin cached", "tipg"
PEERS = (OURS_OFF, OURS_ON, PEER)


# --- what is asked of each server -----------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    path: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LayerSpec:
    """One MVT layer of a part: where citytwin draws it, and how tipg is asked for it."""

    name: str  # the layer's name in citytwin's tile
    collection: str  # citytwin's collection
    tipg_id: str  # schema.table, tipg's collection of the same view
    filter: str | None = None
    properties: tuple[str, ...] | None = None
    minzoom: int = 0
    maxzoom: int = 30
    aggregate_below: int | None = None

    def mode_at(self, z: int) -> str | None:
        if not self.minzoom <= z <= self.maxzoom:
            return None
        if self.aggregate_below is not None and z < self.aggregate_below:
            return "cells"
        return "features"

    @property
    def cells_name(self) -> str:
        return f"{self.name}_cells"

    def tipg_request(self, z: int, x: int, y: int) -> Request:
        params: list[tuple[str, str]] = []
        if self.properties is not None:
            # fid rides along to compare features; citytwin sends it as the feature id
            params.append(("properties", ",".join(["fid", *self.properties])))
        if self.filter:
            params += [("filter", self.filter), ("filter-lang", "cql2-text")]
        return Request(f"/collections/{self.tipg_id}/tiles/{TMS}/{z}/{x}/{y}", tuple(params))


@dataclass
class Part:
    """A layer or a map: one citytwin request per tile, one tipg request per drawn layer."""

    kind: str  # "layer" or "map"
    name: str
    layers: list[LayerSpec]
    missing: list[str] = field(default_factory=list)  # map layers whose collection is absent

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    def ours(self, z: int, x: int, y: int) -> list[Request]:
        root = "collections" if self.kind == "layer" else "maps"
        return [Request(f"/{root}/{self.name}/tiles/{TMS}/{z}/{x}/{y}")]

    def theirs(self, z: int, x: int, y: int) -> list[Request]:
        return [s.tipg_request(z, x, y) for s in self.layers if s.mode_at(z)]

    def plan(self, server: str, tiles: list[Tile]) -> list[list[Request]]:
        ask = self.ours if server == "citytwin" else self.theirs
        return [ask(*t) for t in tiles]


# --- the database, the tiles and the servers ------------------------------------------------------
def published(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, schema_name, table_name, geometry_type, feature_count, bbox "
            "FROM twin.layers"
        ).fetchall()
    return {
        r[0]: {"schema": r[1], "table": r[2], "type": r[3], "count": r[4], "bbox": r[5]}
        for r in rows
    }


def tipg_env(url: str, base_env: dict[str, str], tables: list[str]) -> dict[str, str]:
    """tipg's settings: the same views, feature ids from `fid`, citytwin's MVT parameters."""
    from twin.settings import TileSettings

    ts = TileSettings()
    schemas = sorted({t.split(".")[0] for t in tables})
    env = {k: v for k, v in base_env.items() if not k.startswith(("TWIN_", "TIPG_"))}
    env.update(
        {
            "DATABASE_URL": url,
            "TIPG_DB_SCHEMAS": json.dumps(schemas),
            "TIPG_DB_TABLES": json.dumps(sorted(set(tables))),
            "TIPG_DB_EXCLUDE_FUNCTION_SCHEMAS": json.dumps(schemas),
            "TIPG_FALLBACK_KEY_NAMES": json.dumps(["fid"]),  # the views' id column
            "TIPG_TILE_BUFFER": str(ts.tile_buffer),
            "TIPG_TILE_RESOLUTION": str(ts.tile_extent),
            "TIPG_MAX_FEATURES_PER_TILE": str(ts.tile_max_features),
            "TIPG_SET_MVT_LAYERNAME": "true",
            "TIPG_CATALOG_TTL": "0",  # no catalog refresh in the middle of a run
        }
    )
    return env


def start_servers(
    db: ScratchDatabase, url: str, tables: list[str], cache_mb: int | None, pgoptions: str
) -> dict[str, ServerProcess]:
    servers: dict[str, ServerProcess] = {}
    ours = {**db.env, **({"PGOPTIONS": pgoptions} if pgoptions else {})}
    try:
        servers[OURS_OFF] = twin_serve(url, {**ours, "TWIN_TILE_CACHE": "off"})
        cached = {**ours, "TWIN_TILE_CACHE": "memory"}
        if cache_mb:
            cached["TWIN_TILE_CACHE_MAX_MB"] = str(cache_mb)
        servers[OURS_ON] = twin_serve(url, cached)
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--log-level", "info"]  # as `twin serve`
        servers[PEER] = ServerProcess("tipg", argv, tipg_env(url, db.env, tables), port)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def discover_maps(base: str, wanted: list[str] | None, layers: dict[str, dict]) -> list[Part]:
    """The maps citytwin lists at GET /maps, each layer bound to tipg's collection of the same
    view, with the filter, properties and zoom rules of the map's definition file."""
    from tiles.maps import load_maps  # the definition files `twin serve` reads
    from twin.settings import TileSettings

    response = httpx.get(f"{base}/maps", timeout=30, headers={"Accept": "application/json"})
    if response.status_code != 200:
        console.print(
            f"[yellow]GET /maps answered {response.status_code}: this citytwin has no one-map "
            "views, the composite part is skipped[/]"
        )
        return []
    listed = {m["id"]: m for m in response.json()["maps"]}
    definitions = load_maps(TileSettings().maps_dir)
    for name in wanted or []:
        if name not in listed:
            console.print(f"[yellow]map {name!r} is not listed at /maps ({', '.join(listed)})[/]")
    parts = []
    for name in [n for n in listed if wanted is None or n in wanted]:
        served = [d["id"] for d in listed[name]["layers"]]
        defined = definitions[name].layers
        if served != [d.id for d in defined]:
            raise SystemExit(
                f"map {name}: /maps lists {served}, its file {[d.id for d in defined]}"
            )
        part = Part("map", name, [])
        for d in defined:
            if d.collection is None:
                continue  # imagery: raster tiles, not part of the map's MVT
            info = layers.get(d.collection)
            if info is None or d.id in listed[name].get("missing", []):
                part.missing.append(d.id)
                continue
            part.layers.append(
                LayerSpec(
                    name=d.id,
                    collection=d.collection,
                    tipg_id=f"{info['schema']}.{info['table']}",
                    filter=d.filter,
                    properties=tuple(d.properties) if d.properties is not None else None,
                    minzoom=d.minzoom,
                    maxzoom=d.maxzoom,
                    aggregate_below=d.aggregate_below,
                )
            )
        parts.append(part)
    return parts


# --- fetching -------------------------------------------------------------------------------------
@dataclass
class Pass:
    """One server over the whole list, once."""

    peer: str
    part: str
    concurrency: int
    tiles: int = 0
    requests: int = 0
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0  # the server's own process (not the database's)
    bytes: int = 0
    latency_ms: list[float] = field(default_factory=list)
    status: dict[int, int] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)  # X-Tile-Cache: hit / miss
    errors: list[str] = field(default_factory=list)
    empty: dict[tuple[int, int], bool] = field(default_factory=dict)  # (tile, request) -> empty

    @property
    def rate(self) -> float:
        return self.tiles / self.wall_s if self.wall_s else 0.0

    @property
    def median_ms(self) -> float:
        return median_or_nan(self.latency_ms)

    def summary(self) -> dict[str, Any]:
        return {
            "server": self.peer,
            "part": self.part,
            "concurrency": self.concurrency,
            "tiles": self.tiles,
            "requests": self.requests,
            "wall_s": round(self.wall_s, 4),
            "tiles_per_s": round(self.rate, 3),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "bytes": self.bytes,
            "latency_ms_median": round(self.median_ms, 3),
            "latency_ms_p95": round(p95(self.latency_ms), 3) if self.latency_ms else None,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "x_tile_cache": self.cache,
            "errors": self.errors[:20],
            "error_count": len(self.errors),
        }


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Answer = tuple[int, dict[str, str], bytes]  # status, headers (lower-case names), body


class RawClient:
    """GETs over one HTTP/1.1 keep-alive connection, parsed in a few lines.

    A cached tile costs a server well under a millisecond of CPU, and httpx about as much again
    on the client's side: on two cores, timing cache hits through httpx measures httpx. This
    client costs a fraction of that, so the servers get the CPU. Bodies come with
    Content-Length or chunked (both servers send Content-Length); 204 and 304 have none.
    """

    def __init__(self, base: str) -> None:
        url = httpx.URL(base)
        self.host, self.port = url.host, url.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, req: Request) -> Answer:
        reused = self.writer is not None
        try:
            return await self._get(req)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            if not reused:
                raise
            return await self._get(req)  # the server closed an idle keep-alive connection

    async def _get(self, req: Request) -> Answer:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        target = req.path + ("?" + urlencode(req.params) if req.params else "")
        self.writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept-Encoding: {HEADERS['Accept-Encoding']}\r\n\r\n".encode()
        )
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await self._chunks()
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body

    async def _chunks(self) -> bytes:
        assert self.reader is not None
        parts = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        await self.reader.readuntil(b"\r\n")  # no trailers are sent
        return b"".join(parts)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer, self.reader = None, None


class HttpxClient:
    """The same through one shared httpx.AsyncClient (``--client httpx``)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, req: Request) -> Answer:
        response = await self.client.get(req.path, params=req.params)
        return response.status_code, dict(response.headers), response.content

    async def close(self) -> None:
        return None


def record(run: Pass, key: tuple[int, int], req: Request, answer: Answer, ms: float) -> None:
    status, headers, body = answer
    run.latency_ms.append(ms)
    run.status[status] = run.status.get(status, 0) + 1
    state = headers.get("x-tile-cache")
    if state:
        run.cache[state] = run.cache.get(state, 0) + 1
    kind = headers.get("content-type", "").split(";")[0]
    if status == 204 or (status == 200 and not body):
        run.empty[key] = True
    elif status == 200 and kind == MVT:
        run.empty[key] = False
        run.bytes += len(body)
    else:
        run.errors.append(f"{req.path}: {status} {body[:160]!r}")


async def fetch_pass(
    base: str,
    plan: list[list[Request]],
    concurrency: int,
    run: Pass,
    pid: int | None = None,
    kind: str = "raw",
) -> Pass:
    """`concurrency` clients over keep-alive connections, each taking the next request."""
    work: Iterator[tuple[int, int, Request]] = (
        (i, j, r) for i, reqs in enumerate(plan) for j, r in enumerate(reqs)
    )
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: RawClient | HttpxClient) -> None:
        for i, j, req in work:  # one generator shared by all: each item goes to one client
            sent = time.perf_counter()
            try:
                answer = await client.get(req)
            except (httpx.HTTPError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
                run.errors.append(f"{req.path}: {type(exc).__name__}")
                await client.close()
                continue
            record(run, (i, j), req, answer, (time.perf_counter() - sent) * 1000)

    async with httpx.AsyncClient(
        base_url=base, headers=HEADERS, timeout=300, limits=limits
    ) as shared:
        clients: list[RawClient | HttpxClient] = [
            HttpxClient(shared) if kind == "httpx" else RawClient(base) for _ in range(concurrency)
        ]
        cpu, server_cpu = time.process_time(), process_cpu_s(pid)
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        run.wall_s = time.perf_counter() - started
        run.client_cpu_s = time.process_time() - cpu
        run.server_cpu_s = process_cpu_s(pid) - server_cpu
        for c in clients:
            await c.close()
    run.tiles = len(plan)
    run.requests = sum(len(r) for r in plan)
    return run


def one_pass(
    servers: dict[str, ServerProcess],
    peer: str,
    part: Part,
    tiles: list[Tile],
    c: int,
    kind: str = "raw",
) -> Pass:
    server = "tipg" if peer == PEER else "citytwin"
    plan = part.plan(server, tiles)
    run = Pass(peer, part.label, c)
    return asyncio.run(fetch_pass(servers[peer].base, plan, c, run, servers[peer].pid, kind))


# --- same features --------------------------------------------------------------------------------
def decode(data: bytes) -> dict[str, list[dict[str, Any]]]:
    import mapbox_vector_tile

    if not data:
        return {}
    return {name: layer["features"] for name, layer in mapbox_vector_tile.decode(data).items()}


def where_in_tile(geometry: dict[str, Any], extent: int) -> str:
    """inside / edge (within EDGE units of the tile's border) / buffer (outside the tile)."""
    from shapely.geometry import box, shape

    geom = shape(geometry)
    if not geom.is_valid:
        geom = geom.buffer(0) if geom.area else geom
    if geom.intersects(box(EDGE, EDGE, extent - EDGE, extent - EDGE)):
        return "inside"
    if geom.intersects(box(-EDGE, -EDGE, extent + EDGE, extent + EDGE)):
        return "edge"
    return "buffer"


def compare_layer(
    spec: LayerSpec, mode: str, ours: list[dict], theirs: list[dict], extent: int
) -> dict[str, Any]:
    """Features of one layer in one tile: citytwin's against tipg's, inside the tile."""
    peer = {int(f["properties"]["fid"]): f for f in theirs}
    peer_inside = {k for k, f in peer.items() if where_in_tile(f["geometry"], extent) == "inside"}
    peer_edge = {k for k, f in peer.items() if where_in_tile(f["geometry"], extent) == "edge"}
    out: dict[str, Any] = {"layer": spec.name, "mode": mode, "tipg": len(peer)}
    if mode == "cells":
        # Each cell lies in one tile and sits at the mean of its points, so the cells inside
        # the tile count the points inside it; points and cells on the border may go either way.
        where = [
            (where_in_tile(f["geometry"], extent), int(f["properties"]["count"])) for f in ours
        ]
        inside = sum(n for w, n in where if w == "inside")
        edge = sum(n for w, n in where if w == "edge")
        lo, hi = len(peer_inside), len(peer_inside) + len(peer_edge)
        out.update(
            {
                "citytwin_cells": len(ours),
                "citytwin_points_inside": inside,
                "citytwin_points_edge": edge,
                "tipg_inside": lo,
                "tipg_edge": hi - lo,
            }
        )
        out["same"] = inside <= hi and lo <= inside + edge
        return out
    mine = {int(f["id"]): f for f in ours}
    mine_inside = {k for k, f in mine.items() if where_in_tile(f["geometry"], extent) == "inside"}
    only_ours = sorted(mine_inside - set(peer))
    only_peer = sorted(peer_inside - set(mine))
    out.update(
        {
            "citytwin": len(mine),
            "citytwin_inside": len(mine_inside),
            "tipg_inside": len(peer_inside),
            "only_citytwin_inside": only_ours[:10],
            "only_tipg_inside": only_peer[:10],
            "same": not only_ours and not only_peer,
        }
    )
    return out


def compare_features(
    servers: dict[str, ServerProcess], part: Part, tiles: list[Tile], extent: int
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with httpx.Client(headers=HEADERS, timeout=300) as client:
        for z, x, y in tiles:
            (req,) = part.ours(z, x, y)
            ours = decode(client.get(servers[OURS_OFF].base + req.path).content)
            for spec in part.layers:
                mode = spec.mode_at(z)
                if mode is None:
                    continue
                peer_req = spec.tipg_request(z, x, y)
                got = client.get(servers[PEER].base + peer_req.path, params=peer_req.params)
                theirs = next(iter(decode(got.content).values()), [])
                name = spec.cells_name if mode == "cells" else spec.name
                row = compare_layer(spec, mode, ours.get(name, []), theirs, extent)
                rows.append({"tile": f"{z}/{x}/{y}", **row})
    bad = [r for r in rows if not r["same"]]
    out = {"tiles": len(tiles), "layer_tiles": len(rows), "differ": bad[:20], "ok": not bad}
    return {**out, "rows": rows}


def check_empties(ours: Pass, peer: Pass, tiles: list[Tile]) -> list[str]:
    """Tiles citytwin left empty while tipg drew something (the other way is fine: citytwin
    also draws the buffer around the tile)."""
    peer_drew = {i for (i, _), empty in peer.empty.items() if not empty}
    return [
        f"{z}/{x}/{y}"
        for i, (z, x, y) in enumerate(tiles)
        if ours.empty.get((i, 0)) and i in peer_drew
    ]


# --- timing ---------------------------------------------------------------------------------------
def rotations(rounds: int) -> Iterator[tuple[int, tuple[str, ...]]]:
    for r in range(rounds):
        k = r % len(PEERS)
        yield r, PEERS[k:] + PEERS[:k]


def measure(
    servers: dict[str, ServerProcess],
    part: Part,
    tiles: list[Tile],
    c: int,
    rounds: int,
    kind: str,
) -> list[Pass]:
    passes: list[Pass] = []
    for r, order in rotations(rounds):
        line = []
        for peer in order:
            with console.status(f"{part.label}: round {r + 1}/{rounds}, {peer}..."):
                run = one_pass(servers, peer, part, tiles, c, kind)
            passes.append(run)
            line.append(f"{peer} {run.rate:7.1f}")
            for err in run.errors[:3]:
                console.print(f"    [red]{err}[/]")
        console.print(f"  {part.label} round {r + 1}: " + ", ".join(line) + " tiles/s")
    return passes


def median_pass(passes: list[Pass], peer: str, part: str) -> Pass:
    mine = sorted((p for p in passes if p.peer == peer and p.part == part), key=lambda p: p.rate)
    return mine[len(mine) // 2]


# --- where the time goes (the layer, in process) --------------------------------------------------
def strata(tiles: list[Tile], per_zoom: int, seed: int) -> list[Tile]:
    rng = np.random.default_rng(seed)
    out: list[Tile] = []
    for z in sorted({t[0] for t in tiles}):
        mine = [t for t in tiles if t[0] == z]
        out += [mine[i] for i in sorted(rng.choice(len(mine), min(per_zoom, len(mine)), False))]
    return out


async def timed(call: Callable[[], Awaitable[Any]], reps: int) -> float:
    """One untimed call (plans, caches), then the median of `reps` timed calls, in ms."""
    await call()
    runs = []
    for _ in range(reps):
        started = time.perf_counter()
        await call()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


# The work of a point tile, piece by piece (cumulative): the rows in the buffered tile (scan), their
# transformation to Web Mercator, ST_AsMVTGeom, and ST_AsMVT with the feature id only. The full
# statement adds the attributes.
STAGES = {  # each over a subquery shaped as the statement's (LIMIT included), so plans alike
    "scan": "SELECT count(*) FROM ({rows}) AS m",
    "+ ST_Transform": "SELECT count(*) FROM ({rows}) AS m WHERE m.geom IS NOT NULL",
    "+ ST_AsMVTGeom": "SELECT count(*) FROM ({mvtrows}) AS m WHERE m.geom IS NOT NULL",
    "+ ST_AsMVT (fid only)": "SELECT length(ST_AsMVT(m, 'l', %(extent)s, 'geom', 'fid')) "
    "FROM ({mvtrows}) AS m WHERE m.geom IS NOT NULL",
}
ROWS = "SELECT t.fid, {geom} AS geom FROM {table} AS t, b WHERE t.geom && b.storage LIMIT {limit}"
BOUNDS = (
    "WITH b AS (SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS mercator, "
    "ST_Transform(ST_Intersection(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => {margin}), "
    "ST_TileEnvelope(0, 0, 0)), 4326) AS storage) "
)


def statement_pieces(layer: Any, ts: Any) -> dict[str, Any]:
    """STAGES over the layer's table, then its whole tile statement, as citytwin builds it."""
    from psycopg import sql

    from tiles.mvt import LayerTiles

    def rows(geom: str) -> sql.Composed:
        return sql.SQL(ROWS).format(
            geom=sql.SQL(geom).format(sql.Literal(ts.tile_buffer)),
            table=sql.Identifier(layer.schema_name, layer.table_name),
            limit=sql.Literal(ts.tile_max_features),
        )

    scan = rows("t.geom")
    transformed = rows("ST_Transform(t.geom, 3857)")
    mvt = rows("ST_AsMVTGeom(ST_Transform(t.geom, 3857), b.mercator, %(extent)s, {}, true)")
    pieces: dict[str, Any] = {
        label: sql.SQL(BOUNDS + text).format(
            margin=sql.Literal(ts.tile_buffer / ts.tile_extent),
            rows=transformed if label == "+ ST_Transform" else scan,
            mvtrows=mvt,
        )
        for label, text in STAGES.items()
    }
    pieces["full statement"] = LayerTiles.build(layer, ts).query
    return pieces


class _Recorder:
    """Stands in for tipg's asyncpg connection to keep the statement it would run."""

    def __init__(self) -> None:
        self.sql = ""
        self.params: tuple[Any, ...] = ()

    async def fetchval(self, query: str, *params: Any) -> bytes:
        self.sql, self.params = query, params
        return b""


def first_per_zoom(sample: list[Tile]) -> list[Tile]:
    seen: dict[int, Tile] = {}
    for t in sample:
        seen.setdefault(t[0], t)
    return list(seen.values())


def plan_summary(tile: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Planning and execution time, rows, and the plan's node types (first few)."""
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        label = node.get("Node Type", "?")
        if node.get("Index Name"):
            label += f" using {node['Index Name']}"
        nodes.append(label)
        for child in node.get("Plans", []):
            walk(child)

    walk(doc.get("Plan", {}))
    return {
        "tile": tile,
        "planning_ms": round(float(doc.get("Planning Time", 0.0)), 3),
        "execution_ms": round(float(doc.get("Execution Time", 0.0)), 3),
        "rows_scanned": _scan_rows(doc.get("Plan", {})),
        "nodes": nodes[:12],
    }


def _scan_rows(node: dict[str, Any]) -> int:
    rows = int(node.get("Actual Rows", 0)) if "Scan" in node.get("Node Type", "") else 0
    return rows + sum(_scan_rows(child) for child in node.get("Plans", []))


async def where_time_goes_async(
    servers: dict[str, ServerProcess],
    url: str,
    part: Part,
    sample: list[Tile],
    reps: int,
    pgoptions: str = "",
) -> dict[str, Any]:
    """Per tile of the sample, taking turns so that all four see the same machine: citytwin
    and tipg over HTTP (one client), citytwin's tile statement on a connection of its own
    (psycopg, as the server's pool runs it), and tipg's Collection.get_tile (its SQL built in
    Python, run through asyncpg) on a connection initialised as tipg's pool does. Then EXPLAIN
    ANALYZE of both statements and citytwin's statement piece by piece, one tile per zoom."""
    spec = part.layers[0]
    env = tipg_env(url, {}, [spec.tipg_id])
    os.environ.update({k: v for k, v in env.items() if k.startswith("TIPG_")})
    import asyncpg
    import morecantile
    from psycopg import sql
    from tipg.collections import pg_get_collection_index
    from tipg.database import connection_factory
    from tipg.settings import DatabaseSettings

    from layers.registry import list_layers_async
    from twin.settings import TileSettings

    ts = TileSettings()
    tms = morecantile.tms.get(TMS)
    schemas = json.loads(env["TIPG_DB_SCHEMAS"])
    extra = {"options": pgoptions} if pgoptions else {}
    ours_http, peer_http = RawClient(servers[OURS_OFF].base), RawClient(servers[PEER].base)
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, **extra)
    peer_conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET search_path = twin, public")
        layer = next(x for x in await list_layers_async(conn) if x.name == spec.collection)
        pieces = statement_pieces(layer, ts)
        await connection_factory(schemas, "pg_temp")(peer_conn)
        settings = DatabaseSettings(schemas=schemas, tables=[spec.tipg_id], functions=[])
        catalog = await pg_get_collection_index(peer_conn, settings)
        collection = next(c for c in catalog if c.id == spec.tipg_id)

        async def http(client: RawClient, req: Request) -> None:
            status, _, body = await client.get(req)
            if status not in (200, 204):
                raise RuntimeError(f"{req.path}: {status} {body[:120]!r}")

        def params(t: Tile) -> dict[str, int]:
            return {"z": t[0], "x": t[1], "y": t[2], "extent": ts.tile_extent}

        calls: dict[str, Callable[[Tile], Awaitable[Any]]] = {
            "citytwin_http_ms": lambda t: http(ours_http, part.ours(*t)[0]),
            "citytwin_in_process_ms": lambda t: conn.execute(pieces["full statement"], params(t)),
            "tipg_http_ms": lambda t: http(peer_http, part.theirs(*t)[0]),
            "tipg_in_process_ms": lambda t: collection.get_tile(
                peer_conn, tms=tms, tile=morecantile.Tile(t[1], t[2], t[0])
            ),
        }
        per_tile: dict[str, list[float]] = {k: [] for k in calls}
        for n, tile in enumerate(sample):
            for call in calls.values():
                await call(tile)  # untimed first: plans, caches, keep-alive
            runs: dict[str, list[float]] = {k: [] for k in calls}
            for r in range(reps):
                names = list(calls)
                k = (n + r) % len(names)
                for name in names[k:] + names[:k]:
                    started = time.perf_counter()
                    await calls[name](tile)
                    runs[name].append((time.perf_counter() - started) * 1000)
            for name, values in runs.items():
                per_tile[name].append(statistics.median(values))

        plans_ours, plans_peer, stages = [], [], []
        explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
        for tile in first_per_zoom(sample):
            label = "{}/{}/{}".format(*tile)
            cur = await conn.execute(
                sql.SQL(explain + "{}").format(pieces["full statement"]), params(tile)
            )
            row = await cur.fetchone()
            plans_ours.append(plan_summary(label, row[0][0] if row else {}))
            rec = _Recorder()
            await collection.get_tile(
                rec, tms=tms, tile=morecantile.Tile(tile[1], tile[2], tile[0])
            )
            doc = await peer_conn.fetchval(explain + rec.sql, *rec.params)
            doc = json.loads(doc) if isinstance(doc, str) else doc
            plans_peer.append(plan_summary(label, doc[0]))
            split: dict[str, Any] = {"tile": label}
            for name, query in pieces.items():
                split[name] = round(
                    await timed(lambda q=query, t=tile: conn.execute(q, params(t)), reps), 3
                )
            found = await (await conn.execute(pieces["scan"], params(tile))).fetchone()
            split["rows"] = int(found[0]) if found else 0
            stages.append(split)
    finally:
        await conn.close()
        await peer_conn.close()
        await ours_http.close()
        await peer_http.close()

    by_zoom: dict[int, dict[str, float]] = {}
    for z in sorted({t[0] for t in sample}):
        idx = [i for i, t in enumerate(sample) if t[0] == z]
        by_zoom[z] = {"tiles": len(idx)}
        for name, values in per_tile.items():
            by_zoom[z][name] = round(statistics.median(values[i] for i in idx), 3)
    return {
        "tiles": [f"{z}/{x}/{y}" for z, x, y in sample],
        "repetitions": reps,
        "by_zoom": by_zoom,
        "sum_ms": {k.removesuffix("_ms"): round(sum(v), 1) for k, v in per_tile.items()},
        "explain": {"citytwin": plans_ours, "tipg": plans_peer},
        "citytwin_statement_pieces_ms": stages,
    }


# --- report ---------------------------------------------------------------------------------------
def ratios(passes: list[Pass], part: Part) -> dict[str, float]:
    off, on, peer = (median_pass(passes, p, part.label).rate for p in PEERS)
    return {
        "uncached_over_tipg": round(off / peer, 3) if peer else float("nan"),
        "cached_over_tipg": round(on / peer, 3) if peer else float("nan"),
        "cached_over_uncached": round(on / off, 3) if off else float("nan"),
    }


def print_table(passes: list[Pass], parts: list[Part], tiles: int, c: int, rounds: int) -> None:
    table = Table(
        title=f"Vector tiles: {tiles} tiles, {c} clients, Accept-Encoding "
        f"{HEADERS['Accept-Encoding']}, median of {rounds} rounds (same run)"
    )
    for column, justify in [
        ("part", "left"), ("tipg req.\nper tile", "right"),
        ("citytwin uncached\ntiles/s", "right"), ("citytwin cached\ntiles/s", "right"),
        ("tipg\ntiles/s", "right"), ("uncached /\ntipg", "right"), ("cached /\ntipg", "right"),
        ("median ms\nuncached / cached / tipg", "right"),
    ]:  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for part in parts:
        off, on, peer = (median_pass(passes, p, part.label) for p in PEERS)
        r = ratios(passes, part)
        a = "green" if r["uncached_over_tipg"] >= TARGET_UNCACHED else "red"
        b = "green" if r["cached_over_tipg"] >= TARGET_CACHED else "red"
        table.add_row(
            part.label,
            f"{peer.requests / max(peer.tiles, 1):.2f}",
            f"{off.rate:.1f}",
            f"{on.rate:.1f}",
            f"{peer.rate:.1f}",
            f"[{a}]{r['uncached_over_tipg']:.2f}x[/]",
            f"[{b}]{r['cached_over_tipg']:.1f}x[/]",
            f"{off.median_ms:.1f} / {on.median_ms:.1f} / {peer.median_ms:.1f}",
        )
    console.print(table)
    console.print(
        f"targets: citytwin uncached >= {TARGET_UNCACHED:g}x tipg, citytwin cached >= "
        f"{TARGET_CACHED:g}x tipg (uncached). tiles/s = tiles / wall clock of a pass; a tipg "
        "tile of a map = one request per layer drawn at that zoom."
    )
    for part in parts:
        on = median_pass(passes, OURS_ON, part.label)
        if on.cache.get("miss") or not on.cache.get("hit"):
            console.print(
                f"  [yellow]{part.label}: the cached server answered X-Tile-Cache {on.cache} "
                "in its median pass: not every tile came from its cache[/]"
            )
        cpu = "; ".join(
            f"{peer} server {r.server_cpu_s / r.tiles * 1000:.2f}, client "
            f"{r.client_cpu_s / r.tiles * 1000:.2f}"
            for peer in PEERS
            if (r := median_pass(passes, peer, part.label)).tiles
        )
        share = on.client_cpu_s / on.wall_s if on.wall_s else 0.0
        console.print(
            f"  {part.label}, CPU ms per tile in the median pass (server process, not the "
            f"database): {cpu}; in the cached pass the client used {share:.0%} of a core"
        )


def print_where(where: dict[str, Any]) -> None:
    table = Table(title="Where the time goes (layer, 1 client; medians per tile, ms)")
    for column in ("zoom", "tiles", "citytwin HTTP", "citytwin SQL", "tipg HTTP",
                   "tipg get_tile", "EXPLAIN exec ms citytwin / tipg"):  # fmt: skip
        table.add_column(column, justify="right")
    ex_ours = {int(p["tile"].split("/")[0]): p for p in where["explain"]["citytwin"]}
    ex_peer = {int(p["tile"].split("/")[0]): p for p in where["explain"]["tipg"]}
    for z, row in where["by_zoom"].items():
        table.add_row(
            f"z{z}",
            str(row["tiles"]),
            f"{row['citytwin_http_ms']:.1f}",
            f"{row['citytwin_in_process_ms']:.1f}",
            f"{row['tipg_http_ms']:.1f}",
            f"{row['tipg_in_process_ms']:.1f}",
            f"{ex_ours[z]['execution_ms']:.1f} / {ex_peer[z]['execution_ms']:.1f}",
        )
    console.print(table)
    pieces = Table(title="citytwin's layer statement piece by piece (cumulative, in SQL, ms)")
    labels = ["rows", *STAGES, "full statement"]
    for column in ["tile", *labels]:
        pieces.add_column(column, justify="right")
    for split in where["citytwin_statement_pieces_ms"]:
        pieces.add_row(
            split["tile"], f"{split['rows']:,}", *(f"{split[k]:.1f}" for k in labels[1:])
        )
    console.print(pieces)
    s = where["sum_ms"]
    console.print(
        f"  summed over the sample: citytwin {s['citytwin_http']:.0f} ms over HTTP, "
        f"{s['citytwin_in_process']:.0f} ms in its statement ({_share(s, 'citytwin')} of it); "
        f"tipg {s['tipg_http']:.0f} ms over HTTP, {s['tipg_in_process']:.0f} ms in get_tile "
        f"({_share(s, 'tipg')})"
    )


def _share(s: dict[str, float], who: str) -> str:
    http = s[f"{who}_http"]
    return f"{s[f'{who}_in_process'] / http:.0%}" if http else "n/a"


def write_chart(passes: list[Pass], parts: list[Part], where: dict[str, Any] | None) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2 if where else 1, figsize=(11 if where else 6, 4), dpi=120)
    axes = np.atleast_1d(axes)
    ax = axes[0]
    x = np.arange(len(parts))
    for offset, peer in zip((-0.27, 0.0, 0.27), PEERS, strict=True):
        rates = [median_pass(passes, peer, p.label).rate for p in parts]
        ax.bar(x + offset, rates, 0.27, label=peer)
    ax.set_yscale("log")
    top = max((median_pass(passes, peer, p.label).rate for p in parts for peer in PEERS), default=1)
    ax.set_ylim(top=top * 6)  # room for the legend above the bars
    ax.set_xticks(x, [p.label for p in parts], fontsize=8)
    ax.set_ylabel("tiles/s (median round, log scale)")
    ax.set_title("throughput")
    ax.legend(fontsize=7, loc="upper left", ncols=3)
    if where:
        ax = axes[1]
        zooms = list(where["by_zoom"])
        for key, label, style in [
            ("citytwin_http_ms", "citytwin HTTP", "-o"),
            ("citytwin_in_process_ms", "citytwin SQL", "--o"),
            ("tipg_http_ms", "tipg HTTP", "-s"),
            ("tipg_in_process_ms", "tipg get_tile", "--s"),
        ]:
            ax.plot(zooms, [where["by_zoom"][z][key] for z in zooms], style, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("zoom")
        ax.set_ylabel("ms per tile (median, 1 client)")
        ax.set_title("where the time goes (layer)")
        ax.legend(fontsize=7)
    return save_figure(plt, fig, "tiles.png")


def versions(url: str) -> dict[str, str]:
    dists = ("tipg", "fastapi", "starlette", "uvicorn", "psycopg", "asyncpg", "httpx",
             "mapbox-vector-tile")  # fmt: skip
    out = package_versions(dists)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_setting('server_version'), postgis_lib_version()")
        out["postgresql"], out["postgis"] = (str(v) for v in row.fetchone() or ("?", "?"))
    out["machine"] = machine()
    return out


# --- entry point ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="sample city scale (10)")
    parser.add_argument("--city-seed", type=int, default=42, help="sample city seed (42)")
    parser.add_argument("--layer", default="components", help="the single layer (components)")
    parser.add_argument(
        "--maps",
        default="city-management,pipelines",
        help="maps of GET /maps to time: names a,b, all or none (city-management,pipelines)",
    )
    parser.add_argument("--zooms", default="12-18", help="zoom levels, e.g. 12-18 or 14,16")
    parser.add_argument("--per-zoom", type=int, default=80, help="tiles sampled per zoom (80)")
    parser.add_argument("--seed", type=int, default=20241207, help="tile sample seed")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per server (5)")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator of the timed passes: raw asyncio HTTP/1.1 (default) or httpx",
    )
    parser.add_argument("--check", type=int, default=4, help="tiles per zoom compared (4)")
    parser.add_argument("--inprocess", type=int, default=4, help="tiles per zoom timed in process")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per in-process tile")
    parser.add_argument(
        "--accept-encoding",
        choices=("gzip", "identity"),
        default="gzip",
        help="what every request accepts: gzip (as browsers; both servers compress) or identity",
    )
    parser.add_argument("--cache-mb", type=int, default=None, help="TWIN_TILE_CACHE_MAX_MB")
    parser.add_argument(
        "--citytwin-pgoptions",
        default="",
        help="PGOPTIONS for citytwin's servers only, for experiments, e.g. "
        "'-c max_parallel_workers_per_gather=0' (default: none)",
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the scratch PostGIS up")
    args = parser.parse_args(argv)
    args.zoom_list = parse_zooms(args.zooms)
    if min(args.per_zoom, args.concurrency, args.rounds, args.reps) < 1:
        parser.error("--per-zoom, --concurrency, --rounds and --reps must be positive")
    return args


def layer_part(name: str, layers: dict[str, dict[str, Any]]) -> Part:
    if name not in layers:
        raise SystemExit(f"no layer {name!r} in the scratch database ({', '.join(sorted(layers))})")
    info = layers[name]
    return Part("layer", name, [LayerSpec(name, name, f"{info['schema']}.{info['table']}")])


def run_checks(
    servers: dict[str, ServerProcess], parts: list[Part], tiles: list[Tile], args: Any
) -> tuple[dict[str, Any], list[Pass]]:
    """Every tile from every server once (this warms the cache), then the features."""
    from twin.settings import TileSettings

    extent = TileSettings().tile_extent
    checks: dict[str, Any] = {}
    warm: list[Pass] = []
    sample = strata(tiles, args.check, args.seed + 1)
    for part in parts:
        with console.status(f"{part.label}: every tile from every server (untimed)..."):
            first = {p: one_pass(servers, p, part, tiles, args.concurrency, "httpx") for p in PEERS}
        warm += first.values()
        failed = {p: r.errors[:5] for p, r in first.items() if r.errors}
        empty_wrong = check_empties(first[OURS_OFF], first[PEER], tiles)
        with console.status(f"{part.label}: comparing features on {len(sample)} tiles..."):
            same = compare_features(servers, part, sample, extent)
        checks[part.label] = {
            "status": {p: {str(k): v for k, v in r.status.items()} for p, r in first.items()},
            "errors": failed,
            "citytwin_empty_tipg_not": empty_wrong[:20],
            "bytes_per_pass": {p: r.bytes for p, r in first.items()},
            "features": same,
        }
        ok = not failed and not empty_wrong and same["ok"]
        colour = "green" if ok else "red"
        statuses = "; ".join(
            f"{p}: " + ", ".join(f"{k}×{v}" for k, v in sorted(r.status.items()))
            for p, r in first.items()
        )
        console.print(
            f"  {part.label}: [{colour}]{'all answered' if not failed else 'ERRORS'}[/] "
            f"({statuses}); features compared on {same['layer_tiles']} layer-tiles: "
            f"[{colour}]{'same' if same['ok'] else str(len(same['differ'])) + ' differ'}[/]"
            + f"; {first[OURS_OFF].bytes / 1e6:.1f} MB of citytwin tiles per pass"
            + (f"; missing for tipg: {', '.join(part.missing)}" if part.missing else "")
        )
        for bad in same["differ"][:3]:
            console.print(f"    [red]{bad}[/]", markup=False)
        for p, errs in failed.items():
            console.print(f"    [red]{p}: {errs[:2]}[/]", markup=False)
    return checks, warm


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - the run, step by step
    args = parse_args(argv)
    HEADERS["Accept-Encoding"] = args.accept_encoding
    try:
        import mapbox_vector_tile  # noqa: F401
        import tipg  # noqa: F401
    except ImportError as exc:
        sys.exit(f"{exc.name} is not installed: make bench-tiles installs the pinned tipg")
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folder = ensure_city(args.scale, args.city_seed)
    db = ScratchDatabase(OUT / f"tiles-db-scale{args.scale:g}")
    servers: dict[str, ServerProcess] = {}
    report: dict[str, Any] = {"arguments": {k: v for k, v in vars(args).items()}}
    passes: list[Pass] = []
    where: dict[str, Any] | None = None
    try:
        url = start_scratch(db)
        load_demo_city(db, folder)
        layers = published(url)
        single = layer_part(args.layer, layers)
        tables = [f"{v['schema']}.{v['table']}" for v in layers.values()]
        with console.status("starting citytwin (cache off, cache on) and tipg..."):
            servers = start_servers(db, url, tables, args.cache_mb, args.citytwin_pgoptions)
        console.print(
            "servers: "
            + "; ".join(f"{name} on {s.base} (pid {s.pid})" for name, s in servers.items())
        )
        parts = [single]
        if args.maps != "none":
            wanted = None if args.maps == "all" else args.maps.split(",")
            parts += discover_maps(servers[OURS_OFF].base, wanted, layers)
        for part in parts:
            console.print(
                f"  {part.label}: "
                + ", ".join(
                    f"{s.name} ({s.tipg_id}"
                    + (f", z{s.minzoom}+" if s.minzoom else "")
                    + (f", cells below z{s.aggregate_below}" if s.aggregate_below else "")
                    + (f", {s.filter}" if s.filter else "")
                    + ")"
                    for s in part.layers
                )
            )
        bbox = list(layers[args.layer]["bbox"])
        by_zoom = tile_list(bbox, args.zoom_list, args.per_zoom, args.seed)
        tiles = [t for z in args.zoom_list for t in by_zoom[z]]
        console.print(
            f"tiles: {len(tiles)} over {args.layer}'s extent "
            f"({', '.join(f'z{z} {len(v)}' for z, v in by_zoom.items())}; at most "
            f"{args.per_zoom} per zoom, seed {args.seed}), the same list for every server"
        )
        checks, warm = run_checks(servers, parts, tiles, args)
        for part in parts:
            passes += measure(servers, part, tiles, args.concurrency, args.rounds, args.client)
        reference = {(w.peer, w.part): w.status for w in warm}
        for run in passes:  # the timed client must have seen what the checked pass saw
            if run.status != reference[(run.peer, run.part)]:
                run.errors.append(
                    f"status counts {run.status} differ from the checked pass's "
                    f"{reference[(run.peer, run.part)]}"
                )
        with console.status("where the time goes: HTTP against in process, EXPLAIN ANALYZE..."):
            sample = strata(tiles, args.inprocess, args.seed + 2)
            try:
                where = asyncio.run(
                    where_time_goes_async(
                        servers, url, single, sample, args.reps, args.citytwin_pgoptions
                    )
                )
            except Exception as exc:  # noqa: BLE001 - the throughput figures stand without it
                console.print(f"[red]where the time goes: failed ({type(exc).__name__}: {exc})[/]")
        report["versions"] = versions(url)
    finally:
        for server in servers.values():
            server.stop()
        if not args.keep_db:
            db.stop()

    print_table(passes, parts, len(tiles), args.concurrency, args.rounds)
    if where:
        print_where(where)
    report.update(
        {
            "tiles_per_zoom": {z: len(v) for z, v in by_zoom.items()},
            "tiles": [f"{z}/{x}/{y}" for z, x, y in tiles],
            "parts": [
                {"part": p.label, "layers": [vars(s) for s in p.layers], "missing": p.missing}
                for p in parts
            ],
            "checks": checks,
            "warm_passes": [p.summary() for p in warm],
            "passes": [p.summary() for p in passes],
            "medians": {
                p.label: {peer: median_pass(passes, peer, p.label).summary() for peer in PEERS}
                for p in parts
            },
            "ratios": {p.label: ratios(passes, p) for p in parts},
            "where_the_time_goes": where,
        }
    )
    for item in report["medians"].values():
        for summary in item.values():
            summary.pop("errors", None)
    print_written(write_json("tiles.json", report), write_chart(passes, parts, where))
    console.print(f"total {time.perf_counter() - started:.0f} s")
    bad = [
        label
        for label, c in checks.items()
        if c["errors"] or c["citytwin_empty_tipg_not"] or not c["features"]["ok"]
    ]
    errors = sum(len(p.errors) for p in passes)
    if bad or errors:
        console.print(
            f"[red]checks failed on {', '.join(bad) or 'none'}; {errors} failed requests[/]"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
