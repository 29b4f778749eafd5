"""Burst isolation: citytwin's POST /pipelines/isolate against WNTR's valve segmentation.

Two networks, measured in one run:

- ``water``: the sample city's water network (default scale 10), loaded with its unit grid
  and components so that an isolation answer does its real per-query work (unit grids crossed,
  components on the affected nodes, the outage area);
- ``real``: WNTR's Net6 (a real distribution network, 3,829 pipes) read from the installed
  ``wntr`` package, given a valve layer by ``wntr.network.generate_valve_layer`` and imported
  with ``twin pipelines import-inp --valves``.

For each network it checks that our valve segments are WNTR's (``valve_segments``: the same
partition of the pipes, up to relabelling, and every HTTP answer's ``isolated.pipe_ids`` equal
to the burst pipe's WNTR segment) under the default rule, where water passes control valves
(PRVs, ...) as it passes any link in WNTR; on ``real`` it also checks the ``closable`` rule
against WNTR given a valve at both ends of each control valve. Then it times our
valve-segment precompute against WNTR's ``valve_segments`` and POST /pipelines/isolate end to
end over loopback (one client, a fixed random sample of pipes, after warm-up).

Everything runs in a scratch embedded PostGIS under bench/out/ and a `twin serve` on a free
loopback port, both stopped at the end. Results: the terminal, bench/out/isolation.json and,
with matplotlib, bench/out/isolation.png. Exits 1 when the segmentations differ.

    .venv/bin/python bench/isolation_bench.py [--scale 10] [--requests 200] [--valves 800]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psycopg
from common import (  # bench/common.py, beside this script
    OUT,
    REPO,
    ScratchDatabase,
    ServerProcess,
    console,
    ensure_city,
    p95,
    print_written,
    pyplot,
    save_figure,
    start_scratch,
    twin_serve,
    write_json,
)
from rich.console import JustifyMethod
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

REAL_NETWORK = "Net6"
# Net6's coordinates land here, in CGCS2000 / 3-degree Gauss-Kruger CM 117E (EPSG:4548):
# near lon 117.0, lat 31.7, east of the sample city.
REAL_CRS = "EPSG:4548"
REAL_CENTRE = (117.0, 31.7)
TARGET_MS = 100.0


@dataclass
class Result:
    """Everything measured on one network."""

    network: str
    source: str
    pipes: int  # pipes compared (the network's own pipes; no valve stubs)
    segments_in_db: int  # rows in twin.pipe_segments, stubs and valve/pump halves included
    valves: int  # operable valves bounding segments
    valve_segments: int  # distinct segments over the compared pipes
    partitions_equal: bool = False
    partition_detail: dict[str, Any] = field(default_factory=dict)
    our_build_ms: list[float] = field(default_factory=list)  # Graph(...) from fetched rows
    our_load_ms: list[float] = field(default_factory=list)  # graph.load: SQL + Graph(...)
    wntr_to_graph_ms: float = 0.0
    wntr_valve_segments_ms: list[float] = field(default_factory=list)
    graph_isolate_us: list[float] = field(default_factory=list)  # Graph.isolate in process
    inprocess_isolate_ms: list[float] = field(default_factory=list)  # analysis.isolate, no HTTP
    http_cold_ms: float = 0.0  # first request after start: the server builds its graph
    http_ms: list[float] = field(default_factory=list)
    http_bytes: list[int] = field(default_factory=list)
    isolated_pipes: list[int] = field(default_factory=list)
    cut_off_pipes: list[int] = field(default_factory=list)
    answers_checked: int = 0
    answers_wrong: list[str] = field(default_factory=list)

    @property
    def build_ms(self) -> float:
        return statistics.median(self.our_build_ms)

    @property
    def wntr_ms(self) -> float:
        return statistics.median(self.wntr_valve_segments_ms)

    @property
    def http_median(self) -> float:
        return statistics.median(self.http_ms)

    @property
    def http_p95(self) -> float:
        return p95(self.http_ms)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return (time.perf_counter() - started) * 1000, value


# --- the two networks ----------------------------------------------------------------------------
def load_city(url: str, folder: Path) -> None:
    """Unit grid, components and the water network; what is already loaded stays."""
    from components.importer import import_components
    from grid.store import import_grid_folder
    from layers.registry import find_layer
    from pipelines.importers.native import read_native
    from pipelines.store import save_network
    from twin.settings import ComponentSettings, GridSettings

    def domain_loaded(conn: psycopg.Connection, name: str) -> bool:
        layer = find_layer(conn, name)
        return layer is not None and layer.schema_name == "twin"

    def network_loaded(conn: psycopg.Connection, name: str) -> bool:
        found = conn.execute("SELECT 1 FROM twin.pipe_networks WHERE name = %s", [name])
        return found.fetchone() is not None

    with psycopg.connect(url) as conn:
        steps: list[tuple[str, Callable[[], Any], Callable[[], bool]]] = [
            (
                "unit grid (all levels)",
                lambda: import_grid_folder(conn, folder, GridSettings()),
                lambda: domain_loaded(conn, "grid_unit"),
            ),
            (
                "components",
                lambda: import_components(
                    conn, folder / "components.gpkg", ComponentSettings(), mode="replace"
                ),
                lambda: domain_loaded(conn, "components"),
            ),
            (
                "water network",
                lambda: save_network(
                    conn,
                    "water",
                    read_native(folder / "water_pipes.gpkg", folder / "water_nodes.gpkg"),
                ),
                lambda: network_loaded(conn, "water"),
            ),
        ]
        for label, load, loaded in steps:
            if loaded():
                console.print(f"  {label}: already in the scratch database")
                continue
            with console.status(f"loading {label}..."):
                ms, _ = timed(load)
                conn.commit()
            console.print(f"  {label}: loaded in {ms / 1000:.1f} s")


def real_network_file() -> Path:
    import wntr

    path = Path(wntr.__file__).parent / "library" / "networks" / f"{REAL_NETWORK}.inp"
    if not path.exists():
        raise SystemExit(f"wntr {wntr.__version__} does not ship {REAL_NETWORK}.inp")
    return path


def metres_per_unit(wn: Any) -> float:
    """Net6's coordinates are not metres: the median of pipe length / drawn distance."""
    ratios = []
    for _, pipe in wn.pipes():
        (x0, y0), (x1, y1) = pipe.start_node.coordinates, pipe.end_node.coordinates
        drawn = float(np.hypot(x1 - x0, y1 - y0))
        if drawn > 0 and not pipe.vertices:
            ratios.append(pipe.length / drawn)
    return round(float(np.median(ratios)), 1)


