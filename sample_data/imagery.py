"""Two dates of 4-band imagery (blue, green, red, near infrared) as Cloud Optimized GeoTIFFs.

Reflectance-like UInt16 values (reflectance × 10,000, as in Sentinel-2 L2A) come from the
land-cover map of each year: typical spectra per cover, per-building roof brightness, shadows,
a per-date gain (sensor/season), vegetation vigour that differs between dates, and pixel
noise. The 2024 image differs from 2023 by the planted changes and by that noise only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from sample_data.landcover import (
    COVERS,
    PixelGrid,
    Scene,
    ground_cover,
    pixel_grid,
    smooth_noise,
    year_cover,
)

BANDS = ("blue", "green", "red", "nir")
PIXEL_M = 2.0
NODATA = 0
# Typical reflectance × 10,000 per cover (blue, green, red, nir).
SPECTRA = {
    "nodata": (0, 0, 0, 0),
    "field": (420, 760, 520, 3300),
    "fallow": (900, 1150, 1450, 2300),
    "grass": (450, 800, 600, 3000),
    "trees": (300, 600, 350, 3600),
    "bare": (1050, 1350, 1750, 2350),
    "paving": (1450, 1600, 1700, 1950),
    "asphalt": (800, 900, 950, 1100),
    "water": (650, 750, 500, 300),
    "pond": (500, 650, 400, 200),
    "roof_bright": (2100, 2200, 2250, 2450),
    "roof_blue": (2300, 1800, 1100, 1500),
    "roof_red": (900, 1000, 1800, 2200),
    "roof_dark": (700, 750, 780, 950),
}
VEGETATION = ("field", "grass", "trees")
# Acquisition of each date: (date, sun azimuth, sun elevation, tree crown radius m).
DATES = {2023: ("2023-08-15", 150.0, 62.0, 2.8), 2024: ("2024-08-20", 147.0, 60.0, 3.1)}


def write_imagery(scene: Scene, out_dir: Path, rng: np.random.Generator) -> dict[str, dict]:
    """Write imagery_2023.tif and imagery_2024.tif; return a summary per file."""
    grid = pixel_grid(scene.frame, PIXEL_M)
    base = ground_cover(scene, grid, rng)
    spectra = np.array([SPECTRA[c] for c in COVERS], dtype="float32")
    summary = {}
    for year, (date, azimuth, elevation, crown) in DATES.items():
        cover, shade = year_cover(scene, grid, base, year, (azimuth, elevation), crown)
        data = _reflectance(scene, grid, cover, shade, spectra, rng)
        name = f"imagery_{year}.tif"
        _write_cog(out_dir / name, data, grid, scene.frame.epsg, date)
        summary[name] = {
            "bands": len(BANDS),
            "crs": f"EPSG:{scene.frame.epsg}",
            "height": grid.height,
            "pixel_m": PIXEL_M,
            "width": grid.width,
        }
    return summary


def _reflectance(
    scene: Scene,
    grid: PixelGrid,
    cover: np.ndarray,
    shade: np.ndarray,
    spectra: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Spectra of the covers, modulated by texture, vigour, shadow, gain and noise."""
    texture = 1.0 + 0.06 * smooth_noise(rng, grid.shape, 4)
    vigour = 1.0 + 0.08 * smooth_noise(rng, grid.shape, 25)
    vegetation = np.isin(cover, [COVERS.index(v) for v in VEGETATION])
    gain = rng.uniform(0.97, 1.03, len(BANDS)).astype("float32")
    light = np.where(shade == 1, np.float32(0.45), np.float32(1.0)).astype("float32")
    roof_factor = _roof_brightness(cover, rng)
    out = np.empty((len(BANDS), *grid.shape), dtype="uint16")
    for b in range(len(BANDS)):
        band = spectra[cover, b] * texture * light * roof_factor * gain[b]
        if BANDS[b] == "nir":
            band = np.where(vegetation, band * vigour, band)
        band += rng.normal(0.0, 25.0, grid.shape).astype("float32")
        band = np.clip(band * (1.0 + rng.normal(0.0, 0.02, grid.shape).astype("float32")), 1, 10000)
        out[b] = np.where(cover == 0, NODATA, band).astype("uint16")
    return out


def _roof_brightness(cover: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Roofs of one cover differ in brightness in coarse patches (roughly per building)."""
    patches = smooth_noise(rng, cover.shape, 12)
    factor = np.ones(cover.shape, dtype="float32")
    roofs = cover >= COVERS.index("roof_bright")
    factor[roofs] = 1.0 + 0.12 * np.round(patches[roofs], 1)
    return factor


def _write_cog(path: Path, data: np.ndarray, grid: PixelGrid, epsg: int, date: str) -> None:
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": len(BANDS),
        "width": grid.width,
        "height": grid.height,
        "crs": rasterio.crs.CRS.from_epsg(epsg),
        "transform": grid.transform,
        "nodata": NODATA,
    }
    with MemoryFile() as memfile:
        with memfile.open(**profile) as mem:
            mem.write(data)
            for i, name in enumerate(BANDS, start=1):
                mem.set_band_description(i, name)
            mem.update_tags(
                ACQUISITION_DATE=date,
                SENSOR="citytwin synthetic 4-band",
                REFLECTANCE_SCALE="0.0001",
                BANDS=",".join(BANDS),
            )
        # GDAL's COG driver: tiled, deflate with the horizontal predictor, internal overviews.
        with memfile.open() as src:
            rasterio.shutil.copy(
                src,
                str(path),
                driver="COG",
                COMPRESS="DEFLATE",
                PREDICTOR="YES",
                BLOCKSIZE="256",
                OVERVIEW_RESAMPLING="AVERAGE",
                NUM_THREADS="1",
            )
