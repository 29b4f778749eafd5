"""The unified grid: checked import, generation, locate (one and many) and stats."""

from __future__ import annotations

import csv
import io
import json

import geopandas as gpd
import numpy as np
import psycopg
import pyogrio
import pytest
from shapely.geometry import Polygon, box

from grid.codes import LEVELS, code_problem
from grid.locate import load_index, locate_codes
from grid.store import GridRejected, import_grid
from sample_data import generate
from twin.settings import GridSettings

SETTINGS = GridSettings()
# A synthetic district far from the sample city, in degrees (~1.1 km × 0.9 km at 30°N).
X0, Y0, D = 110.0, 30.0, 0.01


def write(tmp_path, name, rows, crs=4326):
    frame = gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "name": [r[1] for r in rows]},
        geometry=[r[2] for r in rows],
        crs=crs,
    )
    path = tmp_path / f"{name}.gpkg"
    frame.to_file(path, engine="pyogrio")
    return path


@pytest.fixture(scope="module")
def district(pg_url, tmp_path_factory):
    """420101 → street 420101001 → community 420101001001 (2×2 cells of D/2)."""
    folder = tmp_path_factory.mktemp("grid")
    square = box(X0, Y0, X0 + D, Y0 + D)
    with psycopg.connect(pg_url) as conn:
        for level, code in (
            ("district", "420101"),
            ("street", "420101001"),
            ("community", "420101001001"),
        ):
            import_grid(conn, write(folder, level, [(code, f"{level} 1", square)]), level, SETTINGS)
    return square


def quarters(code_prefix="420101001001"):
    h = D / 2
    cells = [
        box(X0, Y0 + h, X0 + h, Y0 + D),
        box(X0 + h, Y0 + h, X0 + D, Y0 + D),
        box(X0, Y0, X0 + h, Y0 + h),
        box(X0 + h, Y0, X0 + D, Y0 + h),
    ]
    return [(f"{code_prefix}{i:02d}", f"cell {i}", g) for i, g in enumerate(cells, start=1)]


def kinds(err):
    return sorted({f.kind for f in err.value.report.fatal})


def test_code_rules_follow_the_standard():
    assert code_problem("34150200100101", "unit", 14) is None
    assert "has 13 digits; a unit code has 14 digits" in code_problem("3415020010010", "unit", 14)
    assert code_problem("341502001001001", "unit", 15) is None
    assert "digits only" in code_problem("34150A", "district", 14)
    assert "zero sequence" in code_problem("341502000", "street", 14)


def test_unit_cells_load_and_replace_with_history(conn, district, tmp_path):
    report = import_grid(conn, write(tmp_path, "u", quarters()), "unit", SETTINGS)
    assert report.cells == 4 and not report.fatal
    areas = conn.execute(
        "SELECT code, area_m2 FROM twin.grid_cells WHERE level='unit' AND valid_to IS NULL "
        "AND code LIKE '420101%' ORDER BY code"
    ).fetchall()
    assert len(areas) == 4 and all(200_000 < a < 300_000 for _, a in areas)  # ~0.5 km squares
    again = import_grid(conn, write(tmp_path, "u2", quarters()), "unit", SETTINGS)
    assert again.retired == 4
    history = conn.execute(
        "SELECT count(*) FROM twin.grid_cells WHERE code = '42010100100101'"
    ).fetchone()[0]
    assert history == 2  # the replaced cell is kept, with valid_to set
    conn.commit()


@pytest.mark.parametrize(
    ("change", "kind", "says"),
    [
        (lambda c: [("4201010010010", c[0][1], c[0][2])] + c[1:], "code", "has 13 digits"),
        (lambda c: [("42010200100101", c[0][1], c[0][2])] + c[1:], "parent", "does not exist"),
        (
            lambda c: [(c[0][0], c[0][1], box(X0 - D / 4, Y0 + D / 2, X0 + D / 2, Y0 + D))] + c[1:],
            "outside-parent",
            "outside its parent 420101001001",
        ),
        (
            lambda c: [(c[0][0], c[0][1], box(X0, Y0 + D / 4, X0 + D / 2, Y0 + D))] + c[1:],
            "overlap",
            "overlap by",
        ),
        (lambda c: c[:3], "gap", "gap of"),
        (lambda c: c + [c[0]], "duplicate", "appears twice"),
    ],
)
def test_bad_grids_are_refused_with_codes_areas_and_places(
    conn, district, tmp_path, change, kind, says
):
    before = conn.execute("SELECT count(*), max(id) FROM twin.grid_cells").fetchone()
    with pytest.raises(GridRejected) as err:
        import_grid(conn, write(tmp_path, "bad", change(quarters())), "unit", SETTINGS)
    finding = next(f for f in err.value.report.fatal if f.kind == kind)
    assert says in finding.message
    if kind in ("outside-parent", "overlap", "gap"):
        assert finding.area_m2 > 1000 and X0 - D / 2 <= finding.lon <= X0 + D
    conn.rollback()
    assert conn.execute("SELECT count(*), max(id) FROM twin.grid_cells").fetchone() == before


