"""Land-cover maps of the city on the imagery's pixel grid, one per year.

Covers are painted in order, later layers over earlier ones: farmland around the city, block
grounds by land use (with lawns and trees from a smooth noise field), water, street space,
street-tree crowns, planted changes, shadows and roofs. Roofs only appear from their year built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio import features

from sample_data.blocks import Land
from sample_data.buildings import Building
from sample_data.changes import Change
from sample_data.frame import CityFrame
from sample_data.topology import StreetNetwork

COVERS = (
    "nodata",
    "field",
    "fallow",
    "grass",
    "trees",
    "bare",
    "paving",
    "asphalt",
    "water",
    "pond",
    "roof_bright",
    "roof_blue",
    "roof_red",
    "roof_dark",
)
C = {name: i for i, name in enumerate(COVERS)}
LANDUSE_IDS = {
    "residential": 1,
    "commercial": 2,
    "public": 3,
    "industrial": 4,
    "park": 5,
    "vacant": 6,
}


@dataclass(frozen=True)
class PixelGrid:
    transform: Affine
    width: int
    height: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)


@dataclass
class Scene:
    """What the imagery shows, in Gauss-Krüger geometries ready to burn."""

    frame: CityFrame
    net: StreetNetwork
    land: Land
    buildings: list[Building]
    changes: list[Change]
    trees: np.ndarray  # (n, 2) local positions of street trees


def pixel_grid(frame: CityFrame, pixel_m: float) -> PixelGrid:
    """North-up grid covering the district with a 20 m margin, origin on a 10 m multiple."""
    minx, miny, maxx, maxy = frame.to_gk(frame.district).bounds
    west, south = math.floor((minx - 20) / 10) * 10, math.floor((miny - 20) / 10) * 10
    east, north = math.ceil((maxx + 20) / 10) * 10, math.ceil((maxy + 20) / 10) * 10
    width, height = round((east - west) / pixel_m), round((north - south) / pixel_m)
    return PixelGrid(Affine(pixel_m, 0, west, 0, -pixel_m, north), width, height)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Unit-variance-ish noise, bilinearly interpolated from a grid of `cell` pixels."""
    h, w = shape
    coarse = rng.standard_normal((h // cell + 2, w // cell + 2)).astype("float32")
    y, x = np.arange(h) / cell, np.arange(w) / cell
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0).astype("float32")[:, None], (x - x0).astype("float32")[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _burn(grid: PixelGrid, shapes, out: np.ndarray | None = None, value: int = 1) -> np.ndarray:
    shapes = [(g, value) if not isinstance(g, tuple) else g for g in shapes]
    if out is None:
        out = np.zeros(grid.shape, dtype="uint8")
    if shapes:
        features.rasterize(shapes, out=out, transform=grid.transform, all_touched=False)
    return out


def ground_cover(scene: Scene, grid: PixelGrid, rng: np.random.Generator) -> np.ndarray:
    """The cover every year shares: farmland, block grounds, water and streets."""
    frame = scene.frame
    texture = smooth_noise(rng, grid.shape, 8)
    fields = smooth_noise(rng, grid.shape, 30)
    cover = np.where(fields > 0.4, C["fallow"], C["field"]).astype("uint8")
    cover[fields < -1.2] = C["trees"]  # village groves between the fields
    district = _burn(grid, [frame.to_gk(frame.district)])
    cover[district == 1] = C["grass"]
    uses = _burn(grid, [(frame.to_gk(b.geom), LANDUSE_IDS[b.landuse]) for b in scene.land.blocks])
    _block_grounds(cover, uses, texture)
    water = [scene.net.river_polygon]
    _burn(grid, [(g, C["water"]) for g in frame.to_gk(water)], cover)
    _burn(grid, [(g, C["pond"]) for g in frame.to_gk(scene.land.ponds)], cover)
    _burn(grid, [(g, C["paving"]) for g in frame.to_gk(scene.land.street_space)], cover)
    _burn(grid, [(g, C["asphalt"]) for g in frame.to_gk(scene.land.carriageways)], cover)
    boundary = _burn(grid, [frame.boundary_gk])
    cover[boundary == 0] = C["nodata"]
    return cover


def _block_grounds(cover: np.ndarray, uses: np.ndarray, texture: np.ndarray) -> None:
    """Lawns, trees, paving and bare ground inside blocks by land use."""
    rules = {  # land use: ((threshold, cover) from highest texture down, default cover)
        1: (((0.9, "trees"), (0.0, "grass")), "paving"),
        2: (((1.0, "trees"), (0.7, "grass")), "paving"),
        3: (((0.9, "trees"), (-0.1, "grass")), "paving"),
        4: (((1.3, "grass"), (-0.4, "paving")), "bare"),
        5: (((0.1, "trees"), (-1.4, "grass")), "paving"),
        6: (((0.6, "grass"),), "bare"),
    }
    for use, (steps, default) in rules.items():
        mask = uses == use
        values = np.full(int(mask.sum()), C[default], dtype="uint8")
        tex = texture[mask]
        for threshold, name in reversed(steps):
            values[tex > threshold] = C[name]
        cover[mask] = values


def year_cover(
    scene: Scene,
    grid: PixelGrid,
    base: np.ndarray,
    year: int,
    sun: tuple[float, float],
    crown_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The cover of one year, and its shadow mask (1 where a building casts shadow)."""
    frame = scene.frame
    cover = base.copy()
    nodata = base == C["nodata"]
    if len(scene.trees):
        crowns = shapely.buffer(shapely.points(frame.xy_to_gk(scene.trees)), crown_m, quad_segs=3)
        _burn(grid, [(g, C["trees"]) for g in crowns], cover)
    for change in scene.changes:
        state = change.before if year < 2024 else change.after
        if state in ("trees", "bare", "grass", "water"):
            code = C["pond"] if state == "water" else C[state]
            _burn(grid, [(frame.to_gk(change.geom), code)], cover)
    standing = [b for b in scene.buildings if b.year <= year]
    shade = _burn(grid, _shadows(frame, standing, sun))
    roofs = [(frame.to_gk(b.geom), C["roof_" + b.roof]) for b in standing]
    _burn(grid, roofs, cover)
    shade[cover >= C["roof_bright"]] = 0
    cover[nodata] = C["nodata"]
    return cover, shade


def _shadows(frame: CityFrame, buildings: list[Building], sun: tuple[float, float]) -> list:
    """Footprints swept away from the sun by height / tan(elevation)."""
    if not buildings:
        return []
    azimuth, elevation = (math.radians(a) for a in sun)
    away = np.array([-math.sin(azimuth), -math.cos(azimuth)]) / math.tan(elevation)
    feet = frame.to_gk(np.array([b.geom for b in buildings]))
    coords, index = shapely.get_coordinates(feet, return_index=True)
    heights = np.array([b.height for b in buildings])[index]
    tips = coords + heights[:, None] * away
    both, owner = np.vstack([coords, tips]), np.concatenate([index, index])
    order = np.argsort(owner, kind="stable")
    hulls = shapely.convex_hull(shapely.multipoints(both[order], indices=owner[order]))
    return list(hulls)
