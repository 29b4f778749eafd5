"""Raster tiles, points and band math over catalogued scenes, with rio-tiler.

Requests name bands (``red``, ``nir``) and scenes (by id), never files: an expression is parsed
into a syntax tree that may hold only band names, numbers, + - * / ** and parentheses, then
rewritten with rio-tiler's ``b1``..``bN``. Anything else is refused before it reaches GDAL.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from morecantile import Tile
from rio_tiler.colormap import cmap as colormaps
from rio_tiler.constants import WEB_MERCATOR_TMS as WEB_MERCATOR
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader

from rasters.catalog import Scene, open_cog
from twin.errors import InvalidParameter, NotFound


@contextmanager
def reader(scene: Scene) -> Iterator[Reader]:
    """rio-tiler over the scene's COG, opened by the GTiff driver only."""
    with open_cog(scene.cog_path) as dataset, Reader(scene.cog_path, dataset=dataset) as src:
        yield src


MAX_EXPRESSION = 200
MAX_EXPONENT = 16
_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)


@dataclass(frozen=True)
class Preset:
    bands: tuple[str, ...] = ()
    expression: str | None = None
    rescale: tuple[float, float] | None = None  # None: the scene's 2nd-98th percentiles
    colormap: str | None = None


PRESETS = {
    "truecolor": Preset(bands=("red", "green", "blue")),
    "falsecolor": Preset(bands=("nir", "red", "green")),
    "ndvi": Preset(expression="(nir-red)/(nir+red)", rescale=(-0.2, 0.9), colormap="rdylgn"),
    "ndwi": Preset(expression="(green-nir)/(green+nir)", rescale=(-0.6, 0.6), colormap="blues"),
}