def test_gaps_can_be_allowed_as_warnings(conn, district, tmp_path):
    report = import_grid(
        conn, write(tmp_path, "gappy", quarters()[:3]), "unit", SETTINGS, allow_gaps=True
    )
    assert report.cells == 3 and [f.kind for f in report.findings] == ["gap"]
    import_grid(conn, write(tmp_path, "full", quarters()), "unit", SETTINGS)
    conn.commit()


def test_repairable_geometry_is_repaired_and_said(conn, district, tmp_path):
    h = D / 2
    # the first cell with a zero-width spike: invalid, but its area is unchanged by repair
    spiky = Polygon(
        [
            (X0, Y0 + h),
            (X0 + h, Y0 + h),
            (X0 + h, Y0 + D),
            (X0 + h / 2, Y0 + D),
            (X0 + h / 2, Y0 + D + h / 2),
            (X0 + h / 2, Y0 + D),
            (X0, Y0 + D),
        ]
    )
    assert not spiky.is_valid
    cells = quarters()
    cells[0] = (cells[0][0], cells[0][1], spiky)
    report = import_grid(conn, write(tmp_path, "spiky", cells), "unit", SETTINGS)
    assert [f.kind for f in report.findings] == ["repaired"]
    valid = conn.execute(
        "SELECT bool_and(ST_IsValid(geom)) FROM twin.grid_cells WHERE valid_to IS NULL"
    ).fetchone()[0]
    assert valid
    conn.commit()


def test_generate_numbers_cells_west_to_east_then_north_to_south():
    from grid.generate import Community, generate_units

    community = Community("420101001001", "测试社区", box(X0, Y0, X0 + 0.003, Y0 + 0.002))
    cells = generate_units([community], 100, 14)
    assert [c.code for c in cells][:3] == ["42010100100101", "42010100100102", "42010100100103"]
    first, second = cells[0].geom.centroid, cells[1].geom.centroid
    assert second.x > first.x and abs(second.y - first.y) < 3e-4  # same row (GK squares), east
    last = cells[-1].geom.centroid
    assert last.y < first.y  # later rows are further south
    union = gpd.GeoSeries([c.geom for c in cells]).union_all()
    assert union.symmetric_difference(community.geom).area < 1e-10


@pytest.fixture(scope="module")
def city(pg_url, tmp_path_factory, client):
    """A sample city's grid in the grid tables, and its components."""
    folder = tmp_path_factory.mktemp("gridcity")
    generate(folder, seed=11, scale=0.25)
    with psycopg.connect(pg_url) as conn:
        for level in LEVELS:
            import_grid(conn, folder / f"grid_{level}.gpkg", level, SETTINGS)
        from layers.importer import import_file

        import_file(conn, folder / "components.gpkg", layer_name="grid_components", mode="replace")
    client.app.state.catalog._loaded_at = 0
    return folder


def test_every_component_locates_to_the_cell_the_generator_put_it_in(pg_url, city):
    frame = pyogrio.read_dataframe(city / "components.gpkg")
    with psycopg.connect(pg_url) as conn:
        index = load_index(conn)
    codes = locate_codes(index, frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy())
    assert (codes["unit"] == frame["unit_grid"].to_numpy()).mean() > 0.999
    assert set(codes["district"]) == {"341502"}


def test_locate_one_point_gives_the_whole_hierarchy(client, city):
    from shapely.geometry import shape

    found = client.get(
        "/collections/grid_unit/items", params={"limit": 1, "filter": "code LIKE '341502%'"}
    )
    cell = json.loads(found.text)["features"][0]
    point = shape(cell["geometry"]).representative_point()
    doc = client.get(f"/grid/locate?lon={point.x}&lat={point.y}").json()
    code = cell["properties"]["code"]
    assert doc["inside"] and doc["unit"]["code"] == code
    assert doc["community"]["code"] == code[:12] and doc["street"]["code"] == code[:9]
    assert doc["district"] == {"code": "341502", "name": "金安区"}


