"""The report's pictures, drawn from our own data with matplotlib (Agg, no base map, no
network): the area map and the pipe age profile, as PNG bytes.

Geometries come in the area's Gauss-Krüger CRS, so map units are metres and the scale bar is
exact; grid north there is within a degree or so of true north.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from matplotlib import font_manager
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.path import Path

from pipelines.model import UTILITIES
from reports.data import MapLayer, ReportData

# Component status (GB/T 30428.2): colour and English label.
STATUS_STYLE = {
    "完好": ("#2e7d32", "intact"),
    "破损": ("#f57c00", "damaged"),
    "丢失": ("#d32f2f", "missing"),
    "废弃": ("#757575", "abandoned"),
    "移除": ("#212121", "removed"),
}
CJK_FAMILIES = ("wqy", "notosanscjk", "notoserifcjk", "sourcehan", "droidsansfallback", "simhei")
SCALE_STEPS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
DPI = 150


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """A font file on this machine that draws Chinese, or None (labels fall back to English)."""
    for path in sorted(font_manager.findSystemFonts()):
        flat = path.lower().replace("-", "").replace("_", "")
        if any(family in flat for family in CJK_FAMILIES):
            try:
                font_manager.FontProperties(fname=path).get_name()
            except (OSError, RuntimeError, ValueError):
                continue
            return str(path)
    return None


def _font(size: float) -> font_manager.FontProperties:
    """Text properties by font file (no family lookup, so no fallback warnings)."""
    path = cjk_font()
    if path:
        return font_manager.FontProperties(fname=path, size=size)
    return font_manager.FontProperties(family="DejaVu Sans", size=size)


def _label(zh: str, en: str) -> str:
    return f"{zh} {en}" if cjk_font() else en


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def polygon_path(geom: shapely.Geometry) -> Path:
    """A (multi)polygon with its holes as one compound matplotlib path."""
    rings = []
    for poly in getattr(geom, "geoms", [geom]):
        if poly.geom_type != "Polygon" or poly.is_empty:
            continue
        rings.append(np.asarray(poly.exterior.coords)[:, :2])
        rings.extend(np.asarray(r.coords)[:, :2] for r in poly.interiors)
    if not rings:
        return Path(np.zeros((0, 2)))
    return Path.make_compound_path(*(Path(r, closed=True) for r in rings))


def _lines(geoms: np.ndarray) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for geom in geoms:
        for part in getattr(geom, "geoms", [geom]):
            if part.geom_type == "LineString" and not part.is_empty:
                out.append(np.asarray(part.coords)[:, :2])
    return out


def _draw_polygons(ax: Any, layer: MapLayer, **style: Any) -> None:
    if len(layer.geoms):
        ax.add_collection(PathCollection([polygon_path(g) for g in layer.geoms], **style))


def _draw_pipes(ax: Any, layer: MapLayer) -> list[Line2D]:
    handles = []
    values = np.array(layer.values, dtype=object)
    for code, (_, zh, en, rgb) in UTILITIES.items():
        mask = values == code
        if not mask.any():
            continue
        colour = "#{:02x}{:02x}{:02x}".format(*rgb)
        ax.add_collection(LineCollection(_lines(layer.geoms[mask]), colors=[colour], lw=1.1))
        handles.append(Line2D([], [], color=colour, lw=2, label=_label(zh, f"{code} {en}")))
    return handles


def _draw_components(ax: Any, layer: MapLayer) -> list[Line2D]:
    handles = []
    values = np.array(layer.values, dtype=object)
    xy = shapely.get_coordinates(layer.geoms) if len(layer.geoms) else np.zeros((0, 2))
    size = 3.0 if len(xy) < 3000 else 1.0  # dense areas: small dots, so the pipes still show
    for status, (colour, english) in STATUS_STYLE.items():
        mask = values == status
        if not mask.any():
            continue
        ax.scatter(xy[mask, 0], xy[mask, 1], s=size, c=colour, linewidths=0, zorder=4)
        label = _label(status, english)
        handles.append(Line2D([], [], marker="o", ls="", color=colour, markersize=4, label=label))
    return handles


def _scale_bar(ax: Any, x0: float, y0: float, x1: float, y1: float) -> None:
    target = (x1 - x0) / 5
    length = max((s for s in SCALE_STEPS if s <= target), default=SCALE_STEPS[0])
    bx, by = x0 + (x1 - x0) * 0.04, y0 + (y1 - y0) * 0.04
    ax.plot([bx, bx + length], [by, by], color="black", lw=3, solid_capstyle="butt", zorder=6)
    text = f"{length / 1000:g} km" if length >= 1000 else f"{length} m"
    ax.text(
        bx + length / 2,
        by + (y1 - y0) * 0.012,
        text,
        ha="center",
        va="bottom",
        fontsize=8,
        zorder=8,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
    )


def _north_arrow(ax: Any) -> None:
    ax.annotate(
        "N",
        xy=(0.95, 0.16),
        xytext=(0.95, 0.05),
        xycoords="axes fraction",
        ha="center",
        va="center",
        fontsize=10,
        fontweight="bold",
        arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.5},
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        zorder=8,
    )


def area_map_png(data: ReportData) -> bytes:
    """The area outline, its unit grids, buildings, pipes by CJJ 61 colour and components
    by status, with a legend, a scale bar and a north arrow."""
    assert data.outline is not None
    fig = _figure(8, 8)
    ax = fig.add_subplot(1, 1, 1)
    x0, y0, x1, y1 = data.outline.bounds
    pad = max(x1 - x0, y1 - y0) * 0.05
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    _draw_polygons(ax, data.layers["buildings"], facecolor="#d0d0d0", edgecolor="none")
    _draw_polygons(
        ax, data.layers["unit_grids"], facecolor="none", edgecolor="#9e9e9e", linewidths=0.4
    )
    handles: list[Artist] = [
        Patch(facecolor="none", edgecolor="black", lw=2, label=_label("范围", "area")),
        Patch(facecolor="none", edgecolor="#9e9e9e", label=_label("单元网格", "unit grids")),
        Patch(facecolor="#d0d0d0", label=_label("建筑", "buildings")),
    ]
    handles += _draw_pipes(ax, data.layers["pipes"])
    handles += _draw_components(ax, data.layers["components"])
    outside = shapely.box(x0, y0, x1, y1).difference(data.outline)
    if not outside.is_empty:
        ax.add_patch(_patch(outside, facecolor="white", alpha=0.55, edgecolor="none", zorder=5))
    ax.add_patch(_patch(data.outline, facecolor="none", edgecolor="black", lw=2, zorder=7))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    _scale_bar(ax, x0, y0, x1, y1)
    _north_arrow(ax)
    title = f"{data.cell['name']} {data.cell['code']}" if cjk_font() else data.cell["code"]
    ax.set_title(title, fontproperties=_font(12))
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        prop=_font(8),
    )
    return _png(fig)


def _patch(geom: shapely.Geometry, **style: Any) -> Any:
    from matplotlib.patches import PathPatch

    return PathPatch(polygon_path(geom), **style)


def age_chart_png(by_decade: list[dict[str, Any]]) -> bytes:
    """Pipe length by decade laid, as a small bar chart."""
    fig = _figure(6, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    labels = [r["decade"] for r in by_decade] or ["—"]
    lengths = [r["length_m"] / 1000 for r in by_decade] or [0]
    ax.bar(labels, lengths, color="#4c72b0")
    ax.set_ylabel("km")
    ax.set_title(_label("管龄", "pipe length by decade laid"), fontproperties=_font(10))
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)