def placement(wn: Any, scale: float) -> str:
    """a,b,c,d,e,f putting the network's centre at REAL_CENTRE, `scale` metres per unit."""
    from pyproj import Transformer

    xy = np.array([wn.get_node(n).coordinates for n in wn.node_name_list], dtype=float)
    cx, cy = (xy.min(axis=0) + xy.max(axis=0)) / 2
    east, north = Transformer.from_crs(4326, REAL_CRS, always_xy=True).transform(*REAL_CENTRE)
    c, f = round(east - scale * cx, 3), round(north - scale * cy, 3)
    return f"{scale:g},0,{c},0,{scale:g},{f}"


def import_real(
    scratch: ScratchDatabase, path: Path, valves: int, seed: int
) -> tuple[Any, pd.DataFrame]:
    """Net6 with `valves` isolation valves (WNTR's random placement), imported as `real`."""
    import wntr

    wn = wntr.network.WaterNetworkModel(str(path))
    layer = wntr.network.generate_valve_layer(wn, "random", valves, seed=seed)
    csv = OUT / f"isolation_{REAL_NETWORK}_valves_{valves}_seed{seed}.csv"
    layer[["link", "node"]].to_csv(csv, index=False)
    scale = metres_per_unit(wn)
    affine = placement(wn, scale)
    console.print(
        f"real network: {path.name} from wntr {wntr.__version__}: {wn.num_pipes:,} pipes, "
        f"{wn.num_junctions:,} junctions, {wn.num_reservoirs} reservoir(s), {wn.num_tanks} "
        f"tanks, {wn.num_pumps} pumps, {wn.num_valves} control valves; "
        f"{len(layer):,} isolation valves (random, seed {seed}) in {csv.relative_to(REPO)}"
    )
    console.print(
        f"  placed at {scale:g} m per drawing unit (median pipe length / drawn length) around "
        f"lon {REAL_CENTRE[0]}, lat {REAL_CENTRE[1]} in {REAL_CRS}: --affine {affine}"
    )
    with console.status("twin pipelines import-inp real ..."):
        ms, _ = timed(
            lambda: scratch.twin(
                "pipelines", "import-inp", "real", str(path), "--crs", REAL_CRS,
                "--affine", affine, "--valves", str(csv),
            )
        )  # fmt: skip
    console.print(f"  imported with `twin pipelines import-inp` in {ms / 1000:.1f} s")
    return wn, layer


