"""What the demo sensors read in ordinary times: a daily shape per kind (water demand pulls the
pressure down at breakfast and dinner, traffic raises PM2.5 at rush hours, showers now and then)
with per-sensor offsets and noise. The loader's history and the live simulator share it, so the
live feed continues the curves the history drew.

The noise is mostly smooth (slow sinusoids with per-sensor phases): a reading's change per
minute stays far below the rate thresholds whatever the step between readings, so only the
simulator's incidents ever breach them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

LOCAL_UTC_OFFSET_H = 8.0  # the sample city is in China Standard Time
_NOISE_PERIODS_S = np.array([7.0, 17.0, 43.0]) * 60.0
_DIGITS = {"pressure": 3, "level": 3, "gas": 2, "rain": 1, "air": 0}


def _unit(sensor_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by the sensor id: its own base level, phase, ..."""
    return zlib.crc32(f"{salt}:{sensor_id}".encode()) / 2**32


def _hour(t: np.ndarray) -> np.ndarray:
    return ((t / 3600.0) + LOCAL_UTC_OFFSET_H) % 24.0


def _peak(hour: np.ndarray, at: float, width: float) -> np.ndarray:
    """A bump around a time of day (distances wrap around midnight)."""
    d = np.abs(hour - at)
    d = np.minimum(d, 24.0 - d)
    return np.exp(-((d / width) ** 2))


def _rain(t: np.ndarray) -> np.ndarray:
    """Showers over the whole city (mm/h): dry most of the time, a light shower every few
    hours."""
    wave = np.sin(2 * np.pi * t / (7.3 * 3600)) * np.sin(2 * np.pi * t / (2.9 * 3600) + 1.0)
    return np.clip(6.0 * wave - 3.5, 0.0, None)


@dataclass(frozen=True)
class Signal:
    """The ordinary readings of one sensor."""

    sensor_id: str
    kind: str
    base: float
    amplitude: float
    noise: float  # amplitude of the smooth noise
    jitter: float  # standard deviation of the white noise (0 where a rate is watched)

    @classmethod
    def of(cls, sensor_id: str, kind: str) -> Signal:
        u = _unit(sensor_id, "base")
        if kind == "pressure":
            return cls(sensor_id, kind, 0.33 + 0.07 * u, 0.05, 0.004, 0.002)
        if kind == "level":
            return cls(sensor_id, kind, 0.10 + 0.25 * u, 0.04, 0.01, 0.0)
        if kind == "gas":
            return cls(sensor_id, kind, 0.3 + 0.8 * u, 0.2, 0.15, 0.1)
        if kind == "rain":
            return cls(sensor_id, kind, 0.0, 0.7 + 0.6 * u, 0.0, 0.0)
        if kind == "air":
            return cls(sensor_id, kind, 25.0 + 20.0 * u, 25.0, 4.0, 2.0)
        return cls(sensor_id, kind, 1.0, 0.0, 0.05, 0.02)

    def values(self, t: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Readings at the times t (seconds since the epoch)."""
        t = np.asarray(t, dtype="float64")
        hour = _hour(t)
        if self.kind == "pressure":  # demand peaks: breakfast, lunch, dinner
            demand = _peak(hour, 7.5, 1.5) + 0.3 * _peak(hour, 12.0, 1.5)
            demand += 0.8 * _peak(hour, 19.5, 2.0)
            shape = -demand
        elif self.kind == "level":  # dry-weather flow: infiltration and wash water by day
            shape = 0.5 * (1 + np.sin(2 * np.pi * (hour - 9.0) / 24.0))
        elif self.kind == "rain":
            shape = _rain(t)
        elif self.kind == "air":  # traffic at the rush hours, a night-time inversion
            shape = _peak(hour, 8.5, 2.0) + _peak(hour, 19.0, 2.5) + 0.4 * _peak(hour, 2.0, 3.0)
        else:
            shape = np.zeros_like(t)
        phases = 2 * np.pi * np.array([_unit(self.sensor_id, f"phase{i}") for i in range(3)])
        smooth = np.sin(2 * np.pi * t[:, None] / _NOISE_PERIODS_S + phases).sum(axis=1) / 3
        out = self.base + self.amplitude * shape + self.noise * smooth
        if self.jitter and rng is not None:
            out = out + rng.normal(0.0, self.jitter, len(t))
        if self.kind == "rain":  # a gauge reads nothing when it does not rain
            out = np.where(shape > 0, out, 0.0)
        return np.round(np.clip(out, 0.0, None), _DIGITS.get(self.kind, 3))
