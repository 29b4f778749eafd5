"""Independent, reproducible random streams, one per generation step.

Each step draws from its own stream keyed by (seed, step name), so changing how much one step
draws never shifts the numbers another step sees. crc32 is used instead of `hash()`, which is
randomised per process for strings.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """The random generator of one named step."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
