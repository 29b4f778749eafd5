"""A bounded soak of `twin serve`: a fixed number of mixed requests, the server's memory watched.

The sample city is loaded into a scratch PostGIS and served by `twin serve` on a free loopback
port. A fixed, seeded list of requests (default 20,000) goes to it from a fixed number of
concurrent clients (default 8) over keep-alive connections:

- vector tiles of single layers and of the thematic maps (zoom 13-18, over the city),
- items of a layer within a small bbox,
- `POST /grid/locate` with 100 points,
- `POST /query/within` with a small polygon.

It reports the count of each status per kind (any 5xx, or a request that got no answer, fails
the run), latency median and p95 per kind, and the server's resident memory sampled twice a
second: after a warm-up (the first 20 % of the requests) the median RSS of the last third of
the run is compared with that of the first third, and the verdict is "flat" when it grew by at
most 10 %. The tile cache is kept small (--tile-cache-mb, default 16) so that it is full within
the warm-up: what grows after it is not the cache filling up. Results go to bench/out/soak.json
and bench/out/soak.png.

    .venv/bin/python bench/soak.py [--requests 20000] [--concurrency 8] [--scale 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from common import (  # bench/common.py, beside this script
    OUT,
    ScratchDatabase,
    ServerProcess,
    console,
    ensure_city,
    load_demo_city,
    p95,
    print_written,
    pyplot,
    save_figure,
    start_scratch,
    twin_serve,
    write_json,
)
from rich.table import Table

KINDS = ("layer tile", "map tile", "items bbox", "locate", "query within")
MIX = (0.35, 0.20, 0.20, 0.15, 0.10)  # share of each kind in the request list
WARMUP = 0.20  # share of the requests before the memory is judged
FLAT = 0.10  # the last third's median RSS may exceed the first third's by this much
SAMPLE_S = 0.5


@dataclass(frozen=True)
class Call:
    kind: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = None


@dataclass
class Results:
    status: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)  # 5xx and requests with no answer
    done: int = 0


# --- the requests -------------------------------------------------------------------------------
def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def plan(n: int, seed: int, bbox: list[float], layers: list[str], maps: list[str]) -> list[Call]:
    """The whole request list, drawn once from the seed: the same list on every run."""
    rng = np.random.default_rng(seed)
    west, south, east, north = bbox
    kinds = rng.choice(len(KINDS), size=n, p=MIX)

    def point() -> tuple[float, float]:
        return float(rng.uniform(west, east)), float(rng.uniform(south, north))

    calls: list[Call] = []
    for k in kinds:
        kind = KINDS[k]
        lon, lat = point()
        if kind in ("layer tile", "map tile"):
            z = int(rng.integers(13, 19))
            x, y = tile_of(lon, lat, z)
            what = (
                f"collections/{rng.choice(layers)}"
                if kind == "layer tile"
                else f"maps/{rng.choice(maps)}"
            )
            calls.append(Call(kind, "GET", f"/{what}/tiles/WebMercatorQuad/{z}/{x}/{y}"))
        elif kind == "items bbox":
            half = float(rng.uniform(0.001, 0.004))  # 200-800 m boxes
            box = f"{lon - half:.6f},{lat - half:.6f},{lon + half:.6f},{lat + half:.6f}"
            layer = rng.choice(layers)
            calls.append(Call(kind, "GET", f"/collections/{layer}/items?bbox={box}&limit=100"))
        elif kind == "locate":
            xs = rng.uniform(west, east, 100)
            ys = rng.uniform(south, north, 100)
            rows = "".join(f"{a:.6f},{b:.6f}\n" for a, b in zip(xs, ys, strict=True))
            calls.append(
                Call(kind, "POST", "/grid/locate", f"lon,lat\n{rows}".encode(), "text/csv")
            )
        else:
            d = float(rng.uniform(0.0005, 0.002))  # 100-400 m squares
            ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
            doc = {"geometry": {"type": "Polygon", "coordinates": [ring]}}
            calls.append(
                Call(kind, "POST", "/query/within", json.dumps(doc).encode(), "application/json")
            )
    return calls


# --- running them -------------------------------------------------------------------------------
async def soak(base: str, calls: list[Call], concurrency: int, results: Results) -> float:
    work = iter(calls)  # one iterator shared by all clients: each call goes to one of them
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for call in work:
            headers = {"Content-Type": call.content_type} if call.content_type else None
            sent = time.perf_counter()
            try:
                response = await client.request(
                    call.method, call.path, content=call.body, headers=headers
                )
                await response.aread()
            except httpx.HTTPError as exc:
                results.failures.append(f"{call.method} {call.path}: {type(exc).__name__}")
                results.status[call.kind][0] += 1
                results.done += 1
                continue
            results.latency_ms[call.kind].append((time.perf_counter() - sent) * 1000)
            results.status[call.kind][response.status_code] += 1
            if response.status_code >= 500:
                results.failures.append(
                    f"{call.method} {call.path}: {response.status_code} {response.text[:200]!r}"
                )
            results.done += 1

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        return time.perf_counter() - started


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process: psutil when installed, else /proc/PID/status."""
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        pass
    except Exception:  # the process is gone
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class MemoryWatch(threading.Thread):
    """Samples (seconds, requests done, RSS MiB) every SAMPLE_S until stopped."""

    def __init__(self, pid: int, results: Results) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.results = results
        self.samples: list[tuple[float, int, float]] = []
        self.halt = threading.Event()
        self.started_at = time.perf_counter()

    def run(self) -> None:
        while not self.halt.is_set():
            rss = rss_mib(self.pid)
            if rss is not None:
                elapsed = time.perf_counter() - self.started_at
                self.samples.append((elapsed, self.results.done, rss))
            self.halt.wait(SAMPLE_S)


