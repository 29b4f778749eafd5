"""Remote sensing end to end: the scene catalog (real Landsat-8 and Sentinel-2 excerpts, the
sample city's imagery), STAC, tiles with band math checked against numpy, zonal statistics
checked against exactextract run directly, change detection, and bad input."""

from __future__ import annotations

import io
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import rasterio
from conftest import DATA, app_client, fresh_database, settings_for
from PIL import Image
from pyproj import Transformer

from grid.store import import_grid_folder
from rasters.catalog import add_scene
from sample_data import generate
from twin.errors import InvalidData
from twin.settings import RasterSettings

UNKNOWN = "no such scene or collection; they are listed at /raster/collections"
LANDSAT = DATA / "raster" / "landsat8_LC08_L1TP_016037_20170813"
SENTINEL = DATA / "raster" / "sentinel2_l2a_19UDP_20170729_R10m"


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("city")
    generate(folder, seed=42, scale=1.0)
    return folder


@pytest.fixture(scope="module")
def raster_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rasters")


@pytest.fixture(scope="module")
def loaded(pg_url, city, raster_dir) -> str:
    with psycopg.connect(pg_url) as conn:
        import_grid_folder(conn, city, settings_for(pg_url).grid)
        add_scene(conn, sorted(LANDSAT.glob("*_B[2-5].TIF")), raster_dir)
        add_scene(
            conn,
            [SENTINEL / f"{b}.jp2" for b in ("B02", "B03", "B04", "B08")],
            raster_dir,
            scale=0.0001,
        )
        for year in (2023, 2024):
            add_scene(conn, [city / f"imagery_{year}.tif"], raster_dir, collection="sample")
        conn.commit()
    return pg_url


@pytest.fixture(scope="module")
def client(loaded, raster_dir):
    settings = settings_for(loaded)
    settings.rasters = RasterSettings(raster_dir=raster_dir)
    with app_client(settings) as c:
        yield c


# --- catalog -------------------------------------------------------------------------------
def test_real_multi_file_scenes_register_with_their_metadata(client):
    item = client.get("/raster/scenes/landsat8_LC08_L1TP_016037_20170813").json()
    props = item["properties"]
    assert props["datetime"] == "2017-08-13T00:00:00Z"  # from the MTL file
    assert props["platform"] == "landsat-8"
    assert [b["name"] for b in props["eo:bands"]] == ["blue", "green", "red", "nir"]
    assert props["proj:epsg"] == 32617 and props["gsd"] == 900
    assert props["citytwin:statistics"]["nir"]["max"] > props["citytwin:statistics"]["nir"]["min"]
    west, south, east, north = item["bbox"]
    assert -82 < west < east < -76 and 30 < south < north < 36  # path 16 row 37: the Carolinas
    assert item["assets"]["data"]["href"].endswith(
        "/raster/scenes/landsat8_LC08_L1TP_016037_20170813/data.tif"
    )
    assert "/" not in item["id"] and "cog_path" not in str(item)
    s2 = client.get("/raster/scenes/sentinel2_l2a_19UDP_20170729_R10m").json()
    assert s2["properties"]["datetime"].startswith("2017-07-29")
    assert s2["properties"]["proj:epsg"] == 32619
    data = client.get("/raster/scenes/sentinel2_l2a_19UDP_20170729_R10m/data.tif")
    with rasterio.open(io.BytesIO(data.content)) as cog:  # a real COG with all four bands
        assert cog.count == 4 and cog.overviews(1) is not None


def test_converted_cog_keeps_the_source_pixels(client, loaded):
    with psycopg.connect(loaded) as conn:
        path = conn.execute(
            "SELECT cog_path FROM twin.raster_scenes WHERE id = %s",
            ["landsat8_LC08_L1TP_016037_20170813"],
        ).fetchone()[0]
    from rio_cogeo.cogeo import cog_validate

    assert cog_validate(path, quiet=True)[0]
    with rasterio.open(path) as cog, rasterio.open(next(LANDSAT.glob("*_B5.TIF"))) as b5:
        assert np.array_equal(cog.read(4), b5.read(1))