# --- WNTR's side ---------------------------------------------------------------------------------
NODES_SQL = """
SELECT node_id, kind, valve_state, ST_X(geom), ST_Y(geom) FROM twin.pipe_nodes
WHERE network = %s AND deleted_at IS NULL ORDER BY node_id
"""
PIPES_SQL = """
SELECT pipe_id, from_node, to_node, length_m, diameter_mm FROM twin.pipe_segments
WHERE network = %s AND deleted_at IS NULL ORDER BY pipe_id
"""


def wntr_from_database(conn: psycopg.Connection, network: str) -> tuple[Any, pd.DataFrame]:
    """A WaterNetworkModel of a stored network, and a valve layer from its valve nodes.

    Every node is a junction (sources are reservoirs); every segment is a pipe between its
    end nodes. An operable isolation valve node V (open or closed; an inoperable one bounds
    nothing) gives the pair (P, V) for every pipe P that ends at it; so does a control valve
    shut in the data, the one kind of control valve the default rule does not pass.
    """
    import wntr

    from pipelines.model import CONTROL_VALVE_KINDS, ISOLATION_VALVE_KINDS, SOURCE_KINDS

    wn = wntr.network.WaterNetworkModel()
    barriers: set[str] = set()
    for node_id, kind, state, x, y in conn.execute(NODES_SQL, [network]).fetchall():
        if kind in SOURCE_KINDS:
            wn.add_reservoir(node_id, base_head=50.0, coordinates=(x, y))
        else:
            wn.add_junction(node_id, coordinates=(x, y))
        shut_control = kind in CONTROL_VALVE_KINDS and state == "closed"
        if (kind in ISOLATION_VALVE_KINDS and state != "inoperable") or shut_control:
            barriers.add(node_id)
    pairs = []
    known = set(wn.node_name_list)
    for pipe_id, a, b, length, diameter in conn.execute(PIPES_SQL, [network]).fetchall():
        if a not in known or b not in known or a == b:
            continue  # our graph leaves such a pipe in a segment of its own; WNTR cannot hold it
        wn.add_pipe(
            pipe_id,
            a,
            b,
            length=max(float(length or 0.0), 0.01),
            diameter=float(diameter or 100.0) / 1000,
        )
        pairs += [(pipe_id, end) for end in (a, b) if end in barriers]
    return wn, pd.DataFrame(pairs, columns=["link", "node"])


def time_wntr(
    wn: Any, layer: pd.DataFrame, repeat: int, budget_s: float
) -> tuple[float, list[float], pd.Series]:
    """to_graph once, then valve_segments up to `repeat` times within `budget_s` (one at least)."""
    from wntr.metrics.topographic import valve_segments

    graph_ms, graph = timed(wn.to_graph)
    runs: list[float] = []
    links = pd.Series(dtype=int)
    spent = 0.0
    while len(runs) < repeat and (not runs or spent < budget_s * 1000):
        with console.status(f"  WNTR valve_segments, run {len(runs) + 1}..."):
            ms, (_, links, _) = timed(lambda: valve_segments(graph, layer.copy()))
        runs.append(ms)
        spent += ms
    return graph_ms, runs, links