def test_importing_one_district_keeps_the_others(client, city, district):
    doc = client.get(f"/grid/locate?lon={X0 + D / 4}&lat={Y0 + D / 4}").json()
    assert doc["district"] == {"code": "420101", "name": "district 1"}


def test_locate_outside_every_cell_says_so(client, city):
    doc = client.get("/grid/locate?lon=100&lat=20").json()
    assert doc["inside"] is False and doc["unit"] is None and doc["district"] is None
    r = client.get("/grid/locate?lon=200&lat=20")
    assert r.status_code == 400 and "longitude" in r.json()["message"]


def test_locate_many_points_as_csv_streams_every_row(client, city):
    frame = pyogrio.read_dataframe(city / "components.gpkg")
    lines = ["id,lon,lat"] + [
        f"{c},{p.x},{p.y}" for c, p in zip(frame["code"], frame.geometry, strict=True)
    ]
    lines += ["far,100,20", "bad,abc,31"]
    r = client.post(
        "/grid/locate", content="\n".join(lines) + "\n", headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(frame) + 2
    expected = dict(zip(frame["code"], frame["unit_grid"], strict=True))
    agree = np.mean([row["unit_code"] == expected[row["id"]] for row in rows[:-2]])
    assert agree > 0.999
    assert rows[-2]["status"] == "outside" and rows[-2]["unit_code"] == ""
    assert rows[-1]["status"] == "invalid"


def test_locate_many_points_as_geojson(client, city):
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": 7,
                "properties": {"n": 1},
                "geometry": {"type": "Point", "coordinates": [100, 20]},
            }
        ],
    }
    r = client.post("/grid/locate", json=fc)
    feature = r.json()["features"][0]
    assert feature["id"] == 7 and feature["properties"]["status"] == "outside"


def test_stats_count_components_per_community_by_status(client, city):
    r = client.get("/grid/stats?layer=grid_components&level=community&group=status&f=csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    frame = pyogrio.read_dataframe(city / "components.gpkg")
    assert sum(int(row["total"]) for row in rows) == len(frame)
    assert sum(int(row.get("status=完好", 0)) for row in rows) == int(
        (frame["status"] == "完好").sum()
    )


def test_stats_geojson_is_a_choropleth_with_zero_cells(client, city):
    doc = client.get("/grid/stats?layer=grid_components&level=unit").json()
    units = pyogrio.read_info(city / "grid_unit.gpkg")["features"]
    ours = [f for f in doc["features"] if f["id"].startswith("341502")]
    assert len(ours) == units  # every cell, those with no component included
    assert any(f["properties"]["total"] == 0 for f in doc["features"])
    assert all(f["geometry"]["type"] == "MultiPolygon" for f in doc["features"])


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/grid/stats?layer=grid_components&measure=area", "needs a polygon layer"),
        ("/grid/stats?layer=grid_components&level=block", "unknown grid level"),
        ("/grid/stats?layer=grid_components&group=colour", "unknown group field"),
        ("/grid/stats?layer=nope", "no collection"),
    ],
)
def test_stats_bad_requests(client, city, url, says):
    r = client.get(url)
    assert r.status_code in (400, 404) and says in r.json()["message"]


def test_locate_gives_h3_and_beidou_keys_and_their_cells(client, city):
    doc = client.get("/grid/locate?lon=117.2272&lat=31.8206&beidou_level=1").json()
    assert doc["beidou"] == "N50H" and doc["inside"] is False
    cell = client.get(f"/grid/h3/{doc['h3']}").json()
    from shapely.geometry import Point, shape

    assert shape(cell["geometry"]).contains(Point(117.2272, 31.8206))
    code = client.get("/grid/locate?lon=117.2272&lat=31.8206").json()["beidou"]
    assert len(code) == 14  # level 7
    box_ = shape(client.get(f"/grid/beidou/{code}").json()["geometry"])
    assert box_.contains(Point(117.2272, 31.8206))
    assert client.get("/grid/beidou/N50Z").status_code == 400
    assert client.get("/grid/h3/nothex").status_code == 400


def unit_cell(client, code):
    doc = client.get("/collections/grid_unit/items", params={"filter": f"code = '{code}'"}).json()[
        "features"
    ][0]
    r = client.get(f"/collections/grid_unit/items/{doc['id']}")
    return r.json(), r.headers["etag"]