def test_stac_collection_summarises_its_scenes(client):
    coll = client.get("/raster/collections/sample").json()
    assert coll["type"] == "Collection"
    assert coll["extent"]["temporal"]["interval"][0] == [
        "2023-08-15T00:00:00Z",
        "2024-08-20T00:00:00Z",
    ]
    items = client.get(
        "/raster/collections/sample/items", params={"datetime": "2024-01-01/2024-12-31"}
    ).json()
    assert [f["id"] for f in items["features"]] == ["imagery_2024"]


# --- tiles against numpy ---------------------------------------------------------------------
def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def _pixel_lonlat(z: int, x: int, y: int, col: float, row: float, size: int) -> tuple:
    n = 2**z
    lon = (x + col / size) / n * 360 - 180
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + row / size) / n))))
    return lon, lat


@pytest.mark.parametrize(
    "scene", ["landsat8_LC08_L1TP_016037_20170813", "sentinel2_l2a_19UDP_20170729_R10m"]
)
def test_ndvi_tiles_equal_numpy_from_the_source_bands(client, scene):
    item = client.get(f"/raster/scenes/{scene}").json()
    west, south, east, north = item["bbox"]
    lon, lat = (west + east) / 2, (south + north) / 2
    z = 9
    x, y = _tile_of(lon, lat, z)
    r = client.get(
        f"/raster/scenes/{scene}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
        params={"expression": "(nir-red)/(nir+red)", "rescale": "-1,1"},
    )
    assert r.status_code == 200, r.text
    img = np.array(Image.open(io.BytesIO(r.content)))
    gray, alpha = img[..., 0], img[..., -1]
    folder = LANDSAT if scene.startswith("landsat") else SENTINEL
    red_f, nir_f = (
        (next(folder.glob("*_B4.TIF")), next(folder.glob("*_B5.TIF")))
        if scene.startswith("landsat")
        else (folder / "B04.jp2", folder / "B08.jp2")
    )
    with rasterio.open(red_f) as red_src, rasterio.open(nir_f) as nir_src:
        red = red_src.read(1).astype("float64")
        nir = nir_src.read(1).astype("float64")
        to_src = Transformer.from_crs(4326, red_src.crs, always_xy=True)
        inverse = ~red_src.transform
    size = img.shape[0]
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(2000):
        col, row = rng.integers(0, size, 2)
        if alpha[row, col] == 0:
            continue
        plon, plat = _pixel_lonlat(z, x, y, col + 0.5, row + 0.5, size)
        sx, sy = to_src.transform(plon, plat)
        fc, fr = inverse @ (sx, sy)
        if not (0.2 < fc % 1 < 0.8 and 0.2 < fr % 1 < 0.8):
            continue  # near a source pixel edge the nearest pixel is a coin toss
        i, j = int(fr), int(fc)
        if not (0 <= i < red.shape[0] and 0 <= j < red.shape[1]) or nir[i, j] + red[i, j] == 0:
            continue
        ndvi = (nir[i, j] - red[i, j]) / (nir[i, j] + red[i, j])
        assert abs(int(gray[row, col]) - (ndvi + 1) / 2 * 255) <= 1.01, (row, col, ndvi)
        checked += 1
    assert checked > 40