# --- our side ------------------------------------------------------------------------------------
def time_ours(url: str, network: str, repeat: int) -> tuple[list[float], list[float], Any]:
    from pipelines import graph as pg

    with psycopg.connect(url, autocommit=True) as conn:
        loads = [timed(lambda: pg.load(conn, network))[0] for _ in range(repeat)]
        row = conn.execute(pg.NETWORK_SQL, [network]).fetchone()
        assert row is not None, f"no network {network}"
        revision, gravity = row
        nodes = conn.execute(pg.NODES_SQL, [network]).fetchall()
        segments = conn.execute(pg.SEGMENTS_SQL, [network]).fetchall()
    builds = []
    g = None
    for _ in range(repeat):
        ms, g = timed(lambda: pg.Graph(network, int(revision), bool(gravity), nodes, segments))
        builds.append(ms)
    return builds, loads, g


def compare(ours: dict[str, int], theirs: dict[str, int]) -> tuple[bool, dict[str, Any]]:
    """Same partition of the pipes, up to relabelling? With examples where it is not."""
    missing = sorted(set(theirs) - set(ours))
    frame = pd.DataFrame(
        {"ours": [ours.get(p, -1) for p in theirs], "wntr": list(theirs.values())},
        index=list(theirs),
    )
    frame = frame[frame.ours >= 0]
    per_ours = frame.groupby("ours")["wntr"].nunique()
    per_wntr = frame.groupby("wntr")["ours"].nunique()
    merged = per_ours[per_ours > 1].index  # one segment of ours spans several of WNTR's
    split = per_wntr[per_wntr > 1].index  # one of WNTR's is split across several of ours
    detail: dict[str, Any] = {
        "pipes_compared": int(len(frame)),
        "missing_in_ours": missing[:20],
        "missing_count": len(missing),
        "ours_segments": int(frame.ours.nunique()),
        "wntr_segments": int(frame.wntr.nunique()),
        "ours_merges_wntr_segments": int(len(merged)),
        "ours_splits_wntr_segments": int(len(split)),
        "example_pipes_merged": frame[frame.ours.isin(merged)].index[:10].tolist(),
        "example_pipes_split": frame[frame.wntr.isin(split)].index[:10].tolist(),
    }
    equal = not missing and not len(merged) and not len(split)
    return equal, detail


def compare_closable(url: str, network: str, wn: Any, layer: pd.DataFrame) -> bool:
    """Our segments when control valves may be closed against WNTR's with a valve at both
    ends of every control valve link (Net6's PRVs are open in the file, so none bounds
    anything under the default rule)."""
    from wntr.metrics.topographic import valve_segments

    from pipelines import graph as pg

    with psycopg.connect(url, autocommit=True) as conn:
        g = pg.load(conn, network)
    labels = g.segmentation("closable").seg_label
    ours = {p: int(labels[g.seg_index[p]]) for p in wn.pipe_name_list if p in g.seg_index}
    ends = [
        (v, end)
        for v in wn.valve_name_list
        for end in (wn.get_link(v).start_node_name, wn.get_link(v).end_node_name)
    ]
    both = pd.concat([layer, pd.DataFrame(ends, columns=["link", "node"])], ignore_index=True)
    with console.status("  WNTR valve_segments with the control valves as valves..."):
        _, links, _ = valve_segments(wn.to_graph(), both)
    equal, detail = compare(ours, {p: int(links[p]) for p in wn.pipe_name_list})
    colour = "green" if equal else "red"
    console.print(
        f"  {network}, control valves closable: partitions equal [{colour}]"
        f"{'yes' if equal else 'no'}[/] ({detail['pipes_compared']:,} pipes; ours "
        f"{detail['ours_segments']:,} segments, WNTR {detail['wntr_segments']:,})"
    )
    if not equal:
        console.print(f"  [red]difference:[/] {json.dumps(detail, ensure_ascii=False)}")
    return equal


# --- queries -------------------------------------------------------------------------------------
def body(network: str, pipe: str) -> dict[str, Any]:
    return {"network": network, "start": {"segment": pipe}}


