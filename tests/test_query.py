"""Spatial queries on the sample city: what is inside a polygon, a grid cell or a buffer, each
number checked against an independent computation on the sample city's own files (geopandas,
pyproj, rasterio), and every kind of bad input answered with a 4xx that says what to fix."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import rasterio
import rasterio.features
import shapely
from conftest import app_client, fresh_database, load_city
from pyproj import Geod

from query import service
from query.plan import run_sync
from twin.settings import QuerySettings, Settings

GK = "EPSG:4548"  # CGCS2000 Gauss-Krüger, CM 117E: the sample city's metric CRS
# An irregular pentagon across several communities of the sample city (lon, lat).
PENTAGON = [
    (116.531, 31.758),
    (116.541, 31.757),
    (116.545, 31.764),
    (116.537, 31.769),
    (116.530, 31.765),
    (116.531, 31.758),
]
PIPE_NETWORKS = ("water", "sewer", "storm", "gas")


def polygon(coords=PENTAGON) -> dict:
    return {"type": "Polygon", "coordinates": [[list(c) for c in coords]]}


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def city(sample_city) -> Path:
    return sample_city


@pytest.fixture(scope="module")
def settings(pg_url, city, tmp_path_factory) -> Settings:
    """The whole sample city loaded through the demo's own path."""
    return load_city(pg_url, city, tmp_path_factory.mktemp("rasters"))


@pytest.fixture(scope="module")
def client(settings):
    with app_client(settings) as c:
        yield c