def test_presets_mosaics_and_points(client, city):
    item = client.get("/raster/scenes/imagery_2023").json()
    west, south, east, north = item["bbox"]
    lon, lat = (west + east) / 2, (south + north) / 2
    x, y = _tile_of(lon, lat, 15)
    for preset in ("truecolor", "falsecolor", "ndvi"):
        r = client.get(
            f"/raster/scenes/imagery_2023/tiles/WebMercatorQuad/15/{x}/{y}.png",
            params={"preset": preset},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (256, 256)
    webp = client.get(
        f"/raster/collections/sample/tiles/WebMercatorQuad/15/{x}/{y}.webp",
        params={"datetime": "2023-01-01/2023-12-31", "preset": "ndvi"},
    )
    assert webp.status_code == 200 and webp.content[8:12] == b"WEBP"
    none = client.get(
        f"/raster/collections/sample/tiles/WebMercatorQuad/15/{x}/{y}.png",
        params={"datetime": "2019-01-01/2019-12-31"},
    )
    assert none.status_code == 404
    tj = client.get(
        "/raster/collections/sample/tiles/WebMercatorQuad/tilejson.json", params={"preset": "ndvi"}
    ).json()
    assert "preset=ndvi" in tj["tiles"][0] and tj["bounds"][0] == pytest.approx(west, abs=1e-3)
    p = client.get(
        "/raster/scenes/imagery_2023/point",
        params={"lon": lon, "lat": lat, "expression": "(nir-red)/(nir+red)"},
    ).json()
    with rasterio.open(city / "imagery_2023.tif") as src:
        sx, sy = Transformer.from_crs(4326, src.crs, always_xy=True).transform(lon, lat)
        values = next(src.sample([(sx, sy)]))
    assert p["values"] == {
        b: float(v) for b, v in zip(("blue", "green", "red", "nir"), values, strict=True)
    }
    assert p["expression"] == pytest.approx((values[3] - values[2]) / (values[3] + values[2]))


# --- zonal statistics against exactextract run directly ------------------------------------
def test_zonal_statistics_per_unit_grid_equal_exactextract(client, city, loaded):
    from exactextract import exact_extract

    r = client.get("/raster/scenes/imagery_2023/zonal", params={"level": "unit", "band": "nir"})
    assert r.status_code == 200, r.text
    ours = {c["code"]: c for c in r.json()["cells"]}
    with psycopg.connect(loaded) as conn:
        grid = gpd.read_postgis(
            "SELECT code, geom FROM twin.grid_cells WHERE level = 'unit' AND valid_to IS NULL",
            conn,
            geom_col="geom",
        )
    with rasterio.open(city / "imagery_2023.tif") as src:
        grid = grid.to_crs(src.crs)
        direct = exact_extract(
            src.name,
            grid[["code", "geom"]].rename_geometry("geometry"),
            ["mean", "max", "stdev"],
            include_cols=["code"],
            output="pandas",
        )
    checked = 0
    for row in direct.to_dict("records"):  # every band of the file: band 4 is nir
        mean = row["band_4_mean"]
        if row["code"] not in ours or math.isnan(mean):
            continue
        assert ours[row["code"]]["mean"] == pytest.approx(mean, rel=1e-6)
        assert ours[row["code"]]["max"] == pytest.approx(row["band_4_max"])
        assert ours[row["code"]]["std"] == pytest.approx(row["band_4_stdev"], rel=1e-5)
        checked += 1
    assert checked > 400
    geo = client.get(
        "/raster/scenes/imagery_2023/zonal",
        params={"level": "community", "expression": "(nir-red)/(nir+red)", "f": "geojson"},
    ).json()
    assert len(geo["features"]) == 17
    assert all(-1 <= f["properties"]["mean"] <= 1 for f in geo["features"])
    csv = client.get(
        "/raster/scenes/imagery_2023/zonal", params={"level": "street", "band": "red", "f": "csv"}
    )
    assert csv.text.splitlines()[0].startswith("code,measure,mean,min,max,std")


def test_zonal_statistics_of_a_posted_polygon(client):
    item = client.get("/raster/scenes/imagery_2023").json()
    west, south, east, north = item["bbox"]
    cx, cy = (west + east) / 2, (south + north) / 2
    d = 0.001
    poly = {
        "type": "Polygon",
        "coordinates": [
            [
                [cx - d, cy - d],
                [cx + d, cy - d],
                [cx + d, cy + d],
                [cx - d, cy + d],
                [cx - d, cy - d],
            ]
        ],
    }
    r = client.post(
        "/raster/scenes/imagery_2023/zonal",
        json={"geometry": poly, "expression": "(nir-red)/(nir+red)"},
    )
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["coverage"] == pytest.approx(1.0, abs=0.01)
    assert body["min"] <= body["mean"] <= body["max"]
    half = {
        "type": "Polygon",
        "coordinates": [
            [
                [east - d, cy - d],
                [east + d, cy - d],
                [east + d, cy + d],
                [east - d, cy + d],
                [east - d, cy - d],
            ]
        ],
    }
    edge = client.post(
        "/raster/scenes/imagery_2023/zonal", json={"geometry": half, "band": "red"}
    ).json()
    assert 0.3 < edge["coverage"] < 0.7  # half the polygon lies off the scene


# --- change detection ------------------------------------------------------------------------
def test_change_detection_recovers_the_planted_changes(client, city):
    r = client.post(
        "/raster/changes", json={"before": "imagery_2023", "after": "imagery_2024", "name": "test"}
    )
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["by_kind"]["new_construction"]["count"] >= 3
    truth = gpd.read_file(city / "changes_truth.gpkg")
    layer = client.get(
        "/collections/raster_changes/items", params={"change_set": "test", "limit": 500}
    ).json()
    found = gpd.GeoDataFrame.from_features(layer["features"], crs="EPSG:4326")
    metric = truth.estimate_utm_crs()
    t, f = truth.to_crs(metric), found.to_crs(metric)
    hit = t.union_all().intersection(f.union_all()).area
    assert hit / t.union_all().area >= 0.90
    assert f.union_all().difference(t.union_all()).area / f.union_all().area <= 0.10
    grid = client.get("/raster/changes/test/grid", params={"level": "unit"}).json()["cells"]
    assert sum(c["new_construction_candidates"] for c in grid) >= 3
    assert all(len(c["code"]) in (14, 15) for c in grid)


# --- bad input ------------------------------------------------------------------------------
def test_a_file_that_is_not_a_raster_is_refused(loaded, tmp_path, raster_dir):
    bad = tmp_path / "scene.tif"
    bad.write_text("not an image")
    with psycopg.connect(loaded) as conn, pytest.raises(InvalidData, match="not a raster"):
        add_scene(conn, [bad], raster_dir, when="2024-01-01")
    vrt = tmp_path / "evil.tif"  # a VRT under a GeoTIFF's name is still a VRT
    vrt.write_text(
        f'<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand dataType="Byte" '
        f'band="1"><SimpleSource><SourceFilename>{LANDSAT}/x.TIF</SourceFilename>'
        f"</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    with psycopg.connect(loaded) as conn, pytest.raises(InvalidData, match="not a raster"):
        add_scene(conn, [vrt], raster_dir, when="2024-01-01")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"expression": "(swir16-nir)/(swir16+nir)"}, "has no band 'swir16'"),
        ({"expression": "__import__('os').system('id')"}, "band math only"),
        ({"expression": "nir.real"}, "band math only"),
        ({"expression": "/vsizip/x.zip"}, "does not parse as band math"),
        ({"bands": "file:///etc/passwd"}, "has no band"),
        ({"colormap_name": "../../x"}, "unknown colormap"),
        ({"rescale": "1"}, "rescale is min,max"),
        ({"preset": "rainbow"}, "unknown preset"),
    ],
)
def test_forbidden_and_wrong_parameters_are_refused(client, params, words):
    r = client.get(
        "/raster/scenes/imagery_2023/tiles/WebMercatorQuad/15/26992/13332.png", params=params
    )
    assert r.status_code == 400, r.text
    assert words in r.json()["message"]


