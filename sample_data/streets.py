"""Street layout: a slightly irregular grid of named streets, a diagonal and a riverside road.

Streets are drawn in the city's local frame (see `frame.py`): north-south lines along v and
east-west lines along u, each with its own small tilt and a gentle wiggle, arterials every
700-1000 m, some local streets that stop at a cross street (T-junctions), a diagonal street
and a curved road along a river in the south of the city.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString
from shapely.ops import substring

from sample_data.frame import CityFrame
from sample_data.tables import name_pools

# Red-line widths (m) and sidewalk widths per class (CJJ 37 ranges for a mid-size city).
WIDTHS = {
    "arterial": (40.0, 45.0, 50.0),
    "secondary": (24.0, 28.0, 32.0),
    "local": (14.0, 16.0, 18.0),
}
SIDEWALK = {"arterial": 5.0, "secondary": 4.0, "local": 2.5}
SPACING = (230.0, 350.0)  # distance between neighbouring parallel streets
ARTERIAL_GAP = (700.0, 1000.0)
SAMPLE_STEP = 40.0  # vertex spacing of wiggly lines


@dataclass
class Street:
    """One named street before noding."""

    name: str
    cls: str
    width: float
    lanes: int
    geom: shapely.Geometry
    axis: str  # ns, ew, diagonal, riverside
    main: bool = False

    @property
    def sidewalk(self) -> float:
        return SIDEWALK[self.cls]


@dataclass(frozen=True)
class River:
    """The river along the south of the city and the curve of its riverside road."""

    road_base: float
    amplitude: float
    wavelength: float
    phase: float
    offset: float  # river centre below the road (m)
    half_width: float

    def road_v(self, u: np.ndarray | float) -> np.ndarray:
        return self.road_base + self.amplitude * np.sin(
            2 * math.pi * np.asarray(u) / self.wavelength + self.phase
        )

    def polygon(self, half: float) -> shapely.Polygon:
        u = np.arange(-half - 60.0, half + 60.0 + 1e-6, 20.0)
        centre = LineString(np.column_stack([u, self.road_v(u) - self.offset]))
        return centre.buffer(self.half_width, cap_style="flat")


@dataclass
class StreetPlan:
    streets: list[Street]
    river: River
    river_polygon: shapely.Polygon


def plan_streets(frame: CityFrame, rng: np.random.Generator) -> StreetPlan:
    """Lay out every street of the city as a line in the local frame, clipped to the district."""
    half = frame.half
    river = _plan_river(rng, half)
    top = float(np.max(river.road_v(np.linspace(-half, half, 200))))
    ns_pos = _positions(rng, -half, half)
    ew_pos = _positions(rng, top + rng.uniform(140.0, 200.0) - 120.0, half)
    ns_cls = _classify(ns_pos, 0.0, rng)
    ew_cls = _classify(ew_pos, (top + half) / 2.0, rng)

    riverside = LineString(_riverside_coords(river, half))
    ew_lines = [_wiggly(rng, p, half, c, "ew") for p, c in zip(ew_pos, ew_cls, strict=True)]
    ns_lines = [_wiggly(rng, p, half, c, "ns") for p, c in zip(ns_pos, ns_cls, strict=True)]
    ns_lines = [
        line if cls == "arterial" else _after(line, riverside)
        for line, cls in zip(ns_lines, ns_cls, strict=True)
    ]
    # Local streets stop only at streets that are never truncated themselves.
    ew_major = [g for g, c in zip(ew_lines, ew_cls, strict=True) if c != "local"]
    ns_major = [g for g, c in zip(ns_lines, ns_cls, strict=True) if c != "local"]
    ns_lines = _truncate_some(rng, ns_lines, ns_cls, [riverside, *ew_major])
    ew_lines = _truncate_some(rng, ew_lines, ew_cls, ns_major)

    streets = _named_streets(rng, ns_lines, ns_cls, ns_pos, "ns")
    streets += _named_streets(rng, ew_lines, ew_cls, ew_pos, "ew")
    streets.append(_street(rng, "", "secondary", riverside, "riverside"))
    if 2 * half >= 1200.0:
        streets.append(_street(rng, "", "secondary", _diagonal(rng, half), "diagonal"))
    _name_all(rng, streets)
    for street in streets:
        street.geom = shapely.intersection(street.geom, frame.district)
    streets = [s for s in streets if not s.geom.is_empty and s.geom.length > 1.0]
    return StreetPlan(streets, river, river.polygon(half))


def _plan_river(rng: np.random.Generator, half: float) -> River:
    road_base = -half + min(170.0, 0.2 * 2 * half)
    strip = road_base + half
    return River(
        road_base=road_base,
        amplitude=float(rng.uniform(0.1, 0.2) * strip),
        wavelength=float(rng.uniform(0.8, 1.4) * 2 * half),
        phase=float(rng.uniform(0, 2 * math.pi)),
        offset=0.45 * strip,
        half_width=min(25.0, 0.15 * strip),
    )


def _riverside_coords(river: River, half: float) -> np.ndarray:
    u = np.arange(-half - 10.0, half + 10.0 + 1e-6, 20.0)
    return np.column_stack([u, river.road_v(u)])


def _positions(rng: np.random.Generator, lo: float, hi: float) -> list[float]:
    """Cross positions of parallel streets between lo and hi, 230-350 m apart."""
    out: list[float] = []
    pos = lo + rng.uniform(120.0, 240.0)
    while pos < hi - 120.0:
        out.append(float(pos))
        pos += rng.uniform(*SPACING)
    if not out:
        out.append((lo + hi) / 2.0)
    return out


def _classify(positions: list[float], centre: float, rng: np.random.Generator) -> list[str]:
    """Arterials at the line nearest the centre and every 700-1000 m out; others mixed."""
    pos = np.asarray(positions)
    main = int(np.argmin(np.abs(pos - centre)))
    classes = ["secondary" if rng.random() < 0.5 else "local" for _ in positions]
    classes[main] = "arterial"
    for step in (1, -1):
        last = pos[main]
        gap = rng.uniform(*ARTERIAL_GAP)
        for i in range(main + step, len(pos) if step > 0 else -1, step):
            if abs(pos[i] - last) >= gap:
                classes[i], last, gap = "arterial", pos[i], rng.uniform(*ARTERIAL_GAP)
    return classes


def _wiggly(rng: np.random.Generator, pos: float, half: float, cls: str, axis: str) -> LineString:
    """A street line across the whole square with a small tilt and a gentle wiggle."""
    t = np.arange(-half - 5.0, half + 5.0 + 1e-6, SAMPLE_STEP)
    t[-1] = half + 5.0
    tilt = rng.uniform(-1.0, 1.0) * min(0.02, 25.0 / half)
    amp = 2.0 if cls == "arterial" else 4.0
    k = rng.uniform(2 * math.pi / 450.0, 2 * math.pi / 160.0, 2)
    ph = rng.uniform(0, 2 * math.pi, 2)
    off = pos + tilt * t + amp * (0.6 * np.sin(k[0] * t + ph[0]) + 0.4 * np.sin(k[1] * t + ph[1]))
    xy = np.column_stack([off, t]) if axis == "ns" else np.column_stack([t, off])
    return LineString(xy)


def _cut(line: LineString, other: shapely.Geometry) -> float | None:
    """Distance along line of its first crossing with other, or None."""
    hit = shapely.intersection(line, other)
    if hit.is_empty:
        return None
    points = [p for p in shapely.get_parts(hit) if p.geom_type == "Point"]
    if not points:
        return None
    return min(line.project(p) for p in points)


def _after(line: LineString, other: shapely.Geometry) -> LineString:
    """The part of a south-to-north line north of its crossing with other."""
    start = _cut(line, other)
    if start is None:
        return line
    return substring(line, start, line.length)


def _truncate_some(
    rng: np.random.Generator, lines: list[LineString], classes: list[str], cross: list[LineString]
) -> list[LineString]:
    """Let about a third of the local streets run only between two cross streets."""
    out = []
    for line, cls in zip(lines, classes, strict=True):
        if cls != "local" or len(cross) < 3 or rng.random() > 0.35:
            out.append(line)
            continue
        cuts = sorted(d for d in (_cut(line, c) for c in cross) if d is not None)
        if len(cuts) < 3:
            out.append(line)
            continue
        i = int(rng.integers(0, len(cuts) - 2))
        j = int(rng.integers(i + 1, len(cuts) - 1))
        out.append(substring(line, cuts[i], cuts[j]))
    return out


def _diagonal(rng: np.random.Generator, half: float) -> LineString:
    """A diagonal street across the north-west quarter, slightly bent."""
    start = np.array([-half - 5.0, rng.uniform(-0.1, 0.45) * half])
    end = np.array([rng.uniform(-0.35, 0.15) * half, half + 5.0])
    mid = (start + end) / 2.0
    normal = np.array([-(end - start)[1], (end - start)[0]])
    mid = mid + normal / np.linalg.norm(normal) * rng.uniform(-15.0, 15.0)
    return LineString([start, mid, end])


def _street(rng: np.random.Generator, name: str, cls: str, geom, axis: str) -> Street:
    width = float(rng.choice(WIDTHS[cls]))
    lanes = {"arterial": 8 if width >= 50 else 6, "secondary": 4, "local": 2}[cls]
    return Street(name, cls, width, lanes, geom, axis)


def _named_streets(
    rng: np.random.Generator, lines: list, classes: list[str], pos: list[float], axis: str
) -> list[Street]:
    streets = [_street(rng, "", c, g, axis) for g, c in zip(lines, classes, strict=True)]
    centre = 0.0 if axis == "ns" else float(np.mean(pos))
    main = int(
        np.argmin(
            [
                abs(p - centre) if c == "arterial" else 1e12
                for p, c in zip(pos, classes, strict=True)
            ]
        )
    )
    streets[main].main = True
    return streets


def _name_all(rng: np.random.Generator, streets: list[Street]) -> None:
    """Give every street a unique Chinese-looking name; the suffix follows the class."""
    pools = name_pools()
    roots = [str(r) for r in rng.permutation(pools["street_roots"])]
    suffix: dict[str, Callable[[Street], str]] = {
        "arterial": lambda s: "大道" if s.main or rng.random() < 0.3 else "路",
        "secondary": lambda s: "路",
        "local": lambda s: "巷" if s.width <= 14.0 and rng.random() < 0.4 else "街",
    }
    for i, street in enumerate(streets):
        if street.axis == "riverside":
            street.name = str(pools["riverside_street"])
            continue
        street.name = roots[i % len(roots)] + suffix[street.cls](street)
        if i >= len(roots):
            street.name = f"{street.name}{i // len(roots) + 1}"
