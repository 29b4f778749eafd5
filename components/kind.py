"""Components as an editable kind of collection (see layers/kinds.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from components import edit
from layers.access import check_component_rows
from layers.kinds import Box, KindFinder, NoRowRules, extents, row_state
from layers.versioned import VersionedTable
from twin.auth import Principal
from twin.settings import ComponentSettings

COLLECTION = "components"
_STATE = (
    "SELECT version, code, dept_code, dept_name, maint_code, maint_name "
    "FROM twin.components WHERE id = %s"
)
_EXTENT = "SELECT ST_Extent(geom) AS e FROM twin.components WHERE id = %s"


@dataclass(frozen=True)
class ComponentKind(NoRowRules):
    """The ``components`` collection: codes generated or checked against the configured width,
    soft delete, and the department rule on the rows before and after an edit."""

    settings: ComponentSettings
    collection: str = COLLECTION
    name: str = "components"
    label: str = "component"

    @property
    def table(self) -> VersionedTable:
        return edit.TABLE

    def describe(self) -> dict[str, str]:
        return {"name": self.name}

    def parse(self, feature: Any, *, partial: bool) -> edit.Change:
        if partial:
            feature = {"type": "Feature", **feature}
        return edit.parse_feature(feature, partial=partial)

    async def create(self, conn: psycopg.AsyncConnection, change: Any) -> tuple[int, int]:
        return await edit.create(conn, change, self.settings)

    async def update(
        self, conn: psycopg.AsyncConnection, fid: int, change: Any, version: int, *, partial: bool
    ) -> int:
        return await edit.update(conn, fid, change, version, self.settings, partial=partial)

    async def delete(self, conn: psycopg.AsyncConnection, fid: int, version: int) -> int:
        return await edit.soft_delete(conn, fid, version)

    async def restore(self, conn: psycopg.AsyncConnection, fid: int, version: int | None) -> int:
        return await edit.restore(conn, fid, version)

    async def state(self, conn: psycopg.AsyncConnection, fid: int) -> dict[str, Any] | None:
        return await row_state(conn, _STATE, fid)

    def check_rows(self, who: Principal, state: dict[str, Any] | None) -> None:
        check_component_rows(who, state)

    async def footprints(self, conn: psycopg.AsyncConnection, fid: int) -> dict[str, Box]:
        return await extents(conn, fid, [(self.collection, _EXTENT)])


def finder(settings: ComponentSettings) -> KindFinder:
    """The finder of the components collection, editing with ``settings``."""
    kind = ComponentKind(settings)
    return lambda collection_id: kind if collection_id == COLLECTION else None
