"""A gentle synthetic terrain: ground falls about 3-4 m per km towards the river in the south."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RIVER_LEVEL_M = 38.0  # ground at the riverside road, metres above the 1985 national datum


@dataclass(frozen=True)
class Terrain:
    slope: float
    swell: float
    wave_u: float
    wave_v: float
    phase_u: float
    phase_v: float
    south: float  # v of the southern city edge

    def ground(self, xy: np.ndarray) -> np.ndarray:
        """Ground elevation (m) at local coordinates (N, 2) or (2,)."""
        xy = np.asarray(xy, dtype="float64")
        u, v = xy[..., 0], xy[..., 1]
        hills = (
            self.swell
            * np.sin(u / self.wave_u + self.phase_u)
            * np.cos(v / self.wave_v + self.phase_v)
        )
        return np.round(RIVER_LEVEL_M + self.slope * (v - self.south) + hills, 2)


def make_terrain(rng: np.random.Generator, half: float) -> Terrain:
    return Terrain(
        slope=float(rng.uniform(0.003, 0.004)),
        swell=float(rng.uniform(0.8, 1.6)),
        wave_u=float(rng.uniform(500.0, 900.0)),
        wave_v=float(rng.uniform(600.0, 1000.0)),
        phase_u=float(rng.uniform(0, 2 * math.pi)),
        phase_v=float(rng.uniform(0, 2 * math.pi)),
        south=-half,
    )
