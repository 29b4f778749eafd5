"""The topology report of a pipe network: what a survey or a GIS export got wrong.

Findings: dangling ends, duplicate and reversed duplicate segments, self-loops, pipes naming
nodes that do not exist or ending away from their nodes, orphan nodes, islands that no source
(or, for gravity networks, no outfall) reaches, nodes whose elevations disagree (ground ≠
depth + invert, or pipes meeting at one point at different elevations), and gravity segments
whose inverts run against their flow. Each finding has a location, so the report is also a
layer (``pipe_findings``) the viewer can show.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipelines import graph as graphs
from pipelines.model import SINK_KINDS, SOURCE_KINDS

TOLERANCE_M = 0.05  # elevations agree within 5 cm
END_OFF_M = 1.0  # a pipe end this far from its node is drawn wrong

# One query for everything that SQL sees directly. Rows: kind, severity, ref, message, lon, lat.
CHECKS_SQL = """
WITH s AS (SELECT * FROM twin.pipe_segments WHERE network = %(net)s AND deleted_at IS NULL),
     n AS (SELECT * FROM twin.pipe_nodes WHERE network = %(net)s AND deleted_at IS NULL),
     net AS (SELECT gravity FROM twin.pipe_networks WHERE name = %(net)s),
     deg AS (SELECT node, count(*) AS k FROM (SELECT from_node AS node FROM s
             UNION ALL SELECT to_node FROM s) e GROUP BY node),
     ends AS (SELECT from_node AS node, pipe_id, start_invert_m AS z FROM s
              WHERE start_invert_m IS NOT NULL
              UNION ALL SELECT to_node, pipe_id, end_invert_m FROM s WHERE end_invert_m IS NOT NULL)
SELECT 'self_loop', 'error', pipe_id,
       format('pipe %%s starts and ends at node %%s', pipe_id, from_node),
       ST_X(ST_LineInterpolatePoint(geom, 0.5)), ST_Y(ST_LineInterpolatePoint(geom, 0.5))
FROM s WHERE from_node = to_node
UNION ALL
SELECT CASE WHEN a.from_node = b.from_node THEN 'duplicate' ELSE 'reversed_duplicate' END,
       'error', b.pipe_id,
       format('pipe %%s joins the same nodes %%s and %%s as pipe %%s%%s', b.pipe_id, b.from_node,
              b.to_node, a.pipe_id,
              CASE WHEN a.from_node = b.from_node THEN '' ELSE ', in reverse' END),
       ST_X(ST_LineInterpolatePoint(b.geom, 0.5)), ST_Y(ST_LineInterpolatePoint(b.geom, 0.5))
FROM s a JOIN s b ON least(a.from_node, a.to_node) = least(b.from_node, b.to_node)
                 AND greatest(a.from_node, a.to_node) = greatest(b.from_node, b.to_node)
                 AND a.id < b.id AND a.from_node <> a.to_node
UNION ALL
SELECT 'unknown_node', 'error', s.pipe_id,
       format('pipe %%s names node %%s, which does not exist', s.pipe_id, e.node),
       ST_X(ST_StartPoint(s.geom)), ST_Y(ST_StartPoint(s.geom))
FROM s CROSS JOIN LATERAL (VALUES (s.from_node), (s.to_node)) e(node)
WHERE NOT EXISTS (SELECT 1 FROM n WHERE n.node_id = e.node)
UNION ALL
SELECT 'end_off_node', 'warning', s.pipe_id,
       format('pipe %%s %%s %%s m from its node %%s: the drawing and the topology disagree',
              s.pipe_id, e.which,
              round(ST_Distance(e.pt::geography, n.geom::geography)::numeric, 1),
              n.node_id),
       ST_X(e.pt), ST_Y(e.pt)
FROM s CROSS JOIN LATERAL (VALUES ('starts', s.from_node, ST_StartPoint(s.geom)),
                                  ('ends', s.to_node, ST_EndPoint(s.geom))) e(which, node, pt)
JOIN n ON n.node_id = e.node
WHERE ST_Distance(e.pt::geography, n.geom::geography) > %(off)s
UNION ALL
SELECT CASE WHEN d.k IS NULL THEN 'orphan_node' ELSE 'dangling_end' END, 'warning', n.node_id,
       CASE WHEN d.k IS NULL THEN format('node %%s (%%s) has no pipe', n.node_id, n.kind)
            ELSE format('node %%s is a %%s with one pipe: a dead end that should end at a '
                        'fitting, a service or a cap', n.node_id, n.kind) END,
       ST_X(n.geom), ST_Y(n.geom)
FROM n LEFT JOIN deg d ON d.node = n.node_id
WHERE d.k IS NULL OR (d.k = 1 AND n.kind IN ('junction', 'fitting'))
UNION ALL
SELECT 'node_elevation', 'warning', node_id,
       format('node %%s: ground %%s m minus depth %%s m is %%s m, but its invert is %%s m',
              node_id, ground_elev_m, depth_m, round((ground_elev_m - depth_m)::numeric, 3),
              invert_m),
       ST_X(geom), ST_Y(geom)
FROM n WHERE abs(ground_elev_m - depth_m - invert_m) > %(tol)s
UNION ALL
SELECT 'pipe_elevations', 'warning', e.node,
       format('node %%s: the pipes meeting there give elevations from %%s to %%s m (%%s)',
              e.node, min(e.z), max(e.z), string_agg(e.pipe_id, ', ' ORDER BY e.pipe_id)),
       ST_X(min(n.geom)::geometry), ST_Y(min(n.geom)::geometry)
