"""Scenes as STAC Items and their collections as STAC Collections (STAC 1.0, eo and proj
extensions). Links point at our own endpoints; no file path is ever shown."""

from __future__ import annotations

from typing import Any

from pyproj import CRS

from rasters.catalog import Scene

STAC_VERSION = "1.0.0"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
]
COMMON_NAMES = {"coastal", "blue", "green", "red", "nir", "nir08", "swir16", "swir22", "pan"}


def gsd(scene: Scene) -> float | None:
    """STAC's gsd is in metres: a scene in degrees (or of unknown CRS) has none to give."""
    if scene.epsg is None:
        return None
    crs = CRS.from_epsg(scene.epsg)
    if crs.is_geographic or crs.axis_info[0].unit_name not in ("metre", "meter"):
        return None
    return scene.resolution[0]


def item(scene: Scene, base: str) -> dict[str, Any]:
    root = f"{base}/raster"
    eo_bands = [
        {"name": b, **({"common_name": b} if b in COMMON_NAMES else {})} for b in scene.bands
    ]
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": EXTENSIONS,
        "id": scene.id,
        "collection": scene.collection,
        "geometry": scene.footprint,
        "bbox": list(scene.bbox),
        "properties": {
            "datetime": scene.datetime.isoformat().replace("+00:00", "Z"),
            # STAC's platform is a string when present: a scene of unknown sensor has none.
            **({"platform": scene.sensor} if scene.sensor else {}),
            **({"gsd": gsd(scene)} if gsd(scene) is not None else {}),
            "proj:epsg": scene.epsg,
            "proj:shape": [scene.height, scene.width],
            "eo:bands": eo_bands,
            "citytwin:scale": scene.scale,
            "citytwin:statistics": scene.stats,
        },
        "links": [
            {"rel": "self", "href": f"{root}/scenes/{scene.id}", "type": "application/geo+json"},
            {
                "rel": "collection",
                "href": f"{root}/collections/{scene.collection}",
                "type": "application/json",
            },
            {
                "rel": "parent",
                "href": f"{root}/collections/{scene.collection}",
                "type": "application/json",
            },
            {"rel": "root", "href": f"{root}/collections", "type": "application/json"},
            {
                "rel": "tiles",
                "href": f"{root}/scenes/{scene.id}/tiles/WebMercatorQuad/tilejson.json",
                "type": "application/json",
                "title": "TileJSON (true colour by default)",
            },
        ],
        "assets": {
            "data": {
                "href": f"{root}/scenes/{scene.id}/data.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "eo:bands": eo_bands,
            },
        },
    }


def collection(cid: str, title: str, scenes: list[Scene], base: str) -> dict[str, Any]:
    root = f"{base}/raster"
    bbox = (
        [
            min(s.bbox[0] for s in scenes),
            min(s.bbox[1] for s in scenes),
            max(s.bbox[2] for s in scenes),
            max(s.bbox[3] for s in scenes),
        ]
        if scenes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    times = sorted(s.datetime for s in scenes)
    interval = [
        times[0].isoformat().replace("+00:00", "Z") if times else None,
        times[-1].isoformat().replace("+00:00", "Z") if times else None,
    ]
    bands = sorted({b for s in scenes for b in s.bands})
    summaries = {
        "platform": sorted({s.sensor for s in scenes if s.sensor}),
        "eo:bands": [{"name": b} for b in bands],
        "gsd": sorted({g for s in scenes if (g := gsd(s)) is not None}),
    }
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": EXTENSIONS[:1],
        "id": cid,
        "title": title or cid,
        "description": f"{len(scenes)} scene(s)",
        "license": "other",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
        # A summary is a non-empty set of values in STAC 1.0: an empty one is left out.
        "summaries": {name: values for name, values in summaries.items() if values},
        "links": [
            {"rel": "self", "href": f"{root}/collections/{cid}", "type": "application/json"},
            {
                "rel": "items",
                "href": f"{root}/collections/{cid}/items",
                "type": "application/geo+json",
            },
            {"rel": "root", "href": f"{root}/collections", "type": "application/json"},
            {
                "rel": "tiles",
                "href": f"{root}/collections/{cid}/tiles/WebMercatorQuad/tilejson.json",
                "type": "application/json",
                "title": "mosaic TileJSON",
            },
        ],
    }