def test_grid_cell_edits_are_versioned_with_history_and_restore(client, district, city):
    doc, etag = unit_cell(client, "42010100100101")
    fid, old_area = doc["id"], doc["properties"]["area_m2"]
    url = f"/collections/grid_unit/items/{fid}"
    r = client.patch(url, json={"properties": {"name": "renamed"}}, headers={"If-Match": etag})
    assert r.status_code == 204
    assert (
        client.patch(
            url, json={"properties": {"name": "again"}}, headers={"If-Match": etag}
        ).status_code
        == 412
    )
    doc, etag = unit_cell(client, "42010100100101")
    # move the boundary: the west half only; the area follows, and so does locate
    h = D / 2
    half = {
        "type": "Polygon",
        "coordinates": [
            [[X0, Y0 + h], [X0 + h / 2, Y0 + h], [X0 + h / 2, Y0 + D], [X0, Y0 + D], [X0, Y0 + h]]
        ],
    }
    r = client.put(
        url,
        json={"type": "Feature", "geometry": half, "properties": {"name": "renamed"}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 204
    doc, etag = unit_cell(client, "42010100100101")
    assert doc["properties"]["area_m2"] == pytest.approx(old_area / 2, rel=0.01)
    gone = client.get(f"/grid/locate?lon={X0 + h * 0.75}&lat={Y0 + h * 1.5}").json()
    assert gone["inside"] is False
    history = client.get(f"{url}/history").json()["versions"]
    assert [v["state"]["name"] for v in history[:2]] == ["cell 1", "renamed"]
    assert client.post(f"{url}/restore?version=1").status_code == 200
    doc, etag = unit_cell(client, "42010100100101")
    assert doc["properties"]["name"] == "cell 1"
    assert doc["properties"]["area_m2"] == pytest.approx(old_area, rel=0.001)
    assert client.delete(url, headers={"If-Match": etag}).status_code == 204
    assert client.get(url).status_code == 404
    assert client.post(f"{url}/restore").status_code == 200
    assert client.get(url).status_code == 200


def test_grid_codes_change_only_by_import(client, district):
    doc, etag = unit_cell(client, "42010100100102")
    r = client.patch(
        f"/collections/grid_unit/items/{doc['id']}",
        json={"properties": {"code": "42010100100199"}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 422 and "twin grid import" in r.json()["message"]


@pytest.mark.parametrize(
    ("body", "kind", "says"),
    [
        (b"", "text/csv", "no points"),
        (b"a,b\n1,2\n", "text/csv", "lon and lat"),
        (b"id,lon,lat\n1,116.5,31.7\n2,116.5\n3,1,2,3,4\n", "text/csv", "cannot be read"),
        (b"{not json", "application/geo+json", "not JSON"),
        (b"[1, 2]", "application/geo+json", "FeatureCollection"),
        (
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": [
                        {
                            "type": "Feature",
                            "properties": {},
                            "geometry": {
                                "type": "LineString",
                                "coordinates": [[116.5, 31.7], [116.6, 31.8]],
                            },
                        }
                    ],
                }
            ).encode(),
            "application/geo+json",
            "points only",
        ),
        (
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": [
                        {
                            "type": "Feature",
                            "properties": {},
                            "geometry": {"type": "Point", "coordinates": ["a", "b"]},
                        }
                    ],
                }
            ).encode(),
            "application/geo+json",
            "numeric",
        ),
    ],
)
def test_bad_locate_bodies_are_4xx_before_any_answer(client, city, body, kind, says):
    r = client.post("/grid/locate", content=body, headers={"Content-Type": kind})
    assert r.status_code in (400, 422), r.text
    assert says in r.json()["message"]


def test_locate_with_a_bad_crs_is_400(client, city):
    r = client.post(
        "/grid/locate?crs=EPSG:0", content=b"lon,lat\n1,2\n", headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 400


def test_geojson_locate_answers_null_geometries_as_invalid(client, city):
    fc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": None, "geometry": None}],
    }
    doc = client.post("/grid/locate", json=fc).json()
    assert doc["features"][0]["properties"]["status"] == "invalid"