def http_isolate(
    base: str,
    result: Result,
    pipes: list[str],
    warmup: list[str],
    segment_of: Callable[[str], set[str]],
    comparable: set[str],
) -> None:
    """One client, requests one after another; each answer checked against WNTR's segment."""
    with httpx.Client(base_url=base, timeout=120) as client:
        result.http_cold_ms, first = timed(
            lambda: client.post("/pipelines/isolate", json=body(result.network, warmup[0]))
        )
        first.raise_for_status()
        for pipe in warmup[1:]:
            client.post("/pipelines/isolate", json=body(result.network, pipe)).raise_for_status()
        with Progress(
            TextColumn("  POST /pipelines/isolate"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("isolate", total=len(pipes))
            for pipe in pipes:
                sent = time.perf_counter()
                response = client.post("/pipelines/isolate", json=body(result.network, pipe))
                ms = (time.perf_counter() - sent) * 1000
                response.raise_for_status()
                answer = response.json()
                result.http_ms.append(ms)
                result.http_bytes.append(len(response.content))
                isolated = set(answer["isolated"]["pipe_ids"])
                result.isolated_pipes.append(len(isolated))
                result.cut_off_pipes.append(len(answer["cut_off"]["pipe_ids"]))
                result.answers_checked += 1
                if isolated & comparable != segment_of(pipe):
                    result.answers_wrong.append(pipe)
                bar.advance(task)


def inprocess_isolate(url: str, network: str, pipes: list[str]) -> list[float]:
    """analysis.isolate on one async connection: graph and SQL, no HTTP and no JSON."""
    from pipelines import analysis
    from pipelines.graph import GraphCache

    async def run() -> list[float]:
        out = []
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cache = GraphCache()
            await analysis.isolate(conn, cache, {"segment": pipes[0]}, network, [], False)
            for pipe in pipes:
                started = time.perf_counter()
                await analysis.isolate(conn, cache, {"segment": pipe}, network, [], False)
                out.append((time.perf_counter() - started) * 1000)
        return out

    return asyncio.run(run())


# --- one network, start to end -------------------------------------------------------------------
def measure(
    args: argparse.Namespace,
    url: str,
    base: str,
    name: str,
    source: str,
    wn: Any,
    layer: pd.DataFrame,
    comparable_of: Callable[[Any], list[str]],
) -> Result:
    console.rule(f"[bold]{name}[/]: {source}")
    builds, loads, g = time_ours(url, name, args.repeat)
    comparable = comparable_of(wn)
    ours = {p: int(g.seg_label[g.seg_index[p]]) for p in comparable if p in g.seg_index}
    console.print(
        f"  ours: Graph(...) {statistics.median(builds):.1f} ms, graph.load (SQL + build) "
        f"{statistics.median(loads):.1f} ms (median of {args.repeat})"
    )
    graph_ms, wntr_runs, links = time_wntr(wn, layer, args.wntr_repeat, args.wntr_budget)
    console.print(
        f"  WNTR: to_graph {graph_ms:.0f} ms, valve_segments "
        f"{', '.join(f'{ms / 1000:.2f} s' for ms in wntr_runs)}"
    )
    theirs = {p: int(links[p]) for p in comparable}
    equal, detail = compare(ours, theirs)
    members: dict[int, set[str]] = {}
    for pipe, label in theirs.items():
        members.setdefault(label, set()).add(pipe)
    result = Result(
        network=name,
        source=source,
        pipes=len(comparable),
        segments_in_db=g.n_segs,
        valves=int(g.barrier.sum()),
        valve_segments=len(members),
        partitions_equal=equal,
        partition_detail=detail,
        our_build_ms=builds,
        our_load_ms=loads,
        wntr_to_graph_ms=graph_ms,
        wntr_valve_segments_ms=wntr_runs,
    )
    colour = "green" if equal else "red"
    console.print(
        f"  partitions equal: [{colour}]{'yes' if equal else 'no'}[/] "
        f"({detail['pipes_compared']:,} pipes; ours {detail['ours_segments']:,} segments, "
        f"WNTR {detail['wntr_segments']:,})"
    )
    if not equal:
        console.print(f"  [red]difference:[/] {json.dumps(detail, ensure_ascii=False)}")

    rng = np.random.default_rng(args.seed)
    pool = sorted(ours)
    picked = rng.choice(len(pool), size=min(args.requests + args.warmup, len(pool)), replace=False)
    sample = [pool[i] for i in picked[args.warmup :]]
    warmup = [pool[i] for i in picked[: args.warmup]] or sample[:1]
    for pipe in sample:
        at = g.seg_index[pipe]
        started = time.perf_counter()
        g.isolate(at)
        result.graph_isolate_us.append((time.perf_counter() - started) * 1e6)
    result.inprocess_isolate_ms = inprocess_isolate(url, name, sample)
    http_isolate(
        base,
        result,
        sample,
        warmup,
        lambda pipe: members[theirs[pipe]],
        set(comparable),
    )
    wrong = len(result.answers_wrong)
    console.print(
        f"  HTTP isolate: first (cold) {result.http_cold_ms:.0f} ms; {len(sample)} requests "
        f"median {result.http_median:.1f} ms, p95 {result.http_p95:.1f} ms; in process "
        f"(graph + SQL) median {statistics.median(result.inprocess_isolate_ms):.1f} ms; "
        f"Graph.isolate median {statistics.median(result.graph_isolate_us):.0f} µs; "
        f"answers = WNTR segment: "
        + (f"[green]{result.answers_checked}/{result.answers_checked}[/]" if not wrong else "")
        + (f"[red]{wrong} differ[/] (e.g. {result.answers_wrong[:5]})" if wrong else "")
    )
    return result


# --- report --------------------------------------------------------------------------------------
def print_summary(results: list[Result]) -> None:
    table = Table(title="Burst isolation: citytwin vs WNTR valve_segments (same run)")
    columns: list[tuple[str, JustifyMethod]] = [
        ("network", "left"), ("pipes", "right"), ("valves", "right"),
        ("valve\nsegments", "right"), ("our build\nms", "right"),
        ("WNTR\nvalve_segments ms", "right"), ("WNTR /\nours", "right"),
        ("isolate\nmedian ms", "right"), ("isolate\np95 ms", "right"),
        ("median\n< 100 ms", "center"), ("partitions\nequal", "center"),
    ]  # fmt: skip
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for r in results:
        ok = r.http_median < TARGET_MS
        same = r.partitions_equal and not r.answers_wrong
        table.add_row(
            f"{r.network}\n[dim]{r.source}[/]",
            f"{r.pipes:,}",
            f"{r.valves:,}",
            f"{r.valve_segments:,}",
            f"{r.build_ms:.1f}",
            f"{r.wntr_ms:,.0f}",
            f"{r.wntr_ms / r.build_ms:,.0f}x",
            f"{r.http_median:.1f}",
            f"{r.http_p95:.1f}",
            "[green]yes[/]" if ok else "[red]no[/]",
            "[green]yes[/]" if same else "[red]no[/]",
        )
    console.print(table)
    for r in results:
        console.print(
            f"{r.network}: isolate = HTTP end to end over loopback, one client, "
            f"{len(r.http_ms)} pipes after warm-up; in process (graph + SQL, no HTTP/JSON) "
            f"median {statistics.median(r.inprocess_isolate_ms):.1f} ms, Graph.isolate alone "
            f"{statistics.median(r.graph_isolate_us):.0f} µs; answers median "
            f"{statistics.median(r.http_bytes) / 1024:.0f} KiB, "
            f"{statistics.median(r.isolated_pipes):.0f} isolated and "
            f"{statistics.median(r.cut_off_pipes):.0f} cut-off pipes; build = Graph(...) from "
            f"fetched rows, {statistics.median(r.our_load_ms):.0f} ms with the SQL; WNTR = "
            f"valve_segments only ({len(r.wntr_valve_segments_ms)} run(s); to_graph "
            f"{r.wntr_to_graph_ms:.0f} ms more)"
        )


def write_results(
    results: list[Result], args: argparse.Namespace, versions: dict[str, str], closable: bool
) -> Path:
    out = {
        "arguments": vars(args),
        "versions": versions,
        "target_ms": TARGET_MS,
        "real_closable_partitions_equal": closable,
        "networks": [
            asdict(r)
            | {
                "our_build_ms_median": r.build_ms,
                "wntr_valve_segments_ms_median": r.wntr_ms,
                "http_ms_median": r.http_median,
                "http_ms_p95": r.http_p95,
                "under_target": r.http_median < TARGET_MS,
            }
            for r in results
        ],
    }
    return write_json("isolation.json", out)


def write_chart(results: list[Result]) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.5), dpi=120)
    names = [r.network for r in results]
    x = np.arange(len(results))
    left.bar(x - 0.2, [r.build_ms for r in results], 0.4, label="citytwin Graph build")
    left.bar(x + 0.2, [r.wntr_ms for r in results], 0.4, label="WNTR valve_segments")
    left.set_yscale("log")
    left.set_xticks(x, names)
    left.set_ylabel("ms (median, log scale)")
    left.set_title("valve segmentation")
    left.legend(fontsize=7)
    right.bar(x - 0.2, [r.http_median for r in results], 0.4, label="median")
    right.bar(x + 0.2, [r.http_p95 for r in results], 0.4, label="p95")
    right.axhline(TARGET_MS, color="black", linestyle="--", linewidth=0.8, label="100 ms")
    right.set_xticks(x, names)
    right.set_ylabel("ms per request")
    right.set_title("POST /pipelines/isolate (HTTP)")
    right.legend(fontsize=7)
    return save_figure(plt, fig, "isolation.png")


