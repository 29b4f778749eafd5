"""Pipe networks as editable kinds of collection (see layers/kinds.py): ``<network>_pipes``
and ``<network>_nodes``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from layers.kinds import Box, CollectionKind, NoRowRules, extents, row_state, union
from layers.registry import Layer
from layers.versioned import VersionedTable
from pipelines import edit
from pipelines.model import UTILITIES

_STATE = {
    "pipes": "SELECT version FROM twin.pipe_segments WHERE id = %s",
    "nodes": "SELECT version FROM twin.pipe_nodes WHERE id = %s",
}
_EXTENT = {
    "pipes": "SELECT ST_Extent(geom) AS e FROM twin.pipe_segments WHERE id = %s",
    "nodes": "SELECT ST_Extent(geom) AS e FROM twin.pipe_nodes WHERE id = %s",
}
# Pipes attached to a node: they move with it (and carry its new id when it is renamed).
_ATTACHED = """
    SELECT ST_Extent(p.geom) AS e
    FROM twin.pipe_nodes n
    JOIN twin.pipe_segments p ON p.network = n.network AND p.deleted_at IS NULL
     AND (p.from_node = n.node_id OR p.to_node = n.node_id)
    WHERE n.id = %s
"""
_NETWORK_CLASS = "SELECT utility, subclass FROM twin.pipe_networks WHERE name = %s"
_PIPES_VIEW, _NODES_VIEW = "pipes_", "pipe_nodes_"  # the views pipelines/store.py publishes


@dataclass(frozen=True)
class PipeKind(NoRowRules):
    """The pipes or the nodes of one network: the topology stays whole (pipelines/edit.py)."""

    target: edit.Target
    name: str = "pipes"
    label: str = "pipe network feature"

    @property
    def collection(self) -> str:
        return f"{self.target.network}_{self.target.what}"

    @property
    def table(self) -> VersionedTable:
        return self.target.table

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "network": self.target.network, "part": self.target.what}

    def parse(self, feature: Any, *, partial: bool) -> Any:
        return feature  # pipelines/edit checks the network first, then the feature

    async def create(self, conn: psycopg.AsyncConnection, change: Any) -> tuple[int, int]:
        return await edit.create(conn, self.target, change)

    async def update(
        self, conn: psycopg.AsyncConnection, fid: int, change: Any, version: int, *, partial: bool
    ) -> int:
        return await edit.update(conn, self.target, fid, change, version, partial=partial)

    async def delete(self, conn: psycopg.AsyncConnection, fid: int, version: int) -> int:
        return await edit.delete(conn, self.target, fid, version)

    async def restore(self, conn: psycopg.AsyncConnection, fid: int, version: int | None) -> int:
        return await edit.restore(conn, self.target, fid, version)

    async def state(self, conn: psycopg.AsyncConnection, fid: int) -> dict[str, Any] | None:
        return await row_state(conn, _STATE[self.target.what], fid)

    async def footprints(self, conn: psycopg.AsyncConnection, fid: int) -> dict[str, Box]:
        queries = [(self.collection, _EXTENT[self.target.what])]
        if self.target.what == "nodes":
            queries.append((f"{self.target.network}_pipes", _ATTACHED))
        out = await extents(conn, fid, queries)
        # Low points of drainage networks depend on the nodes and pipes around them.
        for name in list(out):
            out["low_points"] = union(out.get("low_points"), out[name])
        return out

    async def tile_extras(self, conn: psycopg.AsyncConnection, layer: Layer, doc: dict) -> None:
        """A pipe network's layer carries its CJJ 61 class and colour, so a client styles it
        the way survey drawings do without knowing the standard."""
        if layer.schema_name != "twin" or not layer.table_name.startswith(
            (_PIPES_VIEW, _NODES_VIEW)
        ):
            return
        network = layer.table_name.removeprefix(_NODES_VIEW).removeprefix(_PIPES_VIEW)
        cur = await conn.execute(_NETWORK_CLASS, [network])
        row = await cur.fetchone()
        if row is None or row[0] not in UTILITIES:
            return
        _, zh, en, (r, g, b) = UTILITIES[row[0]]
        doc["vector_layers"][0].update(
            {
                "utility": row[0],
                "subclass": row[1],
                "utility_name": f"{zh} {en}",
                "color": f"#{r:02x}{g:02x}{b:02x}",
                "standard": "CJJ 61-2017",
            }
        )


def find(collection_id: str) -> CollectionKind | None:
    """The network pipes or nodes a collection id names, if it names them."""
    target = edit.target_of(collection_id)
    return PipeKind(target) if target is not None else None


def network_of(layer: Layer) -> str | None:
    """The network whose pipes ``layer`` publishes (the view ``twin.pipes_<network>``)."""
    if layer.schema_name == "twin" and layer.table_name.startswith(_PIPES_VIEW):
        return layer.table_name.removeprefix(_PIPES_VIEW)
    return None
