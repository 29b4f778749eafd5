"""Writing a pipe network into PostGIS, all or nothing, and publishing it.

A network is written in one transaction under a per-network advisory lock: its earlier nodes
and segments are replaced, a view per table is (re)created for the API, the registry gets the
``<network>_pipes`` and ``<network>_nodes`` collections, and the topology check stores its
findings. A network with errors loads nothing unless the caller skips the bad rows.
"""

from __future__ import annotations

import csv
import json
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
import shapely
from psycopg import sql
from pyproj import CRS

from layers.registry import register_view
from pipelines import codes
from pipelines.model import (
    GRAVITY_UTILITIES,
    NODE_KINDS,
    UTILITIES,
    VALVE_KINDS,
    VALVE_STATES,
    Finding,
    NetworkData,
)
from twin.crs import to_wgs84_xy
from twin.errors import Conflict, InvalidData, InvalidParameter, NotFound

NETWORK_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
RESERVED = {"history"}  # pipe_nodes_history is the nodes' history table


@dataclass
class NetworkImport:
    network: str
    source: str
    nodes: int = 0
    segments: int = 0
    skipped: int = 0
    findings: list[Finding] = field(default_factory=list)
    topology: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    report_path: Path | None = None


class NetworkRejected(InvalidData):
    """The source had errors and nothing was written."""

    def __init__(self, result: NetworkImport) -> None:
        errors = [f for f in result.findings if f.severity == "error"]
        first = "; ".join(f.message for f in errors[:3])
        super().__init__(
            f"{result.source}: {len(errors)} error{'s' if len(errors) != 1 else ''}, nothing "
            f"was loaded (fix them, or load the rest with --skip-invalid). First: {first}"
        )
        self.result = result


def check_network_name(name: str) -> str:
    if not NETWORK_NAME.fullmatch(name) or name in RESERVED:
        valid = network_name_from(name)
        hint = f": use {valid!r}" if valid and valid != name else ""
        raise InvalidParameter(
            f"network name {name!r} is not allowed{hint} (lowercase letters, digits and '_', "
            "starting with a letter, at most 31 characters, e.g. water, sewer, gas; "
            f"not {', '.join(sorted(RESERVED))})"
        )
    return name


def network_name_from(text: str) -> str | None:
    """A valid network name made from any text (a file name, a name given as ``Net6``):
    lowercased, other characters to '_', ``net_`` before a leading digit; None when no letter
    or digit is left to make one from."""
    folded = unicodedata.normalize("NFKC", text).lower()  # full-width Ｎｅｔ６ reads as net6
    name = re.sub(r"[^a-z0-9]+", "_", folded).strip("_")
    if not name:
        return None
    if name[0].isdigit():
        name = f"net_{name}"
    name = name[:31].rstrip("_")
    return f"{name[:27]}_net" if name in RESERVED else name


def validate(data: NetworkData) -> list[Finding]:
    """Model-level checks every importer's output gets: ids, kinds, references."""
    found: list[Finding] = []
    ids = Counter(n.node_id for n in data.nodes)
    for node_id, n in ids.items():
        if n > 1:
            found.append(Finding("duplicate_node", f"node id {node_id} is used {n} times"))
    for node in data.nodes:
        if node.kind not in NODE_KINDS:
            found.append(Finding("unknown_kind", f"node {node.node_id}: kind {node.kind!r}"))
        elif node.kind in VALVE_KINDS and node.valve_state not in VALVE_STATES:
            found.append(
                Finding(
                    "valve_state",
                    f"valve {node.node_id}: state {node.valve_state!r} is not one of "
                    f"{', '.join(VALVE_STATES)}",
                    ref=node.node_id,
                )
            )
    pipes = Counter(s.pipe_id for s in data.segments)
    for pipe_id, n in pipes.items():
        if n > 1:
            found.append(Finding("duplicate_pipe", f"pipe id {pipe_id} is used {n} times"))
    for s in data.segments:
        missing = [x for x in (s.from_node, s.to_node) if x not in ids]
        if missing:
            found.append(
                Finding(
                    "unknown_node",
                    f"pipe {s.pipe_id} names node {', '.join(missing)}, which is not in the "
                    "node table",
                    ref=s.pipe_id,
                )
            )
        if s.utility not in UTILITIES:
            found.append(Finding("unknown_utility", f"pipe {s.pipe_id}: utility {s.utility!r}"))
        if s.diameter_mm is not None and not 0 < s.diameter_mm < 100_000:
            found.append(
                Finding(
                    "bad_value", f"pipe {s.pipe_id}: diameter {s.diameter_mm} mm", ref=s.pipe_id
                )
            )
        if s.year_laid is not None and not 1800 <= s.year_laid <= 2200:
            found.append(
                Finding("bad_value", f"pipe {s.pipe_id}: year laid {s.year_laid}", ref=s.pipe_id)
            )
        if len(s.coords) < 2:
            found.append(Finding("bad_geometry", f"pipe {s.pipe_id} has fewer than 2 points"))
    return found


