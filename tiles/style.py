"""TileJSON and a MapLibre style (spec v8) for each map, made from its definition.

The style has no glyphs and no sprite: everything it needs is the map's own tiles and, for
imagery, the scene catalog's tiles, so a viewer on a closed network works. The legend travels in
the style's ``metadata`` (allowed by the spec), so any client can draw it.
"""

from __future__ import annotations

from typing import Any

from layers.registry import Layer
from tiles.composite import MapTiles
from tiles.maps import MapLayer, Style
from tiles.mvt import MVT_TYPES, TMS_ID

_WORLD = [-180.0, -85.0511, 180.0, 85.0511]
MAX_STYLE_ZOOM = 24


def tiles_url(base: str, map_id: str) -> str:
    return f"{base}/maps/{map_id}/tiles/{TMS_ID}/{{z}}/{{x}}/{{y}}"


def map_bounds(tiles: MapTiles) -> list[float]:
    boxes = [p.layer.bbox for p in tiles.parts if p.layer.bbox]
    if not boxes:
        return list(_WORLD)
    return [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]


def _fields(layer: Layer, names: list[str] | None) -> dict[str, str]:
    return {
        f.name: MVT_TYPES.get(f.type, "String")
        for f in layer.fields
        if names is None or f.name in names
    }


def map_tilejson(tiles: MapTiles, base: str, max_zoom: int) -> dict[str, Any]:
    """TileJSON 3.0.0 of the map's composite tiles: one vector layer per map layer, and one
    ``<layer>_cells`` layer for each aggregated point layer."""
    bbox = map_bounds(tiles)
    vector_layers: list[dict[str, Any]] = []
    for part in tiles.parts:
        spec = part.spec
        first = max(spec.minzoom, spec.aggregate_below or 0)
        if first <= spec.maxzoom:
            vector_layers.append(
                {
                    "id": spec.id,
                    "description": spec.title or part.layer.title,
                    "minzoom": first,
                    "maxzoom": min(spec.maxzoom, max_zoom),
                    "fields": _fields(part.layer, spec.properties),
                    "geometry_type": part.layer.geometry_type,
                    "collection": part.layer.name,
                }
            )
        if spec.aggregate_below is not None:
            fields = {"count": "Number"}
            if spec.aggregate_by:
                fields["n_<value>"] = f"Number: count per value of {spec.aggregate_by}"
            vector_layers.append(
                {
                    "id": spec.cells_id,
                    "description": f"{spec.title or part.layer.title}: counts per cell",
                    "minzoom": spec.minzoom,
                    "maxzoom": spec.aggregate_below - 1,
                    "fields": fields,
                    "geometry_type": "Point",
                    "collection": part.layer.name,
                }
            )
    return {
        "tilejson": "3.0.0",
        "name": tiles.map.id,
        "description": tiles.map.description or tiles.map.title,
        "scheme": "xyz",
        "tiles": [tiles_url(base, tiles.map.id)],
        "minzoom": 0,
        "maxzoom": max_zoom,
        "bounds": bbox,
        "center": [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, 14],
        "vector_layers": vector_layers,
    }


# --- style ----------------------------------------------------------------------------------
def _color(style: Style) -> Any:
    if not style.color_by or not style.colors:
        return style.color
    expr: list[Any] = ["match", ["to-string", ["get", style.color_by]]]
    for value, colour in style.colors.items():
        expr += [value, colour]
    return [*expr, style.color]


def _scaled(base: float) -> list[Any]:
    """Widths and radii that grow with the zoom, so the city reads at z12 and z19 alike."""
    return ["interpolate", ["exponential", 1.6], ["zoom"], 11, base * 0.5, 15, base, 19, base * 4]