@pytest.mark.parametrize(
    "scene",
    [
        "nope",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fvsicurl%2Fhttp%3A%2F%2Fexample.com%2Fa.tif",
        "file:%2F%2F%2Fetc%2Fpasswd",
        "%2Fvsizip%2Fa.zip%2Fb.tif",
        "..",
        "a b",
    ],
)
def test_unknown_and_forbidden_scene_ids_get_the_same_answer(client, scene):
    for path in (
        f"/raster/scenes/{scene}",
        f"/raster/scenes/{scene}/point?lon=1&lat=1",
        f"/raster/scenes/{scene}/tiles/WebMercatorQuad/1/0/0.png",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["message"] == UNKNOWN
        assert r.json()["message"] == UNKNOWN


def test_a_tile_outside_the_scene_is_404(client):
    r = client.get("/raster/scenes/imagery_2023/tiles/WebMercatorQuad/10/0/0.png")
    assert r.status_code == 404 and "outside scene imagery_2023" in r.json()["message"]


def test_scenes_that_do_not_overlap_are_refused_for_change_detection(client):
    r = client.post(
        "/raster/changes",
        json={"before": "sentinel2_l2a_19UDP_20170729_R10m", "after": "imagery_2024"},
    )
    assert r.status_code == 400 and "do not overlap" in r.json()["message"]
    r = client.post("/raster/changes", json={"before": "imagery_2024", "after": "imagery_2023"})
    assert r.status_code == 400 and "earlier scene first" in r.json()["message"]


def test_cli_registers_a_scene_and_refuses_one_without_a_date(loaded, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("TWIN_DATABASE_URL", loaded)
    monkeypatch.setenv("TWIN_RASTER_DIR", str(tmp_path / "r"))
    runner = CliRunner()
    files = [str(SENTINEL / f"{b}.jp2") for b in ("B02", "B03", "B04", "B08")]
    r = runner.invoke(app, ["raster", "add", *files, "--id", "s2cli", "--collection", "cli"])
    assert r.exit_code == 0, r.output
    assert "blue,green,red,nir" in r.output and "converted to COG" in r.output
    r = runner.invoke(app, ["raster", "add", *files, "--id", "s2cli"])
    assert r.exit_code == 2 and "--replace" in r.output
    src = tmp_path / "nodate.tif"
    with rasterio.open(SENTINEL / "B02.jp2") as s:
        profile = s.profile
        data = s.read()
    with rasterio.open(src, "w", **profile) as dst:
        dst.write(data)
    r = runner.invoke(app, ["raster", "add", str(src)])
    assert r.exit_code == 2 and "--datetime" in r.output


def test_point_in_cgcs2000_gauss_kruger_matches_lon_lat(client):
    item = client.get("/raster/scenes/imagery_2023").json()
    west, south, east, north = item["bbox"]
    lon, lat = (west + east) / 2, (south + north) / 2
    north_m, east_m = Transformer.from_crs(4326, 4548).transform(lat, lon)  # northing first
    a = client.get("/raster/scenes/imagery_2023/point", params={"lon": lon, "lat": lat}).json()
    b = client.get(
        "/raster/scenes/imagery_2023/point",
        params={"lon": north_m, "lat": east_m, "crs": "EPSG:4548"},
    ).json()
    assert a["values"] == b["values"]
    outside = client.get("/raster/scenes/imagery_2023/point", params={"lon": 0, "lat": 0})
    assert outside.status_code == 404


@pytest.mark.parametrize("cid", ["nope", "..%2F..", "%2Fvsicurl%2Fhttp%3A%2F%2Fx", "file:x"])
def test_unknown_and_forbidden_collection_ids_get_the_same_answer(client, cid):
    for path in (
        f"/raster/collections/{cid}",
        f"/raster/collections/{cid}/items",
        f"/raster/collections/{cid}/tiles/WebMercatorQuad/1/0/0.png",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["message"] == UNKNOWN


# --- review findings: denial of service, sidecars, band order, odd input ---------------------
@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"expression": "nir+9**9**9"}, "exponent"),
        ({"expression": "nir**nir"}, "exponent"),
        ({"expression": "1+2"}, "at least one band"),
        ({"expression": "nir+1e400"}, "out of range"),
        ({"bands": "red,green,blue,nir"}, "one band"),
        ({"bands": "red,green"}, "one band"),
        ({"bands": "red,green,blue", "colormap_name": "viridis"}, "colormap colours one band"),
        ({"bands": "red,green,blue", "rescale": "0,1;0,2"}, "2 ranges for 3 bands"),
    ],
)
def test_costly_or_unrenderable_styles_are_refused(client, params, words):
    r = client.get(
        "/raster/scenes/imagery_2023/tiles/WebMercatorQuad/15/26992/13332.png", params=params
    )
    assert r.status_code == 400, r.text
    assert words in r.json()["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"lon": "nan", "lat": "1"},
        {"lon": "inf", "lat": "0"},
        {"lon": "1e308", "lat": "1e308", "crs": "EPSG:4547"},
        {"lon": "0", "lat": "95"},
    ],
)
def test_impossible_points_are_refused(client, params):
    r = client.get("/raster/scenes/imagery_2023/point", params=params)
    assert r.status_code == 400 and "not a valid position" in r.json()["message"]


