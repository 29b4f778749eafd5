"""A pipe network in memory: the node-segment graph, its valve segments, traces, isolation.

Built from the database once per network revision (every write bumps it) and kept by
`GraphCache`. Building is vectorised (numpy + scipy.sparse.csgraph), so rebuilding after an
edit costs tens of milliseconds for tens of thousands of pipes; queries then touch only the
part of the network they return.

Valve segments are the standard notion (WNTR's ``valve_segments``, an isolation trace in a
utility network): remove the valve nodes and take connected components of what is left. A
valve that cannot be operated is not a boundary, so its two sides are one segment. Control
valves (PRV, TCV, ...) are links water passes in WNTR, so by default they bound nothing either;
the "closable" rule counts them as valves an isolation may close. Isolating a burst closes the
operable valves around its segment; the segments then unreachable from every source through
open valves are cut off too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from pipelines.model import (
    CONTROL_VALVE_KINDS,
    CONTROL_VALVE_RULES,
    SOURCE_KINDS,
    VALVE_KINDS,
)
from twin.errors import InvalidParameter

SEGMENTS_SQL = """
SELECT id, pipe_id, from_node, to_node, length_m, diameter_mm, material, flow
FROM twin.pipe_segments WHERE network = %s AND deleted_at IS NULL ORDER BY id
"""
NODES_SQL = """
SELECT id, node_id, kind, valve_state, ST_X(geom), ST_Y(geom)
FROM twin.pipe_nodes WHERE network = %s AND deleted_at IS NULL ORDER BY id
"""
NETWORK_SQL = "SELECT revision, gravity FROM twin.pipe_networks WHERE name = %s"


@dataclass
class Isolation:
    burst: int  # segment index
    merged_labels: set[int]
    to_close: list[int]  # valve node indices
    already_closed: list[int]
    inoperable: list[int]  # valves that could not be used (stored or given)
    isolated: np.ndarray  # segment indices
    cut_off: np.ndarray
    sources: int
    control_valves: str  # the rule used: one of CONTROL_VALVE_RULES


@dataclass
class Trace:
    segments: np.ndarray
    nodes: np.ndarray
    stopped_at: list[int] = field(default_factory=list)  # closed valves reached


class Graph:
    """Arrays over the current nodes and segments of one network."""

    def __init__(
        self,
        network: str,
        revision: int,
        gravity: bool,
        nodes: list[tuple[Any, ...]],
        segments: list[tuple[Any, ...]],
    ) -> None:
        self.network, self.revision, self.gravity = network, revision, gravity
        self.node_db = np.array([r[0] for r in nodes], dtype=np.int64)
        self.node_name = [r[1] for r in nodes]
        self.node_kind = np.array([r[2] for r in nodes], dtype=object)
        self.valve_state = np.array([r[3] for r in nodes], dtype=object)
        self.node_xy = np.array([(r[4], r[5]) for r in nodes], dtype=float).reshape(-1, 2)
        self.node_index = {name: i for i, name in enumerate(self.node_name)}
        self.seg_db = np.array([r[0] for r in segments], dtype=np.int64)
        self.seg_name = [r[1] for r in segments]
        self.seg_index = {name: i for i, name in enumerate(self.seg_name)}
        self.seg_a = np.array([self.node_index.get(r[2], -1) for r in segments], dtype=np.int64)
        self.seg_b = np.array([self.node_index.get(r[3], -1) for r in segments], dtype=np.int64)
        self.seg_length = np.array([r[4] or 0.0 for r in segments], dtype=float)
        self.seg_diameter = np.array([r[5] for r in segments], dtype=object)
        self.seg_material = np.array([r[6] for r in segments], dtype=object)
        flows = {"forward": 1, "reverse": -1}
        self.seg_flow = np.array([flows.get(r[7] or "", 0) for r in segments], dtype=np.int8)
        self.n_nodes, self.n_segs = len(nodes), len(segments)
        self.linked = (self.seg_a >= 0) & (self.seg_b >= 0)
        self.is_valve = np.isin(self.node_kind, list(VALVE_KINDS))
        self.is_control_valve = np.isin(self.node_kind, list(CONTROL_VALVE_KINDS))
        self.closed = self.is_valve & (self.valve_state == "closed")
        self.stored_inoperable = self.is_valve & (self.valve_state == "inoperable")
        self.sources = np.flatnonzero(np.isin(self.node_kind, list(SOURCE_KINDS)))
        self._incidence()
        self._segmentations: dict[str, ValveSegments] = {}
        self.default = self.segmentation(CONTROL_VALVE_RULES[0])
        self._distance: np.ndarray | None = None

    # --- structure ---------------------------------------------------------------------------
    def _incidence(self) -> None:
        """CSR of node -> incident segments."""
        segs = np.flatnonzero(self.linked)
        ends = np.concatenate([self.seg_a[segs], self.seg_b[segs]])
        owners = np.concatenate([segs, segs])
        order = np.argsort(ends, kind="stable")
        self.inc_seg = owners[order]
        self.inc_ptr = np.searchsorted(ends[order], np.arange(self.n_nodes + 1))

    def incident(self, node: int) -> np.ndarray:
        return self.inc_seg[self.inc_ptr[node] : self.inc_ptr[node + 1]]

    def barriers(self, control_valves: str) -> np.ndarray:
        """The valve nodes that bound segments: operable isolation valves, and control valves
        when they count as closable. A control valve shut in the data bounds in either case,
        since no water passes it."""
        if control_valves not in CONTROL_VALVE_RULES:
            raise InvalidParameter(
                f"control_valves {control_valves!r} is not one of {', '.join(CONTROL_VALVE_RULES)}"
            )
        operable = self.is_valve & ~self.stored_inoperable
        if control_valves == "closable":
            return operable
        return operable & (~self.is_control_valve | self.closed)

    def segmentation(self, control_valves: str) -> ValveSegments:
        """Valve segments under one rule for control valves, built once per graph."""
        found = self._segmentations.get(control_valves)
        if found is None:
            found = ValveSegments(self, control_valves, self.barriers(control_valves))
            self._segmentations[control_valves] = found
        return found

    # The default segmentation, as callers that know of one rule only read it.
    @property
    def barrier(self) -> np.ndarray:
        return self.default.barrier

    @property
    def seg_label(self) -> np.ndarray:
        return self.default.seg_label

    @property
    def n_labels(self) -> int:
        return self.default.n_labels

    def members(self, label: int) -> np.ndarray:
        return self.default.members(label)

    def supplied(self, seg: int) -> bool:
        """Whether a source reaches the segment through open valves now (the same under
        either rule: what passes water is the same, only the cuts differ)."""
        return int(self.default.seg_label[seg]) in self.default.fed

    # --- burst isolation -----------------------------------------------------------------------
    def isolate(
        self,
        seg: int,
        inoperable: set[int] | None = None,
        control_valves: str = CONTROL_VALVE_RULES[0],
    ) -> Isolation:
        """Valves to close for a burst on segment ``seg``; ``inoperable`` valves (node indices)
        cannot be closed, so the search goes on to the valves beyond them. ``control_valves``
        says whether control valves are passed (the default) or may be closed."""
        return self.segmentation(control_valves).isolate(seg, inoperable or set())

    # --- traces ------------------------------------------------------------------------------
    def distance_to_sources(self) -> np.ndarray:
        """Network distance (m) from the nearest source; water cannot pass a closed valve."""
        if self._distance is None:
            segs = np.flatnonzero(self.linked)
            a, b = self.seg_a[segs], self.seg_b[segs]
            w = np.maximum(self.seg_length[segs], 1e-3)
            src = np.concatenate([a, b])
            dst = np.concatenate([b, a])
            ww = np.concatenate([w, w])
            keep = ~self.closed[src]  # nothing leaves a closed valve
            n = self.n_nodes
            m = coo_matrix((ww[keep], (src[keep], dst[keep])), shape=(n, n)).tocsr()
            if len(self.sources):
                self._distance = dijkstra(m, directed=True, indices=self.sources, min_only=True)
            else:
                self._distance = np.full(n, np.inf)
        return self._distance

    @cached_property
    def _flow(self) -> tuple[np.ndarray, np.ndarray]:
        """Per segment, once per graph: +1 when it flows from its from-node to its to-node,
        -1 against, 0 unknown; and whether a pressure pipe is fed equally from both ends."""
        if self.gravity:
            return self.seg_flow, np.zeros(self.n_segs, dtype=bool)
        d = self.distance_to_sources()
        da = np.where(self.linked, d[np.maximum(self.seg_a, 0)], np.inf)
        db = np.where(self.linked, d[np.maximum(self.seg_b, 0)], np.inf)
        out = np.zeros(self.n_segs, dtype=np.int8)
        finite = np.isfinite(da) | np.isfinite(db)
        out[finite & (da < db)] = 1
        out[finite & (db < da)] = -1
        # a closed valve is fed from either side and passes nothing on: pipes flow into it
        a_shut = self.linked & self.closed[np.maximum(self.seg_a, 0)]
        b_shut = self.linked & self.closed[np.maximum(self.seg_b, 0)]
        out[b_shut & ~a_shut & np.isfinite(da)] = 1
        out[a_shut & ~b_shut & np.isfinite(db)] = -1
        return out, np.isfinite(da) & (da == db)

    def trace(
        self, *, seg: int | None = None, node: int | None = None, direction: str = "connected"
    ) -> Trace:
        """Segments and nodes reached from a segment or node; closed valves stop a trace."""
        sense, tied = self._flow if direction != "connected" else (None, None)
        want = 1 if direction == "downstream" else -1
        seen_segs: set[int] = set()
        seen_nodes: set[int] = set()
        stopped: set[int] = set()
        todo: deque[int] = deque()
        if seg is not None:
            seen_segs.add(seg)
            for end, forward in ((self.seg_b[seg], 1), (self.seg_a[seg], -1)):
                if sense is None or sense[seg] == 0 or sense[seg] * forward == want:
                    if end >= 0:
                        todo.append(int(end))
                        seen_nodes.add(int(end))
        elif node is not None:
            todo.append(node)
            seen_nodes.add(node)
        start = node
        while todo:
            at = todo.popleft()
            if self.closed[at] and at != start:
                stopped.add(at)
                continue
            for s in self.incident(at).tolist():
                a, b = int(self.seg_a[s]), int(self.seg_b[s])
                other, forward = (b, 1) if a == at else (a, -1)
                if sense is not None and sense[s] * forward != want:
                    if (
                        tied is not None and sense[s] == 0 and tied[s]
                    ):  # fed from both ends: reached, not passed
                        seen_segs.add(s)
                    continue
                if s not in seen_segs:
                    seen_segs.add(s)
                if other not in seen_nodes:
                    seen_nodes.add(other)
                    todo.append(other)
        return Trace(
            np.array(sorted(seen_segs), dtype=np.int64),
            np.array(sorted(seen_nodes), dtype=np.int64),
            sorted(stopped),
        )


class ValveSegments:
    """Every segment labelled with its valve segment under one barrier set, and the valves
    mapped to the segments they bound."""

    def __init__(self, g: Graph, control_valves: str, barrier: np.ndarray) -> None:
        self.g, self.control_valves, self.barrier = g, control_valves, barrier
        n, s = g.n_nodes, g.n_segs
        segs = np.flatnonzero(g.linked)
        rows, cols = [], []
        for end in (g.seg_a, g.seg_b):
            keep = segs[~barrier[end[segs]]]
            rows.append(keep + n)
            cols.append(end[keep])
        r, c = np.concatenate(rows), np.concatenate(cols)
        m = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n + s, n + s))
        _, labels = connected_components(m, directed=False)
        _, inverse = np.unique(labels[n:], return_inverse=True)
        self.seg_label = inverse.astype(np.int64)
        self.n_labels = int(self.seg_label.max()) + 1 if s else 0
        order = np.argsort(self.seg_label, kind="stable")
        self.label_members = order
        self.label_ptr = np.searchsorted(self.seg_label[order], np.arange(self.n_labels + 1))
        # valve -> labels it touches, label -> valves around it
        self.valve_labels: dict[int, set[int]] = {}
        self.label_valves: list[set[int]] = [set() for _ in range(self.n_labels)]
        for end in (g.seg_a, g.seg_b):
            at = segs[barrier[end[segs]]]
            for seg, valve in zip(at.tolist(), end[at].tolist(), strict=True):
                label = int(self.seg_label[seg])
                self.valve_labels.setdefault(valve, set()).add(label)
                self.label_valves[label].add(valve)
        self.source_labels = {
            int(self.seg_label[seg]) for src in g.sources.tolist() for seg in g.incident(src)
        }
        self.fed = self._reachable(set(), set())

    def members(self, label: int) -> np.ndarray:
        return self.label_members[self.label_ptr[label] : self.label_ptr[label + 1]]

    def _reachable(self, removed: set[int], shut: set[int]) -> set[int]:
        """Labels reachable from the sources through open valves, avoiding ``removed``
        labels and the ``shut`` valves."""
        seen = {lab for lab in self.source_labels if lab not in removed}
        todo = deque(seen)
        while todo:
            label = todo.popleft()
            for valve in self.label_valves[label]:
                if self.g.closed[valve] or valve in shut:
                    continue
                for other in self.valve_labels[valve]:
                    if other not in seen and other not in removed:
                        seen.add(other)
                        todo.append(other)
        return seen

    def isolate(self, seg: int, inoperable: set[int]) -> Isolation:
        closed = self.g.closed
        merged = {int(self.seg_label[seg])}
        todo = deque(merged)
        while todo:  # grow across valves that cannot close
            label = todo.popleft()
            for valve in self.label_valves[label]:
                if valve in inoperable and not closed[valve]:  # shut stays shut
                    for other in self.valve_labels[valve] - merged:
                        merged.add(other)
                        todo.append(other)
        boundary = {v for lab in merged for v in self.label_valves[lab]} - inoperable
        # a valve with every side inside the outage needs no closing
        boundary = {v for v in boundary if self.valve_labels[v] - merged}
        to_close = sorted(v for v in boundary if not closed[v])
        already = sorted(v for v in boundary if closed[v])
        isolated = np.concatenate([self.members(lab) for lab in sorted(merged)])
        n_sources = len(self.g.sources)
        if n_sources:
            after = self._reachable(merged, boundary)
            lost = sorted(self.fed - after - merged)
            cut = [self.members(lab) for lab in lost]
            cut_off = np.concatenate(cut) if cut else np.array([], dtype=np.int64)
        else:
            cut_off = np.array([], dtype=np.int64)
        # a control valve that is passed is no barrier, but it is not inoperable either
        stored = {int(v) for v in np.flatnonzero(self.g.stored_inoperable)}
        touched = {v for lab in merged for v in self.label_valves[lab]}
        return Isolation(
            seg,
            merged,
            to_close,
            already,
            sorted((inoperable & touched) | {v for v in stored if self._touches(v, merged)}),
            np.sort(isolated),
            np.sort(cut_off),
            n_sources,
            self.control_valves,
        )

    def _touches(self, node: int, labels: set[int]) -> bool:
        return any(int(self.seg_label[s]) in labels for s in self.g.incident(node))


def build(network: str, revision: int, gravity: bool, nodes: list, segments: list) -> Graph:
    return Graph(network, revision, gravity, nodes, segments)


def load(conn: Any, network: str) -> Graph:
    """Build from a synchronous connection (CLI, tests)."""
    row = conn.execute(NETWORK_SQL, [network]).fetchone()
    if row is None:
        from twin.errors import NotFound

        raise NotFound(f"no pipe network {network!r}")
    nodes = conn.execute(NODES_SQL, [network]).fetchall()
    segments = conn.execute(SEGMENTS_SQL, [network]).fetchall()
    return Graph(network, int(row[0]), bool(row[1]), nodes, segments)


class GraphCache:
    """One graph per network, rebuilt when the network's revision moves on."""

    def __init__(self) -> None:
        self._graphs: dict[str, Graph] = {}

    def forget(self, network: str) -> None:
        self._graphs.pop(network, None)

    async def get(self, conn: Any, network: str) -> Graph:
        cur = await conn.execute(NETWORK_SQL, [network])
        row = await cur.fetchone()
        if row is None:
            from twin.errors import NotFound

            raise NotFound(f"no pipe network {network!r}")
        revision = int(row[0])
        graph = self._graphs.get(network)
        if graph is not None and graph.revision == revision:
            return graph
        # one snapshot for the revision and the rows, so an edit committed meanwhile cannot
        # leave pipes naming nodes the graph does not have
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur = await conn.execute(NETWORK_SQL, [network])
            row = await cur.fetchone()
            if row is None:
                from twin.errors import NotFound

                raise NotFound(f"no pipe network {network!r}")
            cur = await conn.execute(NODES_SQL, [network])
            nodes = await cur.fetchall()
            cur = await conn.execute(SEGMENTS_SQL, [network])
            segments = await cur.fetchall()
        graph = Graph(network, int(row[0]), bool(row[1]), nodes, segments)
        self._graphs[network] = graph
        return graph
