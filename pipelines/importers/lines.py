"""Plain GIS pipe lines (no point numbers) turned into a network by snapping their ends.

Line ends within ``tolerance_m`` of each other become one node (single-linkage clusters, so a
chain of ends each within tolerance of the next is one node); an end that lies on another line's
interior splits that line (a T-junction drawn without splitting the main). Distances are
measured in a metric CRS; the result is in the file's CRS, with interior vertices untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from pyproj import CRS, Transformer
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pipelines import codes
from pipelines.importers.columns import (
    LINE_COLUMNS,
    Where,
    attr_value,
    cell_text,
    line_fields,
    match_columns,
    parse_class_arguments,
    pick_layer,
    row_class,
)
from pipelines.model import (
    GRAVITY_UTILITIES,
    VALVE_KINDS,
    Finding,
    NetworkData,
    Node,
    Segment,
)
from twin.crs import parse_crs, utm_or_gk_epsg
from twin.errors import InvalidData, InvalidParameter

# GIS lines carry no point numbers: start/end columns, if any, stay in attrs.
GIS_LINE_COLUMNS = {k: v for k, v in LINE_COLUMNS.items() if k not in ("start", "end")}
NODE_FILE_COLUMNS: dict[str, tuple[str, ...]] = {
    "node_id": ("node_id", "物探点号", "点号", "管点编号", "point_no", "point_id", "id", "编号"),
    "kind": ("kind", "类型", "附属物", "fitting", "type", "特征", "feature"),
    "valve_state": ("阀门状态", "阀门开关", "valve_state"),
    "name": ("名称", "name"),
}
_EPS = 1e-6  # metres: vertices closer than this to a cut are replaced by the node


@dataclass
class _Line:
    feature: int  # 1-based feature number
    pipe_id: str
    src: np.ndarray  # (k, 2) in the file's CRS
    metric: np.ndarray  # (k, 2) in metres
    values: dict[str, Any]  # Segment keyword values
    ends: tuple[int, int] = (-1, -1)  # node indices
    cuts: list[tuple[float, int]] = field(default_factory=list)  # (metres along, node index)


@dataclass
class _Node:
    xy: np.ndarray  # metres
    node_id: str
    kind: str = "junction"
    valve_state: str | None = None
    name: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    from_file: bool = False


def read_lines(
    path: Path,
    *,
    tolerance_m: float = 0.5,
    utility: str | None = None,
    subclass: str | None = None,
    crs: str | None = None,
    source_layer: str | None = None,
    nodes: Path | None = None,
    split_at_tees: bool = True,
) -> NetworkData:
    """Read a GIS line file into a network, building nodes by snapping line ends.

    ``crs`` sets (or overrides) the file's CRS; ``nodes`` is an optional point file of valves,
    hydrants, meters, sources... that attach to the network by position.
    """
    if not tolerance_m > 0:
        raise InvalidParameter("tolerance_m must be more than zero")
    default = parse_class_arguments(utility, subclass)
    path = Path(path)
    frame, src_crs = _read_vector(path, crs, source_layer)
    columns = [c for c in frame.columns if c != frame.geometry.name]
    cols = match_columns(columns, GIS_LINE_COLUMNS)
    if default is None and "utility" not in cols and "subclass" not in cols:
        raise InvalidParameter(
            f"{path.name} has no class column (管线类别): pass the utility class, e.g. "
            "utility='JS' for water supply or subclass='YS' for storm drainage"
        )
    findings: list[Finding] = []
    space = _metric_space(src_crs, frame)
    lines = _read_features(frame, cols, default, space.to_metric, findings)
    graph = _snap_ends(lines, tolerance_m)
    if split_at_tees:
        _cut_at_tees(lines, graph, tolerance_m)
    if nodes is not None:
        _attach_points(Path(nodes), space, lines, graph, tolerance_m, findings)
    node_src = _apply(space.from_metric, np.array([n.xy for n in graph]).reshape(-1, 2))
    segments = _segments(lines, graph, node_src, findings)
    return NetworkData(
        nodes=_network_nodes(graph, node_src, segments, default),
        segments=segments,
        crs=_crs_text(src_crs),
        findings=findings,
        source=path.name,
    )


# --- reading --------------------------------------------------------------------------------
def _read_frame(path: Path, source_layer: str | None, hints: tuple[str, ...]) -> gpd.GeoDataFrame:
    if not path.exists():
        raise InvalidParameter(f"file not found: {path}")
    layer = pick_layer(path, hints, source_layer)
    try:
        frame = pyogrio.read_dataframe(path, layer=layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.FieldError) as exc:
        raise InvalidData(f"{path.name} could not be read: {exc}") from None
    if not isinstance(frame, gpd.GeoDataFrame):
        raise InvalidData(f"{path.name} has no geometry")
    return frame


def _read_vector(
    path: Path, crs: str | None, source_layer: str | None
) -> tuple[gpd.GeoDataFrame, CRS]:
    frame = _read_frame(path, source_layer, ("line", "线", "管"))
    if crs is not None:
        ref = parse_crs(crs, allow_gcj02=False)
        src = CRS.from_user_input("OGC:CRS84" if ref.kind == "crs84" else f"EPSG:{ref.epsg}")
    elif frame.crs is not None:
        src = CRS.from_user_input(frame.crs)
    else:
        raise InvalidParameter(
            f"{path.name} has no CRS: pass crs, e.g. EPSG:4548 for CGCS2000 Gauss-Krüger 117°E "
            "or EPSG:4490 for lon/lat"
        )
    return frame, src


def _crs_text(crs: CRS) -> str:
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else crs.to_wkt()


def _is_metric(crs: CRS) -> bool:
    units = {(a.unit_name or "").lower() for a in crs.axis_info}
    return crs.is_projected and units <= {"metre", "meter"}


@dataclass
class _Space:
    """The metric CRS distances are measured in, and the transforms to and from it."""

    src: CRS
    metric: CRS
    to_metric: Transformer | None  # None when the file's CRS is metric already
    from_metric: Transformer | None


def _metric_space(src: CRS, frame: gpd.GeoDataFrame) -> _Space:
    if _is_metric(src):
        return _Space(src, src, None, None)
    x0, y0, x1, y1 = shapely.total_bounds(frame.geometry.to_numpy())
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        x0 = y0 = x1 = y1 = 0.0
    to_lonlat = Transformer.from_crs(src, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform((x0 + x1) / 2, (y0 + y1) / 2)
    if 73 <= lon <= 136 and 3 <= lat <= 54:  # China: CGCS2000 3-degree Gauss-Krüger
        metric = CRS.from_epsg(utm_or_gk_epsg(lon))
    else:  # elsewhere: the WGS84 UTM zone of the centre
        zone = min(int((lon + 180) // 6) + 1, 60)
        metric = CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
    return _Space(
        src,
        metric,
        Transformer.from_crs(src, metric, always_xy=True),
        Transformer.from_crs(metric, src, always_xy=True),
    )


def _apply(transform: Transformer | None, xy: np.ndarray) -> np.ndarray:
    if transform is None or len(xy) == 0:
        return np.asarray(xy, dtype="float64")
    x, y = transform.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def _line_coords(geom: Any, where: Where) -> np.ndarray | Finding:
    if geom is None or shapely.is_empty(geom):
        return where.finding(
            "empty_geometry", f"feature {where.row} ({where.ref}) has no geometry; draw it"
        )
    if geom.geom_type == "MultiLineString":
        parts = shapely.get_parts(geom)
        if len(parts) > 1:
            return where.finding(
                "multipart",
                f"feature {where.row} ({where.ref}) is a multi-part line of {len(parts)} parts; "
                "join the parts or split it into separate lines",
            )
        geom = parts[0]
    if geom.geom_type != "LineString":
        return where.finding(
            "not_a_line", f"feature {where.row} ({where.ref}) is a {geom.geom_type}, not a line"
        )
    coords = shapely.get_coordinates(geom)
    if len(coords) < 2:
        return where.finding(
            "empty_geometry", f"feature {where.row} ({where.ref}) has fewer than two vertices"
        )
    return coords


def _read_features(
    frame: gpd.GeoDataFrame,
    cols: Mapping[str, str],
    default: tuple[str, str | None] | None,
    to_metric: Transformer | None,
    findings: list[Finding],
) -> list[_Line]:
    matched = set(cols.values()) | {frame.geometry.name}
    others = [c for c in frame.columns if c not in matched]
    geoms = frame.geometry.to_numpy()
    seen: dict[str, int] = {}
    lines: list[_Line] = []
    for i, rec in enumerate(frame.drop(columns=frame.geometry.name).to_dict("records")):
        feature = i + 1
        given = cell_text(rec[cols["pipe_id"]]) if "pipe_id" in cols else None
        pipe_id = given or f"L{feature}"
        where = Where("lines", feature, pipe_id)
        coords = _line_coords(geoms[i], where)
        if isinstance(coords, Finding):
            findings.append(coords)
            continue
        if pipe_id in seen:
            findings.append(
                where.finding(
                    "duplicate_pipe_id",
                    f"pipe id {pipe_id} (feature {feature}) is already used by feature "
                    f"{seen[pipe_id]}; give each line its own id (this one is left out)",
                )
            )
            continue
        seen[pipe_id] = feature
        values, problems = line_fields(rec, cols, where)
        cls, class_problems = row_class(rec, cols, default, where)
        findings += problems + class_problems
        if cls is None:
            findings.append(
                where.finding(
                    "missing_class",
                    f"feature {feature} ({pipe_id}) has no class: fill in its class column or "
                    "pass the utility class (line left out)",
                )
            )
            continue
        if values.get("flow") is None and cls[0] in GRAVITY_UTILITIES:
            values["flow"] = "forward"
        values.update(
            utility=cls[0],
            subclass=cls[1],
            feature_code=codes.segment_code(cls[0], cls[1]),
            attrs={c: attr_value(rec[c]) for c in others},
        )
        lines.append(_Line(feature, pipe_id, coords, _apply(to_metric, coords), values))
    return lines


# --- topology -------------------------------------------------------------------------------
def _line_geoms(lines: list[_Line]) -> np.ndarray:
    """The lines in metres as shapely geometries (ragged coordinates, one call)."""
    if not lines:
        return np.array([], dtype=object)
    coords = np.vstack([line.metric for line in lines])
    owner = np.repeat(np.arange(len(lines)), [len(line.metric) for line in lines])
    return shapely.linestrings(coords, indices=owner)


def _snap_ends(lines: list[_Line], tolerance: float) -> list[_Node]:
    """Cluster all line ends within tolerance; ids N1, N2... in order of first use."""
    if not lines:
        return []
    ends = np.array([p for line in lines for p in (line.metric[0], line.metric[-1])])
    pairs = cKDTree(ends).query_pairs(r=tolerance, output_type="ndarray")
    graph = coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(ends), len(ends))
    )
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(len(first), dtype=int)
    rank[np.argsort(first)] = np.arange(len(first))
    node_of = rank[labels]
    count = np.bincount(node_of)
    mean = np.column_stack([np.bincount(node_of, weights=ends[:, k]) / count for k in (0, 1)])
    for i, line in enumerate(lines):
        line.ends = (int(node_of[2 * i]), int(node_of[2 * i + 1]))
    return [_Node(xy=mean[n], node_id=f"N{n + 1}") for n in range(len(mean))]


def _cut_at_tees(lines: list[_Line], graph: list[_Node], tolerance: float) -> None:
    """Cut each line where another line's end node lies on its interior."""
    if not lines:
        return
    geoms = _line_geoms(lines)
    points = shapely.points(np.array([n.xy for n in graph]))
    node_idx, line_idx = shapely.STRtree(geoms).query(
        points, predicate="dwithin", distance=tolerance
    )
    for n, k in zip(node_idx.tolist(), line_idx.tolist(), strict=True):
        line = lines[k]
        if n in line.ends:
            continue
        near_end = any(np.hypot(*(graph[n].xy - graph[e].xy)) <= tolerance for e in line.ends)
        if not near_end:
            line.cuts.append((float(shapely.line_locate_point(geoms[k], points[n])), n))