def verdict(samples: list[tuple[float, int, float]], total: int) -> dict[str, Any]:
    """Flat when, after the warm-up, the last third's median RSS is within FLAT of the
    first third's."""
    judged = [s for s in samples if s[1] >= WARMUP * total]
    if len(judged) < 6:
        return {"verdict": "too short to judge", "samples": len(judged)}
    third = len(judged) // 3
    first = statistics.median(s[2] for s in judged[:third])
    last = statistics.median(s[2] for s in judged[-third:])
    growth = last / first - 1
    return {
        "verdict": "flat" if growth <= FLAT else "growing",
        "first_third_median_mib": round(first, 1),
        "last_third_median_mib": round(last, 1),
        "growth": round(growth, 4),
        "allowed_growth": FLAT,
        "warmup_requests": int(WARMUP * total),
        "samples_judged": len(judged),
        "peak_mib": round(max(s[2] for s in samples), 1),
    }


# --- report -------------------------------------------------------------------------------------
def summary(results: Results) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        ms = results.latency_ms.get(kind, [])
        out[kind] = {
            "requests": sum(results.status[kind].values()),
            "status": {str(k): v for k, v in sorted(results.status[kind].items())},
            "latency_ms_median": round(statistics.median(ms), 2) if ms else None,
            "latency_ms_p95": round(p95(ms), 2) if ms else None,
        }
    return out


def print_report(kinds: dict[str, Any], memory: dict[str, Any], wall_s: float, n: int) -> None:
    table = Table(title=f"soak: {n:,} requests in {wall_s:.1f} s ({n / wall_s:,.0f} req/s)")
    for col in ("kind", "requests", "statuses", "median ms", "p95 ms"):
        table.add_column(col, justify="left" if col in ("kind", "statuses") else "right")
    for kind, row in kinds.items():
        table.add_row(
            kind,
            f"{row['requests']:,}",
            ", ".join(f"{k}: {v:,}" for k, v in row["status"].items()),
            f"{row['latency_ms_median']:.1f}" if row["latency_ms_median"] is not None else "-",
            f"{row['latency_ms_p95']:.1f}" if row["latency_ms_p95"] is not None else "-",
        )
    console.print(table)
    if "first_third_median_mib" in memory:
        console.print(
            f"server RSS after warm-up: {memory['first_third_median_mib']} MiB (first third) -> "
            f"{memory['last_third_median_mib']} MiB (last third), {memory['growth']:+.1%}, "
            f"peak {memory['peak_mib']} MiB: {memory['verdict']}"
        )
    else:
        console.print(f"server RSS: {memory['verdict']}")


