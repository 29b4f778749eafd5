"""Change detection between two dates of 4-band imagery (blue, green, red, near infrared).

The two scenes are compared pixel by pixel on one metric grid: the before image's own grid
cropped to the overlap when its CRS is projected (so the before pixels are never resampled),
otherwise a UTM grid of about the same resolution. The after image is warped onto it
(bilinear). A per-band gain matching the after image to the before one (the median ratio over
all pixels, most of which do not change) takes out differences of sensor, season and sun angle
before any threshold is applied, so the thresholds mean the same on every pair.

Three indexes describe each date, all ratios so that illumination (shadows moving with the sun,
haze, gain) cancels:

* NDVI = (nir - red) / (nir + red): green vegetation (0.5-0.9) against everything else (< 0.3).
* NDWI = (green - nir) / (green + nir) (McFeeters): open water is above 0, land below.
* built-up = (min(blue, green, red) + c) / (max(blue, green, red) + c), the visible
  *greyness* (one minus HSV saturation). See `indexes` for why this and not brightness.

A pixel changed when an index moved further than its threshold; the kind follows from which
index moved (water first, then construction, then vegetation), and the per-kind masks are
cleaned with a morphological opening and closing and a minimum area before they are turned
into polygons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.features import shapes
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import shape
from shapely.geometry.polygon import orient

from twin.errors import InvalidData, InvalidParameter

BANDS = ("blue", "green", "red", "nir")
INDEXES = ("ndvi", "builtup", "ndwi")
# Highest priority first: a pixel that became water is not also "vegetation loss".
KINDS = ("new_water", "new_construction", "vegetation_loss", "vegetation_gain")
# Added to min and max of the visible bands in the built-up index: about twice the noise of a
# good sensor (reflectance), so that dark pixels (shade, canopy, water) do not look colourful
# or grey from noise alone.
GREY_OFFSET = 0.005
# NDWI above which a pixel is open water (McFeeters 1996); new water must end above it.
WATER_NDWI = 0.0
MIN_OVERLAP_PX = 4  # fewer pixels than this across the overlap: nothing to compare
SAMPLE_PIXELS = 200_000  # pixels used to estimate the per-band gains
SQUARE = ndimage.generate_binary_structure(2, 2)
WGS84 = CRS.from_epsg(4326)
GEOD = Geod(ellps="WGS84")


@dataclass
class ChangePolygon:
    kind: str  # one of KINDS
    geometry: shapely.Geometry  # lon/lat (EPSG:4326)
    area_m2: float  # geodesic
    before: dict[str, float]  # mean of each index inside the polygon, before
    after: dict[str, float]


@dataclass
class ChangeResult:
    polygons: list[ChangePolygon]
    crs: str  # the working (metric) CRS
    pixel_size_m: float
    overlap_m2: float  # area of the pixels with data on both dates
    params: dict[str, float] = field(default_factory=dict)  # thresholds and gains used


@dataclass(frozen=True)
class Grid:
    """The working pixel grid (north-up)."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def pixel_area_m2(self) -> float:
        metres = self.crs.linear_units_factor[1]  # a projected CRS may be in feet
        return abs(self.transform.determinant) * metres * metres