def _lonlat(data: NetworkData) -> tuple[np.ndarray, np.ndarray, list[int]]:
    crs = CRS.from_user_input(data.crs)
    node_xy = np.array([(n.x, n.y) for n in data.nodes], dtype=float).reshape(-1, 2)
    counts = [len(s.coords) for s in data.segments]
    flat = np.array([c for s in data.segments for c in s.coords], dtype=float).reshape(-1, 2)
    node_ll = to_wgs84_xy(node_xy, crs) if len(node_xy) else node_xy
    flat_ll = to_wgs84_xy(flat, crs) if len(flat) else flat
    every = np.vstack([node_ll, flat_ll])
    if len(every) and (
        not np.isfinite(every).all()
        or np.abs(every[:, 0]).max() > 180
        or np.abs(every[:, 1]).max() > 90
    ):
        raise InvalidData(
            f"{data.source}: coordinates fall outside lon/lat range after transforming from "
            f"{data.crs}: is the CRS right (and, for survey tables, X = northing)?"
        )
    return node_ll, flat_ll, counts


def _usable(data: NetworkData, findings: list[Finding]) -> NetworkData:
    """Drop what the findings name as unusable (for --skip-invalid)."""
    errors = [f for f in findings if f.severity == "error"]
    bad_nodes = {f.ref for f in errors if f.kind == "duplicate_node"}
    bad_pipes = {f.ref for f in errors if f.table in ("lines", "pipes", None) and f.ref}
    nodes = [n for n in data.nodes if n.node_id not in bad_nodes and n.kind in NODE_KINDS]
    ids = {n.node_id for n in nodes}
    seen: set[str] = set()
    segments = []
    for s in data.segments:
        if s.pipe_id in bad_pipes:
            continue
        if s.from_node in ids and s.to_node in ids and s.pipe_id not in seen:
            if s.utility in UTILITIES and len(s.coords) >= 2:
                segments.append(s)
                seen.add(s.pipe_id)
    return NetworkData(nodes, segments, data.crs, data.findings, data.source)


def save_network(
    conn: psycopg.Connection,
    name: str,
    data: NetworkData,
    *,
    title: str | None = None,
    skip_invalid: bool = False,
    report_dir: Path | None = None,
    replace_layers: bool = False,
) -> NetworkImport:
    """Replace network ``name`` with ``data`` (one transaction; the caller commits)."""
    started = time.perf_counter()
    check_network_name(name)
    if not replace_layers:
        _refuse_plain_layers(conn, name)
    findings = [*data.findings, *validate(data)]
    result = NetworkImport(name, data.source or name, findings=findings)
    if report_dir is not None and findings:
        result.report_path = write_findings(findings, report_dir / f"{name}.import-report.csv")
    if any(f.severity == "error" for f in findings):
        if not skip_invalid:
            raise NetworkRejected(result)
        before = len(data.nodes) + len(data.segments)
        data = _usable(data, findings)
        result.skipped = before - len(data.nodes) - len(data.segments)
    if not data.segments:
        raise InvalidData(f"{result.source}: no pipes to load")
    node_ll, flat_ll, counts = _lonlat(data)
    utility = Counter(s.utility for s in data.segments).most_common(1)[0][0]
    subclass = Counter(s.subclass for s in data.segments).most_common(1)[0][0]
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('twin.pipe_network:' || %s))", [name])
    conn.execute(
        """
        INSERT INTO twin.pipe_networks (name, title, utility, subclass, gravity, source,
                                        source_crs)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (name) DO UPDATE SET title = EXCLUDED.title, utility = EXCLUDED.utility,
            subclass = EXCLUDED.subclass, gravity = EXCLUDED.gravity, source = EXCLUDED.source,
            source_crs = EXCLUDED.source_crs, updated_at = now()
        """,
        [
            name,
            title or _title(utility, subclass, name),
            utility,
            subclass,
            utility in GRAVITY_UTILITIES,
            result.source,
            data.crs,
        ],
    )
    conn.execute("DELETE FROM twin.pipe_segments WHERE network = %s", [name])
    conn.execute("DELETE FROM twin.pipe_nodes WHERE network = %s", [name])
    _copy_nodes(conn, name, data, node_ll)
    _copy_segments(conn, name, data, flat_ll, counts)
    from pipelines.topology import store_findings

    # The check's joins need statistics of the rows just written: without them the planner
    # picks nested loops that take minutes on a 20,000-pipe network instead of a second.
    conn.execute("ANALYZE twin.pipe_segments, twin.pipe_nodes")
    result.topology = store_findings(conn, name)
    publish(conn, name)
    result.nodes, result.segments = len(data.nodes), len(data.segments)
    result.seconds = time.perf_counter() - started
    return result


