"""Pipe networks that already carry their topology: a pipe file whose rows name their end
nodes (``from_node``/``to_node``) and a node file with ``node_id`` and ``kind``.

This is what `twin sample generate` writes and what most utility GIS exports look like once
the columns are named; files without node ids go through `pipelines.importers.lines` instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyogrio
import shapely

from pipelines.model import (
    FLOWS,
    GRAVITY_UTILITIES,
    NODE_KINDS,
    STATES,
    UTILITIES,
    VALVE_KINDS,
    Finding,
    NetworkData,
    Node,
    Segment,
)
from twin.errors import InvalidData

_NODE_COLUMNS = {"node_id", "kind", "valve_state", "ground_elev_m", "invert_m", "depth_m", "name"}
_PIPE_FLOATS = (
    "diameter_mm",
    "depth_m",
    "start_depth_m",
    "end_depth_m",
    "start_invert_m",
    "end_invert_m",
)
_PIPE_TEXT = ("subclass", "section", "material", "owner", "laying")
_PIPE_COLUMNS = {"pipe_id", "from_node", "to_node", "utility", "year_laid", "flow", "state"}
_PIPE_COLUMNS |= set(_PIPE_FLOATS) | set(_PIPE_TEXT) | {"length_m"}


def _value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _float(v: Any) -> float | None:
    v = _value(v)
    return None if v is None else float(v)


def _text(v: Any) -> str | None:
    v = _value(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # integer ids in a column with gaps come back as floats
    return None if v is None or str(v).strip() == "" else str(v).strip()


def _read(path: Path, required: tuple[str, ...], what: str) -> tuple[Any, str]:
    if not path.exists():
        raise InvalidData(f"{what} file not found: {path.name}")
    try:
        df = pyogrio.read_dataframe(path)
    except Exception as exc:  # noqa: BLE001 - GDAL's message is the useful part
        raise InvalidData(f"{path.name} is not a readable vector file: {exc}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InvalidData(
            f"{path.name} has no column {', '.join(missing)}: a {what} file names "
            f"{', '.join(required)} (plain lines without node ids: use --snap instead)"
        )
    if df.crs is None:
        raise InvalidData(f"{path.name} has no CRS; give it one (a .prj, or --crs)")
    return df, df.crs.to_string()


def _node(row: dict, geom: Any, n: int, findings: list[Finding]) -> Node | None:
    node_id, kind = _text(row["node_id"]), (_text(row["kind"]) or "junction")
    if node_id is None or geom is None or geom.is_empty or geom.geom_type != "Point":
        findings.append(Finding("bad_node", f"row {n}: a node needs a node_id and a point", row=n))
        return None
    if kind not in NODE_KINDS:
        findings.append(
            Finding(
                "unknown_kind",
                f"node {node_id}: kind {kind!r} is not one of {', '.join(sorted(NODE_KINDS))}",
                row=n,
                ref=node_id,
            )
        )
        return None
    state = _text(row.get("valve_state"))
    if kind in VALVE_KINDS:
        state = state or "open"
    attrs = {k: _value(v) for k, v in row.items() if k not in _NODE_COLUMNS}
    return Node(
        node_id,
        kind,
        geom.x,
        geom.y,
        valve_state=state if kind in VALVE_KINDS else None,
        ground_elev_m=_float(row.get("ground_elev_m")),
        invert_m=_float(row.get("invert_m")),
        depth_m=_float(row.get("depth_m")),
        name=_text(row.get("name")),
        attrs={k: v for k, v in attrs.items() if v is not None},
    )


def _segment(
    row: dict, geom: Any, n: int, utility: str | None, findings: list[Finding]
) -> Segment | None:
    pipe_id = _text(row["pipe_id"])
    a, b = _text(row["from_node"]), _text(row["to_node"])
    if geom is not None and geom.geom_type == "MultiLineString" and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    if pipe_id is None or a is None or b is None:
        findings.append(Finding("bad_pipe", f"row {n}: a pipe needs pipe_id, from_node, to_node"))
        return None
    if geom is None or geom.is_empty or geom.geom_type != "LineString":
        kind = "no geometry" if geom is None else geom.geom_type
        findings.append(
            Finding("bad_geometry", f"pipe {pipe_id}: {kind}, not one line", row=n, ref=pipe_id)
        )
        return None
    cls = _text(row.get("utility")) or utility
    if cls not in UTILITIES:
        findings.append(
            Finding(
                "unknown_utility",
                f"pipe {pipe_id}: utility {cls!r} is not a CJJ 61 class "
                f"({', '.join(UTILITIES)}); add a utility column or pass --utility",
                row=n,
                ref=pipe_id,
            )
        )
        return None
    flow = _text(row.get("flow")) or ("forward" if cls in GRAVITY_UTILITIES else None)
    state = _text(row.get("state")) or "在用"
    if flow not in (None, *FLOWS) or state not in STATES:
        findings.append(
            Finding(
                "bad_value",
                f"pipe {pipe_id}: flow must be one of {', '.join(FLOWS)} and state one of "
                f"{', '.join(STATES)}",
                row=n,
                ref=pipe_id,
            )
        )
        return None
    year = _value(row.get("year_laid"))
    try:
        year = None if year is None else int(float(str(year).strip()[:4]))
    except ValueError:
        findings.append(
            Finding(
                "bad_value", f"pipe {pipe_id}: year_laid {year!r} is not a year", row=n, ref=pipe_id
            )
        )
        return None
    attrs = {k: _value(v) for k, v in row.items() if k not in _PIPE_COLUMNS}
    return Segment(
        pipe_id,
        a,
        b,
        [(float(x), float(y)) for x, y in shapely.get_coordinates(geom)],
        cls,
        year_laid=None if year is None else int(year),
        flow=flow,
        state=state,
        attrs={k: v for k, v in attrs.items() if v is not None},
        **_extras(row),
    )


def _extras(row: dict) -> dict[str, Any]:
    out: dict[str, Any] = {k: _float(row.get(k)) for k in _PIPE_FLOATS}
    out.update({k: _text(row.get(k)) for k in _PIPE_TEXT})
    return out


def read_native(pipes: Path, nodes: Path, *, utility: str | None = None) -> NetworkData:
    """Read a pipe file and its node file; rows that cannot be used become findings."""
    pipe_df, crs = _read(pipes, ("pipe_id", "from_node", "to_node"), "pipe")
    node_df, node_crs = _read(nodes, ("node_id", "kind"), "node")
    if _crs_differs(crs, node_crs):
        raise InvalidData(f"{pipes.name} and {nodes.name} are in different CRSs")
    findings: list[Finding] = []
    out_nodes = [_node(row, geom, i + 1, findings) for i, (row, geom) in enumerate(_rows(node_df))]
    out_pipes = [
        _segment(row, geom, i + 1, utility, findings)
        for i, (row, geom) in enumerate(_rows(pipe_df))
    ]
    for f in findings:
        f.table = f.table or ("nodes" if f.kind in ("bad_node", "unknown_kind") else "pipes")
    return NetworkData(
        [n for n in out_nodes if n is not None],
        [s for s in out_pipes if s is not None],
        crs,
        findings,
        source=f"{pipes.name} + {nodes.name}",
    )


def _rows(df: Any) -> zip:
    return zip(df.drop(columns="geometry").to_dict("records"), df.geometry.values, strict=True)


def _crs_differs(a: str, b: str) -> bool:
    from pyproj import CRS

    return not CRS.from_user_input(a).equals(CRS.from_user_input(b))