def test_a_sidecar_overview_is_never_read(loaded, tmp_path):
    from rasterio.transform import from_origin

    from rasters.catalog import open_cog

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"TOPSECRET-" * 2000)
    src = tmp_path / "scene.tif"
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=256,
        height=256,
        count=1,
        dtype="uint8",
        crs="EPSG:32650",
        transform=from_origin(500000, 3500000, 10, 10),
    ) as d:
        d.write(np.full((1, 256, 256), 5, dtype="uint8"))
    (tmp_path / "scene.tif.ovr").write_text(
        '<VRTDataset rasterXSize="128" rasterYSize="128"><VRTRasterBand dataType="Byte" '
        'band="1" subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">'
        f"{secret}</SourceFilename><ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset>"
        "<LineOffset>128</LineOffset></VRTRasterBand></VRTDataset>"
    )
    with open_cog(src) as s:
        assert s.overviews(1) == []
    with psycopg.connect(loaded) as conn:
        report = add_scene(conn, [src], tmp_path / "r", scene_id="sidecar", when="2024-01-01")
        conn.rollback()
    with rasterio.open(next((tmp_path / "r").rglob("sidecar.*.tif"))) as cog:
        assert set(np.unique(cog.read(1))) == {5}  # none of the secret's bytes
    assert report.converted