# --- node file ------------------------------------------------------------------------------
@dataclass
class _Index:
    """Spatial indexes over the network as it stands before the point file is applied."""

    graph: list[_Node]
    lines: list[_Line]
    node_tree: cKDTree | None
    line_geoms: np.ndarray
    line_tree: shapely.STRtree


def _file_node(rec: Mapping[str, Any], cols: Mapping[str, str], others: list[str], i: int) -> _Node:
    text = cell_text(rec[cols["kind"]]) if "kind" in cols else None
    state = cell_text(rec[cols["valve_state"]]) if "valve_state" in cols else None
    kind = codes.node_kind(text, None)
    attrs = {c: attr_value(rec[c]) for c in others}
    if text is not None:
        attrs["appurtenance"] = text
    node_id = cell_text(rec[cols["node_id"]]) if "node_id" in cols else None
    valve_state = None
    if kind in VALVE_KINDS:
        valve_state = (codes.parse_valve_state(state) if state else None) or "open"
    return _Node(
        xy=np.zeros(2),
        node_id=node_id or f"P{i + 1}",
        kind=kind,
        valve_state=valve_state,
        name=cell_text(rec[cols["name"]]) if "name" in cols else None,
        attrs=attrs,
        from_file=True,
    )


def _attach_points(
    path: Path,
    space: _Space,
    lines: list[_Line],
    graph: list[_Node],
    tolerance: float,
    findings: list[Finding],
) -> None:
    """Give nodes the ids and kinds of a point file; a point on a line's interior cuts it."""
    frame = _read_frame(path, None, ("node", "point", "点"))
    points_crs = CRS.from_user_input(frame.crs) if frame.crs is not None else space.src
    transform = (
        space.to_metric
        if points_crs.equals(space.src)
        else Transformer.from_crs(points_crs, space.metric, always_xy=True)
    )
    names = [c for c in frame.columns if c != frame.geometry.name]
    cols = match_columns(names, NODE_FILE_COLUMNS)
    others = [c for c in names if c not in set(cols.values())]
    geoms = frame.geometry.to_numpy()
    line_geoms = _line_geoms(lines)
    index = _Index(
        graph,
        lines,
        cKDTree(np.array([n.xy for n in graph])) if graph else None,
        line_geoms,
        shapely.STRtree(line_geoms),
    )
    used = {n.node_id for n in graph}
    for i, rec in enumerate(frame.drop(columns=frame.geometry.name).to_dict("records")):
        point = _file_node(rec, cols, others, i)
        where = Where("nodes", i + 1, point.node_id)
        geom = geoms[i]
        problem: str | None
        if geom is None or shapely.is_empty(geom) or geom.geom_type != "Point":
            problem = f"point {point.node_id} (feature {i + 1}) has no point geometry (left out)"
        elif point.node_id in used:
            problem = (
                f"point id {point.node_id} (feature {i + 1}) is already a node id; give it its "
                "own id (left out)"
            )
        else:
            point.xy = _apply(transform, np.array([[geom.x, geom.y]]))[0]
            replaced, problem = _place_point(point, index, tolerance)
            if replaced is not None:
                used.discard(replaced)
                used.add(point.node_id)
        if problem is not None:
            findings.append(where.finding("unattached_point", problem, "warning"))


