"""Planted land-cover changes between the 2023 and 2024 images (the ground truth of change
detection): new buildings on cleared land, groves cut down, and new ponds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import affinity

from sample_data.blocks import Block, Land
from sample_data.buildings import Building

KINDS = ("new_construction", "vegetation_loss", "new_water")
# Land cover before (2023) and after (2024) each kind of change.
COVER = {
    "new_construction": ("bare", "roof"),
    "vegetation_loss": ("trees", "bare"),
    "new_water": ("grass", "water"),
}
CHANGE_YEAR = 2024
TRIES_PER_BLOCK = 30


@dataclass
class Change:
    kind: str
    geom: shapely.Polygon  # local frame

    @property
    def before(self) -> str:
        return COVER[self.kind][0]

    @property
    def after(self) -> str:
        return COVER[self.kind][1]


def plant_changes(land: Land, buildings: list[Building], rng: np.random.Generator) -> list[Change]:
    """Place 4-8 changes in vacant lots and parks; new construction adds 2024 buildings."""
    count = int(rng.integers(4, 9))
    extra = rng.choice(len(KINDS), size=max(0, count - len(KINDS)), p=[0.5, 0.35, 0.15])
    kinds = list(KINDS) + [KINDS[int(k)] for k in extra]
    taken: list[shapely.Polygon] = [p.buffer(8.0) for p in land.ponds]
    by_block: dict[str, list[shapely.Polygon]] = {}
    for b in buildings:
        by_block.setdefault(b.block_id, []).append(b.geom.buffer(8.0))
    changes: list[Change] = []
    for kind in kinds:
        found = _find_site(kind, _candidate_blocks(land, rng), by_block, taken, rng)
        if found is None:
            continue
        site, block = found
        taken.append(site.buffer(15.0))
        changes.append(Change(kind, site))
        if kind == "new_construction":
            buildings.append(_new_building(site, block, rng))
    return changes


def _candidate_blocks(land: Land, rng: np.random.Generator) -> list[Block]:
    """Vacant lots first, then city parks, riverside parks and public grounds."""
    order = ("vacant", "park", "riverside", "public", "residential")
    out: list[Block] = []
    for use in order:
        group = [
            b
            for b in land.blocks
            if (use == "riverside" and b.riverside)
            or (use != "riverside" and b.landuse == use and not b.riverside)
        ]
        out.extend(group[int(i)] for i in rng.permutation(len(group)))
    return out


def _find_site(
    kind: str,
    blocks: list[Block],
    by_block: dict[str, list[shapely.Polygon]],
    taken: list[shapely.Polygon],
    rng: np.random.Generator,
) -> tuple[shapely.Polygon, Block] | None:
    for block in blocks:
        inner = block.geom.buffer(-12.0)
        if inner.is_empty:
            continue
        blocked = shapely.union_all(by_block.get(block.block_id, []) + taken)
        for _ in range(TRIES_PER_BLOCK):
            site = _shape(kind, inner, rng)
            if site is not None and inner.contains(site) and not site.intersects(blocked):
                return site, block
    return None


def _shape(kind: str, inner: shapely.Polygon, rng: np.random.Generator) -> shapely.Polygon | None:
    minx, miny, maxx, maxy = inner.bounds
    if kind == "new_water":
        a, b = rng.uniform(20, 35), rng.uniform(14, 25)
    elif kind == "new_construction":
        a, b = rng.uniform(22, 38), rng.uniform(10, 20)
    else:
        a, b = rng.uniform(25, 45), rng.uniform(20, 35)
    if maxx - minx < 2 * a or maxy - miny < 2 * b:
        return None
    cx, cy = rng.uniform(minx + a, maxx - a), rng.uniform(miny + b, maxy - b)
    if kind == "new_water":
        return affinity.scale(shapely.Point(cx, cy).buffer(1.0, quad_segs=12), a, b)
    return shapely.box(cx - a, cy - b, cx + a, cy + b)


def _new_building(site: shapely.Polygon, block: Block, rng: np.random.Generator) -> Building:
    if rng.random() < 0.5:
        floors, use, storey = int(rng.integers(11, 27)), "residential", 3.0
    else:
        floors, use, storey = int(rng.integers(3, 7)), "commercial", 4.2
    height = round(floors * storey + rng.uniform(0.5, 2.0), 1)
    return Building(site, height, floors, use, CHANGE_YEAR, "bright", block.block_id)