def test_stats_count_and_measure_shared_edges_once(client, pg_url, district, tmp_path):
    from layers.importer import import_file

    h = D / 2
    on_edge = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"k": "a"},
                "geometry": {"type": "Point", "coordinates": [X0 + h, Y0 + h / 2]},
            },
            {
                "type": "Feature",
                "properties": {"k": "b"},
                "geometry": {"type": "Point", "coordinates": [X0 + h / 2, Y0 + h / 2]},
            },
        ],
    }
    along = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"k": "pipe"},
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[X0 + h, Y0 + 0.001], [X0 + h, Y0 + h - 0.001]],
                },
            }
        ],
    }
    with psycopg.connect(pg_url) as conn:
        import_grid(conn, write(tmp_path, "units", quarters()), "unit", SETTINGS)
        conn.commit()
        for name, doc in (("edge_points", on_edge), ("edge_lines", along)):
            path = tmp_path / f"{name}.geojson"
            path.write_text(json.dumps(doc))
            import_file(conn, path, layer_name=name, mode="replace")
    client.app.state.catalog._loaded_at = 0
    rows = client.get("/grid/stats?layer=edge_points&level=unit").json()["features"]
    ours = {f["id"]: f["properties"]["total"] for f in rows if f["id"].startswith("420101")}
    assert sum(ours.values()) == 2
    rows = client.get("/grid/stats?layer=edge_lines&level=unit&measure=length").json()["features"]
    length = sum(f["properties"]["total"] for f in rows if f["id"].startswith("420101"))
    assert length == pytest.approx((h - 0.002) * 110_800, rel=0.01)  # metres, once


def test_grid_cell_edits_keep_the_hierarchy_whole(client, pg_url, district, tmp_path):
    with psycopg.connect(pg_url) as conn:
        import_grid(conn, write(tmp_path, "units", quarters()), "unit", SETTINGS)
    client.app.state.catalog._loaded_at = 0
    doc, etag = unit_cell(client, "42010100100103")
    url = f"/collections/grid_unit/items/{doc['id']}"
    h = D / 2
    into_sibling = {
        "type": "Polygon",
        "coordinates": [
            [[X0, Y0], [X0 + h * 1.5, Y0], [X0 + h * 1.5, Y0 + h], [X0, Y0 + h], [X0, Y0]]
        ],
    }
    r = client.put(
        url,
        json={"type": "Feature", "geometry": into_sibling, "properties": {}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 422 and "overlaps 42010100100104" in r.json()["message"]
    outside = {
        "type": "Polygon",
        "coordinates": [
            [[X0 - h, Y0], [X0 + h, Y0], [X0 + h, Y0 + h], [X0 - h, Y0 + h], [X0 - h, Y0]]
        ],
    }
    r = client.put(
        url,
        json={"type": "Feature", "geometry": outside, "properties": {}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 422 and "outside the parent" in r.json()["message"]
    assert unit_cell(client, "42010100100103")[1] == etag  # nothing changed


def test_unreadable_grid_dates_are_findings(conn, district, tmp_path):
    frame = gpd.GeoDataFrame(
        {
            "code": [c for c, _, _ in quarters()],
            "name": ["x"] * 4,
            "valid_from": ["2020-01-31", "2020/02/01", "someday", None],
        },
        geometry=[g for _, _, g in quarters()],
        crs=4326,
    )
    path = tmp_path / "dated.gpkg"
    frame.to_file(path, engine="pyogrio")
    with pytest.raises(GridRejected) as err:
        import_grid(conn, path, "unit", SETTINGS)
    assert [f.message for f in err.value.report.fatal] == [
        "cell 42010100100103: valid_from 'someday' is not a date (YYYY-MM-DD)"
    ]
    conn.rollback()


def test_history_of_one_level_does_not_show_another_levels_cell(client, pg_url, district, tmp_path):
    with psycopg.connect(pg_url) as conn:
        import_grid(conn, write(tmp_path, "units", quarters()), "unit", SETTINGS)
    client.app.state.catalog._loaded_at = 0
    doc, _ = unit_cell(client, "42010100100101")
    r = client.get(f"/collections/grid_district/items/{doc['id']}/history")
    assert r.status_code == 404


def test_a_district_overlapping_another_is_refused(conn, district, tmp_path):
    half_over = box(X0 + D / 2, Y0, X0 + D * 1.5, Y0 + D)
    with pytest.raises(GridRejected) as err:
        import_grid(
            conn, write(tmp_path, "d2", [("420102", "neighbour", half_over)]), "district", SETTINGS
        )
    assert "overlaps district 420101" in err.value.report.fatal[0].message
    conn.rollback()