def _place_point(point: _Node, index: _Index, tolerance: float) -> tuple[str | None, str | None]:
    """Attach a point to a node, or cut a line with it: (id it replaces, complaint)."""
    if index.node_tree is not None:
        dist, n = index.node_tree.query(point.xy, distance_upper_bound=tolerance)
        if np.isfinite(dist):
            node = index.graph[int(n)]
            if node.from_file:
                return None, (
                    f"point {point.node_id} falls on the node already taken by point "
                    f"{node.node_id} ({dist:.2f} m apart); it is left out"
                )
            point.xy = node.xy
            index.graph[int(n)] = point
            return node.node_id, None
    if not index.lines:
        return None, f"point {point.node_id} was not attached: there are no lines"
    location = shapely.points(point.xy)
    found, dists = index.line_tree.query_nearest(location, return_distance=True)
    k, dist = int(found[0]), float(dists[0])
    if dist > tolerance:
        return None, (
            f"point {point.node_id} is {dist:.2f} m from the nearest line, farther than the "
            f"tolerance of {tolerance} m; it was not attached: move it onto its pipe"
        )
    index.graph.append(point)
    along = float(shapely.line_locate_point(index.line_geoms[k], location))
    index.lines[k].cuts.append((along, len(index.graph) - 1))
    return point.node_id, None


