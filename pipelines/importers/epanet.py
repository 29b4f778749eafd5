"""Reading an EPANET ``.inp`` file into a `NetworkData`: topology and geometry only.

Water utilities keep their hydraulic model in EPANET, and it is often the only complete map of
the distribution network they have. We read just what the twin needs — nodes, links, their
placement and sizes — with our own small parser: it reports problems by file line (a model
exported by hand-edited tools is often slightly broken, and "line 812 [PIPES]" is what lets
someone fix it), and it keeps heavy hydraulic packages out of the server.

EPANET models valves and pumps as links between two nodes; in the twin they are point
features on a pipe, so each becomes a node halfway along the link with two short segments
either side. EPANET's valves (PRV, TCV, ...) are control valves: they regulate flow, so they
become ``control_valve`` nodes, which water passes in a valve segmentation unless an isolation
counts them as closable. Isolation valves, which EPANET does not model at all, can be added
from a WNTR style valve layer (pairs of pipe and end node).

The coordinates of an ``.inp`` file are local planar units; an optional affine transform
places them in the target CRS (``x' = a*x + b*y + c``, ``y' = d*x + e*y + f``, the order
rasterio's ``Affine`` uses).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import difflib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyproj import CRS
from pyproj.exceptions import CRSError

from pipelines.model import SUBCLASSES, UTILITIES, Finding, NetworkData, Node, Segment
from twin.crs import parse_crs
from twin.errors import InvalidData, InvalidParameter

Affine6 = tuple[float, float, float, float, float, float]
XY = tuple[float, float]

# Flow units decide the unit system of every other quantity in the file.
US_UNITS = frozenset({"CFS", "GPM", "MGD", "IMGD", "AFD"})
SI_UNITS = frozenset({"LPS", "LPM", "MLD", "CMH", "CMD"})
DEFAULT_UNITS = "GPM"  # what EPANET assumes when [OPTIONS] names none
FOOT_M = 0.3048
INCH_MM = 25.4

VALVE_TYPES = ("PRV", "PSV", "PBV", "FCV", "TCV", "GPV", "PCV")  # PCV: EPANET 2.3
PIPE_STATUSES = {"OPEN": "Open", "CLOSED": "Closed", "CV": "CV"}
PUMP_KEYWORDS = ("HEAD", "POWER", "SPEED", "PATTERN")
PUMP_NUMERIC = frozenset({"POWER", "SPEED"})

# Sections we read, with the fields a line needs (the names are used in messages).
FIELDS: dict[str, tuple[str, ...]] = {
    "JUNCTIONS": ("id", "elevation"),
    "RESERVOIRS": ("id", "head"),
    "TANKS": ("id", "elevation", "initlevel", "minlevel", "maxlevel", "diameter"),
    "PIPES": ("id", "node1", "node2", "length", "diameter", "roughness"),
    "VALVES": ("id", "node1", "node2", "diameter", "type", "setting"),
    "PUMPS": ("id", "node1", "node2", "keyword", "value"),
    "STATUS": ("link", "status"),
    "COORDINATES": ("node", "x", "y"),
    "VERTICES": ("link", "x", "y"),
    "OPTIONS": ("option",),
}
# Standard sections that say nothing about where the network lies: accepted and skipped.
SKIPPED = frozenset(
    {
        "TITLE",
        "DEMANDS",
        "PATTERNS",
        "CURVES",
        "CONTROLS",
        "RULES",
        "ENERGY",
        "EMITTERS",
        "QUALITY",
        "SOURCES",
        "REACTIONS",
        "MIXING",
        "TIMES",
        "REPORT",
        "LABELS",
        "BACKDROP",
        "TAGS",
        "LEAKAGE",
        "ROUGHNESS",  # listed by EPANET's own parser, never used
    }
)
NODE_SECTIONS = "[JUNCTIONS], [RESERVOIRS] or [TANKS]"
MAX_LISTED = 20  # problems spelled out in one error message


# --------------------------------------------------------------------------- arguments


def parse_affine(text: str) -> Affine6:
    """``"a,b,c,d,e,f"`` -> six floats, as a CLI or form gives the transform."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 6:
        raise InvalidParameter(
            f"affine must be six numbers a,b,c,d,e,f (x' = a*x + b*y + c, y' = d*x + e*y + f); "
            f"got {len(parts)} value(s) in {text!r}"
        )
    values = []
    for name, part in zip("abcdef", parts, strict=True):
        value = _to_float(part)
        if value is None:
            raise InvalidParameter(f"affine value {name} = {part!r} is not a number")
        values.append(value)
    a, b, c, d, e, f = values
    return _check_affine((a, b, c, d, e, f))


