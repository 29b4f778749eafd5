"""The pipe networks as the API lists them: name, class, revision and what each holds now."""

from __future__ import annotations

from typing import Any

import psycopg

_NETWORKS = """
        SELECT n.name, n.title, n.utility, n.subclass, n.gravity, n.revision, n.updated_at,
               (SELECT count(*) FROM twin.pipe_segments s
                WHERE s.network = n.name AND s.deleted_at IS NULL),
               (SELECT count(*) FROM twin.pipe_nodes d
                WHERE d.network = n.name AND d.deleted_at IS NULL)
        FROM twin.pipe_networks n ORDER BY n.name
        """


async def list_networks(
    conn: psycopg.AsyncConnection, hidden: set[str] | frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Every network but the ``hidden`` ones, by name, with its counts of live pipes and
    nodes and its two collections."""
    cur = await conn.execute(_NETWORKS)
    out = []
    for name, title, util, sub, gravity, rev, updated, segs, nodes in await cur.fetchall():
        if name in hidden:
            continue
        out.append(
            {
                "name": name,
                "title": title,
                "utility": util,
                "subclass": sub,
                "kind": "gravity" if gravity else "pressure",
                "revision": rev,
                "updated_at": updated.isoformat(),
                "segments": segs,
                "nodes": nodes,
                "collections": [f"{name}_pipes", f"{name}_nodes"],
            }
        )
    return out