# --- segments and nodes ---------------------------------------------------------------------
def _stops(line: _Line, length: float) -> list[tuple[float, int]]:
    """The line's nodes in order along it: its ends and the cuts between them."""
    stops = [(0.0, line.ends[0])]
    for along, n in sorted(line.cuts):
        if _EPS < along < length - _EPS and all(n != m for _, m in stops):
            stops.append((along, n))
    stops.append((length, line.ends[1]))
    return stops


def _segments(
    lines: list[_Line], graph: list[_Node], node_src: np.ndarray, findings: list[Finding]
) -> list[Segment]:
    segments: list[Segment] = []
    for line in lines:
        steps = np.hypot(*np.diff(line.metric, axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(steps)])
        stops = _stops(line, float(cum[-1]))
        parts = len(stops) - 1
        for k in range(parts):
            (a, na), (b, nb) = stops[k], stops[k + 1]
            inside = (cum > a + _EPS) & (cum < b - _EPS)
            coords = np.vstack([node_src[na], line.src[inside], node_src[nb]])
            pipe_id = line.pipe_id if parts == 1 else f"{line.pipe_id}-{k + 1}"
            if na == nb:
                metric = np.vstack([graph[na].xy, line.metric[inside], graph[nb].xy])
                length = float(np.hypot(*np.diff(metric, axis=0).T).sum())
                findings.append(
                    Finding(
                        "self_loop",
                        f"line {pipe_id} (feature {line.feature}) starts and ends at node "
                        f"{graph[na].node_id} (a loop {length:.2f} m long); split it or "
                        "correct its ends",
                        "error",
                        line.feature,
                        pipe_id,
                        "lines",
                    )
                )
            values = dict(line.values)
            values["attrs"] = dict(line.values["attrs"])
            segments.append(
                Segment(
                    pipe_id=pipe_id,
                    from_node=graph[na].node_id,
                    to_node=graph[nb].node_id,
                    coords=[(float(x), float(y)) for x, y in coords],
                    **values,
                )
            )
    return segments


def _network_nodes(
    graph: list[_Node],
    node_src: np.ndarray,
    segments: list[Segment],
    default: tuple[str, str | None] | None,
) -> list[Node]:
    classes: dict[str, tuple[str, str | None]] = {}
    for seg in segments:
        for node_id in (seg.from_node, seg.to_node):
            classes.setdefault(node_id, (seg.utility, seg.subclass))
    nodes = []
    for node, (x, y) in zip(graph, node_src, strict=True):
        cls = classes.get(node.node_id) or default
        nodes.append(
            Node(
                node_id=node.node_id,
                kind=node.kind,
                x=float(x),
                y=float(y),
                valve_state=node.valve_state,
                name=node.name,
                feature_code=codes.node_code(cls[0], cls[1], node.kind) if cls else None,
                attrs=node.attrs,
            )
        )
    return nodes