def plot(samples: list[tuple[float, int, float]], kinds: dict[str, Any], total: int) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=[3, 2])
    t = [s[0] for s in samples]
    left.plot(t, [s[2] for s in samples], color="tab:blue", lw=1.2, label="server RSS (MiB)")
    warm = next((s[0] for s in samples if s[1] >= WARMUP * total), None)
    if warm is not None:
        left.axvline(warm, color="grey", ls="--", lw=0.8, label="end of warm-up")
    left.set_xlabel("seconds")
    left.set_ylabel("RSS (MiB)")
    left.set_ylim(bottom=0)
    twin_axis = left.twinx()
    twin_axis.plot(t, [s[1] for s in samples], color="tab:orange", lw=0.8, alpha=0.6)
    twin_axis.set_ylabel("requests done", color="tab:orange")
    left.legend(loc="lower right")
    left.set_title("twin serve memory during the soak")
    names = list(kinds)
    pos = np.arange(len(names))
    med = [kinds[k]["latency_ms_median"] or 0 for k in names]
    p95 = [kinds[k]["latency_ms_p95"] or 0 for k in names]
    right.bar(pos - 0.2, med, 0.4, label="median")
    right.bar(pos + 0.2, p95, 0.4, label="p95")
    right.set_xticks(pos, names, rotation=20)
    right.set_ylabel("latency (ms)")
    right.set_title("latency per kind")
    right.legend()
    return save_figure(plt, fig, "soak.png", dpi=110)


# --- the run ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--scale", type=float, default=1.0, help="sample city scale")
    p.add_argument("--city-seed", type=int, default=42)
    p.add_argument("--seed", type=int, default=20250101, help="seed of the request list")
    p.add_argument("--tile-cache-mb", type=int, default=16, help="the server's tile cache")
    return p.parse_args(argv)


def discover(base: str) -> tuple[list[float], list[str], list[str]]:
    """The city's extent (the unit grid's), its vector layers and its maps."""
    with httpx.Client(base_url=base, timeout=60) as client:
        collections = client.get("/collections").json()["collections"]
        maps = [m["id"] for m in client.get("/maps").json()["maps"]]
    by_id = {c["id"]: c for c in collections}
    bbox = by_id["grid_unit"]["extent"]["spatial"]["bbox"][0]
    layers = sorted(c["id"] for c in collections if c.get("itemType", "feature") == "feature")
    return bbox, layers, maps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    folder = ensure_city(args.scale, args.city_seed)
    db = ScratchDatabase(OUT / f"soak-db-scale{args.scale:g}")
    server: ServerProcess | None = None
    try:
        url = start_scratch(db)
        load_demo_city(db, folder)
        env = {
            **db.env,
            "TWIN_TILE_CACHE": "memory",
            "TWIN_TILE_CACHE_MAX_MB": str(args.tile_cache_mb),
            # One client address sends everything: the per-address rate limit would answer
            # 429s that say nothing about the server's health.
            "TWIN_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "0",
        }
        server = twin_serve(url, env)
        console.print(f"twin serve on {server.base} (pid {server.pid})")
        bbox, layers, maps = discover(server.base)
        calls = plan(args.requests, args.seed, bbox, layers, maps)
        console.print(
            f"{len(calls):,} requests, {args.concurrency} clients: {len(layers)} layers, "
            f"{len(maps)} maps, over {', '.join(f'{v:.4f}' for v in bbox)}"
        )
        results = Results()
        watch = MemoryWatch(server.pid, results)
        start_rss = rss_mib(server.pid)
        watch.start()
        with console.status("soaking..."):
            wall_s = asyncio.run(soak(server.base, calls, args.concurrency, results))
        watch.halt.set()
        watch.join()
    finally:
        if server is not None:
            server.stop()
        db.stop()
    kinds = summary(results)
    memory = verdict(watch.samples, len(calls))
    print_report(kinds, memory, wall_s, len(calls))
    fivexx = sum(v for k in kinds.values() for s, v in k["status"].items() if int(s) >= 500)
    unanswered = sum(k["status"].get("0", 0) for k in kinds.values())
    report = {
        "arguments": vars(args),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "wall_s": round(wall_s, 2),
        "requests_per_s": round(len(calls) / wall_s, 1),
        "kinds": kinds,
        "five_xx": fivexx,
        "unanswered": unanswered,
        "failures": results.failures[:50],
        "memory": {**memory, "at_start_mib": round(start_rss or 0, 1)},
        "rss_samples": [[round(t, 2), d, round(r, 1)] for t, d, r in watch.samples],
    }
    print_written(write_json("soak.json", report), plot(watch.samples, kinds, len(calls)))
    if fivexx or unanswered:
        console.print(f"[red]{fivexx} answers 5xx, {unanswered} unanswered[/red]")
        for line in results.failures[:10]:
            console.print(f"  {line}", markup=False)
        return 1
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