def detect_changes(
    before: Path,
    after: Path,
    *,
    before_bands: Mapping[str, int],
    after_bands: Mapping[str, int],
    scale_before: float = 1.0,
    scale_after: float = 1.0,
    ndvi_drop: float = 0.3,
    builtup_rise: float = 0.2,
    ndwi_rise: float = 0.6,
    min_area_m2: float = 200.0,
    opening_px: int = 1,
    normalise: bool = True,
) -> ChangeResult:
    """Polygons of land-cover change from `before` to `after`, in lon/lat.

    `*_bands` map blue, green, red and nir to 1-based band indexes of each file; `scale_*`
    turn raw values into reflectance (0.0001 for Sentinel-2 L2A style UInt16). Thresholds are
    changes of the index values (see the module docstring); `opening_px` is the radius of the
    noise-removing opening and gap-closing closing, `min_area_m2` the smallest polygon kept.

    Default thresholds sit midway between what a real change and what noise does:
    `ndvi_drop` 0.3: vegetation is at 0.5-0.9 and soil or roofs below 0.3, so a loss of
    vegetation drops 0.4-0.7 while vigour and season move unchanged pixels by < 0.2.
    `builtup_rise` 0.2: soil is about 0.6 and vegetation 0.5 on the greyness index, roofs and
    paving 0.85-0.95, so building over them adds >= 0.3 and clearing to soil about 0.1.
    `ndwi_rise` 0.6 and ending above 0: land is at -0.3..-0.7 and water at 0.2..0.6, so new
    water rises >= 0.8; a grove cut to soil rises 0.4-0.5 but stays below 0.
    """
    params = _check_params(ndvi_drop, builtup_rise, ndwi_rise, min_area_m2, opening_px)
    first_idx = _band_indexes(before_bands, "before_bands")
    second_idx = _band_indexes(after_bands, "after_bands")
    for name, value in (("scale_before", scale_before), ("scale_after", scale_after)):
        if not (math.isfinite(value) and value > 0):
            raise InvalidParameter(f"{name} must be a positive number (e.g. 0.0001), not {value}")
    with _open(before, "before") as first, _open(after, "after") as second:
        _check_count(first, first_idx, "before")
        _check_count(second, second_idx, "after")
        grid = working_grid(first, second)
        one = _read_on_grid(first, first_idx, grid, scale_before)
        two = _read_on_grid(second, second_idx, grid, scale_after)
    valid = np.isfinite(one).all(axis=0) & np.isfinite(two).all(axis=0)
    if valid.sum() < MIN_OVERLAP_PX * MIN_OVERLAP_PX:
        raise InvalidData("the two scenes overlap, but no pixel there has data on both dates")
    if normalise:
        gains = _relative_gains(one, two, valid)
        two /= gains[:, None, None]
        params.update({f"gain_{b}": float(g) for b, g in zip(BANDS, gains, strict=True)})
    params["normalise"] = float(normalise)
    old, new = indexes(one), indexes(two)
    min_px = max(1, math.ceil(min_area_m2 / grid.pixel_area_m2))
    labels = _clean(_classify(old, new, params), valid, opening_px, min_px)
    polygons = _polygons(labels, grid, old, new)
    return ChangeResult(
        polygons=polygons,
        crs=grid.crs.to_string(),
        pixel_size_m=math.sqrt(grid.pixel_area_m2),
        overlap_m2=float(valid.sum()) * grid.pixel_area_m2,
        params=params,
    )


def _check_params(
    ndvi_drop: float, builtup_rise: float, ndwi_rise: float, min_area_m2: float, opening_px: int
) -> dict[str, float]:
    thresholds = {"ndvi_drop": ndvi_drop, "builtup_rise": builtup_rise, "ndwi_rise": ndwi_rise}
    for name, value in thresholds.items():
        if not (math.isfinite(value) and 0 < value < 2):
            raise InvalidParameter(f"{name} is a change of an index in -1..1: give 0 < it < 2")
    if not (math.isfinite(min_area_m2) and min_area_m2 >= 0):
        raise InvalidParameter("min_area_m2 must be zero or a positive area in square metres")
    if isinstance(opening_px, bool) or not isinstance(opening_px, int) or not 0 <= opening_px:
        raise InvalidParameter("opening_px must be a whole number of pixels, 0 or more")
    return {
        **thresholds,
        "water_ndwi": WATER_NDWI,
        "grey_offset": GREY_OFFSET,
        "min_area_m2": float(min_area_m2),
        "opening_px": float(opening_px),
    }


