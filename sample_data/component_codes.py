"""Attributes of the components: 16-digit codes, unit grid, departments, state and dates."""

from __future__ import annotations

import numpy as np
import shapely

from sample_data.components import Placed
from sample_data.frame import DISTRICT_CODE, CityFrame
from sample_data.grid import GridCell
from sample_data.tables import component_classes

STATES = ("完好", "破损", "丢失", "废弃")
COVER_STATE_P = (0.92, 0.05, 0.015, 0.015)  # covers go missing
OTHER_STATE_P = (0.94, 0.045, 0.0, 0.015)
SURVEY_START = np.datetime64("2016-03-01")
SURVEY_END = np.datetime64("2023-10-31")
LAST_CHANGE = np.datetime64("2024-06-30")


def component_table(
    placed: list[Placed], units: list[GridCell], frame: CityFrame, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Columns of the component layer, sorted by class, unit grid and position.

    Components outside every unit grid (outside the district) are dropped. The 6-digit sequence
    counts per class in that order, so codes are stable for a given seed and scale.
    """
    xy = np.array([p.xy for p in placed], dtype="float64")
    minor = np.array([p.minor for p in placed])
    unit = _unit_of(xy, units)
    xy, minor, unit = xy[unit >= 0], minor[unit >= 0], unit[unit >= 0]
    gk = frame.xy_to_gk(xy)
    order = np.lexsort((np.round(gk[:, 0], 3), -np.round(gk[:, 1], 3), unit, minor))
    xy, minor, unit = xy[order], minor[order], unit[order]
    classes = component_classes()
    cols: dict[str, np.ndarray] = {
        "code": _codes(minor),
        "major": np.array([m[:2] for m in minor]),
        "minor": minor,
        "class_name": np.array([classes[m]["class_name"] for m in minor]),
    }
    cols["status"] = _states(rng, minor)
    for field in ("dept_code", "dept_name", "owner_name", "maint_name"):
        cols[field] = np.array([classes[m][field] for m in minor])
    cols["unit_grid"] = np.array([units[u].code for u in unit])
    cols["init_date"], cols["change_date"] = _dates(rng, cols["status"])
    cols["source"] = np.full(len(minor), "实测")
    cols["xy"] = xy
    return cols


def _unit_of(xy: np.ndarray, units: list[GridCell]) -> np.ndarray:
    """Index of the unit grid containing each point (the first one on a shared border)."""
    tree = shapely.STRtree([u.geom for u in units])
    points = shapely.points(xy)
    hit_point, hit_unit = tree.query(points, predicate="intersects")
    unit = np.full(len(xy), -1)
    for p, u in zip(hit_point[::-1], hit_unit[::-1], strict=True):
        unit[p] = u  # reversed, so the lowest unit index wins
    return unit


def _codes(minor: np.ndarray) -> np.ndarray:
    codes = []
    seq: dict[str, int] = {}
    for m in minor:
        seq[m] = seq.get(m, 0) + 1
        codes.append(f"{DISTRICT_CODE}{m}{seq[m]:06d}")
    return np.array(codes)


def _states(rng: np.random.Generator, minor: np.ndarray) -> np.ndarray:
    covers = np.array([m.startswith("01") and int(m[2:]) <= 11 for m in minor])
    draw = rng.random(len(minor))
    out = np.empty(len(minor), dtype=object)
    for mask, p in ((covers, COVER_STATE_P), (~covers, OTHER_STATE_P)):
        pick = np.searchsorted(np.cumsum(p), draw[mask], side="right")
        out[mask] = np.array(STATES)[np.minimum(pick, len(STATES) - 1)]
    return out.astype(str)


def _dates(rng: np.random.Generator, status: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Survey date, and a later change date for components whose state changed."""
    span = int((SURVEY_END - SURVEY_START).astype(int))
    init = SURVEY_START + rng.integers(0, span + 1, len(status)).astype("timedelta64[D]")
    later = init + rng.integers(30, 700, len(status)).astype("timedelta64[D]")
    change = np.where(status == "完好", init, np.minimum(later, LAST_CHANGE))
    return np.datetime_as_string(init, unit="D"), np.datetime_as_string(change, unit="D")
