"""Point-to-grid location: which unit grid, community, street and district holds a point.

The current unit cells are held in memory as an STRtree (a few thousand polygons for a whole
city), reloaded when the grid's revision changes, so a million points locate in one vectorised
query instead of a million index probes in SQL. A point on a shared edge belongs to the cell
with the smallest code, so the answer never depends on the order rows were stored in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg
import shapely
from shapely import STRtree

from twin.errors import InvalidParameter

OUTSIDE = ""  # the code given to a point in no cell: explicit, never a guess
LEVEL_KEYS = ("unit", "community", "street", "district")


@dataclass(frozen=True)
class GridIndex:
    revision: int
    codes: np.ndarray  # unit codes, sorted
    tree: STRtree
    names: dict[str, str]  # every current cell's code → name
    parents: dict[str, str | None]  # code → parent code

    @property
    def empty(self) -> bool:
        return len(self.codes) == 0

    def unit_index(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Index into ``codes`` of the unit cell of each point, -1 where none."""
        points = shapely.points(lon, lat)
        result = np.full(len(points), -1, dtype=np.int64)
        if self.empty or len(points) == 0:
            return result
        pts, cells = self.tree.query(points, predicate="intersects")
        # Several hits for one point (on an edge): keep the smallest cell index, i.e. code.
        order = np.lexsort((cells, pts))
        pts, cells = pts[order], cells[order]
        first = np.ones(len(pts), dtype=bool)
        first[1:] = pts[1:] != pts[:-1]
        result[pts[first]] = cells[first]
        return result

    def hierarchy(self, unit_code: str) -> dict[str, str]:
        """unit → community → street → district codes of a unit code."""
        out = {"unit": unit_code}
        code: str | None = unit_code
        for level in LEVEL_KEYS[1:]:
            code = self.parents.get(code) if code else None
            out[level] = code or OUTSIDE
        return out


INDEX_SQL = (
    "SELECT level, code, name, parent_code, "
    "CASE WHEN level = 'unit' THEN ST_AsBinary(geom) END "
    "FROM twin.grid_cells WHERE valid_to IS NULL ORDER BY code"
)


def build_index(revision: int, rows: list[tuple]) -> GridIndex:
    """The index from INDEX_SQL rows (level, code, name, parent_code, unit WKB)."""
    units = [r for r in rows if r[0] == "unit"]
    geoms = shapely.from_wkb([bytes(r[4]) for r in units]) if units else np.array([])
    return GridIndex(
        revision=revision,
        codes=np.array([r[1] for r in units], dtype=object),
        tree=STRtree(geoms),
        names={r[1]: r[2] for r in rows},
        parents={r[1]: r[3] for r in rows},
    )


REVISION_SQL = "SELECT revision FROM twin.grid_state"


def load_index(conn: psycopg.Connection) -> GridIndex:
    row = conn.execute(REVISION_SQL).fetchone()
    return build_index(int(row[0]) if row else 0, conn.execute(INDEX_SQL).fetchall())


async def current_index(conn: psycopg.AsyncConnection, index: GridIndex | None) -> GridIndex:
    """The unit-cell index at the grid's revision now: ``index`` when it is still that,
    else built again."""
    cur = await conn.execute(REVISION_SQL)
    row = await cur.fetchone()
    revision = int(row[0]) if row else 0
    if index is None or index.revision != revision:
        cur = await conn.execute(INDEX_SQL)
        index = build_index(revision, await cur.fetchall())
    return index


def check_coordinates(lon: np.ndarray, lat: np.ndarray) -> None:
    bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidParameter(
            f"point {i + 1} ({lon[i]}, {lat[i]}) is not a longitude/latitude: longitude must be "
            "within ±180 and latitude within ±90 (use crs= for projected coordinates)"
        )


def locate_codes(index: GridIndex, lon: np.ndarray, lat: np.ndarray) -> dict[str, np.ndarray]:
    """Codes of every level for each point (OUTSIDE where the point is in no unit cell)."""
    idx = index.unit_index(lon, lat)
    cells, inverse = np.unique(idx, return_inverse=True)
    columns: dict[str, list[str]] = {level: [] for level in LEVEL_KEYS}
    for cell in cells:  # one hierarchy walk per distinct cell, not per point
        chain = index.hierarchy(str(index.codes[cell])) if cell >= 0 else {}
        for level in LEVEL_KEYS:
            columns[level].append(chain.get(level, OUTSIDE))
    return {level: np.array(v, dtype=object)[inverse] for level, v in columns.items()}