def test_bands_named_by_hand_follow_the_order_given(loaded, tmp_path):
    b4, b5 = next(LANDSAT.glob("*_B4.TIF")), next(LANDSAT.glob("*_B5.TIF"))
    with psycopg.connect(loaded) as conn:
        add_scene(
            conn, [b5, b4], tmp_path, scene_id="order", bands=["nir", "red"], when="2017-08-13"
        )
        path = conn.execute(
            "SELECT cog_path FROM twin.raster_scenes WHERE id = 'order'"
        ).fetchone()[0]
        conn.rollback()
    with rasterio.open(path) as cog, rasterio.open(b5) as nir:
        assert np.array_equal(cog.read(1), nir.read(1))
    with psycopg.connect(loaded) as conn, pytest.raises(Exception, match="distinct names"):
        add_scene(conn, [b5, b4], tmp_path, scene_id="dup", bands=["nir", "nir"], when="2017-08-13")


def test_unknown_and_malformed_change_sets_get_the_same_answer(client):
    for name in ("nope", "..%2Fx", "a%00b"):
        r = client.get(f"/raster/changes/{name}/grid")
        assert r.status_code == 404, name
        assert r.json()["message"] in (
            "no such change set; POST /raster/changes makes one",
            UNKNOWN,
        )


def test_zonal_polygons_larger_than_the_scene_or_the_projection(client):
    world = {"type": "Polygon", "coordinates": [[[0, 0], [179, 0], [179, 80], [0, 80], [0, 0]]]}
    r = client.post("/raster/scenes/imagery_2023/zonal", json={"geometry": world, "band": "red"})
    assert r.status_code == 200, r.text
    assert r.json()["coverage"] < 0.001 and r.json()["valid_pixels"] > 1_000_000
    far = {
        "type": "Polygon",
        "coordinates": [[[-60, -60], [-59, -60], [-59, -59], [-60, -59], [-60, -60]]],
    }
    r = client.post("/raster/scenes/imagery_2023/zonal", json={"geometry": far, "band": "red"})
    assert r.status_code == 404
