"""Imagery inside an area: NDVI/NDWI of the newest scene and the one before, and the stored
change polygons (``raster_changes``) by kind."""

from __future__ import annotations

from functools import partial
from typing import Any

import geopandas as gpd

from query import sql as q
from query.area import Area
from query.plan import Compute, Plan, Query
from query.scope import EVERYTHING, Scope
from rasters import zonal
from rasters.catalog import SCENE_COLUMNS, Scene, scene_from_row
from twin.errors import NotFound

INDICES = {
    "ndvi": ("(nir-red)/(nir+red)", ("nir", "red")),
    "ndwi": ("(green-nir)/(green+nir)", ("green", "nir")),
}
SCENE_SQL = f"SELECT {SCENE_COLUMNS} FROM twin.raster_scenes WHERE id = ANY(%s)"  # noqa: S608


def index_stats(scene: Scene, area: Area) -> dict[str, Any]:
    """Zonal statistics (exactextract, pixels weighted by coverage) of each index the scene's
    bands allow; an index the scene cannot give is left out."""
    zones = gpd.GeoDataFrame({"zone": ["area"]}, geometry=[area.shape], crs="EPSG:4326")
    out: dict[str, Any] = {}
    for name, (expression, bands) in INDICES.items():
        if not set(bands) <= set(scene.bands):
            continue
        try:
            row = zonal.zonal_stats(scene, zones, "zone", None, expression)[0]
        except NotFound:  # the area is outside the scene's footprint
            continue
        out[name] = {k: row[k] for k in ("mean", "min", "max", "std", "coverage")}
    return out


def _scene_entry(scene: Scene, stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": scene.id,
        "collection": scene.collection,
        "datetime": scene.datetime.isoformat(),
        "sensor": scene.sensor,
        **stats,
    }


def imagery_summary(area: Area, scope: Scope = EVERYTHING) -> Plan[dict[str, Any]]:
    rows = yield Query(q.SCENES_SQL, {"g": area.wkb, "cols": scope.raster_list}, "imagery")
    ids = [r[0] for r in rows]
    scenes: list[dict[str, Any]] = []
    if ids:
        found = yield Query(SCENE_SQL, [ids], "imagery")
        by_id = {s.id: s for s in map(scene_from_row, found)}
        for sid in ids:  # newest first
            scene = by_id[sid]
            stats = yield Compute(partial(index_stats, scene, area), f"zonal statistics {sid}")
            scenes.append(_scene_entry(scene, stats))
    rows = []
    if scope.changes:
        rows = yield Query(q.CHANGES_SQL, {"g": area.wkb}, "imagery changes")
    changes = [
        {
            "change_set": cset,
            "scene_before": before,
            "scene_after": after,
            "date_before": d0.isoformat(),
            "date_after": d1.isoformat(),
            "kind": kind,
            "count": count,
            "area_m2": round(float(m2), 1),
        }
        for cset, before, after, d0, d1, kind, count, m2 in rows
    ]
    out: dict[str, Any] = {"available": bool(scenes or changes), "scenes": scenes}
    if len(scenes) == 2 and all("ndvi" in s and s["ndvi"]["mean"] is not None for s in scenes):
        out["ndvi_mean_change"] = round(scenes[0]["ndvi"]["mean"] - scenes[1]["ndvi"]["mean"], 4)
    out["changes"] = changes
    if not scenes:
        out["note"] = "no scene of the raster catalog covers the area"
    return out