# --- entry point ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="sample city scale (10)")
    parser.add_argument("--city-seed", type=int, default=42, help="sample city seed (42)")
    parser.add_argument("--valves", type=int, default=800, help="isolation valves on Net6")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per network")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first")
    parser.add_argument("--seed", type=int, default=20241201, help="valve layer and pipe sample")
    parser.add_argument("--repeat", type=int, default=5, help="runs of our graph build")
    parser.add_argument("--wntr-repeat", type=int, default=3, help="runs of valve_segments")
    parser.add_argument(
        "--wntr-budget", type=float, default=90.0, help="stop repeating WNTR after this many s"
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the scratch PostGIS up")
    args = parser.parse_args(argv)
    if min(args.requests, args.repeat, args.wntr_repeat) < 1 or args.warmup < 0:
        parser.error("--requests, --repeat and --wntr-repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import wntr
    except ImportError:
        sys.exit("wntr is not installed: make bench-isolation installs the pinned version")
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folder = ensure_city(args.scale, args.city_seed)
    scratch = ScratchDatabase(OUT / f"isolation-db-scale{args.scale:g}")
    server: ServerProcess | None = None
    results: list[Result] = []
    closable_equal = False
    try:
        url = start_scratch(scratch)
        load_city(url, folder)
        with psycopg.connect(url) as conn:
            city_wn, city_layer = wntr_from_database(conn, "water")
        real_wn, real_layer = import_real(scratch, real_network_file(), args.valves, args.seed)
        closable_equal = compare_closable(url, "real", real_wn, real_layer)
        server = twin_serve(url, scratch.env)
        console.print(f"twin serve on {server.base} (pid {server.pid})")
        results.append(
            measure(
                args, url, server.base, "water", f"sample city, scale {args.scale:g}",
                city_wn, city_layer, lambda wn: list(wn.pipe_name_list),
            )
        )  # fmt: skip
        results.append(
            measure(
                args, url, server.base, "real", f"{REAL_NETWORK}, {args.valves} valves",
                real_wn, real_layer, lambda wn: list(wn.pipe_name_list),
            )
        )  # fmt: skip
    finally:
        if server is not None:
            server.stop()
        if not args.keep_db:
            scratch.stop()
    print_summary(results)
    versions = {
        "wntr": wntr.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    print_written(write_results(results, args, versions, closable_equal), write_chart(results))
    console.print(f"total {time.perf_counter() - started:.0f} s")
    bad = [r.network for r in results if not r.partitions_equal or r.answers_wrong]
    if not closable_equal:
        bad.append("real (control valves closable)")
    if bad:
        console.print(f"[red]valve segments differ from WNTR's on: {', '.join(bad)}[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