def within(client, body: dict) -> dict:
    r = client.post("/query/within", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def community_shape(city: Path, code: str) -> shapely.Geometry:
    cells = gpd.read_file(city / "grid_community.gpkg")
    return cells.loc[cells["code"] == code].geometry.iloc[0]


# --- the oracle: the same numbers from the files, computed another way ------------------------
def components_inside(city: Path, shape: shapely.Geometry) -> gpd.GeoDataFrame:
    comps = gpd.read_file(city / "components.gpkg")
    return comps[comps.geometry.intersects(shape)]


def pipes_clipped(city: Path, shape: shapely.Geometry) -> gpd.GeoDataFrame:
    frames = [gpd.read_file(city / f"{n}_pipes.gpkg") for n in PIPE_NETWORKS]
    pipes = gpd.GeoDataFrame(
        gpd.pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326"
    )
    clipped = pipes[pipes.geometry.intersects(shape)].copy()
    clipped["geometry"] = clipped.geometry.intersection(shape)
    clipped["length"] = clipped.to_crs(GK).geometry.length
    return clipped


# --- within a polygon ------------------------------------------------------------------------
def test_area_of_a_polygon_is_measured_in_metres(client):
    out = within(client, {"geometry": polygon()})
    lon, lat = zip(*PENTAGON, strict=True)
    geodesic = abs(Geod(ellps="GRS80").polygon_area_perimeter(lon, lat)[0])
    assert out["area"]["area_m2"] == pytest.approx(geodesic, rel=1e-3)
    assert out["area"]["metric_crs"] == GK
    assert out["area"]["bbox"] == pytest.approx([116.530, 31.757, 116.545, 31.769])


def test_components_inside_a_polygon_match_the_file_by_class_and_status(client, city):
    out = within(client, {"geometry": polygon()})["components"]
    inside = components_inside(city, shapely.Polygon(PENTAGON))
    assert out["total"] == len(inside) > 100
    by_status = {r["status"]: r["count"] for r in out["by_status"]}
    assert list(by_status) == ["完好", "破损", "丢失", "废弃", "移除"]
    for status, n in inside["status"].value_counts().items():
        assert by_status[status] == n
    by_class = {r["class_code"]: r["count"] for r in out["by_class"]}
    assert by_class == inside["minor"].value_counts().to_dict()
    cross = inside.groupby(["minor", "status"]).size()
    for row in out["by_class_status"]:
        for status in by_status:
            assert row[status] == cross.get((row["class_code"], status), 0)
    names = dict(zip(inside["minor"], inside["class_name"], strict=False))
    assert {r["class_code"]: r["class_name"] for r in out["by_class"]} == names


def test_pipe_lengths_are_clipped_and_match_an_independent_clip(client, city):
    out = within(client, {"geometry": polygon()})["pipes"]
    clipped = pipes_clipped(city, shapely.Polygon(PENTAGON))
    assert out["total_length_m"] == pytest.approx(clipped["length"].sum(), rel=2e-3)
    whole = sum(
        gpd.read_file(city / f"{n}_pipes.gpkg").to_crs(GK).length.sum() for n in PIPE_NETWORKS
    )
    assert out["total_length_m"] < whole / 2  # clipped, not whole pipes
    by_util = {r["utility"]: r["length_m"] for r in out["by_utility"]}
    expected = clipped.groupby("utility")["length"].sum()
    assert set(by_util) == set(expected.index)
    for util, length in expected.items():
        assert by_util[util] == pytest.approx(length, rel=2e-3)
    colours = {r["utility"]: r["colour"] for r in out["by_utility"]}
    assert colours["JS"] == "#00ffff" and colours["RQ"] == "#ff00ff"
    by_mat = {r["material"]: r["length_m"] for r in out["by_material"]}
    for mat, length in clipped.groupby("material")["length"].sum().items():
        assert by_mat[mat] == pytest.approx(length, rel=2e-3)
    decades = clipped["year_laid"] // 10 * 10
    by_dec = {r["decade"]: r["length_m"] for r in out["by_decade"]}
    for dec, length in clipped.groupby(decades)["length"].sum().items():
        assert by_dec[f"{int(dec)}s"] == pytest.approx(length, rel=2e-3)
    subs = {(r["utility"], r["subclass"]) for r in out["by_subclass"]}
    assert ("PS", "YS") in subs and ("PS", "WS") in subs


def test_unit_grids_touched_carry_their_share_inside(client, city):
    out = within(client, {"geometry": polygon()})["unit_grids"]
    shape = shapely.Polygon(PENTAGON)
    units = gpd.read_file(city / "grid_unit.gpkg").to_crs(GK)
    local = gpd.GeoSeries([shape], crs="EPSG:4326").to_crs(GK).iloc[0]
    share = units.geometry.intersection(local).area / units.geometry.area
    expected = dict(zip(units["code"], share, strict=True))
    expected = {code: s for code, s in expected.items() if s * 10_000 > 1}
    got = {c["code"]: c["share_inside"] for c in out["cells"]}
    assert set(got) == set(expected) and out["count"] == len(expected)
    for code, s in expected.items():
        assert got[code] == pytest.approx(s, abs=2e-3)
    assert any(s == 1.0 for s in got.values()) and any(s < 0.5 for s in got.values())


def test_buildings_are_counted_by_inner_point_with_floor_area_pro_rata(client, city):
    out = within(client, {"geometry": polygon()})["buildings"]
    shape = shapely.Polygon(PENTAGON)
    b = gpd.read_file(city / "buildings.gpkg")
    counted = b[b.geometry.representative_point().intersects(shape)]
    touching = b[b.geometry.intersects(shape)]
    local_b = touching.to_crs(GK)
    local_a = gpd.GeoSeries([shape], crs="EPSG:4326").to_crs(GK).iloc[0]
    share = local_b.geometry.intersection(local_a).area / local_b.geometry.area
    floor_area = (touching["area_m2"] * touching["floors"] * share).sum()
    assert out["available"] and out["layer"] == "buildings"
    assert out["count"] == len(counted) > 10
    assert out["touching"] == len(touching)
    assert out["floor_area_m2"] == pytest.approx(floor_area, rel=2e-3)
    assert "pro rata" in out["method"] and "inner point" in out["method"]


def test_imagery_gives_ndvi_of_the_two_newest_scenes(client, city):
    out = within(client, {"geometry": polygon()})["imagery"]
    assert [s["id"] for s in out["scenes"]] == ["imagery_2024", "imagery_2023"]
    with rasterio.open(city / "imagery_2024.tif") as src:
        local = gpd.GeoSeries([shapely.Polygon(PENTAGON)], crs="EPSG:4326").to_crs(src.crs)
        bands = src.read().astype("float64")
        inside = ~rasterio.features.geometry_mask(local, src.shape, src.transform)
    red, nir = bands[2][inside], bands[3][inside]
    ndvi = (nir - red) / (nir + red)
    assert out["scenes"][0]["ndvi"]["mean"] == pytest.approx(ndvi.mean(), abs=0.01)
    assert out["scenes"][0]["ndvi"]["coverage"] == pytest.approx(1.0, abs=0.01)
    assert "ndwi" in out["scenes"][0]
    diff = out["scenes"][0]["ndvi"]["mean"] - out["scenes"][1]["ndvi"]["mean"]
    assert out["ndvi_mean_change"] == pytest.approx(diff, abs=1e-3)


def test_imagery_changes_inside_a_community_are_clipped_by_kind(client, city, settings):
    code = "341502001002"
    out = within(client, {"grid": code})["imagery"]["changes"]
    shape = community_shape(city, code)
    with psycopg.connect(settings.db.database_url) as conn:
        rows = conn.execute(
            "SELECT kind, ST_AsBinary(geom) FROM twin.raster_changes_current"
        ).fetchall()
    changes = gpd.GeoDataFrame(
        {"kind": [r[0] for r in rows]},
        geometry=shapely.from_wkb([bytes(r[1]) for r in rows]),
        crs="EPSG:4326",
    )
    changes["geometry"] = changes.geometry.intersection(shape)
    changes = changes[~changes.geometry.is_empty]
    expected = changes.to_crs(GK).assign(a=lambda f: f.area).groupby("kind")["a"].sum()
    assert len(expected) >= 1
    got = {c["kind"]: c["area_m2"] for c in out}
    assert set(got) == set(expected.index)
    for kind, area in expected.items():
        assert got[kind] == pytest.approx(area, rel=5e-3, abs=1.0)
    assert all(c["change_set"] == "sample-city" for c in out)


# --- within a grid cell ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "level"),
    [("34150200100101", "unit"), ("341502001001", "community"), ("341502001", "street")],
)
def test_a_grid_code_of_any_level_is_its_cell(client, city, code, level):
    out = within(client, {"grid": code})
    assert out["area"]["source"] == "grid"
    assert out["area"]["grid"]["code"] == code and out["area"]["grid"]["level"] == level
    cells = gpd.read_file(city / f"grid_{level}.gpkg")
    shape = cells.loc[cells["code"] == code].geometry.iloc[0]
    assert out["components"]["total"] == len(components_inside(city, shape))
    stored = float(cells.loc[cells["code"] == code, "area_m2"].iloc[0])
    assert out["area"]["area_m2"] == pytest.approx(stored, rel=2e-3)
    if level != "unit":
        assert all(c["code"].startswith(code) for c in out["unit_grids"]["cells"])
        assert all(c["share_inside"] > 0.99 for c in out["unit_grids"]["cells"])


