"""Deterministic writing: GeoPackages with a fixed timestamp, the manifest and the README."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio

from sample_data.frame import DATA_DIR

# GeoPackage stores a last-change timestamp per table (gpkg_contents); GDAL takes it from
# OGR_CURRENT_DATE when set, which makes the files byte-identical from run to run.
FIXED_DATE = "2024-01-01T00:00:00.000Z"


@contextmanager
def fixed_timestamps() -> Iterator[None]:
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": FIXED_DATE})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def write_layer(out_dir: Path, stem: str, columns: dict[str, Any], geometry) -> int:
    """Write one EPSG:4326 layer named after its file; returns the feature count."""
    path = out_dir / f"{stem}.gpkg"
    path.unlink(missing_ok=True)
    frame = gpd.GeoDataFrame(
        {
            k: list(v) if isinstance(v, np.ndarray) and v.dtype.kind == "U" else v
            for k, v in columns.items()
        },
        geometry=np.asarray(geometry, dtype=object),
        crs="EPSG:4326",
    )
    pyogrio.write_dataframe(frame, path, layer=stem, driver="GPKG")
    return len(frame)


def write_manifest(out_dir: Path, summary: dict[str, Any]) -> None:
    text = json.dumps(summary, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")


def write_readme(out_dir: Path, summary: dict[str, Any]) -> None:
    counts = "\n".join(
        f"| {name} | {value} |"
        for name, value in sorted(summary.items())
        if name.endswith((".gpkg", ".geojson"))
    )
    template = (DATA_DIR / "README.template.md").read_text(encoding="utf-8")
    text = template.format(
        seed=summary["seed"],
        scale=summary["scale"],
        area=summary["area_km2"],
        raster_crs=summary.get("imagery_2023.tif", {}).get("crs", "Gauss-Krüger"),
        counts=counts,
    )
    (out_dir / "README.md").write_text(text, encoding="utf-8")