def _band_indexes(bands: Mapping[str, int], label: str) -> list[int]:
    """1-based indexes of blue, green, red, nir, in that order."""
    missing = [name for name in BANDS if name not in bands]
    if missing:
        raise InvalidParameter(
            f"{label} has no {', '.join(missing)} band: map each of {', '.join(BANDS)} to its "
            "1-based band index, e.g. {'blue': 1, 'green': 2, 'red': 3, 'nir': 4}"
        )
    out = []
    for name in BANDS:
        index = bands[name]
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 1:
            raise InvalidParameter(f"{label}[{name!r}] must be a band index from 1, not {index!r}")
        out.append(int(index))
    return out


def _open(path: Path, label: str) -> Any:
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise InvalidData(
            f"the {label} image {Path(path).name} cannot be read as a raster"
        ) from exc


def _check_count(src: Any, band_indexes: list[int], label: str) -> None:
    for name, index in zip(BANDS, band_indexes, strict=True):
        if index > src.count:
            raise InvalidParameter(
                f"{label}_bands[{name!r}] is band {index} but the {label} image has "
                f"{src.count} band(s)"
            )
    if src.crs is None:
        raise InvalidData(f"the {label} image has no CRS: georeference it first")


# --- the working grid ---------------------------------------------------------------------


def working_grid(first: Any, second: Any) -> Grid:
    """The grid both scenes are compared on: `first`'s own pixels over the overlap when its
    CRS is projected and its grid north-up, else a UTM grid of about its resolution."""
    box = _overlap(first, second)
    t = first.transform
    if first.crs.is_projected and t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0:
        grid = _subgrid(first, box)
    else:
        grid = _metric_grid(first, box)
    if grid.width < MIN_OVERLAP_PX or grid.height < MIN_OVERLAP_PX:
        raise InvalidParameter(_no_overlap(first, second, "less than a few pixels in common"))
    return grid


def _overlap(first: Any, second: Any) -> tuple[float, float, float, float]:
    """The intersection of both footprints, in `first`'s CRS."""
    try:
        left, bottom, right, top = transform_bounds(
            second.crs, first.crs, *second.bounds, densify_pts=21
        )
    except (RasterioError, ValueError) as exc:  # far outside the other CRS's area of use
        raise InvalidParameter(_no_overlap(first, second, "no area in common")) from exc
    a = first.bounds
    box = (max(a.left, left), max(a.bottom, bottom), min(a.right, right), min(a.top, top))
    if not all(map(math.isfinite, box)) or box[0] >= box[2] or box[1] >= box[3]:
        raise InvalidParameter(_no_overlap(first, second, "no area in common"))
    return box


def _no_overlap(first: Any, second: Any, what: str) -> str:
    def lonlat(src: Any) -> str:
        w, s, e, n = transform_bounds(src.crs, WGS84, *src.bounds, densify_pts=21)
        return f"lon {w:.5f}..{e:.5f}, lat {s:.5f}..{n:.5f}"

    return (
        f"the two scenes do not overlap: {what} (before covers {lonlat(first)}; after covers "
        f"{lonlat(second)}); give two images of the same place"
    )


def _subgrid(src: Any, box: tuple[float, float, float, float]) -> Grid:
    """`src`'s pixels that touch the box."""
    t = src.transform
    col0 = max(0, math.floor((box[0] - t.c) / t.a + 1e-6))
    col1 = min(src.width, math.ceil((box[2] - t.c) / t.a - 1e-6))
    row0 = max(0, math.floor((box[3] - t.f) / t.e + 1e-6))
    row1 = min(src.height, math.ceil((box[1] - t.f) / t.e - 1e-6))
    transform = t @ Affine.translation(col0, row0)
    return Grid(src.crs, transform, max(0, col1 - col0), max(0, row1 - row0))


