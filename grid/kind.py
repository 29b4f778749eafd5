"""Grid levels as editable kinds of collection (see layers/kinds.py): ``grid_<level>``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from grid import edit
from grid.codes import LEVELS
from layers.kinds import Box, CollectionKind, NoRowRules, extents, row_state
from layers.versioned import VersionedTable
from twin.errors import ReadOnly

COLLECTIONS = {f"grid_{level}": level for level in LEVELS}
_STATE = "SELECT version FROM twin.grid_cells WHERE id = %s"
_EXTENT = "SELECT ST_Extent(geom) AS e FROM twin.grid_cells WHERE id = %s"


@dataclass(frozen=True)
class GridKind(NoRowRules):
    """One level of the unified grid: cells are edited and retired here, added only by
    ``twin grid import`` (whose checks keep the hierarchy whole)."""

    level: str
    name: str = "grid"
    label: str = "grid cell"

    @property
    def collection(self) -> str:
        return f"grid_{self.level}"

    @property
    def table(self) -> VersionedTable:
        return edit.table(self.level)

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "level": self.level}

    def parse(self, feature: Any, *, partial: bool) -> Any:
        return feature  # grid/edit.update checks it, then checks its fit

    async def create(self, conn: psycopg.AsyncConnection, change: Any) -> tuple[int, int]:
        raise ReadOnly(
            "new grid cells come from `twin grid import`, whose checks keep the "
            "hierarchy whole; edit existing cells here"
        )

    async def update(
        self, conn: psycopg.AsyncConnection, fid: int, change: Any, version: int, *, partial: bool
    ) -> int:
        return await edit.update(conn, self.level, fid, change, version, partial=partial)

    async def delete(self, conn: psycopg.AsyncConnection, fid: int, version: int) -> int:
        return await edit.retire(conn, self.level, fid, version)

    async def restore(self, conn: psycopg.AsyncConnection, fid: int, version: int | None) -> int:
        return await edit.restore(conn, self.level, fid, version)

    async def state(self, conn: psycopg.AsyncConnection, fid: int) -> dict[str, Any] | None:
        return await row_state(conn, _STATE, fid)

    async def footprints(self, conn: psycopg.AsyncConnection, fid: int) -> dict[str, Box]:
        return await extents(conn, fid, [(self.collection, _EXTENT)])


def find(collection_id: str) -> CollectionKind | None:
    """The grid level a collection id names, if it names one."""
    level = COLLECTIONS.get(collection_id)
    return GridKind(level) if level is not None else None