def _check_affine(affine: Affine6) -> Affine6:
    if len(affine) != 6:
        raise InvalidParameter("affine must have six numbers a, b, c, d, e, f")
    try:
        values = tuple(float(v) for v in affine)
    except (TypeError, ValueError):
        raise InvalidParameter(f"affine {affine!r} holds a value that is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise InvalidParameter(f"affine {affine!r} holds a value that is not finite")
    a, b, c, d, e, f = values
    if a * e - b * d == 0:
        raise InvalidParameter(
            f"affine {affine!r} is singular (a*e - b*d = 0): it would collapse the network "
            "onto a line"
        )
    return (a, b, c, d, e, f)


def _to_float(text: str) -> float | None:
    """A finite float, or None; rejects what Python's float() takes but EPANET does not."""
    if "_" in text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class _Metric:
    """How lengths along a link are measured when placing valves, pumps and isolation valves.

    Offsets are in metres: in the output CRS when it is projected (scaled by its unit), in the
    file's own units when the output is lon/lat reached through an affine (the local grid is
    metric, degrees are not), and along the ellipsoid for lon/lat without an affine.
    """

    def __init__(self, crs: CRS, has_affine: bool) -> None:
        self.geod = crs.get_geod() if crs.is_geographic and not has_affine else None
        self.use_local = crs.is_geographic and has_affine
        self.factor = 1.0
        if not crs.is_geographic and crs.axis_info:
            self.factor = crs.axis_info[0].unit_conversion_factor or 1.0

    def lengths(self, local: list[XY], out: list[XY]) -> list[float]:
        if self.geod is not None:
            return [
                float(self.geod.inv(x0, y0, x1, y1)[2])
                for (x0, y0), (x1, y1) in zip(out, out[1:], strict=False)
            ]
        coords = local if self.use_local else out
        return [
            math.hypot(x1 - x0, y1 - y0) * self.factor
            for (x0, y0), (x1, y1) in zip(coords, coords[1:], strict=False)
        ]


def _target_crs(crs: str) -> CRS:
    try:
        return CRS.from_user_input(crs)
    except CRSError:
        pass
    try:  # the project's own spellings: '4490', CRS84, OGC URIs, gcj02
        ref = parse_crs(crs)
    except InvalidParameter:
        raise InvalidParameter(
            f"crs {crs!r} is not a coordinate reference system: use an EPSG code such as EPSG:4547"
        ) from None
    return CRS.from_epsg(ref.srid)  # CRS84 and GCJ-02 are lon/lat, measured like WGS84


def _check_arguments(
    crs: str,
    affine: Affine6 | None,
    utility: str,
    subclass: str | None,
    valve_offset_m: float,
) -> tuple[_Metric, Affine6 | None]:
    target = _target_crs(crs)
    if utility not in UTILITIES:
        raise InvalidParameter(f"utility {utility!r} is not one of {', '.join(UTILITIES)}")
    if subclass is not None and subclass not in SUBCLASSES.get(utility, {}):
        known = ", ".join(SUBCLASSES.get(utility, {})) or "none"
        raise InvalidParameter(
            f"subclass {subclass!r} is not a sub-class of {utility} (known: {known})"
        )
    if not (isinstance(valve_offset_m, int | float) and 0 < valve_offset_m < math.inf):
        raise InvalidParameter(f"valve_offset_m must be a positive number, not {valve_offset_m!r}")
    checked = _check_affine(affine) if affine is not None else None
    return _Metric(target, checked is not None), checked


# --------------------------------------------------------------------------- text


def _decode(data: bytes, name: str) -> str:
    """Text of a file: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030.

    Chinese utilities' tools save in GB18030 (GBK) as often as in UTF-8; a UTF-8 decode of
    GBK bytes fails, while GB18030 accepts nearly any byte string, so the order matters.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", errors="replace")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("gb18030")
            except UnicodeDecodeError:
                raise InvalidData(f"{name} is neither UTF-8 nor GB18030 text") from None
    if "\x00" in text:
        raise InvalidData(f"{name} is a binary file, not a text file")
    return text


def _lines(text: str) -> list[str]:
    """Lines split on LF, CRLF or CR only, so numbers match what an editor shows."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _tokens(text: str) -> list[str]:
    """Whitespace-separated fields; EPANET 2.2 lets a double-quoted field hold spaces."""
    if '"' not in text:
        return text.split()
    tokens: list[str] = []
    for i, part in enumerate(text.split('"')):
        if i % 2:
            tokens.append(part)
        else:
            tokens.extend(part.split())
    return tokens


# --------------------------------------------------------------------------- parsing


@dataclass
class _NodeRec:
    line: int
    section: str
    node_id: str
    kind: str  # junction, reservoir, tank
    values: dict[str, Any]  # numbers in file units


@dataclass
class _LinkRec:
    line: int
    section: str
    link_id: str
    kind: str  # pipe, valve, pump
    node1: str
    node2: str
    values: dict[str, Any]


@dataclass
class _Parsed:
    name: str
    nodes: dict[str, _NodeRec] = field(default_factory=dict)
    links: dict[str, _LinkRec] = field(default_factory=dict)
    coords: dict[str, XY] = field(default_factory=dict)
    coord_lines: dict[str, int] = field(default_factory=dict)
    vertices: dict[str, list[XY]] = field(default_factory=dict)
    vertex_lines: dict[str, int] = field(default_factory=dict)  # first line per link
    status: dict[str, tuple[int, str]] = field(default_factory=dict)
    units: str = DEFAULT_UNITS
    partial_ids: set[str] = field(default_factory=set)  # ids on lines too short to read
    unknown_section: bool = False
    problems: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    def error(self, line: int, section: str | None, message: str) -> None:
        where = f"line {line} [{section}]" if section else f"line {line}"
        self.problems.append((line, f"{self.name} {where}: {message}"))

    def number(self, line: int, section: str, what: str, text: str) -> float:
        """The field as a float; a bad one is recorded and read as NaN so parsing goes on."""
        value = _to_float(text)
        if value is None:
            self.error(line, section, f"{what} {text!r} is not a number")
            return math.nan
        return value

    def raise_problems(self) -> None:
        if not self.problems:
            return
        ordered = [m for _, m in sorted(self.problems, key=lambda p: p[0])]
        if len(ordered) == 1:
            raise InvalidData(ordered[0])
        shown = ordered[:MAX_LISTED]
        more = len(ordered) - len(shown)
        tail = f"\n... and {more} more" if more else ""
        raise InvalidData(
            f"{self.name}: {len(ordered)} problems in the EPANET file:\n" + "\n".join(shown) + tail
        )


class _InpParser:
    """One pass over the lines, dispatching each to the reader of its section."""

    def __init__(self, name: str) -> None:
        self.p = _Parsed(name)
        self.section: str | None = None
        self.known_section = True
        self.before_header_reported = False
        self.handlers = {
            "JUNCTIONS": self._junction,
            "RESERVOIRS": self._reservoir,
            "TANKS": self._tank,
            "PIPES": self._pipe,
            "VALVES": self._valve,
            "PUMPS": self._pump,
            "STATUS": self._status,
            "COORDINATES": self._coordinate,
            "VERTICES": self._vertex,
            "OPTIONS": self._option,
        }

    def feed(self, text: str) -> _Parsed:
        for number, raw in enumerate(_lines(text), start=1):
            if ";" in raw:
                raw = raw.split(";", 1)[0]
            stripped = raw.strip()
            if not stripped:
                continue
            if stripped[0] == "[":
                if self._header(number, stripped):
                    break
                continue
            self._data(number, stripped)
        return self.p

    def _header(self, line: int, text: str) -> bool:
        """Switch section; True at [END]."""
        end = text.find("]")
        name = (text[1:end] if end > 0 else text[1:]).strip().upper()
        if name == "END":
            return True
        self.section = name
        self.known_section = name in FIELDS or name in SKIPPED
        if not self.known_section:
            close = difflib.get_close_matches(name, [*FIELDS, *SKIPPED, "END"], n=1)
            hint = f"did you mean [{close[0]}]?" if close else "check the spelling"
            self.p.error(line, None, f"unknown section [{name}]: {hint}")
            self.p.unknown_section = True
        return False

    def _data(self, line: int, text: str) -> None:
        if self.section is None:
            if not self.before_header_reported:
                self.p.error(
                    line,
                    None,
                    "data before the first [SECTION] header; an EPANET file starts "
                    "with a section such as [TITLE] or [JUNCTIONS]",
                )
                self.before_header_reported = True
            return
        handler = self.handlers.get(self.section)
        if handler is None:  # a skipped or unknown section
            return
        tokens = _tokens(text)
        need = FIELDS[self.section]
        if len(tokens) < len(need):
            self.p.partial_ids.add(tokens[0])  # so references to it are not reported too
            self.p.error(
                line,
                self.section,
                f"{len(tokens)} field(s) where at least {len(need)} are needed: {' '.join(need)}",
            )
            return
        handler(line, tokens)

    # -- nodes

    def _add_node(self, line: int, t: list[str], kind: str, values: dict[str, Any]) -> None:
        section = str(self.section)
        node_id = t[0]
        previous = self.p.nodes.get(node_id)
        if previous is not None:
            self.p.error(
                line,
                section,
                f"node id {node_id!r} is already used on line {previous.line} "
                f"[{previous.section}]; node ids must be unique across {NODE_SECTIONS}",
            )
            return
        self.p.nodes[node_id] = _NodeRec(line, section, node_id, kind, values)

    def _junction(self, line: int, t: list[str]) -> None:
        values: dict[str, Any] = {
            "elevation": self.p.number(line, "JUNCTIONS", "elevation", t[1]),
            "demand": self.p.number(line, "JUNCTIONS", "demand", t[2]) if len(t) > 2 else 0.0,
            "pattern": t[3] if len(t) > 3 else None,
        }
        self._add_node(line, t, "junction", values)

    def _reservoir(self, line: int, t: list[str]) -> None:
        values = {
            "head": self.p.number(line, "RESERVOIRS", "head", t[1]),
            "pattern": t[2] if len(t) > 2 else None,
        }
        self._add_node(line, t, "reservoir", values)

    def _tank(self, line: int, t: list[str]) -> None:
        names = ("elevation", "initlevel", "minlevel", "maxlevel", "diameter")
        values: dict[str, Any] = {
            name: self.p.number(line, "TANKS", name, text)
            for name, text in zip(names, t[1:6], strict=True)
        }
        # Minimum volume, volume curve and overflow are optional; "*" skips one.
        has_minvol = len(t) > 6 and t[6] != "*"
        values["minvol"] = self.p.number(line, "TANKS", "minvol", t[6]) if has_minvol else 0.0
        values["volcurve"] = t[7] if len(t) > 7 and t[7] != "*" else None
        values["overflow"] = t[8].upper() in ("YES", "TRUE") if len(t) > 8 else None
        self._add_node(line, t, "tank", values)

    # -- links

    def _add_link(self, line: int, t: list[str], kind: str, values: dict[str, Any]) -> None:
        section = str(self.section)
        link_id = t[0]
        previous = self.p.links.get(link_id)
        if previous is not None:
            self.p.error(
                line,
                section,
                f"link id {link_id!r} is already used on line {previous.line} "
                f"[{previous.section}]; link ids must be unique across [PIPES], [VALVES] and "
                "[PUMPS]",
            )
            return
        self.p.links[link_id] = _LinkRec(line, section, link_id, kind, t[1], t[2], values)

    def _pipe_status(self, line: int, text: str) -> str:
        status = PIPE_STATUSES.get(text.upper())
        if status is None:
            self.p.error(line, "PIPES", f"status {text!r} is not Open, Closed or CV")
            return "Open"
        return status

    def _pipe(self, line: int, t: list[str]) -> None:
        values: dict[str, Any] = {
            "length": self.p.number(line, "PIPES", "length", t[3]),
            "diameter": self.p.number(line, "PIPES", "diameter", t[4]),
            "roughness": self.p.number(line, "PIPES", "roughness", t[5]),
            "minor_loss": 0.0,
            "status": "Open",
        }
        extra = t[6:8]
        if len(extra) == 1 and extra[0].upper() in PIPE_STATUSES:
            values["status"] = self._pipe_status(line, extra[0])  # status without minor loss
        elif extra:
            values["minor_loss"] = self.p.number(line, "PIPES", "minor loss", extra[0])
            if len(extra) > 1:
                values["status"] = self._pipe_status(line, extra[1])
        self._add_link(line, t, "pipe", values)

    def _valve(self, line: int, t: list[str]) -> None:
        valve_type = t[4].upper()
        if valve_type not in VALVE_TYPES:
            self.p.error(
                line,
                "VALVES",
                f"valve type {t[4]!r} is not one of {', '.join(VALVE_TYPES)}",
            )
        setting: float | str = t[5]  # a GPV's setting is the id of its head-loss curve
        if valve_type != "GPV":
            setting = self.p.number(line, "VALVES", "setting", t[5])
        values: dict[str, Any] = {
            "diameter": self.p.number(line, "VALVES", "diameter", t[3]),
            "valve_type": valve_type,
            "setting": setting,
            "minor_loss": self.p.number(line, "VALVES", "minor loss", t[6]) if len(t) > 6 else 0.0,
        }
        if len(t) > 7:
            values["curve"] = t[7]
        self._add_link(line, t, "valve", values)

    def _pump(self, line: int, t: list[str]) -> None:
        params: dict[str, Any] = {}
        pairs = t[3:]
        if len(pairs) % 2:
            self.p.error(
                line,
                "PUMPS",
                f"keyword {pairs[-1]!r} has no value; after id node1 node2 give keyword/value "
                f"pairs ({', '.join(PUMP_KEYWORDS)})",
            )
        for key, value in zip(pairs[::2], pairs[1::2], strict=False):
            keyword = key.upper()
            if keyword not in PUMP_KEYWORDS:
                self.p.error(
                    line,
                    "PUMPS",
                    f"pump keyword {key!r} is not one of {', '.join(PUMP_KEYWORDS)}",
                )
            elif keyword in PUMP_NUMERIC:
                params[keyword] = self.p.number(line, "PUMPS", keyword.lower(), value)
            else:
                params[keyword] = value
        self._add_link(line, t, "pump", {"pump": params})

    # -- everything else

    def _status(self, line: int, t: list[str]) -> None:
        value = t[1].upper()
        if value not in ("OPEN", "CLOSED", "ACTIVE") and _to_float(t[1]) is None:
            self.p.error(line, "STATUS", f"status {t[1]!r} is not Open, Closed, Active or a number")
            return
        self.p.status[t[0]] = (line, value)

    def _coordinate(self, line: int, t: list[str]) -> None:
        x = self.p.number(line, "COORDINATES", "x", t[1])
        y = self.p.number(line, "COORDINATES", "y", t[2])
        previous = self.p.coord_lines.get(t[0])
        if previous is not None:
            self.p.error(
                line,
                "COORDINATES",
                f"node {t[0]!r} already has coordinates on line {previous}; keep one of them",
            )
            return
        self.p.coords[t[0]] = (x, y)
        self.p.coord_lines[t[0]] = line

    def _vertex(self, line: int, t: list[str]) -> None:
        x = self.p.number(line, "VERTICES", "x", t[1])
        y = self.p.number(line, "VERTICES", "y", t[2])
        self.p.vertices.setdefault(t[0], []).append((x, y))
        self.p.vertex_lines.setdefault(t[0], line)

    def _option(self, line: int, t: list[str]) -> None:
        if t[0].upper() != "UNITS":
            return
        units = t[1].upper() if len(t) > 1 else ""
        if units not in US_UNITS and units not in SI_UNITS:
            known = ", ".join(sorted(US_UNITS | SI_UNITS))
            self.p.error(line, "OPTIONS", f"UNITS {units or '(none)'!r} is not one of {known}")
            return
        self.p.units = units


# --------------------------------------------------------------------------- cross-checks


def _check_links(p: _Parsed) -> None:
    for link in p.links.values():
        for end in (link.node1, link.node2):
            if end not in p.nodes and end not in p.partial_ids:
                p.error(
                    link.line,
                    link.section,
                    f"{link.kind} {link.link_id!r}: node {end!r} is not defined in {NODE_SECTIONS}",
                )
        if link.node1 == link.node2:
            p.error(
                link.line,
                link.section,
                f"{link.kind} {link.link_id!r} starts and ends at node {link.node1!r}; a link "
                "joins two different nodes",
            )
        if link.kind != "pipe" and link.link_id in p.nodes:
            node = p.nodes[link.link_id]
            p.error(
                link.line,
                link.section,
                f"{link.kind} {link.link_id!r} becomes a node of the network, but node "
                f"{link.link_id!r} is already defined on line {node.line} [{node.section}]; "
                "rename one of them",
            )


def _check_segment_ids(p: _Parsed) -> None:
    """Valves and pumps become segments "<id>-1" and "<id>-2"; those must not clash."""
    owners: dict[str, _LinkRec] = {}
    for link in p.links.values():
        ids = [link.link_id] if link.kind == "pipe" else [f"{link.link_id}-1", f"{link.link_id}-2"]
        for seg_id in ids:
            other = owners.get(seg_id)
            if other is not None:
                p.error(
                    link.line,
                    link.section,
                    f"segment id {seg_id!r} of {link.kind} {link.link_id!r} is also made by "
                    f"{other.kind} {other.link_id!r} (line {other.line}); rename one of them",
                )
            owners[seg_id] = link


def _check_references(p: _Parsed) -> None:
    for link_id, (line, _value) in p.status.items():
        if link_id not in p.links and link_id not in p.partial_ids:
            p.error(
                line, "STATUS", f"link {link_id!r} is not defined in [PIPES], [VALVES] or [PUMPS]"
            )
    for link_id, line in p.vertex_lines.items():
        if link_id not in p.links:
            message = f"vertices given for undefined link {link_id!r} were ignored"
            p.warnings.append(
                Finding("unknown_link", message, "warning", line, link_id, "VERTICES")
            )
    for node_id, line in p.coord_lines.items():
        if node_id not in p.nodes:
            message = f"coordinates given for undefined node {node_id!r} were ignored"
            p.warnings.append(
                Finding("unknown_node", message, "warning", line, node_id, "COORDINATES")
            )


def _check_placed(p: _Parsed) -> None:
    missing = [
        n for n in p.nodes.values() if n.node_id not in p.coords and n.node_id not in p.partial_ids
    ]
    if not missing:
        return
    listed = ", ".join(n.node_id for n in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    first = missing[0]
    p.error(
        first.line,
        first.section,
        f"{len(missing)} node(s) have no coordinates in [COORDINATES]: {listed}{more}; every "
        "node has to be placed on the map, add a 'node x y' line for each",
    )


def _parse(text: str, name: str) -> _Parsed:
    p = _InpParser(name).feed(text)
    if not p.unknown_section:  # an unread section may hold what the checks would miss
        _check_links(p)
        _check_segment_ids(p)
        _check_references(p)
        _check_placed(p)
    p.raise_problems()
    if not p.nodes:
        raise InvalidData(
            f"{name} holds no nodes: an EPANET .inp file lists them in {NODE_SECTIONS}"
        )
    return p


# --------------------------------------------------------------------------- geometry


def _locate(lengths: list[float], dist: float) -> tuple[int, float]:
    """Index of the part of a polyline holding `dist`, and the fraction along that part."""
    acc = 0.0
    for i, part in enumerate(lengths):
        if acc + part >= dist:
            return i, (min(max((dist - acc) / part, 0.0), 1.0) if part > 0 else 0.0)
        acc += part
    return len(lengths) - 1, 1.0


def _cut(
    coords: list[XY], lengths: list[float], dist: float
) -> tuple[XY, list[XY], list[XY], list[float], list[float]]:
    """Cut a polyline `dist` along it: the point and both pieces with their part lengths.

    The cut lands on an existing vertex when it falls there, so pieces never repeat a point.
    """
    i, t = _locate(lengths, dist)
    if t <= 0.0:
        point = coords[i]
        first, second = coords[: i + 1], coords[i:]
        first_len, second_len = lengths[:i], lengths[i:]
    elif t >= 1.0:
        point = coords[i + 1]
        first, second = coords[: i + 2], coords[i + 1 :]
        first_len, second_len = lengths[: i + 1], lengths[i + 1 :]
    else:
        (x0, y0), (x1, y1) = coords[i], coords[i + 1]
        point = (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
        first, second = [*coords[: i + 1], point], [point, *coords[i + 1 :]]
        first_len = [*lengths[:i], t * lengths[i]]
        second_len = [(1 - t) * lengths[i], *lengths[i + 1 :]]
    if len(first) < 2:  # a cut at the very start of a zero-length line
        first, first_len = [point, point], [0.0]
    if len(second) < 2:
        second, second_len = [point, point], [0.0]
    return point, first, second, first_len, second_len


@dataclass
class _Units:
    length: float  # file length/elevation unit -> m
    diameter: float  # file pipe diameter unit -> mm
    volume: float  # file volume unit -> m3

    @classmethod
    def of(cls, flow_units: str) -> _Units:
        if flow_units in US_UNITS:
            return cls(FOOT_M, INCH_MM, FOOT_M**3)
        return cls(1.0, 1.0, 1.0)


# --------------------------------------------------------------------------- building


@dataclass
class _PipeGeom:
    line: int
    segment: Segment
    local: list[XY]


class _Builder:
    """Turns the parsed records into model nodes and segments, in file order."""

    def __init__(
        self,
        p: _Parsed,
        metric: _Metric,
        affine: Affine6 | None,
        utility: str,
        subclass: str | None,
    ) -> None:
        self.p = p
        self.metric = metric
        self.affine = affine
        self.utility = utility
        self.subclass = subclass
        self.units = _Units.of(p.units)
        # (line, order within the line, item): sorted at the end so output follows the file.
        self.nodes: list[tuple[int, int, Node]] = []
        self.segments: list[tuple[int, int, Segment]] = []
        self.pipes: dict[str, _PipeGeom] = {}

    def place(self, xy: XY) -> XY:
        if self.affine is None:
            return xy
        a, b, c, d, e, f = self.affine
        x, y = xy
        return (a * x + b * y + c, d * x + e * y + f)

    def build(self) -> None:
        for rec in self.p.nodes.values():
            self.nodes.append((rec.line, 0, self._node(rec)))
        for link in self.p.links.values():
            local = [
                self.p.coords[link.node1],
                *self.p.vertices.get(link.link_id, []),
                self.p.coords[link.node2],
            ]
            if link.kind == "pipe":
                self._pipe(link, local)
            else:
                self._split_link(link, local)

    def result(self) -> tuple[list[Node], list[Segment]]:
        nodes = [n for _, _, n in sorted(self.nodes, key=lambda e: (e[0], e[1]))]
        segments = [s for _, _, s in sorted(self.segments, key=lambda e: (e[0], e[1]))]
        return nodes, segments

    # -- nodes

    def _node(self, rec: _NodeRec) -> Node:
        x, y = self.place(self.p.coords[rec.node_id])
        v = rec.values
        m = self.units.length
        if rec.kind == "junction":
            attrs: dict[str, Any] = {
                "elevation_m": v["elevation"] * m,
                "demand": v["demand"],
                "demand_units": self.p.units,
            }
            if v["pattern"]:
                attrs["pattern"] = v["pattern"]
            return Node(rec.node_id, "junction", x, y, invert_m=attrs["elevation_m"], attrs=attrs)
        if rec.kind == "reservoir":
            attrs = {"head_m": v["head"] * m}
            if v["pattern"]:
                attrs["pattern"] = v["pattern"]
            return Node(rec.node_id, "reservoir", x, y, attrs=attrs)
        return Node(rec.node_id, "tank", x, y, invert_m=v["elevation"] * m, attrs=self._tank(v))

    def _tank(self, v: dict[str, Any]) -> dict[str, Any]:
        m = self.units.length
        attrs: dict[str, Any] = {
            "elevation_m": v["elevation"] * m,
            "init_level_m": v.get("initlevel", 0.0) * m,
            "min_level_m": v.get("minlevel", 0.0) * m,
            "max_level_m": v.get("maxlevel", 0.0) * m,
            "diameter_m": v.get("diameter", 0.0) * m,
            "min_volume_m3": v["minvol"] * self.units.volume,
        }
        if v["volcurve"]:
            attrs["volume_curve"] = v["volcurve"]
        if v["overflow"] is not None:
            attrs["overflow"] = v["overflow"]
        return attrs

    # -- links

    def _segment(self, seg_id: str, a: str, b: str, coords: list[XY], **kw: Any) -> Segment:
        return Segment(seg_id, a, b, coords, self.utility, subclass=self.subclass, **kw)

    def _pipe(self, link: _LinkRec, local: list[XY]) -> None:
        v = link.values
        status = _pipe_status(v["status"], self.p.status.get(link.link_id, (0, ""))[1])
        attrs = {
            "length_m": v["length"] * self.units.length,
            "roughness": v["roughness"],
            "minor_loss": v["minor_loss"],
            "status": status,
        }
        out = [self.place(xy) for xy in local]
        seg = self._segment(
            link.link_id,
            link.node1,
            link.node2,
            out,
            diameter_mm=v["diameter"] * self.units.diameter,
            attrs=attrs,
        )
        self.segments.append((link.line, 1, seg))
        self.pipes[link.link_id] = _PipeGeom(link.line, seg, local)

    def _split_link(self, link: _LinkRec, local: list[XY]) -> None:
        """A control valve or pump: a node halfway along the link and a segment either side."""
        out = [self.place(xy) for xy in local]
        lengths = self.metric.lengths(local, out)
        point, first, second, _, _ = _cut(out, lengths, sum(lengths) / 2)
        status = self.p.status.get(link.link_id, (0, ""))[1]
        v = link.values
        node = Node(link.link_id, "control_valve", point[0], point[1])
        diameter = None
        if link.kind == "valve":
            node.valve_state = "closed" if status == "CLOSED" else "open"  # fixed in [STATUS]
            keys = ("valve_type", "setting", "minor_loss", "curve")
            node.attrs = {k: v[k] for k in keys if k in v}
            diameter = v["diameter"] * self.units.diameter
        else:
            node.kind = "pump_station"
            node.attrs = {"pump": dict(v["pump"])}
        node.attrs.update(_link_status(link.kind, status))
        self.nodes.append((link.line, 0, node))
        attrs = {"link_id": link.link_id, "link_type": link.kind}
        for n, (a, b, coords) in enumerate(
            ((link.node1, link.link_id, first), (link.link_id, link.node2, second))
        ):
            seg = self._segment(
                f"{link.link_id}-{n + 1}", a, b, coords, diameter_mm=diameter, attrs=dict(attrs)
            )
            self.segments.append((link.line, n, seg))

    # -- isolation valves

    def isolate(self, pairs: list[tuple[str, str]], offset_m: float) -> None:
        for link_id, ends in self._check_pairs(pairs).items():
            self._isolate_pipe(self.pipes[link_id], ends, offset_m)

    def _check_pairs(self, pairs: list[tuple[str, str]]) -> dict[str, set[str]]:
        problems: list[str] = []
        seen: dict[tuple[str, str], str] = {}
        wanted: dict[str, set[str]] = {}
        node_ids = {n.node_id for _, _, n in self.nodes}
        seg_ids = {s.pipe_id for _, _, s in self.segments}
        for number, pair in enumerate(pairs, start=1):
            label = _pair_label(pair, number)
            if len(pair) != 2:
                problems.append(f"{label}: expected a (link, node) pair")
                continue
            link_id, node_id = str(pair[0]).strip(), str(pair[1]).strip()
            problem = self._pair_problem(link_id, node_id, node_ids, seg_ids)
            if problem is None and (link_id, node_id) in seen:
                problem = f"given twice (first {seen[(link_id, node_id)]})"
            if problem:
                problems.append(f"{label}: {problem}")
                continue
            seen[(link_id, node_id)] = label
            wanted.setdefault(link_id, set()).add(node_id)
        if problems:
            shown = "\n".join(problems[:MAX_LISTED])
            more = (
                f"\n... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
            )
            raise InvalidParameter(
                f"{len(problems)} isolation valve(s) cannot be placed in {self.p.name}:\n"
                f"{shown}{more}"
            )
        return wanted

    def _pair_problem(
        self, link_id: str, node_id: str, node_ids: set[str], seg_ids: set[str]
    ) -> str | None:
        link = self.p.links.get(link_id)
        if link is None:
            return f"there is no link {link_id!r} in {self.p.name}"
        if link.kind == "valve":
            return (
                f"{link_id!r} is a {link.values['valve_type']} control valve, not a pipe; "
                "isolation valves go on pipes (name a pipe that ends at the same node)"
            )
        if link.kind != "pipe":
            return f"{link_id!r} is a {link.kind}, not a pipe; isolation valves go on pipes"
        if node_id not in (link.node1, link.node2):
            return (
                f"node {node_id!r} is not an end of pipe {link_id!r} (its ends are "
                f"{link.node1!r} and {link.node2!r})"
            )
        new_id = f"{link_id}@{node_id}"
        if new_id in node_ids or new_id in seg_ids:
            return f"the valve's id {new_id!r} is already used by a node or segment"
        return None

    def _isolate_pipe(self, pipe: _PipeGeom, ends: set[str], offset_m: float) -> None:
        """Cut valves `offset_m` (at most a tenth of the pipe) in from the chosen ends."""
        seg = pipe.segment
        lengths = self.metric.lengths(pipe.local, seg.coords)
        total = sum(lengths)
        dist = min(offset_m, 0.1 * total)
        share = dist / total if total > 0 else 0.0
        length_m = seg.attrs.get("length_m")
        stub_attrs = dict(seg.attrs, stub_of=seg.pipe_id)
        if length_m is not None:
            stub_attrs["length_m"] = length_m * share
        coords, rest = seg.coords, lengths
        start, end = seg.from_node, seg.to_node
        if start in ends:
            point, stub, coords, _, rest = _cut(coords, rest, dist)
            valve = self._isolation_valve(pipe, start, point, 0)
            self.segments.append(
                (
                    pipe.line,
                    0,
                    dataclasses.replace(
                        seg, pipe_id=valve, to_node=valve, coords=stub, attrs=dict(stub_attrs)
                    ),
                )
            )
            start = valve
        if end in ends:
            point, coords, stub, rest, _ = _cut(coords, rest, sum(rest) - dist)
            valve = self._isolation_valve(pipe, end, point, 1)
            self.segments.append(
                (
                    pipe.line,
                    2,
                    dataclasses.replace(
                        seg, pipe_id=valve, from_node=valve, coords=stub, attrs=dict(stub_attrs)
                    ),
                )
            )
            end = valve
        seg.coords, seg.from_node, seg.to_node = coords, start, end
        if length_m is not None:
            seg.attrs["length_m"] = length_m * (1 - share * len(ends))

    def _isolation_valve(self, pipe: _PipeGeom, end: str, point: XY, order: int) -> str:
        valve_id = f"{pipe.segment.pipe_id}@{end}"
        node = Node(
            valve_id,
            "valve",
            point[0],
            point[1],
            valve_state="open",
            attrs={"valve_type": "isolation", "pipe_id": pipe.segment.pipe_id, "end_node": end},
        )
        self.nodes.append((pipe.line, order, node))
        return valve_id


def _pipe_status(given: str, override: str) -> str:
    """A pipe's status after [STATUS]: Closed closes it, Open reopens it (a CV stays a CV)."""
    if override == "CLOSED":
        return "Closed"
    if override == "OPEN" and given == "Closed":
        return "Open"
    return given


def _link_status(kind: str, status: str) -> dict[str, Any]:
    """Attributes a valve or pump node gets from its [STATUS] line (none without one).

    A number there is a pump's relative speed (0 stops it) or a valve's fixed setting.
    """
    if not status:
        return {}
    if status in ("OPEN", "CLOSED", "ACTIVE"):
        return {"status": status.capitalize()}
    value = float(status)
    if kind == "pump":
        return {"status": "Closed" if value == 0 else "Open", "speed": value}
    return {"status": "Active", "setting": value}


class _ValvePair(tuple[str, str]):
    """A (link, node) pair that remembers the CSV line it came from, for error messages."""

    source: str | None = None
    line: int | None = None

    def __new__(cls, link: str, node: str, source: str, line: int) -> _ValvePair:
        pair = super().__new__(cls, (link, node))
        pair.source = source
        pair.line = line
        return pair


def _pair_label(pair: Any, number: int) -> str:
    try:
        shown = f"({pair[0]}, {pair[1]})"
    except (TypeError, IndexError, KeyError):
        shown = repr(pair)
    if isinstance(pair, _ValvePair):
        return f"isolation valve {shown} ({pair.source} line {pair.line})"
    return f"isolation valve #{number} {shown}"


# --------------------------------------------------------------------------- public API


def read_inp(
    path: Path,
    *,
    crs: str = "EPSG:4326",
    affine: Affine6 | None = None,
    utility: str = "JS",
    subclass: str | None = "JP",
    isolation_valves: list[tuple[str, str]] | None = None,
    valve_offset_m: float = 1.0,
) -> NetworkData:
    """Read an EPANET ``.inp`` file into nodes and segments in `crs`.

    Quantities are converted to the model's units (mm diameters, metres) from the unit system
    the file's [OPTIONS] UNITS implies (EPANET's default GPM, i.e. US customary, when absent).
    Raises `InvalidData` listing the file's problems by line, and `InvalidParameter` for bad
    arguments or isolation valves that cannot be placed.
    """
    metric, checked_affine = _check_arguments(crs, affine, utility, subclass, valve_offset_m)
    if not path.is_file():
        raise InvalidParameter(f"file not found: {path}")
    parsed = _parse(_decode(path.read_bytes(), path.name), path.name)
    builder = _Builder(parsed, metric, checked_affine, utility, subclass)
    builder.build()
    if isolation_valves:
        builder.isolate(isolation_valves, valve_offset_m)
    nodes, segments = builder.result()
    return NetworkData(
        nodes=nodes, segments=segments, crs=crs, findings=parsed.warnings, source=path.name
    )


def read_valve_layer(path: Path) -> list[tuple[str, str]]:
    """Isolation valves from a WNTR-style valve layer CSV: columns ``link`` and ``node``.

    Other columns are ignored, including the unnamed index column pandas writes. The pairs
    remember their line, so `read_inp` can name it if a valve cannot be placed.
    """
    if not path.is_file():
        raise InvalidParameter(f"file not found: {path}")
    text = _decode(path.read_bytes(), path.name)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidData(f"{path.name} is empty; it needs a header line with link,node")
        columns = [c.strip().lower() for c in header]
        if "link" not in columns or "node" not in columns:
            raise InvalidData(
                f"{path.name} line 1: the header needs columns named link and node (found: "
                f"{', '.join(c for c in columns if c) or 'none'})"
            )
        return _valve_rows(reader, columns.index("link"), columns.index("node"), path.name)
    except csv.Error as exc:
        raise InvalidData(
            f"{path.name} line {reader.line_num}: not readable as CSV ({exc})"
        ) from None


def _valve_rows(reader: Any, link_col: int, node_col: int, name: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        link = row[link_col].strip() if link_col < len(row) else ""
        node = row[node_col].strip() if node_col < len(row) else ""
        if not link or not node:
            problems.append(f"{name} line {line}: both link and node must be given")
            continue
        pairs.append(_ValvePair(link, node, name, line))
    if problems:
        more = f"\n... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise InvalidData("\n".join(problems[:MAX_LISTED]) + more)
    return pairs
