"""Publishing files as layers: formats, CRS handling, bad rows, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon

from layers.importer import ImportRejected, import_file
from layers.registry import get_layer
from twin.crs import wgs84_to_gcj02
from twin.errors import InvalidParameter

HEFEI = (117.2272, 31.8206)
HEFEI_4548 = (521510.564, 3521982.109)  # easting, northing (STANDARDS.md)
ANHUI = Path(__file__).resolve().parents[1] / "sample_data" / "data" / "anhui_county"


def count(conn: psycopg.Connection, layer: str) -> int:
    return conn.execute(f'SELECT count(*) FROM published."{layer}"').fetchone()[0]  # noqa: S608


def lonlat(conn: psycopg.Connection, layer: str, fid: int = 1) -> tuple[float, float]:
    row = conn.execute(
        f'SELECT ST_X(geom), ST_Y(geom) FROM published."{layer}" WHERE fid = %s',  # noqa: S608
        (fid,),
    ).fetchone()
    return row[0], row[1]


def points_frame(n: int = 5) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "name": [f"灯{i}" for i in range(n)],
            "height": np.arange(n, dtype="int64") * 2,
            "ratio": np.linspace(0, 1, n),
        },
        geometry=[Point(116.50 + i * 0.001, 31.75 + i * 0.001) for i in range(n)],
        crs=4326,
    )


@pytest.mark.parametrize(
    ("suffix", "driver"),
    [(".gpkg", "GPKG"), (".geojson", "GeoJSON"), (".fgb", "FlatGeobuf"), (".shp", None)],
)
def test_import_loads_every_ogr_format_with_attributes(conn, tmp_path, suffix, driver):
    path = tmp_path / f"lamps{suffix}"
    points_frame().to_file(path, driver=driver, engine="pyogrio")
    name = f"lamps_{suffix[1:]}"
    report = import_file(conn, path, layer_name=name)
    assert report.loaded == 5 and not report.bad_rows
    assert count(conn, name) == 5
    layer = get_layer(conn, name)
    assert layer.geometry_type == "Point"
    assert {f.name: f.type for f in layer.fields} == {
        "name": "text",
        "height": "integer",
        "ratio": "double",
    }
    row = conn.execute(
        f'SELECT name, height FROM published."{name}" ORDER BY height DESC LIMIT 1'  # noqa: S608
    ).fetchone()
    assert row == ("灯4", 8)


def test_shapefile_prj_in_gauss_kruger_is_transformed_to_wgs84(conn, tmp_path):
    frame = gpd.GeoDataFrame({"name": ["hefei"]}, geometry=[Point(*HEFEI_4548)], crs=4548)
    path = tmp_path / "hefei.shp"
    frame.to_file(path, engine="pyogrio")
    assert path.with_suffix(".prj").exists()
    report = import_file(conn, path, layer_name="hefei_gk")
    assert report.source_crs == "EPSG:4548"
    lon, lat = lonlat(conn, "hefei_gk", fid=0)
    assert lon == pytest.approx(HEFEI[0], abs=1e-7) and lat == pytest.approx(HEFEI[1], abs=1e-7)


def test_crs_option_gcj02_removes_the_offset(conn, tmp_path):
    glon, glat = wgs84_to_gcj02(np.array([HEFEI[0]]), np.array([HEFEI[1]]))
    csv = tmp_path / "amap.csv"
    csv.write_text(f"name,lng,lat\nshop,{float(glon[0])!r},{float(glat[0])!r}\n")
    import_file(conn, csv, layer_name="amap_pois", crs="gcj02")
    lon, lat = lonlat(conn, "amap_pois")
    assert lon == pytest.approx(HEFEI[0], abs=1e-8) and lat == pytest.approx(HEFEI[1], abs=1e-8)


def test_real_anhui_counties_import_from_gcj02_shapefile(conn):
    report = import_file(conn, ANHUI / "anhui_county.shp", layer_name="anhui", crs="gcj02")
    assert report.loaded == 105
    layer = get_layer(conn, "anhui")
    assert layer.geometry_type == "MultiPolygon"  # 8 multi-part units promote the layer
    name = conn.execute(
        "SELECT name FROM published.anhui "
        "WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint(116.55, 31.76), 4326))"
    ).fetchone()
    assert name is not None and "金安" in name[0]


def test_csv_without_crs_is_lonlat_and_says_so(conn, tmp_path):
    csv = tmp_path / "bins.csv"
    csv.write_text("id,lon,lat,kind\n1,116.5,31.75,bin\n2,116.51,31.76,bin\n")
    report = import_file(conn, csv, layer_name="bins")
    assert "assumed" in report.source_crs
    assert count(conn, "bins") == 2


def bad_geojson(tmp_path: Path) -> Path:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    feats = [
        {"type": "Feature", "properties": {"name": "ok"}, "geometry": square},
        {"type": "Feature", "properties": {"name": "bowtie"}, "geometry": bowtie},
        {
            "type": "Feature",
            "properties": {"name": "point"},
            "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},
        },
        {"type": "Feature", "properties": {"name": "nogeom"}, "geometry": None},
        {"type": "Feature", "properties": {"name": "ok2"}, "geometry": square},
    ]
    path = tmp_path / "parcels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def test_bad_rows_load_nothing_and_are_each_reported(conn, tmp_path):
    path = bad_geojson(tmp_path)
    with pytest.raises(ImportRejected) as err:
        import_file(conn, path, layer_name="parcels", report_path=tmp_path / "report.csv")
    report = err.value.report
    reasons = {b.row: b.reason for b in report.bad_rows}
    assert set(reasons) == {2, 3, 4}
    assert reasons[2].startswith("invalid geometry: Self-intersection")
    assert reasons[3] == "wrong geometry type: Point in a Polygon layer"
    assert reasons[4] == "missing geometry"
    assert "nothing was loaded" in err.value.message
    assert conn.execute("SELECT to_regclass('published.parcels')").fetchone()[0] is None
    assert conn.execute("SELECT count(*) FROM twin.layers WHERE name='parcels'").fetchone()[0] == 0
    lines = (tmp_path / "report.csv").read_text().splitlines()
    assert lines[0] == "feature,fid,field,reason" and len(lines) == 4


def test_skip_invalid_loads_good_rows_and_writes_the_report(conn, tmp_path):
    path = bad_geojson(tmp_path)
    report = import_file(
        conn, path, layer_name="parcels_ok", skip_invalid=True, report_path=tmp_path / "r.csv"
    )
    assert report.loaded == 2 and len(report.bad_rows) == 3
    assert count(conn, "parcels_ok") == 2
    assert (tmp_path / "r.csv").exists()


def test_csv_missing_and_non_numeric_coordinates_name_the_line(conn, tmp_path):
    csv = tmp_path / "hydrants.csv"
    csv.write_text("code,lon,lat\nA,116.5,31.7\nB,,31.7\nC,east,31.7\nD,116.5,95\n")
    with pytest.raises(ImportRejected) as err:
        import_file(conn, csv, layer_name="hydrants")
    reasons = {b.row: b.reason for b in err.value.report.bad_rows}
    assert reasons[3] == "missing required field lon"
    assert reasons[4] == "field lon: 'east' is not a number"
    assert reasons[5].startswith("coordinates out of range")
    assert 2 not in reasons


def test_required_field_missing_is_a_bad_row(conn, tmp_path):
    csv = tmp_path / "signs.csv"
    csv.write_text("code,lon,lat\nS1,116.5,31.7\n,116.6,31.7\n")
    with pytest.raises(ImportRejected) as err:
        import_file(conn, csv, layer_name="signs", require=["code"])
    assert [(b.row, b.reason) for b in err.value.report.bad_rows] == [
        (3, "missing required field code")
    ]


def test_append_with_wrong_type_is_refused_and_keeps_the_layer(conn, tmp_path):
    first = tmp_path / "trees.geojson"
    points_frame(3).to_file(first, driver="GeoJSON", engine="pyogrio")
    import_file(conn, first, layer_name="trees")
    second = tmp_path / "more_trees.csv"
    second.write_text("name,height,ratio,lon,lat\nx,tall,0.5,116.5,31.7\ny,4,0.1,116.5,31.7\n")
    with pytest.raises(ImportRejected) as err:
        import_file(conn, second, layer_name="trees", mode="append")
    assert [(b.row, b.reason) for b in err.value.report.bad_rows] == [
        (2, "field height: 'tall' is not an integer")
    ]
    assert count(conn, "trees") == 3
    second.write_text("name,height,ratio,lon,lat\ny,4,0.1,116.5,31.7\n")
    report = import_file(conn, second, layer_name="trees", mode="append")
    assert report.loaded == 1 and count(conn, "trees") == 4
    ids = [r[0] for r in conn.execute("SELECT fid FROM published.trees ORDER BY fid")]
    assert len(set(ids)) == 4


def test_failed_replace_keeps_the_old_layer(conn, tmp_path):
    good = tmp_path / "blocks.gpkg"
    frame = gpd.GeoDataFrame(
        {"n": [1]}, geometry=[Polygon([(116.5, 31.7), (116.6, 31.7), (116.6, 31.8)])], crs=4326
    )
    frame.to_file(good, engine="pyogrio")
    import_file(conn, good, layer_name="replace_blocks")
    with pytest.raises(ImportRejected):
        import_file(conn, bad_geojson(tmp_path), layer_name="replace_blocks", mode="replace")
    assert count(conn, "replace_blocks") == 1
    assert get_layer(conn, "replace_blocks").feature_count == 1


def test_existing_layer_needs_replace_or_append(conn, tmp_path):
    path = tmp_path / "dup.geojson"
    points_frame(2).to_file(path, driver="GeoJSON", engine="pyogrio")
    import_file(conn, path, layer_name="dup")
    with pytest.raises(InvalidParameter, match="--replace"):
        import_file(conn, path, layer_name="dup")
    report = import_file(conn, path, layer_name="dup", mode="replace")
    assert report.loaded == 2 and count(conn, "dup") == 2


def test_file_without_crs_asks_for_one(conn, tmp_path):
    path = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame({"a": [1]}, geometry=[LineString([(0, 0), (1, 1)])]).to_file(
        path, engine="pyogrio"
    )
    with pytest.raises(InvalidParameter, match="--crs"):
        import_file(conn, path, layer_name="nocrs")


def test_not_a_vector_file_is_refused(conn, tmp_path):
    path = tmp_path / "notes.gpkg"
    path.write_text("hello")
    with pytest.raises(Exception, match="not a vector file"):
        import_file(conn, path, layer_name="notes")


def test_large_import_uses_copy_and_keeps_file_ids(conn, tmp_path):
    n = 20_000
    rng = np.random.default_rng(7)
    frame = gpd.GeoDataFrame(
        {"v": rng.random(n)},
        geometry=shapely.points(rng.uniform(116.4, 116.6, n), rng.uniform(31.7, 31.8, n)),
        crs=4326,
    )
    path = tmp_path / "many.gpkg"
    frame.to_file(path, engine="pyogrio")
    report = import_file(conn, path, layer_name="many")
    assert report.loaded == n
    fids = conn.execute("SELECT min(fid), max(fid) FROM published.many").fetchone()
    assert fids == (1, n)  # GeoPackage fids are kept
    v = conn.execute("SELECT v FROM published.many WHERE fid = 1234").fetchone()[0]
    assert v == pytest.approx(frame["v"].iloc[1233])


def test_empty_point_is_a_bad_row_on_the_fast_point_path(conn, tmp_path):
    frame = gpd.GeoDataFrame(
        {"code": ["a", "b", "c"]},
        geometry=[Point(116.5, 31.7), Point(), Point(116.6, 31.8)],
        crs=4326,
    )
    path = tmp_path / "meters.gpkg"
    frame.to_file(path, engine="pyogrio")
    with pytest.raises(ImportRejected) as err:
        import_file(conn, path, layer_name="meters")
    assert [(b.row, b.reason) for b in err.value.report.bad_rows] == [(2, "empty geometry")]
    report = import_file(conn, path, layer_name="meters", skip_invalid=True)
    assert report.loaded == 2
    layer = get_layer(conn, "meters")
    assert layer.bbox == pytest.approx((116.5, 31.7, 116.6, 31.8))
    codes = [r[0] for r in conn.execute("SELECT code FROM published.meters ORDER BY fid")]
    assert codes == ["a", "c"]


def test_list_and_object_properties_load_as_json(conn, tmp_path):
    path = tmp_path / "tagged.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"tags": ["lamp", "led"], "n": 1},
                        "geometry": {"type": "Point", "coordinates": [116.5, 31.7]},
                    },
                    {
                        "type": "Feature",
                        "properties": {"tags": None, "n": 2},
                        "geometry": {"type": "Point", "coordinates": [116.6, 31.8]},
                    },
                ],
            }
        )
    )
    import_file(conn, path, layer_name="tagged")
    rows = conn.execute("SELECT n, tags FROM published.tagged ORDER BY n").fetchall()
    assert rows[0][1] in (["lamp", "led"], '["lamp", "led"]', '[ "lamp", "led" ]')
    assert rows[1][1] is None


def test_non_ascii_file_names_get_a_stable_layer_name(tmp_path):
    from layers.importer import default_layer_name

    name = default_layer_name(Path("给水管网.gpkg"))
    assert name == default_layer_name(Path("给水管网.gpkg")) and name.startswith("layer_")
    assert default_layer_name(Path("Street Lamps.gpkg")) == "street_lamps"


def test_replace_never_touches_a_layer_named_like_a_staging_table(conn, tmp_path):
    path = tmp_path / "a.geojson"
    points_frame(2).to_file(path, driver="GeoJSON", engine="pyogrio")
    import_file(conn, path, layer_name="foo")
    import_file(conn, path, layer_name="foo__load")
    import_file(conn, path, layer_name="foo", mode="replace")
    assert count(conn, "foo__load") == 2 and count(conn, "foo") == 2
    leftovers = conn.execute(
        "SELECT count(*) FROM pg_tables "
        "WHERE schemaname = 'published' AND tablename LIKE '\\_load%'"
    ).fetchone()[0]
    assert leftovers == 0


def test_append_unwraps_one_part_multis_and_refuses_real_ones(conn, tmp_path):
    base = tmp_path / "poles.geojson"
    points_frame(1).to_file(base, driver="GeoJSON", engine="pyogrio")
    import_file(conn, base, layer_name="poles")
    more = tmp_path / "more_poles.geojson"
    more.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "one"},
                        "geometry": {"type": "MultiPoint", "coordinates": [[116.5, 31.7]]},
                    },
                    {
                        "type": "Feature",
                        "properties": {"name": "two"},
                        "geometry": {
                            "type": "MultiPoint",
                            "coordinates": [[116.5, 31.7], [116.6, 31.8]],
                        },
                    },
                ],
            }
        )
    )
    with pytest.raises(ImportRejected) as err:
        import_file(conn, more, layer_name="poles", mode="append")
    assert [(b.row, b.reason) for b in err.value.report.bad_rows] == [
        (2, "wrong geometry type: MultiPoint with 2 parts in a Point layer")
    ]
    report = import_file(conn, more, layer_name="poles", mode="append", skip_invalid=True)
    assert report.loaded == 1 and count(conn, "poles") == 2


def test_two_imports_creating_one_layer_leave_one_winner(pg_url, tmp_path):
    import threading

    from twin.errors import TwinError

    path = tmp_path / "race.gpkg"
    points_frame(3).to_file(path, engine="pyogrio")
    outcomes: list[str] = []

    def run() -> None:
        with psycopg.connect(pg_url) as c:
            try:
                import_file(c, path, layer_name="race")
                outcomes.append("loaded")
            except TwinError as exc:
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[0] in ("Conflict", "InvalidParameter")
    assert outcomes.count("loaded") == 1
