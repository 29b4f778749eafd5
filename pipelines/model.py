"""A pipe network as the importers hand it to the store: nodes, segments and findings.

Every importer (survey tables, plain GIS lines, EPANET ``.inp``) produces a `NetworkData` in
the coordinates of its source CRS (``crs``); `pipelines.store` checks it, transforms it
to lon/lat and writes it in one transaction. Node and segment ids are the source's own (survey
point numbers 物探点号, pipe ids, EPANET ids) and stay the keys users search by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# CJJ 61 utility classes: code -> (digit, Chinese name, English name, RGB colour).
UTILITIES: dict[str, tuple[str, str, str, tuple[int, int, int]]] = {
    "JS": ("1", "给水", "water supply", (0, 255, 255)),
    "PS": ("2", "排水", "drainage", (76, 57, 38)),
    "RQ": ("3", "燃气", "gas", (255, 0, 255)),
    "RL": ("4", "热力", "heat", (255, 128, 0)),
    "DL": ("5", "电力", "power", (255, 0, 0)),
    "TX": ("6", "通信", "telecom", (0, 255, 0)),
    "GY": ("7", "工业", "industrial", (0, 0, 0)),
    "QT": ("8", "其他", "other", (0, 0, 0)),
}
# Sub-classes per class (CJJ 61): code -> Chinese name.
SUBCLASSES: dict[str, dict[str, str]] = {
    "JS": {
        "JY": "原水",
        "SS": "输水",
        "ZS": "中水",
        "JP": "配水",
        "JZ": "直饮水",
        "XS": "消防水",
        "LS": "绿化水",
        "JH": "循环水",
    },
    "PS": {"YS": "雨水", "WS": "污水", "HS": "雨污合流"},
    "RQ": {"MQ": "煤气", "YH": "液化气", "TR": "天然气"},
    "RL": {"RS": "热水", "ZQ": "蒸汽"},
    "DL": {"GD": "供电", "LD": "路灯", "XH": "交通信号", "DC": "电车", "GG": "广告"},
    "TX": {"DH": "电话", "DS": "有线电视", "XX": "信息网络", "GB": "广播"},
    "GY": {"QQ": "氢气", "YQ": "氧气"},
    "QT": {"ZH": "综合管沟", "BM": "不明管线"},
}
# Gravity networks flow by invert; the others are pressure networks.
GRAVITY_UTILITIES = {"PS"}
# Network class digit and geometry digit used in 8-digit feature codes (5 + class + sub-class
# index + geometry + point kind + sequence): see `feature_code`.

# Node kinds. Sources feed pressure networks (a trace "upstream" goes toward them); isolation
# valves bound valve segments; service points are the customers an outage reaches.
SOURCE_KINDS = frozenset({"source", "plant", "reservoir", "tank", "regulator"})
# Control valves (EPANET's PRV, PSV, PBV, FCV, TCV, GPV, PCV) regulate what passes rather than
# shut a main off, so by default water passes them and they bound no segment (as in WNTR's
# valve_segments); an isolation may count them as closable (CONTROL_VALVE_RULES).
ISOLATION_VALVE_KINDS = frozenset({"valve"})
CONTROL_VALVE_KINDS = frozenset({"control_valve"})
VALVE_KINDS = ISOLATION_VALVE_KINDS | CONTROL_VALVE_KINDS  # the kinds with a valve_state
CONTROL_VALVE_RULES = ("passable", "closable")
SERVICE_KINDS = frozenset({"meter", "service"})
SINK_KINDS = frozenset({"outfall", "treatment_plant"})
NODE_KINDS = frozenset(
    {"junction", "hydrant", "manhole", "inlet", "pump_station", "fitting"}
    | SOURCE_KINDS
    | VALVE_KINDS
    | SERVICE_KINDS
    | SINK_KINDS
)
VALVE_STATES = ("open", "closed", "inoperable")
FLOWS = ("forward", "reverse", "none")  # along the geometry, from from_node to to_node
# Segment state (CJJ 61): 在用 0, 废弃 1, 空管 2, 其他 3.
STATES = ("在用", "废弃", "空管", "其他")


@dataclass
class Node:
    node_id: str
    kind: str  # one of NODE_KINDS
    x: float  # in NetworkData.crs (easting / longitude)
    y: float  # northing / latitude
    valve_state: str | None = None  # VALVE_KINDS only: open, closed, inoperable
    ground_elev_m: float | None = None
    invert_m: float | None = None  # pipe bottom (gravity) or pipe elevation at the node
    depth_m: float | None = None
    name: str | None = None
    feature_code: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)  # everything else, kept as given


@dataclass
class Segment:
    pipe_id: str
    from_node: str
    to_node: str
    coords: list[tuple[float, float]]  # from from_node to to_node, in NetworkData.crs
    utility: str  # a key of UTILITIES
    subclass: str | None = None
    diameter_mm: float | None = None
    section: str | None = None  # 宽×高 for box sections, e.g. "800x600"
    material: str | None = None  # CJJ 61 code: ZT, G, T, PE, PVC, BLG, QM, ZS, TC, ...
    year_laid: int | None = None
    depth_m: float | None = None  # cover depth where one figure is given
    start_depth_m: float | None = None
    end_depth_m: float | None = None
    start_invert_m: float | None = None
    end_invert_m: float | None = None
    flow: str | None = None  # one of FLOWS; gravity networks default to forward
    state: str = "在用"  # one of STATES
    owner: str | None = None  # 权属单位
    laying: str | None = None  # ZM, GK, GG, JK, ZH, DG, ...
    feature_code: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    """A problem found in the source: errors stop the import (unless skipped), warnings are
    reported and the data loads."""

    kind: str  # short key, e.g. "same_ends", "unknown_point", "elevation_mismatch"
    message: str  # what is wrong and what to fix, naming the ids
    severity: str = "error"  # "error" or "warning"
    row: int | None = None  # 1-based row (or line) in the source file, when known
    ref: str | None = None  # the point number / pipe id it is about
    table: str | None = None  # which source table or section


@dataclass
class NetworkData:
    nodes: list[Node]
    segments: list[Segment]
    crs: str  # anything pyproj accepts, e.g. "EPSG:4548"; "EPSG:4326" for lon/lat
    findings: list[Finding] = field(default_factory=list)
    source: str = ""  # the file(s) it came from, for the report

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]
