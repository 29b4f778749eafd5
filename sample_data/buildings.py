"""Building footprints: rows of slabs, towers, sheds and schools laid out inside blocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from sample_data.blocks import Block, Land


@dataclass(frozen=True)
class Style:
    """How one kind of block is built up (sizes in metres)."""

    use: str
    length: tuple[float, float]
    depth: tuple[float, float]
    floors: tuple[int, int]
    storey_m: float
    gap: tuple[float, float]  # between buildings of a row
    row_factor: float  # row spacing as a multiple of height (sunlight spacing of 住宅)
    row_min: float
    setback: float
    years: tuple[int, int]
    roofs: tuple[str, ...]
    keep: float  # share of lattice places that get a building


STYLES = {
    "res_old": Style(
        "residential",
        (45, 70),
        (10, 13),
        (5, 7),
        2.9,
        (8, 14),
        1.1,
        14,
        8,
        (1985, 2004),
        ("red", "dark", "bright"),
        0.93,
    ),
    "res_new": Style(
        "residential",
        (30, 50),
        (14, 18),
        (11, 33),
        3.0,
        (15, 25),
        0.9,
        25,
        12,
        (2005, 2022),
        ("bright", "bright", "dark"),
        0.95,
    ),
    "commercial": Style(
        "commercial",
        (40, 80),
        (25, 45),
        (3, 24),
        4.2,
        (12, 20),
        0.35,
        15,
        6,
        (1995, 2022),
        ("bright", "dark"),
        0.85,
    ),
    "industrial": Style(
        "industrial",
        (50, 110),
        (25, 50),
        (1, 2),
        6.5,
        (15, 25),
        0.0,
        22,
        10,
        (1990, 2015),
        ("blue", "blue", "bright"),
        0.85,
    ),
    "public": Style(
        "public",
        (40, 70),
        (14, 20),
        (3, 6),
        3.8,
        (20, 35),
        0.0,
        30,
        12,
        (1980, 2020),
        ("red", "bright"),
        0.6,
    ),
    "park": Style(
        "public",
        (8, 14),
        (8, 14),
        (1, 1),
        4.0,
        (60, 120),
        0.0,
        60,
        20,
        (1990, 2020),
        ("red",),
        0.25,
    ),
}


@dataclass
class Building:
    geom: shapely.Polygon  # local frame
    height: float
    floors: int
    use: str
    year: int
    roof: str  # roof material, drives the imagery
    block_id: str
    bldg_id: str = ""


def place_buildings(land: Land, rng: np.random.Generator) -> list[Building]:
    """Fill every built-up block with buildings of its style; ids follow block order."""
    ponds = shapely.union_all([p.buffer(6.0) for p in land.ponds]) if land.ponds else None
    out: list[Building] = []
    for block in land.blocks:
        style = _style_for(block, rng)
        if style is not None:
            out.extend(_lattice(block, style, rng, ponds))
    number_buildings(out)
    return out


def number_buildings(buildings: list[Building]) -> None:
    for i, b in enumerate(buildings):
        b.bldg_id = f"B{i + 1:06d}"


def _style_for(block: Block, rng: np.random.Generator) -> Style | None:
    if block.landuse == "residential":
        return STYLES["res_old" if rng.random() < 0.45 else "res_new"]
    if block.landuse == "vacant":
        return None
    return STYLES[block.landuse]


def _axis(lo: float, hi: float, size: float, step: float) -> np.ndarray:
    """Start positions of as many items as fit in [lo, hi], centred."""
    count = int((hi - lo - size) // step) + 1
    if count <= 0:
        return np.empty(0)
    used = (count - 1) * step + size
    return lo + (hi - lo - used) / 2.0 + np.arange(count) * step


def _lattice(block: Block, style: Style, rng: np.random.Generator, avoid) -> list[Building]:
    """Rows of equal footprints in the block, kept where they fit inside the setback line."""
    inner = block.geom.buffer(-style.setback)
    if inner.is_empty:
        return []
    minx, miny, maxx, maxy = inner.bounds
    length, depth = rng.uniform(*style.length), rng.uniform(*style.depth)
    floors = int(rng.integers(style.floors[0], style.floors[1] + 1))
    row_gap = max(style.row_min, style.row_factor * floors * style.storey_m)
    us = _axis(minx, maxx, length, length + rng.uniform(*style.gap))
    vs = _axis(miny, maxy, depth, depth + row_gap)
    if us.size == 0 or vs.size == 0:
        return []
    u, v = (a.ravel() for a in np.meshgrid(us, vs))
    u = u + rng.uniform(-1.5, 1.5, u.size)
    rects = shapely.box(u, v, u + length, v + depth)
    ok = shapely.contains_properly(inner, rects) & (rng.random(u.size) < style.keep)
    if avoid is not None:
        ok &= ~shapely.intersects(avoid, rects)
    year = int(rng.integers(style.years[0], style.years[1] + 1))
    roof = str(rng.choice(style.roofs))
    out = []
    for rect in rects[ok]:
        f = _floors(style, floors, rng)
        height = round(f * style.storey_m + rng.uniform(0.5, 2.0), 1)
        built = int(np.clip(year + rng.integers(-2, 3), style.years[0], style.years[1]))
        out.append(Building(rect, height, f, style.use, built, roof, block.block_id))
    return out


def _floors(style: Style, block_floors: int, rng: np.random.Generator) -> int:
    if style.use == "commercial":
        # Mostly low podium buildings, some office towers.
        return int(rng.integers(12, 31)) if rng.random() < 0.3 else int(rng.integers(3, 7))
    if style.floors[1] > 7:
        return int(np.clip(block_floors + rng.integers(-2, 3), *style.floors))
    return int(np.clip(block_floors + rng.integers(-1, 2), *style.floors))