FROM ends e JOIN n ON n.node_id = e.node, net
WHERE NOT net.gravity
GROUP BY e.node HAVING max(e.z) - min(e.z) > %(tol)s
UNION ALL
SELECT 'adverse_slope', 'warning', pipe_id,
       format('pipe %%s flows %%s but its invert rises from %%s m to %%s m', pipe_id, flow,
              CASE WHEN flow = 'reverse' THEN end_invert_m ELSE start_invert_m END,
              CASE WHEN flow = 'reverse' THEN start_invert_m ELSE end_invert_m END),
       ST_X(ST_LineInterpolatePoint(geom, 0.5)), ST_Y(ST_LineInterpolatePoint(geom, 0.5))
FROM s, net
WHERE net.gravity AND (
      (coalesce(flow, 'forward') = 'forward' AND start_invert_m < end_invert_m - 0.001)
   OR (flow = 'reverse' AND end_invert_m < start_invert_m - 0.001))
"""


def _params(network: str) -> dict[str, Any]:
    return {"net": network, "tol": TOLERANCE_M, "off": END_OFF_M}


def island_findings(g: graphs.Graph) -> list[tuple]:
    """Parts of the network (valves ignored) that no source, or no outfall, reaches."""
    ends = SINK_KINDS if g.gravity else SOURCE_KINDS
    word = "outfall or treatment plant" if g.gravity else "source (plant, tank, regulator)"
    anchors = np.flatnonzero(np.isin(g.node_kind, list(ends)))
    if g.n_nodes == 0:
        return []
    if len(anchors) == 0:
        x, y = g.node_xy[0]
        return [
            (
                "no_sources",
                "error",
                g.network,
                f"network {g.network} has no {word}: traces upstream and outage analysis "
                "need one; add it as a node",
                float(x),
                float(y),
            )
        ]
    segs = np.flatnonzero(g.linked)
    m = coo_matrix(
        (np.ones(len(segs), dtype=np.int8), (g.seg_a[segs], g.seg_b[segs])),
        shape=(g.n_nodes, g.n_nodes),
    )
    _, labels = connected_components(m, directed=False)
    fed = set(labels[anchors].tolist())
    out = []
    for label in sorted(set(labels.tolist()) - fed):
        members = np.flatnonzero(labels == label)
        if len(members) == 1 and len(g.incident(int(members[0]))) == 0:
            continue  # an orphan node, reported by the SQL checks
        in_island = np.isin(g.seg_a, members)
        length = float(g.seg_length[in_island].sum())
        first = int(members[0])
        out.append(
            (
                "island",
                "error",
                g.node_name[first],
                f"{len(members)} nodes and {int(in_island.sum())} pipes ({length:.0f} m) around "
                f"node {g.node_name[first]} are not connected to any {word}",
                float(g.node_xy[first][0]),
                float(g.node_xy[first][1]),
            )
        )
    return out


def _as_dicts(rows: list[tuple]) -> list[dict]:
    keys = ("kind", "severity", "ref", "message", "lon", "lat")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def check(conn: Any, network: str) -> list[dict]:
    """Every finding of a network (synchronous connection)."""
    rows = conn.execute(CHECKS_SQL, _params(network)).fetchall()
    return _as_dicts([*rows, *island_findings(graphs.load(conn, network))])


async def check_async(conn: Any, network: str, g: graphs.Graph) -> list[dict]:
    cur = await conn.execute(CHECKS_SQL, _params(network))
    rows = await cur.fetchall()
    return _as_dicts([*rows, *island_findings(g)])


def store_findings(conn: Any, network: str) -> list[dict]:
    """Check the network and replace its rows in the ``pipe_findings`` layer (publish it
    afterwards to refresh the layer's count and extent)."""
    found = check(conn, network)
    conn.execute(DELETE_FINDINGS_SQL, [network])
    with conn.cursor() as cur:
        cur.executemany(INSERT_FINDING_SQL, finding_rows(network, found))
    return found


# Replacing a network's rows in the pipe_findings layer (also from the API, asynchronously).
DELETE_FINDINGS_SQL = "DELETE FROM twin.pipe_findings WHERE network = %s"
INSERT_FINDING_SQL = (
    "INSERT INTO twin.pipe_findings (network, kind, severity, ref, message, geom) "
    "VALUES (%s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))"
)


_COUNT_FINDINGS_SQL = (
    "UPDATE twin.layers SET feature_count = (SELECT count(*) FROM twin.pipe_findings), "
    "updated_at = now() WHERE name = 'pipe_findings'"
)


async def replace_findings(conn: Any, network: str, found: list[dict]) -> None:
    """Replace a network's rows in the ``pipe_findings`` layer with ``found`` and count the
    layer again (inside the caller's transaction)."""
    await conn.execute(DELETE_FINDINGS_SQL, [network])
    async with conn.cursor() as cur:
        await cur.executemany(INSERT_FINDING_SQL, finding_rows(network, found))
    await conn.execute(_COUNT_FINDINGS_SQL)


def finding_rows(network: str, found: list[dict]) -> list[tuple]:
    return [
        (network, f["kind"], f["severity"], f["ref"], f["message"], f["lon"], f["lat"])
        for f in found
    ]


def summary(found: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in found:
        counts[f["kind"]] = counts.get(f["kind"], 0) + 1
    return dict(sorted(counts.items()))