def _zooms(layer: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    # The style's maxzoom is exclusive: drawn while zoom < maxzoom.
    if lo > 0:
        layer["minzoom"] = lo
    if hi + 1 < MAX_STYLE_ZOOM:
        layer["maxzoom"] = hi + 1
    return layer


def _meta(spec: MapLayer, collection: str | None) -> dict[str, Any]:
    return {"citytwin:layer": spec.id, "citytwin:collection": collection}


def _vector_layers(spec: MapLayer, source: str, collection: str) -> list[dict[str, Any]]:
    """The style layers of one map layer's features."""
    st = spec.style
    base = {"source": source, "source-layer": spec.id, "metadata": _meta(spec, collection)}
    layout = {} if spec.visible else {"visibility": "none"}
    out: list[dict[str, Any]] = []
    if st.type == "fill":
        out.append(
            {
                **base,
                "id": f"{spec.id}-fill",
                "type": "fill",
                "paint": {"fill-color": _color(st), "fill-opacity": st.opacity},
            }
        )
        out.append(
            {
                **base,
                "id": f"{spec.id}-outline",
                "type": "line",
                "paint": {"line-color": st.outline or _color(st), "line-width": st.width},
            }
        )
    elif st.type == "line":
        paint: dict[str, Any] = {
            "line-color": _color(st),
            "line-width": _scaled(st.width),
            "line-opacity": st.opacity,
        }
        if st.dash:
            paint["line-dasharray"] = st.dash
        out.append(
            {
                **base,
                "id": f"{spec.id}-line",
                "type": "line",
                "layout": {"line-join": "round", "line-cap": "butt" if st.dash else "round"},
                "paint": paint,
            }
        )
    else:
        out.append(
            {
                **base,
                "id": f"{spec.id}-circle",
                "type": "circle",
                "paint": {
                    "circle-color": _color(st),
                    "circle-radius": _scaled(st.radius),
                    "circle-opacity": st.opacity,
                    "circle-stroke-color": "#ffffff",
                    "circle-stroke-width": 0.8,
                },
            }
        )
    first = max(spec.minzoom, spec.aggregate_below or 0)
    for layer in out:
        if layout:
            layer["layout"] = {**layer.get("layout", {}), **layout}
        _zooms(layer, first, spec.maxzoom)
    return out


def _cells_layer(spec: MapLayer, source: str, collection: str) -> dict[str, Any]:
    """Per-cell counts of a dense point layer: a circle whose area grows with the count."""
    assert spec.aggregate_below is not None
    radius = ["interpolate", ["linear"], ["sqrt", ["get", "count"]], 1, 3, 10, 9, 40, 22]
    colour: Any = spec.style.color
    st = spec.style
    if spec.aggregate_by and st.color_by == spec.aggregate_by and len(st.colors) >= 2:
        # Counted by the colouring property: a cell shades from the first value's colour (all
        # of its points have that value, say 完好 intact) to the second's as that share falls
        # to 80 %, so cells with damaged or missing components stand out at city scale.
        (first, good), (_, bad) = list(st.colors.items())[:2]
        share = ["/", ["coalesce", ["get", f"n_{first}"], 0], ["max", ["get", "count"], 1]]
        colour = ["interpolate", ["linear"], share, 0.8, bad, 1, good]
    layer: dict[str, Any] = {
        "id": f"{spec.cells_id}-circle",
        "type": "circle",
        "source": source,
        "source-layer": spec.cells_id,
        "metadata": {**_meta(spec, collection), "citytwin:cells": True},
        "paint": {
            "circle-color": colour,
            "circle-opacity": 0.6,
            "circle-radius": radius,
            "circle-stroke-color": "#ffffff",
            "circle-stroke-width": 1,
        },
    }
    if not spec.visible:
        layer["layout"] = {"visibility": "none"}
    return _zooms(layer, spec.minzoom, spec.aggregate_below - 1)


def _raster(spec: MapLayer, source: str) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "id": f"{spec.id}-raster",
        "type": "raster",
        "source": source,
        "metadata": _meta(spec, None),
        "paint": {"raster-opacity": spec.style.opacity},
    }
    if not spec.visible:
        layer["layout"] = {"visibility": "none"}
    return _zooms(layer, spec.minzoom, spec.maxzoom)


def legend(spec: MapLayer) -> dict[str, Any]:
    st = spec.style
    entry: dict[str, Any] = {"layer": spec.id, "title": spec.title or spec.id, "type": st.type}
    if st.color_by and st.colors:
        entry["property"] = st.color_by
        entry["items"] = [{"label": v, "color": c} for v, c in st.colors.items()]
        entry["items"].append({"label": "other", "color": st.color})
    else:
        entry["color"] = st.color
    if st.dash:
        entry["dash"] = True
    if spec.aggregate_below:
        entry["note"] = f"counts per cell below zoom {spec.aggregate_below}"
        if spec.aggregate_by and st.color_by == spec.aggregate_by and len(st.colors) >= 2:
            first = next(iter(st.colors))
            entry["note"] += f", shaded by the share of {first}"
    return entry


def map_style(
    tiles: MapTiles,
    base: str,
    max_zoom: int,
    rasters: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The MapLibre style of a map. ``rasters`` maps each imagery layer id to its raster source
    (tiles URL, bounds, tile size); imagery layers without one are left out."""
    bbox = map_bounds(tiles)
    source = tiles.map.id
    sources: dict[str, Any] = {
        source: {
            "type": "vector",
            "tiles": [tiles_url(base, source)],
            "minzoom": 0,
            "maxzoom": min(max_zoom, 22),
            "bounds": bbox,
        }
    }
    layers: list[dict[str, Any]] = [
        {
            "id": "background",
            "type": "background",
            "paint": {"background-color": tiles.map.background},
        }
    ]
    bound = {p.spec.id: p for p in tiles.parts}
    legend_entries: list[dict[str, Any]] = []
    for spec in tiles.map.layers:
        if spec.raster is not None:
            if spec.id not in rasters:
                continue
            sources[f"raster-{spec.id}"] = rasters[spec.id]
            layers.append(_raster(spec, f"raster-{spec.id}"))
        elif spec.id in bound:
            collection = bound[spec.id].layer.name
            if spec.aggregate_below is not None:
                layers.append(_cells_layer(spec, source, collection))
            if max(spec.minzoom, spec.aggregate_below or 0) <= spec.maxzoom:
                layers.extend(_vector_layers(spec, source, collection))
        else:
            continue
        legend_entries.append(legend(spec))
    return {
        "version": 8,
        "name": tiles.map.title,
        "metadata": {
            "citytwin:map": tiles.map.id,
            "citytwin:description": tiles.map.description,
            "citytwin:legend": legend_entries,
            "citytwin:missing": tiles.missing,
        },
        "center": [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2],
        "zoom": 13,
        "sources": sources,
        "layers": layers,
    }