def test_the_district_counts_every_component_the_database_holds_inside_it(client, settings):
    out = within(client, {"grid": "341502"})
    with psycopg.connect(settings.db.database_url) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM twin.components_current c, twin.grid_cells g "
            "WHERE g.code = '341502' AND g.valid_to IS NULL AND ST_Intersects(c.geom, g.geom)"
        ).fetchone()
    assert out["components"]["total"] == n > 10_000


def test_the_command_line_path_gives_the_same_answer_as_the_api(client, settings):
    api = within(client, {"geometry": polygon()})
    with psycopg.connect(settings.db.database_url) as conn:
        local = run_sync(conn, service.within(settings.query, polygon()))
    assert local == api


def test_without_a_buildings_layer_the_answer_says_not_available(settings):
    cfg = QuerySettings(buildings_layer="no_such_layer")
    with psycopg.connect(settings.db.database_url) as conn:
        out = run_sync(conn, service.within(cfg, polygon()))
    assert out["buildings"]["available"] is False
    assert "not available" in out["buildings"]["reason"]
    assert "no_such_layer" in out["buildings"]["reason"]
    assert out["components"]["total"] > 0  # the rest of the summary is still there


def test_gauss_krueger_coordinates_are_taken_easting_first(client):
    lonlat = within(client, {"geometry": polygon()})
    gk = gpd.GeoSeries([shapely.Polygon(PENTAGON)], crs="EPSG:4326").to_crs(GK).iloc[0]
    body = {"geometry": shapely.geometry.mapping(gk), "crs": "EPSG:4548"}
    projected = within(client, body)
    assert projected["components"] == lonlat["components"]
    assert projected["area"]["area_m2"] == pytest.approx(lonlat["area"]["area_m2"], rel=1e-4)