def _metric_grid(src: Any, box: tuple[float, float, float, float]) -> Grid:
    """A UTM grid over the box with about as many pixels as `src` has there."""
    west, south, east, north = transform_bounds(src.crs, WGS84, *box, densify_pts=21)
    lon, lat = (west + east) / 2, (south + north) / 2
    zone = min(60, int((lon + 180) // 6) + 1)
    utm = CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
    res = math.sqrt(abs(src.transform.determinant))
    cols = max(1, round((box[2] - box[0]) / res))
    rows = max(1, round((box[3] - box[1]) / res))
    transform, width, height = calculate_default_transform(
        src.crs, utm, cols, rows, left=box[0], bottom=box[1], right=box[2], top=box[3]
    )
    return Grid(utm, transform, int(width or 0), int(height or 0))


def _read_on_grid(src: Any, band_indexes: list[int], grid: Grid, scale: float) -> np.ndarray:
    """Reflectance of the bands on the grid, float32, NaN where there is no data (nodata or
    zero, or outside the image)."""
    nodata = 0.0 if src.nodata is None else float(src.nodata)
    window = _aligned_window(src, grid)
    if window is not None:
        inside = (
            0 <= window.col_off <= src.width - window.width
            and 0 <= window.row_off <= src.height - window.height
        )
        raw = src.read(band_indexes, window=window, boundless=not inside, fill_value=nodata)
        out = raw.astype("float32")
        out[(raw == nodata) | (raw <= 0)] = np.nan
    else:
        out = np.full((len(band_indexes), *grid.shape), np.nan, dtype="float32")
        for i, index in enumerate(band_indexes):
            reproject(
                source=rasterio.band(src, index),
                destination=out[i],
                src_nodata=nodata,
                dst_nodata=np.nan,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                resampling=Resampling.bilinear,
            )
        out[out <= 0] = np.nan
    return out * np.float32(scale)


def _aligned_window(src: Any, grid: Grid) -> Window | None:
    """The window of `src` that is exactly the grid, when no resampling is needed."""
    t, g = src.transform, grid.transform
    if src.crs != grid.crs or not np.allclose(t[:2] + t[3:5], g[:2] + g[3:5], rtol=1e-9):
        return None
    col, row = (g.c - t.c) / t.a, (g.f - t.f) / t.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return Window(round(col), round(row), grid.width, grid.height)


def _relative_gains(one: np.ndarray, two: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per band, the median of after / before over common pixels (relative normalisation).

    The median ignores the few pixels that really changed; what is left is the difference of
    calibration, season and sun between the dates, which the thresholds should not see.
    """
    rows, cols = np.nonzero(valid)
    step = max(1, len(rows) // SAMPLE_PIXELS)
    rows, cols = rows[::step], cols[::step]
    gains = np.median(two[:, rows, cols] / one[:, rows, cols], axis=1)
    return np.where(np.isfinite(gains) & (gains > 0), gains, 1.0).astype("float32")


# --- indexes and classification -----------------------------------------------------------


def indexes(bands: np.ndarray) -> dict[str, np.ndarray]:
    """NDVI, built-up and NDWI of (blue, green, red, nir) reflectance; NaN stays NaN.

    The built-up index is the visible greyness, (min + c) / (max + c) over blue, green and
    red. Roofs, concrete and asphalt are spectrally flat in the visible (near 1, bright or
    dark), bare soil rises from blue to red (iron oxides, about 0.6), vegetation peaks in
    green and water in blue-green (0.5-0.6). Without a short-wave infrared band (which NDBI
    needs) brightness is the usual alternative, but it rises as much when trees are cut down
    to bare soil as when soil is built over, and it jumps wherever a shadow moves; greyness
    is a ratio, so it ignores shadows and gain, and it separates "built" from "cleared".
    The offset c damps the noise of dark pixels. Blind spot: a roof coloured like soil
    (red tiles) on former bare soil does not change the index.
    """
    blue, green, red, nir = bands
    visible = bands[:3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "ndvi": (nir - red) / (nir + red),
            "builtup": (visible.min(axis=0) + GREY_OFFSET) / (visible.max(axis=0) + GREY_OFFSET),
            "ndwi": (green - nir) / (green + nir),
        }


def _classify(
    old: dict[str, np.ndarray], new: dict[str, np.ndarray], params: Mapping[str, float]
) -> list[np.ndarray]:
    """Per kind of KINDS, the pixels whose indexes moved that way (NaN never changes).

    New water: NDWI rose and ended above the water line. New construction: the surface turned
    grey, whatever NDVI did (vegetation or soil built over). Vegetation loss: NDVI fell (what
    is not water or construction: cleared to soil). Vegetation gain: NDVI rose as much. The
    masks overlap; `_clean` settles each pixel on the first kind that keeps it.
    """
    d_ndvi = new["ndvi"] - old["ndvi"]
    return [
        (new["ndwi"] - old["ndwi"] >= params["ndwi_rise"]) & (new["ndwi"] > params["water_ndwi"]),
        new["builtup"] - old["builtup"] >= params["builtup_rise"],
        d_ndvi <= -params["ndvi_drop"],
        d_ndvi >= params["ndvi_drop"],
    ]


def _clean(masks: list[np.ndarray], valid: np.ndarray, radius: int, min_px: int) -> np.ndarray:
    """Labels (1 + position in KINDS, 0 for none) of the cleaned masks.

    Kind by kind in priority order, the pixels not yet taken are opened (drops specks and
    slivers narrower than 2 * radius + 1 pixels), closed (fills gaps as narrow) and stripped
    of patches under min_px. A pixel a higher kind flagged but then dropped as noise is still
    free for the lower kinds, so a few noisy pixels do not punch holes in a cleared grove.
    """
    labels = np.zeros(valid.shape, dtype=np.uint8)
    for code, raw in enumerate(masks, start=1):
        mask = raw & (labels == 0)
        if radius and mask.any():
            mask = _morph(ndimage.binary_opening, mask, radius)
            mask = _morph(ndimage.binary_closing, mask, radius)
        labels[_drop_small(mask & (labels == 0) & valid, min_px)] = code
    return labels


def _morph(op: Any, mask: np.ndarray, radius: int) -> np.ndarray:
    """A binary morphology with the image edge continued outward (no eroded borders)."""
    padded = np.pad(mask, radius, mode="edge")
    return op(padded, structure=SQUARE, iterations=radius)[radius:-radius, radius:-radius]


def _drop_small(mask: np.ndarray, min_px: int) -> np.ndarray:
    patches, count = ndimage.label(mask)
    if count == 0:
        return mask
    keep = np.bincount(patches.ravel()) >= min_px
    keep[0] = False
    return keep[patches]


# --- polygons -----------------------------------------------------------------------------


def _polygons(
    labels: np.ndarray,
    grid: Grid,
    old: dict[str, np.ndarray],
    new: dict[str, np.ndarray],
) -> list[ChangePolygon]:
    """One polygon per 4-connected patch of one kind, with its index means, in lon/lat."""
    patches = np.zeros(labels.shape, dtype=np.int32)
    kind_of = [""]
    for code, kind in enumerate(KINDS, start=1):
        found, count = ndimage.label(labels == code)
        patches[found > 0] = found[found > 0] + (len(kind_of) - 1)
        kind_of += [kind] * count
    if len(kind_of) == 1:
        return []
    flat = patches.ravel()
    counts = np.bincount(flat, minlength=len(kind_of))
    means = {}
    for when, values in (("before", old), ("after", new)):
        for name in INDEXES:
            v = np.where(patches > 0, values[name], 0.0).ravel()
            means[when, name] = np.bincount(flat, weights=v, minlength=len(kind_of)) / np.maximum(
                counts, 1
            )
    to_lonlat = Transformer.from_crs(grid.crs, WGS84, always_xy=True)
    out = []
    for geojson, value in shapes(patches, mask=patches > 0, transform=grid.transform):
        i = int(value)
        lonlat = shapely.transform(
            shape(geojson), lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))
        )
        out.append(
            ChangePolygon(
                kind=kind_of[i],
                geometry=lonlat,
                area_m2=round(abs(GEOD.geometry_area_perimeter(orient(lonlat, 1.0))[0]), 2),
                before={n: round(float(means["before", n][i]), 4) for n in INDEXES},
                after={n: round(float(means["after", n][i]), 4) for n in INDEXES},
            )
        )
    out.sort(key=lambda p: (KINDS.index(p.kind), -p.area_m2))
    return out


# --- scoring against planted truth --------------------------------------------------------


def score(result: ChangeResult, truth: Any) -> dict[str, Any]:
    """Recall and false area of the detected polygons against true change polygons.

    `truth` is a GeoDataFrame with a `kind` column (any CRS; lon/lat if none) or an iterable
    of (kind, lon/lat geometry). recall = truth area covered by any detected polygon / truth
    area; false_fraction = detected area outside every truth polygon / detected area;
    kind_agreement = the share of the detected area inside truth whose kinds agree. Per kind,
    recall and false_fraction count only polygons of that kind on both sides. Areas are
    measured in a local equal-area projection. With nothing to find recall is 1.0; with
    nothing found false_fraction is 0.0.
    """
    pairs = _truth_pairs(truth)
    found = [(p.kind, p.geometry) for p in result.polygons]
    geoms = [g for _, g in pairs + found]
    if not geoms:
        return _summary(0.0, 0.0, 0.0, 0.0, 0.0, {})
    centre = shapely.union_all(geoms).centroid
    laea = f"+proj=laea +lat_0={centre.y} +lon_0={centre.x} +datum=WGS84 +units=m"
    project = Transformer.from_crs(WGS84, CRS.from_proj4(laea), always_xy=True)

    def metric(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [
            (k, shapely.transform(g, lambda xy: np.column_stack(project.transform(*xy.T))))
            for k, g in items
        ]

    truth_m, found_m = metric(pairs), metric(found)
    all_truth = shapely.union_all([g for _, g in truth_m])
    all_found = shapely.union_all([g for _, g in found_m])
    hits = shapely.intersection(all_truth, all_found).area
    agreeing = 0.0
    kinds: dict[str, dict[str, float]] = {}
    for kind in sorted({k for k, _ in truth_m + found_m}, key=_kind_order):
        t = shapely.union_all([g for k, g in truth_m if k == kind])
        f = shapely.union_all([g for k, g in found_m if k == kind])
        both = shapely.intersection(t, f).area
        agreeing += both
        kinds[kind] = _ratios(t.area, f.area, both, f.area - both)
    false_m2 = shapely.difference(all_found, all_truth).area
    return _summary(all_truth.area, all_found.area, hits, false_m2, agreeing, kinds)


def _truth_pairs(truth: Any) -> list[tuple[str, Any]]:
    if hasattr(truth, "geometry") and hasattr(truth, "columns"):
        if "kind" not in truth.columns:
            raise InvalidParameter("the truth layer needs a 'kind' column")
        if truth.crs is not None and not truth.crs.equals(WGS84.to_wkt()):
            truth = truth.to_crs(4326)
        return [(str(k), g) for k, g in zip(truth["kind"], truth.geometry, strict=True) if g]
    return [(str(k), g) for k, g in truth]


def _kind_order(kind: str) -> tuple[int, str]:
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), kind)


def _ratios(truth_m2: float, found_m2: float, hit_m2: float, false_m2: float) -> dict[str, float]:
    return {
        "truth_m2": round(truth_m2, 1),
        "detected_m2": round(found_m2, 1),
        "recall": round(hit_m2 / truth_m2, 4) if truth_m2 > 0 else 1.0,
        "false_fraction": round(false_m2 / found_m2, 4) if found_m2 > 0 else 0.0,
    }


def _summary(
    truth_m2: float,
    found_m2: float,
    hit_m2: float,
    false_m2: float,
    agreeing_m2: float,
    kinds: dict[str, dict[str, float]],
) -> dict[str, Any]:
    out: dict[str, Any] = _ratios(truth_m2, found_m2, hit_m2, false_m2)
    out["kind_agreement"] = round(agreeing_m2 / hit_m2, 4) if hit_m2 > 0 else 1.0
    out["kinds"] = kinds
    return out
