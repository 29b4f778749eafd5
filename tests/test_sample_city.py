"""The sample-city generator: determinism, geography, grid and component codes, networks, imagery.

Needs no database: everything is checked on the written files.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rio_cogeo.cogeo import cog_validate

from sample_data import generate

SMALL = 0.15
GK = 4548  # CGCS2000 Gauss-Krüger CM 117E, metric CRS of the city
# Thresholds at scale 1, and the share of them a scaled-down city must reach.
SCALE1_MIN = {"components.gpkg": 5000, "pipes": 2000, "grid_unit.gpkg": 300}
SCALE1_MAX_UNITS = 600


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    out = tmp_path_factory.mktemp("city_a")
    messages: list[str] = []
    summary = generate(out, seed=42, scale=SMALL, progress=messages.append)
    return out, summary, messages


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("city_full")
    return out, generate(out, seed=42, scale=1.0)


def _read(folder: Path, stem: str) -> gpd.GeoDataFrame:
    return gpd.read_file(folder / f"{stem}.gpkg")


def test_same_seed_gives_byte_identical_files(small, tmp_path):
    out, _, _ = small
    generate(tmp_path, seed=42, scale=SMALL)
    assert _hashes(tmp_path) == _hashes(out)


def test_other_seed_gives_other_files(small, tmp_path):
    out, _, _ = small
    generate(tmp_path, seed=7, scale=SMALL)
    first, second = _hashes(out), _hashes(tmp_path)
    assert first.keys() == second.keys()
    changed = [name for name in first if first[name] != second[name]]
    assert "streets.gpkg" in changed and "imagery_2024.tif" in changed
    assert len(changed) >= len(first) - 2  # boundary.gpkg is the same real polygon


def test_manifest_lists_every_file_with_its_count(small):
    out, summary, messages = small
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == json.loads(json.dumps(summary))
    assert list(manifest) == sorted(manifest)
    assert manifest["seed"] == 42 and manifest["scale"] == SMALL
    for name, count in manifest.items():
        if name.endswith(".gpkg"):
            assert len(_read(out, name[:-5])) == count
    assert (out / "README.md").exists() and messages


def test_every_feature_lies_inside_the_real_district_boundary(small):
    out, _, _ = small
    boundary = _read(out, "boundary")
    assert boundary.crs.to_epsg() == 4326
    assert list(boundary["adcode"]) == ["341502"] and list(boundary["name"]) == ["金安区"]
    area = boundary.geometry.iloc[0]
    shapely.prepare(area)
    for path in sorted(out.glob("*.gpkg")):
        layer = gpd.read_file(path)
        assert layer.crs.to_epsg() == 4326, path.name
        outside = ~shapely.covers(area, layer.geometry.values)
        assert not outside.any(), f"{path.name}: {int(outside.sum())} features outside"
    assert 31.0 < area.centroid.y < 32.5 and 116.0 < area.centroid.x < 117.2


def test_unit_grid_codes_nest_in_their_community(small):
    out, _, _ = small
    units = _read(out, "grid_unit")
    communities = _read(out, "grid_community")
    streets = _read(out, "grid_street")
    assert 2 <= len(streets) <= 4
    assert all(re.fullmatch(r"341502\d{3}", c) for c in streets["code"])
    assert all(re.fullmatch(r"341502\d{6}", c) for c in communities["code"])
    assert set(communities["parent_code"]) <= set(streets["code"])
    assert all(re.fullmatch(r"\d{14}", c) for c in units["code"])
    assert all(c.startswith(p) for c, p in zip(units["code"], units["parent_code"], strict=True))
    assert set(units["parent_code"]) == set(communities["code"])
    assert units["code"].is_unique


def test_unit_grids_tile_each_community_without_overlap(small):
    out, _, _ = small
    units = _read(out, "grid_unit").to_crs(GK)
    communities = _read(out, "grid_community").to_crs(GK).set_index("code")
    union = shapely.union_all(units.geometry.values)
    assert units.area.sum() == pytest.approx(union.area, rel=1e-6)
    district = _read(out, "grid_district").to_crs(GK).geometry.iloc[0]
    assert union.symmetric_difference(district).area < 1.0
    for code, group in units.groupby("parent_code"):
        community = communities.geometry[code]
        covered = shapely.union_all(group.geometry.values)
        assert covered.symmetric_difference(community).area < 1.0, code
    assert units.area.median() == pytest.approx(10_000, rel=0.3)


def test_unit_grids_are_numbered_west_to_east_then_north_to_south(small):
    out, _, _ = small
    units = _read(out, "grid_unit").to_crs(GK)
    for _, group in units.groupby("parent_code"):
        group = group.sort_values("code")
        first = group.geometry.iloc[0].centroid
        assert first.y >= group.centroid.y.max() - 60.0  # first unit is in the top row


def test_component_codes_carry_district_and_class(small):
    out, _, _ = small
    components = _read(out, "components")
    units = set(_read(out, "grid_unit")["code"])
    assert components["code"].is_unique
    assert all(re.fullmatch(r"341502\d{10}", c) for c in components["code"])
    assert (components["code"].str[6:10] == components["minor"]).all()
    assert (components["minor"].str[:2] == components["major"]).all()
    assert set(components["unit_grid"]) <= units
    assert set(components["status"]) <= {"完好", "破损", "丢失", "废弃", "移除"}
    assert (components["status"] == "完好").mean() > 0.85
    assert (components["change_date"] >= components["init_date"]).all()
    for minor in ("0101", "0102", "0103", "0104", "0113", "0118", "0305", "0402"):
        assert (components["minor"] == minor).any(), minor


def test_gravity_pipes_fall_downstream(small):
    out, _, _ = small
    for stem, sink in (("sewer", "treatment_plant"), ("storm", "outfall")):
        pipes = _read(out, f"{stem}_pipes")
        nodes = _read(out, f"{stem}_nodes").set_index("node_id")
        assert (pipes["start_invert_m"] > pipes["end_invert_m"]).all(), stem
        assert (pipes["flow"] == "forward").all()
        assert (nodes["kind"] == sink).any()
        start = shapely.get_point(pipes.geometry.values, 0)
        upstream = nodes.geometry.loc[pipes["from_node"]].values
        assert shapely.distance(start, upstream).max() < 1e-9  # drawn from upstream


def test_water_network_has_sources_valves_and_meters(small):
    out, _, _ = small
    pipes = _read(out, "water_pipes")
    nodes = _read(out, "water_nodes")
    kinds = set(nodes["kind"])
    assert {"source", "valve", "hydrant", "meter", "junction"} <= kinds
    assert set(nodes.loc[nodes["kind"] == "valve", "valve_state"]) <= {"open", "closed"}
    ids = set(nodes["node_id"])
    assert set(pipes["from_node"]) <= ids and set(pipes["to_node"]) <= ids
    assert (pipes["from_node"] != pipes["to_node"]).all()
    buildings = _read(out, "buildings")
    assert set(nodes["building_id"].dropna()) <= set(buildings["bldg_id"])


def test_counts_grow_with_scale(small, full):
    (_, summary_small, _), (_, summary_full) = small, full

    def pipes(summary: dict) -> int:
        return sum(v for k, v in summary.items() if k.endswith("_pipes.gpkg"))

    for summary, share in ((summary_full, 1.0), (summary_small, SMALL * 0.7)):
        assert summary["components.gpkg"] >= SCALE1_MIN["components.gpkg"] * share
        assert summary["grid_unit.gpkg"] >= SCALE1_MIN["grid_unit.gpkg"] * share
        assert pipes(summary) >= SCALE1_MIN["pipes"] * share
    assert summary_full["grid_unit.gpkg"] <= SCALE1_MAX_UNITS
    assert summary_full["area_km2"] == pytest.approx(summary_small["area_km2"] / SMALL, rel=0.05)


def test_imagery_is_a_four_band_cog(small):
    out, _, _ = small
    for year in (2023, 2024):
        path = out / f"imagery_{year}.tif"
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors
        with rasterio.open(path) as src:
            assert src.count == 4 and src.dtypes[0] == "uint16" and src.nodata == 0
            assert src.descriptions == ("blue", "green", "red", "nir")
            assert src.overviews(1) and abs(src.res[0] - 2.0) < 1e-9


def _ndvi_at(path: Path, points: gpd.GeoSeries) -> np.ndarray:
    with rasterio.open(path) as src:
        xy = points.to_crs(src.crs)
        values = np.array(list(src.sample(zip(xy.x, xy.y, strict=True), indexes=[3, 4])))
    red, nir = values[:, 0].astype(float), values[:, 1].astype(float)
    return (nir - red) / (nir + red)


def test_vegetation_is_greener_than_roofs(small):
    out, _, _ = small
    components = _read(out, "components")
    trees = components.geometry[components["minor"] == "0402"]
    footprints = _read(out, "buildings").to_crs(GK).geometry
    roofs = footprints[footprints.area > 300].centroid
    image = out / "imagery_2024.tif"
    assert np.median(_ndvi_at(image, trees)) > np.median(_ndvi_at(image, roofs)) + 0.3


def test_planted_changes_show_between_the_dates(small):
    out, _, _ = small
    truth = _read(out, "changes_truth")
    assert 4 <= len(truth) <= 8
    assert set(truth["kind"]) <= {"new_construction", "vegetation_loss", "new_water"}
    centres = truth.geometry.representative_point()
    before = _ndvi_at(out / "imagery_2023.tif", centres)
    after = _ndvi_at(out / "imagery_2024.tif", centres)
    lost = truth["kind"].to_numpy() == "vegetation_loss"
    assert (after[lost] < before[lost] - 0.2).all()
    new = truth["kind"] == "new_construction"
    built = _read(out, "buildings")
    assert (built["year_built"] == 2024).sum() == new.sum()


def test_sensors_watch_the_networks_with_thresholds(full):
    from sample_data.sensors import SENSORS_FILE
    from sensors.registry import parse_sensors

    out, summary = full
    doc = json.loads((out / SENSORS_FILE).read_text(encoding="utf-8"))
    features = doc["features"]
    assert summary[SENSORS_FILE] == len(features) and 150 <= len(features) <= 400
    sensors = parse_sensors((out / SENSORS_FILE).read_bytes())  # as POST /sensors takes it
    assert len(sensors) == len(features)
    by_kind: dict[str, list] = {}
    for s in sensors:
        by_kind.setdefault(s.kind, []).append(s)
    assert {"pressure", "level", "gas", "rain", "air"} == set(by_kind)
    assert len(by_kind["pressure"]) >= 50 and len(by_kind["level"]) >= 40
    # sensors on a network name a node of the kind they watch, and take its place
    watched = {"pressure": ("water", {"junction"}), "level": ("storm", {"manhole", "inlet"})}
    watched["gas"] = ("gas", {"valve"})
    for kind, (network, node_kinds) in watched.items():
        nodes = _read(out, f"{network}_nodes").set_index("node_id")
        for s in by_kind[kind]:
            assert s.network == network and s.lon is None
            assert nodes.loc[s.node_id, "kind"] in node_kinds, s.sensor_id
    # spread over the network: no two pressure sensors on the same block
    water = _read(out, "water_nodes").set_index("node_id").to_crs(GK)
    xy = np.array([[p.x, p.y] for p in water.geometry[[s.node_id for s in by_kind["pressure"]]]])
    gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) + np.eye(len(xy)) * 1e9
    assert gaps.min() > 80
    # stations stand free, inside the district
    area = _read(out, "boundary").geometry.iloc[0]
    for s in by_kind["rain"] + by_kind["air"]:
        assert s.node_id is None and area.contains(shapely.Point(s.lon, s.lat))
    assert all(s.threshold_low == 0.2 for s in by_kind["pressure"])
    assert all(s.threshold_high and s.threshold_rate for s in by_kind["level"])
    assert all(s.threshold_high for k in ("gas", "rain", "air") for s in by_kind[k])