def _refuse_plain_layers(conn: psycopg.Connection, network: str) -> None:
    """A layer imported with `twin import` under a collection name the network needs is not
    dropped behind its owner's back."""
    taken = conn.execute(
        "SELECT name FROM twin.layers WHERE name IN (%s, %s) AND schema_name <> 'twin'",
        [f"{network}_pipes", f"{network}_nodes"],
    ).fetchall()
    if taken:
        names = ", ".join(r[0] for r in taken)
        raise Conflict(
            f"layer {names} already exists (a plain import); network {network} publishes its "
            f"collections under that name: drop it first (twin layers drop {taken[0][0]}) or "
            "choose another network name"
        )


def _title(utility: str, subclass: str | None, name: str) -> str:
    from pipelines.model import SUBCLASSES

    zh = SUBCLASSES.get(utility, {}).get(subclass or "", "") or UTILITIES[utility][1]
    return f"{zh}管网 {name}"


def _hex_points(xy: np.ndarray) -> list[str]:
    geoms = shapely.points(xy)
    return list(shapely.to_wkb(shapely.set_srid(geoms, 4326), hex=True, include_srid=True))


def _copy_nodes(conn: psycopg.Connection, name: str, data: NetworkData, ll: np.ndarray) -> None:
    hexes = _hex_points(ll) if len(ll) else []
    query = (
        "COPY twin.pipe_nodes (network, node_id, kind, valve_state, feature_code, name, "
        "ground_elev_m, invert_m, depth_m, attributes, geom) FROM STDIN"
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        utility = data.segments[0].utility if data.segments else "QT"
        for node, geom in zip(data.nodes, hexes, strict=True):
            code = node.feature_code or codes.node_code(utility, None, node.kind)
            copy.write_row(
                [
                    name,
                    node.node_id,
                    node.kind,
                    node.valve_state,
                    code,
                    node.name,
                    node.ground_elev_m,
                    node.invert_m,
                    node.depth_m,
                    json.dumps(node.attrs, ensure_ascii=False, default=str),
                    geom,
                ]
            )


def _copy_segments(
    conn: psycopg.Connection, name: str, data: NetworkData, flat: np.ndarray, counts: list[int]
) -> None:
    index = np.repeat(np.arange(len(counts)), counts)
    geoms = shapely.set_srid(shapely.linestrings(flat, indices=index), 4326)
    hexes = list(shapely.to_wkb(geoms, hex=True, include_srid=True))
    query = (
        "COPY twin.pipe_segments (network, pipe_id, from_node, to_node, utility, subclass, "
        "feature_code, diameter_mm, section, material, year_laid, depth_m, start_depth_m, "
        "end_depth_m, start_invert_m, end_invert_m, flow, state, owner, laying, attributes, "
        "geom) FROM STDIN"
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        for s, geom in zip(data.segments, hexes, strict=True):
            code = s.feature_code or codes.segment_code(s.utility, s.subclass)
            flow = s.flow or ("forward" if s.utility in GRAVITY_UTILITIES else None)
            copy.write_row(
                [
                    name,
                    s.pipe_id,
                    s.from_node,
                    s.to_node,
                    s.utility,
                    s.subclass,
                    code,
                    s.diameter_mm,
                    s.section,
                    s.material,
                    s.year_laid,
                    s.depth_m,
                    s.start_depth_m,
                    s.end_depth_m,
                    s.start_invert_m,
                    s.end_invert_m,
                    flow,
                    s.state,
                    s.owner,
                    s.laying,
                    json.dumps(s.attrs, ensure_ascii=False, default=str),
                    geom,
                ]
            )


# --- publishing ----------------------------------------------------------------------------
PIPE_FIELDS = [
    ("pipe_id", "text"),
    ("from_node", "text"),
    ("to_node", "text"),
    ("utility", "text"),
    ("subclass", "text"),
    ("utility_name", "text"),
    ("color", "text"),
    ("feature_code", "text"),
    ("diameter_mm", "double"),
    ("section", "text"),
    ("material", "text"),
    ("year_laid", "integer"),
    ("depth_m", "double"),
    ("start_depth_m", "double"),
    ("end_depth_m", "double"),
    ("start_invert_m", "double"),
    ("end_invert_m", "double"),
    ("flow", "text"),
    ("state", "text"),
    ("owner", "text"),
    ("laying", "text"),
    ("length_m", "double"),
    ("unit_grid", "text"),
    ("attributes", "json"),
    ("version", "integer"),
]
NODE_FIELDS = [
    ("node_id", "text"),
    ("kind", "text"),
    ("valve_state", "text"),
    ("feature_code", "text"),
    ("name", "text"),
    ("ground_elev_m", "double"),
    ("invert_m", "double"),
    ("depth_m", "double"),
    ("unit_grid", "text"),
    ("attributes", "json"),
    ("version", "integer"),
]


def _colour_sql() -> str:
    cases = " ".join(
        f"WHEN '{code}' THEN '#{r:02x}{g:02x}{b:02x}'"
        for code, (_, _, _, (r, g, b)) in UTILITIES.items()
    )
    names = " ".join(f"WHEN '{code}' THEN '{zh}'" for code, (_, zh, _, _) in UTILITIES.items())
    return f"CASE s.utility {names} END AS utility_name, CASE s.utility {cases} END AS color"


def view_names(network: str) -> tuple[str, str]:
    return f"pipes_{network}", f"pipe_nodes_{network}"


def publish(conn: psycopg.Connection, network: str) -> None:
    """(Re)create the network's two views and register them as collections."""
    pipes_view, nodes_view = view_names(network)
    pipe_cols = ", ".join(f"s.{n}" for n, _ in PIPE_FIELDS if n not in ("utility_name", "color"))
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE VIEW twin.{} AS SELECT s.id AS fid, {}, {}, s.geom "
            "FROM twin.pipe_segments s WHERE s.network = {} AND s.deleted_at IS NULL"
        ).format(
            sql.Identifier(pipes_view),
            sql.SQL(pipe_cols),
            sql.SQL(_colour_sql()),
            sql.Literal(network),
        )
    )
    node_cols = ", ".join(f"n.{c}" for c, _ in NODE_FIELDS)
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE VIEW twin.{} AS SELECT n.id AS fid, {}, n.geom "
            "FROM twin.pipe_nodes n WHERE n.network = {} AND n.deleted_at IS NULL"
        ).format(sql.Identifier(nodes_view), sql.SQL(node_cols), sql.Literal(network))
    )
    title = conn.execute(
        "SELECT title FROM twin.pipe_networks WHERE name = %s", [network]
    ).fetchone()
    label = title[0] if title else network
    _register(
        conn, f"{network}_pipes", f"{label} 管段 pipes", pipes_view, "LineString", PIPE_FIELDS
    )
    _register(conn, f"{network}_nodes", f"{label} 管点 nodes", nodes_view, "Point", NODE_FIELDS)
    _register(
        conn,
        "pipe_findings",
        "管网拓扑检查 pipe topology findings",
        "pipe_findings_current",
        "Point",
        [
            ("network", "text"),
            ("kind", "text"),
            ("severity", "text"),
            ("ref", "text"),
            ("message", "text"),
            ("checked_at", "timestamp"),
        ],
    )
    _register(
        conn,
        "low_points",
        "排水低洼点 drainage low points",
        "drainage_low_points",
        "Point",
        [
            ("network", "text"),
            ("node_id", "text"),
            ("kind", "text"),
            ("ground_elev_m", "double"),
            ("depression_m", "double"),
            ("unit_grid", "text"),
        ],
    )


def _register(
    conn: psycopg.Connection,
    layer: str,
    title: str,
    view: str,
    geometry_type: str,
    fields: list[tuple[str, str]],
) -> None:
    register_view(
        conn, layer, title, view, geometry_type, fields, "CJJ 61 underground pipe network"
    )


def drop_network(conn: psycopg.Connection, network: str) -> None:
    found = conn.execute("SELECT 1 FROM twin.pipe_networks WHERE name = %s", [network]).fetchone()
    if found is None:
        raise NotFound(f"no pipe network {network!r}")
    for view in view_names(network):
        conn.execute(sql.SQL("DROP VIEW IF EXISTS twin.{}").format(sql.Identifier(view)))
    conn.execute(
        "DELETE FROM twin.layers WHERE name IN (%s, %s)", [f"{network}_pipes", f"{network}_nodes"]
    )
    conn.execute("DELETE FROM twin.pipe_networks WHERE name = %s", [network])


def write_findings(findings: list[Finding], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["severity", "table", "row", "ref", "kind", "message"])
        for f in findings:
            w.writerow([f.severity, f.table or "", f.row or "", f.ref or "", f.kind, f.message])
    return path
