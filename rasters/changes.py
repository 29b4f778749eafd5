"""Change detection between two catalogued scenes, stored as the ``raster_changes`` layer and
summarised per grid cell ("new construction candidates", "vegetation loss")."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from grid.codes import LEVELS
from layers.registry import register_view
from rasters.catalog import Scene, get_scene_sync
from twin import audit, db
from twin.auth import Principal
from twin.errors import InvalidParameter, NotFound

NEEDED = ("blue", "green", "red", "nir")
UNKNOWN_SET = "no such change set; POST /raster/changes makes one"
SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
FIELDS = [
    ("change_set", "text"),
    ("kind", "text"),
    ("area_m2", "double"),
    ("unit_grid", "text"),
    ("scene_before", "text"),
    ("scene_after", "text"),
    ("date_before", "date"),
    ("date_after", "date"),
    ("before", "json"),
    ("after", "json"),
    ("detected_at", "timestamp"),
]


def _bands(scene: Scene) -> dict[str, int]:
    missing = [b for b in NEEDED if b not in scene.bands]
    if missing:
        raise InvalidParameter(
            f"scene {scene.id} has no band {', '.join(missing)}: change detection needs "
            f"{', '.join(NEEDED)} (its bands are {', '.join(scene.bands)})"
        )
    return {b: scene.band_index(b) for b in NEEDED}


def run_change_detection(
    conn: psycopg.Connection, before_id: str, after_id: str, name: str | None = None
) -> dict[str, Any]:
    """Detect, store (replacing an earlier set of the same name) and summarise."""
    from rasters.change import detect_changes

    started = time.perf_counter()
    before, after = get_scene_sync(conn, before_id), get_scene_sync(conn, after_id)
    if before.id == after.id:
        raise InvalidParameter("before and after are the same scene")
    if after.datetime < before.datetime:
        raise InvalidParameter(
            f"scene {after.id} ({after.datetime:%Y-%m-%d}) is older than {before.id} "
            f"({before.datetime:%Y-%m-%d}): give the earlier scene first"
        )
    name = name or f"{before.id}__{after.id}"
    if not SET_NAME.fullmatch(name):
        raise InvalidParameter(f"change set name {name!r}: letters, digits, '_', '.', '-'")
    result = detect_changes(
        Path(before.cog_path),
        Path(after.cog_path),
        before_bands=_bands(before),
        after_bands=_bands(after),
        scale_before=before.scale,
        scale_after=after.scale,
    )
    # two runs of one name at once would each delete, then both insert
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('twin.raster_changes:' || %s))", [name])
    conn.execute("DELETE FROM twin.raster_changes WHERE change_set = %s", [name])
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO twin.raster_changes (change_set, kind, area_m2, unit_grid, scene_before,
                scene_after, date_before, date_after, before, after, geom)
            SELECT %(set)s, %(kind)s, %(area)s, twin.unit_grid_at(ST_PointOnSurface(g)),
                   %(b)s, %(a)s, %(db)s, %(da)s, %(vb)s, %(va)s, g
            FROM (SELECT ST_Multi(ST_SetSRID(ST_GeomFromWKB(%(wkb)s), 4326)) AS g) x
            """,
            [
                {
                    "set": name,
                    "kind": p.kind,
                    "area": round(p.area_m2, 1),
                    "b": before.id,
                    "a": after.id,
                    "db": before.datetime.date(),
                    "da": after.datetime.date(),
                    "vb": Jsonb(p.before),
                    "va": Jsonb(p.after),
                    "wkb": p.geometry.wkb,
                }
                for p in result.polygons
            ],
        )
    register_view(
        conn,
        "raster_changes",
        "影像变化图斑 detected changes",
        "raster_changes_current",
        "MultiPolygon",
        FIELDS,
        "changes detected between two scenes",
    )
    by_kind: dict[str, dict[str, float]] = {}
    for p in result.polygons:
        k = by_kind.setdefault(p.kind, {"count": 0, "area_m2": 0.0})
        k["count"] += 1
        k["area_m2"] += p.area_m2
    return {
        "change_set": name,
        "before": before.id,
        "after": after.id,
        "polygons": len(result.polygons),
        "by_kind": {
            k: {"count": int(v["count"]), "area_m2": round(v["area_m2"], 1)}
            for k, v in sorted(by_kind.items())
        },
        "params": result.params,
        "seconds": round(time.perf_counter() - started, 2),
    }


def detect_changes(
    url: str, who: Principal, before: str, after: str, name: str | None
) -> dict[str, Any]:
    """Detect the changes between two scenes on a connection of its own (a long job: it runs
    off the event loop) and record who asked for it, in one transaction."""
    with db.connect(url) as sync:
        summary = run_change_detection(sync, before, after, name)
        audit.record_sync(
            sync,
            who,
            "changes.detect",
            summary.get("change_set") or name,
            detail={"before": before, "after": after},
        )
        sync.commit()
        return summary


GRID_SQL = """
WITH c AS (SELECT kind, area_m2, geom FROM twin.raster_changes WHERE change_set = %(set)s)
SELECT g.code, g.name,
       count(*) FILTER (WHERE c.kind = 'new_construction') AS construction,
       coalesce(sum(ST_Area(ST_Intersection(g.geom, c.geom)::geography))
                FILTER (WHERE c.kind = 'new_construction'), 0) AS construction_m2,
       count(*) FILTER (WHERE c.kind = 'vegetation_loss') AS vegetation_loss,
       coalesce(sum(ST_Area(ST_Intersection(g.geom, c.geom)::geography))
                FILTER (WHERE c.kind = 'vegetation_loss'), 0) AS vegetation_loss_m2,
       count(c.kind) AS changes
FROM twin.grid_cells g LEFT JOIN c ON ST_Intersects(g.geom, c.geom)
WHERE g.level = %(level)s AND g.valid_to IS NULL
GROUP BY g.code, g.name
HAVING count(c.kind) > 0 OR %(all)s
ORDER BY construction_m2 DESC, vegetation_loss_m2 DESC, g.code
"""


async def grid_summary(conn: Any, name: str, level: str, every_cell: bool) -> list[dict]:
    if level not in LEVELS:
        raise InvalidParameter(f"level {level!r}: one of {', '.join(LEVELS)}")
    if not SET_NAME.fullmatch(name):
        raise NotFound(UNKNOWN_SET)
    cur = await conn.execute(
        "SELECT 1 FROM twin.raster_changes WHERE change_set = %s LIMIT 1", [name]
    )
    if await cur.fetchone() is None:
        raise NotFound(UNKNOWN_SET)
    cur = await conn.execute(GRID_SQL, {"set": name, "level": level, "all": every_cell})
    keys = (
        "code",
        "name",
        "new_construction_candidates",
        "new_construction_m2",
        "vegetation_loss",
        "vegetation_loss_m2",
        "changes",
    )
    out = []
    for row in await cur.fetchall():
        d = dict(zip(keys, row, strict=True))
        d["new_construction_m2"] = round(float(d["new_construction_m2"]), 1)
        d["vegetation_loss_m2"] = round(float(d["vegetation_loss_m2"]), 1)
        out.append(d)
    return out