# --- buffers ---------------------------------------------------------------------------------
def test_a_point_buffer_is_a_circle_in_metres_with_its_summary(client, city):
    body = {"geometry": {"type": "Point", "coordinates": [116.538, 31.763]}, "distance_m": 150}
    r = client.post("/query/buffer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["area"]["source"] == "buffer" and out["area"]["distance_m"] == 150
    assert out["area"]["area_m2"] == pytest.approx(np.pi * 150**2, rel=5e-3)
    ring = shapely.geometry.shape(out["buffer"])
    assert ring.geom_type == "Polygon" and ring.contains(shapely.Point(116.538, 31.763))
    radius = gpd.GeoSeries([ring.exterior], crs="EPSG:4326").to_crs(GK).iloc[0]
    centre = gpd.GeoSeries([shapely.Point(116.538, 31.763)], crs="EPSG:4326").to_crs(GK).iloc[0]
    distances = [centre.distance(shapely.Point(p)) for p in radius.coords]
    assert min(distances) == pytest.approx(150, abs=0.5) and max(distances) <= 150.5
    assert out["components"]["total"] == len(components_inside(city, ring)) > 0


def test_a_line_buffer_in_a_projected_crs(client):
    line = gpd.GeoSeries(
        [shapely.LineString([(116.533, 31.760), (116.543, 31.760)])], crs="EPSG:4326"
    ).to_crs(GK)
    body = {
        "geometry": shapely.geometry.mapping(line.iloc[0]),
        "crs": "EPSG:4548",
        "distance_m": 20,
    }
    r = client.post("/query/buffer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    length = line.iloc[0].length
    assert out["area"]["area_m2"] == pytest.approx(2 * 20 * length + np.pi * 400, rel=5e-3)
    west, south, east, north = out["area"]["bbox"]
    assert 116.532 < west < 116.533 and 116.543 < east < 116.544 and south < 31.760 < north
    assert out["pipes"]["total_length_m"] > 0


# --- bad input -------------------------------------------------------------------------------
def error_of(client, path: str, body: dict, status: int = 400) -> str:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()["message"]


def test_a_self_intersecting_polygon_is_refused_saying_where(client):
    bowtie = [(116.53, 31.76), (116.54, 31.77), (116.54, 31.76), (116.53, 31.77), (116.53, 31.76)]
    message = error_of(client, "/query/within", {"geometry": polygon(bowtie)})
    assert "self-intersection" in message.lower()
    assert "x=116.535" in message and "y=31.765" in message


def test_an_empty_geometry_is_refused(client):
    message = error_of(
        client, "/query/within", {"geometry": {"type": "Polygon", "coordinates": []}}
    )
    assert "empty" in message


def test_an_area_over_the_limit_is_refused_naming_the_limit(client):
    big = [(116.4, 31.7), (116.5, 31.7), (116.5, 31.8), (116.4, 31.8), (116.4, 31.7)]
    message = error_of(client, "/query/within", {"geometry": polygon(big)}, status=422)
    assert "25 km²" in message and "TWIN_QUERY_MAX_AREA_KM2" in message


def test_an_unknown_crs_is_refused(client):
    message = error_of(client, "/query/within", {"geometry": polygon(), "crs": "EPSG:999999"})
    assert "unknown CRS" in message
    message = error_of(client, "/query/within", {"geometry": polygon(), "crs": "mars2000"})
    assert "unknown CRS" in message


def test_coordinates_in_the_wrong_crs_are_refused(client):
    projected = [(500_000 + x, 3_500_000 + y) for x, y in ((0, 0), (100, 0), (100, 100), (0, 0))]
    message = error_of(client, "/query/within", {"geometry": polygon(projected)})
    assert "lon/lat range" in message and "crs" in message


def test_an_unknown_grid_code_is_not_found(client):
    message = error_of(client, "/query/within", {"grid": "341502999999"}, status=404)
    assert "341502999999" in message
    message = error_of(client, "/query/within", {"grid": "34150A"})
    assert "6 digits (district)" in message


def test_a_line_is_not_an_area(client):
    line = {"type": "LineString", "coordinates": [[116.53, 31.76], [116.54, 31.77]]}
    message = error_of(client, "/query/within", {"geometry": line})
    assert "Polygon or MultiPolygon" in message and "LineString" in message
    assert "/query/buffer" in message


def test_geometry_and_grid_are_one_or_the_other(client):
    message = error_of(client, "/query/within", {"geometry": polygon(), "grid": "341502"})
    assert "either geometry" in message
    message = error_of(client, "/query/within", {})
    assert "either geometry" in message


def test_malformed_geojson_says_what_is_wrong(client):
    message = error_of(client, "/query/within", {"geometry": {"type": "Polygon"}})
    assert "GeoJSON" in message
    message = error_of(client, "/query/within", {"geometry": {"coordinates": [1, 2]}})
    assert "GeoJSON geometry object" in message


def test_buffer_distance_must_be_positive_and_capped(client):
    point = {"type": "Point", "coordinates": [116.538, 31.763]}
    message = error_of(client, "/query/buffer", {"geometry": point, "distance_m": 0})
    assert "more than 0" in message
    message = error_of(
        client, "/query/buffer", {"geometry": point, "distance_m": 50_000}, status=422
    )
    assert "5000 m" in message and "TWIN_QUERY_MAX_BUFFER_M" in message
    message = error_of(client, "/query/buffer", {"geometry": point})
    assert "distance_m" in message