def _number(node: ast.AST) -> float | None:
    """The value of a numeric literal (not a bool), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if not isinstance(node.value, bool):
            return float(node.value)
    return None


def _check_node(node: ast.AST, names: set[str], allowed: str) -> None:
    if isinstance(node, ast.Expression):
        _check_node(node.body, names, allowed)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        # a power only of a small constant: 9**9**9 would compute for hours
        exponent = node.right
        if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, ast.USub | ast.UAdd):
            exponent = exponent.operand
        value = _number(exponent)
        if value is None or abs(value) > MAX_EXPONENT:
            raise InvalidParameter(
                f"** takes a number from -{MAX_EXPONENT} to {MAX_EXPONENT} as its exponent"
            )
        _check_node(node.left, names, allowed)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _OPS):
        _check_node(node.left, names, allowed)
        _check_node(node.right, names, allowed)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        _check_node(node.operand, names, allowed)
    elif _number(node) is not None:
        number = _number(node) or 0.0
        if not math.isfinite(number) or abs(number) > 1e30:
            raise InvalidParameter(f"the number {number:g} is out of range")
    elif isinstance(node, ast.Name):
        if node.id not in names:
            raise InvalidParameter(f"the scene has no band {node.id!r}; its bands are {allowed}")
    else:
        raise InvalidParameter(
            f"an expression is band math only: band names ({allowed}), numbers, + - * / ** "
            "and parentheses"
        )


def band_math(expression: str, scene: Scene) -> str:
    """A checked expression in band names, rewritten for rio-tiler (``b1``..``bN``)."""
    allowed = ", ".join(scene.bands)
    text = expression.strip()
    if not text or len(text) > MAX_EXPRESSION or not text.isascii():
        raise InvalidParameter(
            f"an expression is band math only (at most {MAX_EXPRESSION} characters): band "
            f"names ({allowed}), numbers, + - * / ** and parentheses"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise InvalidParameter(f"expression {text!r} does not parse as band math") from None
    _check_node(tree, set(scene.bands), allowed)
    if not any(isinstance(n, ast.Name) for n in ast.walk(tree)):
        raise InvalidParameter(f"an expression uses at least one band ({allowed})")

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802 - ast API
            return ast.copy_location(ast.Name(id=f"b{scene.band_index(node.id)}"), node)

        def visit_Constant(self, node: ast.Constant) -> ast.AST:  # noqa: N802 - ast API
            return ast.copy_location(ast.Constant(_number(node)), node)  # float math

    return ast.unparse(Rename().visit(tree))


def band_indexes(bands: str | tuple[str, ...], scene: Scene) -> list[int]:
    names = [b.strip() for b in bands.split(",")] if isinstance(bands, str) else list(bands)
    if len(names) not in (1, 3):
        raise InvalidParameter(
            "bands names one band (drawn grey, or with a colormap) or three (red, green, "
            "blue channels), e.g. nir,red,green"
        )
    missing = [n for n in names if n not in scene.bands]
    if missing:
        raise InvalidParameter(
            f"the scene has no band {', '.join(missing)}; its bands are {', '.join(scene.bands)}"
        )
    return [scene.band_index(n) for n in names]


def parse_rescale(text: str | None) -> list[tuple[float, float]] | None:
    if not text:
        return None
    out = []
    for part in text.split(";"):
        lo_hi = part.split(",")
        try:
            lo, hi = (float(v) for v in lo_hi)
        except ValueError:
            raise InvalidParameter(f"rescale is min,max (e.g. 0,3000), not {part!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            raise InvalidParameter(f"rescale {part!r}: max must be above min")
        out.append((lo, hi))
    return out


def colormap(name: str | None) -> dict | None:
    if not name:
        return None
    key = name.lower()
    if key not in colormaps.list():
        raise InvalidParameter(f"unknown colormap {name!r}; e.g. rdylgn, viridis, blues, greys")
    return dict(colormaps.get(key))


@dataclass(frozen=True)
class Style:
    """What to draw: bands or an expression, how to stretch it, which colours."""

    indexes: tuple[int, ...] | None
    expression: str | None
    rescale: list[tuple[float, float]] | None
    colormap: dict | None


def style_for(
    scene: Scene,
    *,
    preset: str | None,
    bands: str | None,
    expression: str | None,
    rescale: str | None,
    colormap_name: str | None,
) -> Style:
    chosen = PRESETS.get(preset or "") if preset else None
    if preset and chosen is None:
        raise InvalidParameter(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    if expression and bands:
        raise InvalidParameter("give bands or an expression, not both")
    expr = expression or (chosen.expression if chosen and not bands else None)
    wanted = bands or (chosen.bands if chosen and chosen.bands else None)
    if not expr and not wanted:
        wanted = tuple(b for b in ("red", "green", "blue") if b in scene.bands) or scene.bands[:1]
        if len(wanted) == 2:
            wanted = wanted[:1]
    ranges = parse_rescale(rescale)
    if ranges is None and chosen and chosen.rescale and expr == chosen.expression:
        ranges = [chosen.rescale]
    cmap = colormap(colormap_name or (chosen.colormap if chosen and expr else None))
    if expr:
        # without a stretch float results would all round to 0 or 1: -1..1 suits the
        # normalised-difference indexes an expression usually is
        return Style(None, band_math(expr, scene), ranges or [(-1.0, 1.0)], cmap)
    indexes = tuple(band_indexes(wanted, scene))  # type: ignore[arg-type]
    if cmap is not None and len(indexes) != 1:
        raise InvalidParameter("a colormap colours one band or an expression, not three bands")
    if ranges is not None and len(ranges) not in (1, len(indexes)):
        raise InvalidParameter(
            f"rescale gives {len(ranges)} ranges for {len(indexes)} bands: give one for all, "
            "or one per band separated by ';'"
        )
    if ranges is None:
        ranges = [_stretch(scene, i) for i in indexes]
    return Style(indexes, None, ranges, cmap)


def _stretch(scene: Scene, index: int) -> tuple[float, float]:
    stats = scene.stats.get(scene.bands[index - 1], {})
    lo, hi = stats.get("p2", 0.0), stats.get("p98", 1.0)
    return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


def render(img: ImageData, style: Style, fmt: str) -> bytes:
    if style.rescale:
        img.rescale(in_range=style.rescale * (img.count if len(style.rescale) == 1 else 1))
    driver = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG"}[fmt]
    return img.render(img_format=driver, colormap=style.colormap)


def tile(scene: Scene, z: int, x: int, y: int, style: Style, fmt: str, size: int) -> bytes:
    # rio-tiler's own tile() first checks the tile against the dataset by reprojecting the
    # tile's bounds with densified edges, a quarter of the time of a tile; the scene's lon/lat
    # extent from the catalog answers the same question with four comparisons.
    west, south, east, north = WEB_MERCATOR.bounds(Tile(x, y, z))
    bw, bs, be, bn = scene.bbox
    if west >= be or east <= bw or south >= bn or north <= bs:
        raise NotFound(f"tile {z}/{x}/{y} is outside scene {scene.id}")
    left, bottom, right, top = WEB_MERCATOR.xy_bounds(Tile(x, y, z))
    bbox = (left, bottom, right, top)
    with reader(scene) as src:
        img = src.part(
            bbox,
            dst_crs=WEB_MERCATOR.rasterio_crs,
            bounds_crs=WEB_MERCATOR.rasterio_crs,
            height=size,
            width=size,
            max_size=None,
            indexes=style.indexes,
            expression=style.expression,
        )
    return render(img, style, fmt)


def mosaic_tile(
    scenes: list[Scene], z: int, x: int, y: int, style: Style, fmt: str, size: int
) -> bytes:
    """The newest scene first; later ones fill what it leaves empty."""

    def read(scene: Scene, *args: Any, **kwargs: Any) -> ImageData:
        with reader(scene) as src:
            return src.tile(*args, **kwargs)

    try:
        img, _ = mosaic_reader(
            scenes,
            read,
            x,
            y,
            z,
            tilesize=size,
            indexes=style.indexes,
            expression=style.expression,
            allowed_exceptions=(TileOutsideBounds,),
        )
    except Exception as exc:  # rio-tiler raises EmptyMosaicError when nothing covers it
        if type(exc).__name__ == "EmptyMosaicError":
            raise NotFound(f"no scene of the collection covers tile {z}/{x}/{y}") from None
        raise
    return render(img, style, fmt)


def point(scene: Scene, lon: float, lat: float, expression: str | None) -> dict[str, Any]:
    with reader(scene) as src:
        try:
            pt = src.point(lon, lat)
        except Exception as exc:  # PointOutsideBounds
            if type(exc).__name__ == "PointOutsideBounds":
                raise NotFound(f"the point is outside scene {scene.id}") from None
            raise
    values = {
        name: (None if bool(np.ma.getmaskarray(pt.array)[i]) else float(pt.array[i]))
        for i, name in enumerate(scene.bands)
    }
    out: dict[str, Any] = {"values": values, "scale": scene.scale}
    if expression:
        band_math(expression, scene)  # checked: band names and arithmetic only
        if any(v is None for v in values.values()):
            out["expression"] = None
        else:
            result = float(evaluate(expression, {k: np.float64(v) for k, v in values.items()}))
            out["expression"] = result if np.isfinite(result) else None
    return out


def evaluate(expression: str, bands: dict[str, Any]) -> Any:
    """Band math over numbers or arrays, by walking the checked syntax tree (no eval)."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            ops = {
                ast.Add: np.add,
                ast.Sub: np.subtract,
                ast.Mult: np.multiply,
                ast.Div: np.divide,
                ast.Pow: np.power,
            }
            return ops[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Constant):
            return _number(node)
        if isinstance(node, ast.Name):
            return bands[node.id]
        raise InvalidParameter("an expression is band math only")

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return walk(ast.parse(expression.strip(), mode="eval"))
