"""Change detection on the sample city's two image dates, scored against the planted changes.

Needs no database: the city is generated into a temporary folder (seeds 42 and 7, scale 1),
and the issue's acceptance is checked on each: at least 90% of the planted change area found,
at most 10% of the found area false.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject

from rasters.change import ChangePolygon, ChangeResult, detect_changes, score
from sample_data import generate
from twin.errors import InvalidParameter

BANDS = {"blue": 1, "green": 2, "red": 3, "nir": 4}
SCALE = 0.0001
SEEDS = (42, 7)
MIN_RECALL, MAX_FALSE = 0.90, 0.10


def _detect(before: Path, after: Path, **kwargs) -> ChangeResult:
    return detect_changes(
        before,
        after,
        before_bands=kwargs.pop("before_bands", BANDS),
        after_bands=kwargs.pop("after_bands", BANDS),
        scale_before=SCALE,
        scale_after=SCALE,
        **kwargs,
    )


def _copy(src_path: Path, dst_path: Path, **changes) -> None:
    """A plain GeoTIFF copy of an image with some profile entries changed."""
    with rasterio.open(src_path) as src:
        profile = {**src.profile, "driver": "GTiff", "tiled": False, **changes}
        for key in ("blockxsize", "blockysize"):
            profile.pop(key, None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read())


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def city(request, tmp_path_factory) -> tuple[Path, gpd.GeoDataFrame, ChangeResult]:
    out = tmp_path_factory.mktemp(f"city{request.param}")
    generate(out, seed=request.param, scale=1.0)
    result = _detect(out / "imagery_2023.tif", out / "imagery_2024.tif")
    return out, gpd.read_file(out / "changes_truth.gpkg"), result


def test_recovers_planted_changes(city) -> None:
    _, truth, result = city
    s = score(result, truth)
    assert s["recall"] >= MIN_RECALL, s
    assert s["false_fraction"] <= MAX_FALSE, s
    assert s["kind_agreement"] == 1.0, s
    for kind in set(truth["kind"]):
        assert s["kinds"][kind]["recall"] >= MIN_RECALL, (kind, s)
        assert s["kinds"][kind]["false_fraction"] <= MAX_FALSE, (kind, s)
    assert result.crs == "EPSG:4548"
    assert result.pixel_size_m == pytest.approx(2.0)
    assert result.params["ndvi_drop"] > 0 and "gain_nir" in result.params


def test_kinds_and_areas_match_truth(city) -> None:
    _, truth, result = city
    assert result.polygons
    for polygon in result.polygons:
        hits = truth[truth.intersects(polygon.geometry)]
        assert len(hits) == 1, f"{polygon.kind} of {polygon.area_m2} m² overlaps {len(hits)}"
        planted = hits.iloc[0]
        assert polygon.kind == planted["kind"]
        # Pixel edges against straight sides: within 10% of the planted area.
        assert polygon.area_m2 == pytest.approx(planted["area_m2"], rel=0.10)
    metric = gpd.GeoSeries([p.geometry for p in result.polygons], crs=4326).to_crs(4548)
    areas = np.array([p.area_m2 for p in result.polygons])
    np.testing.assert_allclose(metric.area.to_numpy(), areas, rtol=1e-3)
    assert result.overlap_m2 == pytest.approx(5.6e6, rel=0.3)  # the 2.3 km city square


def test_index_means_tell_the_story(city) -> None:
    _, _, result = city
    for p in result.polygons:
        assert set(p.before) == set(p.after) == {"ndvi", "builtup", "ndwi"}
        if p.kind == "vegetation_loss":
            assert p.before["ndvi"] > 0.6 > 0.3 > p.after["ndvi"]
        elif p.kind == "new_water":
            assert p.before["ndwi"] < 0 < p.after["ndwi"]
        elif p.kind == "new_construction":
            assert p.after["builtup"] - p.before["builtup"] > 0.2


def test_identical_scenes_give_no_changes(city) -> None:
    folder, _, _ = city
    image = folder / "imagery_2023.tif"
    assert _detect(image, image).polygons == []


def test_after_in_another_crs_and_resolution(city, tmp_path) -> None:
    """The after image in UTM 50N at 3 m (and its bands reordered) is warped onto the before
    grid; the acceptance still holds."""
    folder, truth, _ = city
    warped = tmp_path / "after_utm.tif"
    with rasterio.open(folder / "imagery_2024.tif") as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32650", src.width, src.height, *src.bounds, resolution=3.0
        )
        profile = {**src.profile, "driver": "GTiff", "tiled": False, "crs": "EPSG:32650"}
        for key in ("blockxsize", "blockysize"):
            profile.pop(key, None)
        profile.update(transform=transform, width=width, height=height)
        with rasterio.open(warped, "w", **profile) as dst:
            for band in range(1, 5):
                reproject(
                    rasterio.band(src, band),
                    rasterio.band(dst, 5 - band),
                    resampling=Resampling.bilinear,
                )
    reordered = {"blue": 4, "green": 3, "red": 2, "nir": 1}
    result = _detect(folder / "imagery_2023.tif", warped, after_bands=reordered)
    s = score(result, truth)
    assert result.crs == "EPSG:4548"
    assert s["recall"] >= MIN_RECALL and s["false_fraction"] <= MAX_FALSE, s


def test_scenes_that_do_not_overlap(city, tmp_path) -> None:
    folder, _, _ = city
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(folder / "imagery_2024.tif") as src:
        moved = src.transform @ Affine.translation(src.width + 50, 0)  # 100 m east of it
    _copy(folder / "imagery_2024.tif", shifted, transform=moved)
    with pytest.raises(InvalidParameter, match="do not overlap") as info:
        _detect(folder / "imagery_2023.tif", shifted)
    assert "before covers lon 116." in info.value.message
    assert "after covers lon 116." in info.value.message


def test_missing_band_name(city) -> None:
    folder, _, _ = city
    image = folder / "imagery_2023.tif"
    with pytest.raises(InvalidParameter, match="after_bands has no nir band"):
        _detect(image, image, after_bands={"blue": 1, "green": 2, "red": 3})
    with pytest.raises(InvalidParameter, match="band 5 but the before image has 4"):
        _detect(image, image, before_bands={**BANDS, "nir": 5})


def test_score_of_truth_against_itself() -> None:
    from shapely import box

    pairs = [("new_water", box(116.5, 31.7, 116.501, 31.701))]
    result = ChangeResult(
        polygons=[ChangePolygon("new_water", pairs[0][1], 0.0, {}, {})],
        crs="EPSG:4548",
        pixel_size_m=2.0,
        overlap_m2=1.0,
        params={},
    )
    s = score(result, pairs)
    assert (s["recall"], s["false_fraction"], s["kind_agreement"]) == (1.0, 0.0, 1.0)
    assert score(ChangeResult([], "EPSG:4548", 2.0, 1.0, {}), pairs)["recall"] == 0.0
