"""Blocks (cells minus street space) and their land use, ponds included."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import affinity

from sample_data.topology import StreetNetwork

MIN_BLOCK_M2 = 400.0
LANDUSES = ("residential", "commercial", "public", "industrial", "park", "vacant")


@dataclass
class Block:
    block_id: str
    cell: int
    geom: shapely.Polygon  # local frame
    landuse: str = "residential"
    riverside: bool = False


@dataclass
class Land:
    """Blocks with land use, the street space and the open water of the city."""

    blocks: list[Block]
    street_space: list[shapely.Polygon]  # one buffer per street edge (red-line width)
    carriageways: list[shapely.Polygon]  # one buffer per street edge (kerb to kerb)
    ponds: list[shapely.Polygon]


def build_land(net: StreetNetwork, rng: np.random.Generator) -> Land:
    """Cut blocks out of the cells, then zone them."""
    space = [_street_buffer(net, i, 0.0) for i in range(len(net.edges))]
    carriage = [_street_buffer(net, i, 1.0) for i in range(len(net.edges))]
    blocks = _cut_blocks(net, space)
    _zone(blocks, net, rng)
    ponds = [_pond(b, rng) for b in blocks if b.landuse == "park" and not b.riverside]
    return Land(blocks, space, carriage, [p for p in ponds if p is not None])


def _street_buffer(net: StreetNetwork, edge: int, sidewalks: float) -> shapely.Polygon:
    street = net.street_of(net.edges[edge])
    half = street.width / 2.0 - sidewalks * street.sidewalk
    return shapely.buffer(net.edges[edge].geom, half, quad_segs=4)


def _cut_blocks(net: StreetNetwork, space: list[shapely.Polygon]) -> list[Block]:
    tree = shapely.STRtree(space)
    blocks: list[Block] = []
    for ci, cell in enumerate(net.cells):
        near = tree.query(cell)
        rest = shapely.difference(cell, shapely.union_all([space[i] for i in near]))
        for part in shapely.get_parts(rest):
            # Drop slivers: too small, or too thin to hold anything (area/perimeter < 4 m).
            if part.geom_type != "Polygon" or part.area < MIN_BLOCK_M2:
                continue
            if part.area / part.length < 4.0:
                continue
            centre = part.representative_point()
            river_v = float(net.river.road_v(centre.x))
            blocks.append(Block(f"K{len(blocks) + 1:05d}", ci, part, riverside=centre.y < river_v))
    return blocks


def _zone(blocks: list[Block], net: StreetNetwork, rng: np.random.Generator) -> None:
    """Assign land use: riverside parks, a city park, vacant lots, public, industry, shops."""
    half = net.district.bounds[2]
    for b in blocks:
        if b.riverside:
            b.landuse = "park"
    free = [b for b in blocks if not b.riverside]
    big = [b for b in free if b.geom.area >= 20_000.0]
    n = len(free)
    if n >= 12 and big:
        target = shapely.Point(rng.uniform(-0.3, 0.3) * half, rng.uniform(-0.2, 0.4) * half)
        min(big, key=lambda b: b.geom.distance(target)).landuse = "park"
    _pick(rng, free, max(2, round(n / 25)), "vacant", min_area=10_000.0)
    _pick(rng, free, max(1, round(n / 15)), "public", min_area=15_000.0)
    arterial = [
        e.geom.buffer(net.street_of(e).width / 2.0 + 3.0)
        for e in net.edges
        if net.street_of(e).cls == "arterial"
    ]
    near_arterial = shapely.union_all(arterial) if arterial else shapely.Polygon()
    for b in free:
        if b.landuse != "residential":
            continue
        c = b.geom.centroid
        if n >= 30 and c.x > 0.55 * half and rng.random() < 0.6:
            b.landuse = "industrial"
        elif b.geom.intersects(near_arterial) and abs(c.x) + abs(c.y) < 0.9 * half:
            if rng.random() < 0.55:
                b.landuse = "commercial"


def _pick(
    rng: np.random.Generator, blocks: list[Block], count: int, use: str, min_area: float
) -> None:
    pool = [b for b in blocks if b.landuse == "residential" and b.geom.area >= min_area]
    if len(pool) < count:
        pool = [b for b in blocks if b.landuse == "residential"]
    for i in rng.permutation(len(pool))[:count]:
        pool[int(i)].landuse = use


def _pond(block: Block, rng: np.random.Generator) -> shapely.Polygon | None:
    """An irregular oval pond in the middle of a park block."""
    inner = block.geom.buffer(-25.0)
    if inner.is_empty or inner.area < 2_000.0:
        return None
    minx, miny, maxx, maxy = inner.bounds
    c = inner.representative_point()
    pond = affinity.scale(
        c.buffer(1.0, quad_segs=16),
        (maxx - minx) * rng.uniform(0.25, 0.4),
        (maxy - miny) * rng.uniform(0.2, 0.35),
    )
    pond = shapely.intersection(affinity.rotate(pond, rng.uniform(-30, 30), origin=c), inner)
    parts = [p for p in shapely.get_parts(pond) if p.geom_type == "Polygon"]
    return max(parts, key=lambda p: p.area) if parts else None
