"""City components: the class table, codes and their sequences, survey-file import, sample city."""

from __future__ import annotations

import csv
import datetime as dt
import threading
from importlib import resources
from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pyogrio
import pytest
from conftest import fresh_database
from pyproj import Geod
from shapely.geometry import box
from typer.testing import CliRunner

from cli import app
from components.classes import class_names, standard_classes, sync_classes
from components.codes import advance_past, code_problem, next_codes, split_code
from components.importer import NO_GRID, ComponentsRejected, import_components
from grid.store import import_grid, import_grid_folder
from sample_data import generate
from twin.errors import InvalidData
from twin.settings import ComponentSettings, GridSettings

SETTINGS = ComponentSettings()
runner = CliRunner()
# A synthetic district (440106) of 2 × 2 unit grids, each D/2 degrees square.
X0, Y0, D = 113.0, 23.0, 0.01
DISTRICT, COMMUNITY = "440106", "440106001001"
UNITS = {f"{COMMUNITY}{i:02d}" for i in range(1, 5)}
SURVEY_HEADER = [
    "ObjID",
    "ObjName",
    "DeptCode1",
    "DeptName1",
    "DeptCode2",
    "DeptName2",
    "DeptCode3",
    "DeptName3",
    "BGID",
    "ObjState",
    "ORDate",
    "CHDate",
    "DataSource",
    "Note",
    "Material",
    "lon",
    "lat",
]


@pytest.fixture(scope="module")
def pg_url(server_url: str):
    """A database of this module's own: the grid, components and the `components` collection
    loaded here must not change what other modules count in the shared session database."""
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def classes(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        return sync_classes(conn)


@pytest.fixture(scope="module")
def district(pg_url: str, classes: int, tmp_path_factory) -> None:
    """440106 → street 440106001 → community 440106001001 → units 01 (NW) 02 (NE) 03 04."""
    folder = tmp_path_factory.mktemp("grid")
    h = D / 2
    square = box(X0, Y0, X0 + D, Y0 + D)
    levels = [
        ("district", [(DISTRICT, square)]),
        ("street", [(f"{DISTRICT}001", square)]),
        ("community", [(COMMUNITY, square)]),
        ("unit", [(f"{COMMUNITY}{i + 1:02d}", box(*quarter(i, h))) for i in range(4)]),
    ]
    with psycopg.connect(pg_url) as conn:
        for level, cells in levels:
            path = folder / f"{level}.gpkg"
            gpd.GeoDataFrame(
                {"code": [c for c, _ in cells], "name": [c for c, _ in cells]},
                geometry=[g for _, g in cells],
                crs=4326,
            ).to_file(path, engine="pyogrio")
            import_grid(conn, path, level, GridSettings())
        conn.commit()


def quarter(i: int, h: float) -> tuple[float, float, float, float]:
    col, row = i % 2, i // 2  # west→east, north→south
    return X0 + col * h, Y0 + D - (row + 1) * h, X0 + (col + 1) * h, Y0 + D - row * h


def centre(unit: int) -> tuple[float, float]:
    """A point inside unit grid 1..4."""
    x0, y0, x1, y1 = quarter(unit - 1, D / 2)
    return round((x0 + x1) / 2, 6), round((y0 + y1) / 2, 6)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def survey_row(code: str, unit: int, **changes: object) -> list[object]:
    lon, lat = centre(unit)
    values: dict[str, object] = {
        "ObjID": code,
        "ObjName": "路灯",
        "DeptCode1": "44010601",
        "DeptName1": "天河区城市管理局",
        "DeptCode2": "44010602",
        "DeptName2": "天河区路灯管理所",
        "DeptCode3": "44010603",
        "DeptName3": "天河区市政养护中心",
        "BGID": f"{COMMUNITY}{unit:02d}",
        "ObjState": "破损",
        "ORDate": "2019/05/06",
        "CHDate": "2023-01-02",
        "DataSource": "实测",
        "Note": "灯杆倾斜",
        "Material": "铸铁",
        "lon": lon,
        "lat": lat,
    }
    values.update(changes)
    return [values[h] for h in SURVEY_HEADER]


def count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM twin.components WHERE deleted_at IS NULL").fetchone()[
        0
    ]


# --- classes -----------------------------------------------------------------------------------
def test_standard_classes_load_with_their_names(conn, classes):
    text = resources.files("components").joinpath("data", "classes.csv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert classes == len(rows) == 85
    standard = conn.execute(
        "SELECT count(*) FROM twin.component_classes WHERE NOT local AND length(class_code) = 4"
    ).fetchone()[0]
    assert standard == len(rows)
    names = class_names(conn)
    assert names["0101"] == "上水井盖" and names["0118"] == "路灯" and names["0305"] == "垃圾箱"
    row = conn.execute(
        "SELECT major, name_en, major_name_zh FROM twin.component_classes WHERE class_code='0402'"
    ).fetchone()
    assert row == ("04", "street tree", "园林绿化")
    assert sync_classes(conn) == classes  # idempotent


def test_extension_file_adds_a_local_class(conn, classes, tmp_path):
    ext = write_csv(
        tmp_path / "local.csv",
        ["class_code", "major", "name_zh", "name_en", "major_name_zh", "major_name_en"],
        [["0139", "01", "充电桩", "EV charging post", "", ""]],
    )
    assert sync_classes(conn, ext) == classes + 1
    row = conn.execute(
        "SELECT name_zh, local, major_name_zh FROM twin.component_classes WHERE class_code='0139'"
    ).fetchone()
    assert row == ("充电桩", True, "公用设施")  # the major's names come from the standard


@pytest.mark.parametrize(
    ("row", "says"),
    [
        (["139", "01", "充电桩"], "local.csv line 3: class_code '139' must have 4 digits"),
        (["0239", "01", "充电桩"], "local.csv line 3: class_code 0239 does not start with"),
        (["0139", "01", ""], "local.csv line 3: class 0139 has no name_zh"),
        (["0138", "01", "重复"], "local.csv line 3: class 0138 is already on line 2"),
    ],
)
def test_bad_extension_rows_are_named_by_file_and_line(conn, classes, tmp_path, row, says):
    ext = write_csv(
        tmp_path / "local.csv", ["class_code", "major", "name_zh"], [["0138", "01", "岗亭"], row]
    )
    with pytest.raises(InvalidData) as err:
        sync_classes(conn, ext)
    assert says in err.value.message
    assert class_names(conn)["0138"] == "治安岗亭"  # nothing of the file was loaded


def test_17_digit_mode_pads_the_minor_class():
    codes = {c.class_code: c.name_zh for c in standard_classes(17)}
    assert codes["01018"] == "路灯" and codes["03005"] == "垃圾箱"


# --- codes -------------------------------------------------------------------------------------
def test_code_problems_say_what_is_wrong():
    assert code_problem("3205080101000001", 16) is None
    assert code_problem("32050801001000001", 17) is None
    assert "has 15 digits; a component code has 16" in code_problem("320508010100001", 16)
    assert "has 16 digits; a component code has 17" in code_problem("3205080101000001", 17)
    assert "digits only" in code_problem("32050801010000A1", 16)
    assert "zero sequence" in code_problem("3205080101000000", 16)
    assert "zero major or minor class" in code_problem("3205080100000001", 16)
    assert split_code("3205820305007077", 16) == ("320582", "0305", 7077)
    assert split_code("32058203005007077", 17) == ("320582", "03005", 7077)


def test_concurrent_writers_get_distinct_consecutive_codes(pg_url, classes):
    barrier = threading.Barrier(4)
    taken: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with psycopg.connect(pg_url) as conn:
            barrier.wait()
            for _ in range(5):
                codes = next_codes(conn, "110105", "0118", n=5)
                conn.commit()
                with lock:
                    taken.extend(codes)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == len(set(taken)) == 100
    seqs = sorted(split_code(c)[2] for c in taken)
    assert seqs == list(range(1, 101))
    assert all(c.startswith("1101050118") for c in taken)


def test_sequences_move_past_given_codes_and_never_back(conn, classes):
    advance_past(conn, ["1101080305000500", "1101080305000042"])
    assert next_codes(conn, "110108", "0305") == ["1101080305000501"]
    advance_past(conn, ["1101080305000007"])
    assert next_codes(conn, "110108", "0305", n=2) == ["1101080305000502", "1101080305000503"]
    conn.rollback()


# --- survey files ------------------------------------------------------------------------------
def test_real_style_survey_file_maps_every_field(conn, district, tmp_path):
    path = write_csv(
        tmp_path / "survey.csv",
        SURVEY_HEADER,
        [
            survey_row("4401060118000007", 1),
            survey_row("4401060101000003", 2, ObjName="上水井盖", ObjState="完好"),
            survey_row("4401060305000001", 3, BGID=f"{COMMUNITY}04", ObjName="垃圾箱"),
        ],
    )
    report = import_components(conn, path, SETTINGS, mode="replace")
    assert report.loaded == 3 and not report.bad_rows and report.generated == 0
    # The wrong BGID is a warning; the unit grid comes from the location.
    assert [(w.row, w.field) for w in report.warnings] == [(4, "BGID")]
    assert f"BGID {COMMUNITY}04, but the point is in unit grid {COMMUNITY}03" in (
        report.warnings[0].reason
    )
    row = conn.execute(
        "SELECT name, class_code, status, dept_code, dept_name, owner_code, owner_name, "
        "maint_code, maint_name, unit_grid, init_date, change_date, source, note, attributes, "
        "ST_X(geom), ST_Y(geom) FROM twin.components "
        "WHERE deleted_at IS NULL AND code = '4401060118000007'"
    ).fetchone()
    assert row == (
        "路灯",
        "0118",
        "破损",
        "44010601",
        "天河区城市管理局",
        "44010602",
        "天河区路灯管理所",
        "44010603",
        "天河区市政养护中心",
        f"{COMMUNITY}01",
        dt.date(2019, 5, 6),
        dt.date(2023, 1, 2),
        "实测",
        "灯杆倾斜",
        {"Material": "铸铁"},
        *centre(1),
    )
    unit = conn.execute(
        "SELECT unit_grid FROM twin.components "
        "WHERE deleted_at IS NULL AND code = '4401060305000001'"
    ).fetchone()
    assert unit == (f"{COMMUNITY}03",)
    layer = conn.execute(
        "SELECT schema_name, table_name, geometry_type, feature_count, source_file, fields "
        "FROM twin.layers WHERE name = 'components'"
    ).fetchone()
    assert layer[:5] == ("twin", "components_current", "Point", 3, "survey.csv")
    types = {f["name"]: f["type"] for f in layer[5]}
    assert types["code"] == "text" and types["init_date"] == "date"
    assert types["version"] == "integer" and "fid" not in types and "geom" not in types


def test_rows_without_codes_get_the_next_codes_of_their_district_and_class(
    conn, district, tmp_path
):
    header = ["code", "class_code", "status", "lon", "lat"]
    outside = (X0 + 2 * D, Y0 + D / 2)  # about 1 km east of the district
    rows = [
        ["4401060203000020", "0203", "完好", *centre(1)],
        ["", "0203", "完好", *centre(2)],
        ["4401060203000011", "", "", *centre(3)],
        ["", "0203", "", *centre(4)],
        ["", "0407", "", *centre(1)],
        ["", "0407", "", *outside],
    ]
    path = write_csv(tmp_path / "new.csv", header, rows)
    with pytest.raises(ComponentsRejected) as err:
        import_components(conn, path, SETTINGS, mode="replace")
    (bad,) = err.value.report.bad_rows
    assert bad.row == 7 and "set TWIN_DISTRICT_CODE" in bad.reason
    report = import_components(
        conn, path, ComponentSettings(district_code="440100"), mode="replace"
    )
    assert report.loaded == 6 and report.generated == 4
    codes = [
        r[0]
        for r in conn.execute(
            "SELECT code FROM twin.components WHERE deleted_at IS NULL "
            "ORDER BY ST_X(geom), ST_Y(geom), code"
        ).fetchall()
    ]
    assert set(codes) == {
        "4401060203000020",
        "4401060203000011",
        "4401060203000021",  # after the highest code of the file, not the last given
        "4401060203000022",
        "4401060407000001",
        "4401000407000001",  # outside every unit grid: TWIN_DISTRICT_CODE
    }


BAD_ROWS = {
    3: ("0199", "unknown class '0199' (class_code)"),
    4: ("status", "status '好' is unknown; use one of 完好, 破损, 丢失, 废弃, 移除"),
    5: ("width", "has 15 digits; a component code has 16"),
    6: ("mismatch", "code 4401060118000031 is of class 0118, but class_code says 0305"),
    7: ("duplicate", "code 4401060118000030 repeats line 2"),
    8: ("date", "ORDate '2023-13-45' is not a date"),
    9: ("geometry", "missing required field lon"),
}


def bad_file(tmp_path: Path) -> Path:
    header = [*SURVEY_HEADER, "class_code"]
    rows = [
        survey_row("4401060118000030", 1) + ["0118"],
        survey_row("", 2) + ["0199"],
        survey_row("4401060118000032", 3, ObjState="好") + [""],
        survey_row("440106011800003", 4) + [""],
        survey_row("4401060118000031", 1) + ["0305"],
        survey_row("4401060118000030", 2) + [""],
        survey_row("4401060118000033", 3, ORDate="2023-13-45") + [""],
        survey_row("4401060118000034", 4, lon="") + [""],
        survey_row("4401060118000035", 4) + [""],
    ]
    return write_csv(tmp_path / "bad.csv", header, rows)


def test_bad_rows_load_nothing_and_each_is_named(conn, district, tmp_path):
    path = bad_file(tmp_path)
    before = count(conn)
    with pytest.raises(ComponentsRejected) as err:
        import_components(conn, path, SETTINGS, mode="replace")
    report = err.value.report
    assert count(conn) == before
    assert {b.row for b in report.bad_rows} == set(BAD_ROWS)
    for b in report.bad_rows:
        assert BAD_ROWS[b.row][1] in b.reason, (b.row, b.reason)
    assert report.row_label == "line" and "7 bad rows of 9" in err.value.message


def test_skip_invalid_loads_the_good_rows_and_append_refuses_taken_codes(conn, district, tmp_path):
    path = bad_file(tmp_path)
    report = import_components(conn, path, SETTINGS, mode="replace", skip_invalid=True)
    assert report.loaded == 2 and len(report.bad_rows) == 7
    codes = {
        r[0] for r in conn.execute("SELECT code FROM twin.components WHERE deleted_at IS NULL")
    }
    assert codes == {"4401060118000030", "4401060118000035"}
    again = write_csv(tmp_path / "again.csv", SURVEY_HEADER, [survey_row("4401060118000035", 4)])
    with pytest.raises(ComponentsRejected) as err:
        import_components(conn, again, SETTINGS)
    assert "is already in the components" in err.value.report.bad_rows[0].reason


# --- rows outside the grid ----------------------------------------------------------------------
GEOD = Geod(ellps="WGS84")
LINES = ["class_code", "name", "lon", "lat"]


def finland(tmp_path: Path, n: int = 983) -> Path:
    """Street lamps surveyed in Finland, with no codes: the file of issue 12."""
    rng = np.random.default_rng(12)
    lon, lat = rng.uniform(21.0, 30.0, n).round(6), rng.uniform(60.0, 68.0, n).round(6)
    rows = [["0118", "路灯", x, y] for x, y in zip(lon, lat, strict=True)]
    return write_csv(tmp_path / "finland.csv", LINES, rows)


def east_of_district(km: float) -> tuple[float, float]:
    """A point ``km`` east of the district's east edge, halfway up."""
    lat = Y0 + D / 2
    lon, _, _ = GEOD.fwd(X0 + D, lat, 90, km * 1000)
    return round(lon, 6), lat


def near_file(tmp_path: Path) -> Path:
    """Three lamps inside unit grids, two just outside the district, one 12 km off."""
    rows = [
        ["4401060118000101", "0118", "路灯", *centre(1)],
        ["4401060118000102", "0118", "路灯", *centre(2)],
        ["", "0118", "路灯", *centre(3)],
        ["4401060118000104", "0118", "路灯", *east_of_district(0.5)],
        ["4401060118000105", "0118", "路灯", *east_of_district(3)],
        ["4401060118000106", "0118", "路灯", *east_of_district(12)],
    ]
    return write_csv(tmp_path / "near.csv", ["code", *LINES], rows)


def test_points_in_finland_are_refused_with_the_distance_and_nothing_is_written(
    conn, district, tmp_path
):
    path = finland(tmp_path)
    before = count(conn)
    report_path = tmp_path / "report.csv"
    with pytest.raises(ComponentsRejected) as err:
        import_components(
            conn, path, ComponentSettings(district_code="341502"), report_path=report_path
        )
    report = err.value.report
    assert count(conn) == before and report.loaded == 0
    assert len(report.bad_rows) == report.total == 983
    first = report.bad_rows[0]
    assert f"km from district {DISTRICT}, farther than TWIN_COMPONENT_MAX_OUTSIDE_KM" in (
        first.reason
    )
    assert "check the CRS (--crs) and the coordinate order" in first.reason
    assert "--allow-outside" in first.reason
    # The distance is on the ground (metres on the ellipsoid), not in degrees.
    lon, lat = (float(v) for v in first.reason.split(" is ")[0].split(", "))
    _, _, metres = GEOD.inv(X0 + D, Y0 + D, lon, lat)
    km = float(first.reason.split(" is ")[1].split(" km")[0].replace(",", ""))
    assert km == pytest.approx(metres / 1000, rel=0.01) and km > 7000
    with report_path.open(encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == 983 and {line["kind"] for line in lines} == {"error"}
    assert lines[0]["line"] == "2" and "km from district 440106" in lines[0]["reason"]
    assert report.report_path == report_path


def test_allow_outside_loads_far_points_with_the_warning(conn, district, tmp_path):
    path = finland(tmp_path)
    settings = ComponentSettings(district_code="341502")
    report = import_components(conn, path, settings, mode="replace", allow_outside=True)
    assert report.loaded == 983 and not report.bad_rows and report.generated == 983
    assert len(report.outside) == 983 and report.measured_from == f"district {DISTRICT}"
    first = report.outside[0]
    assert first.row == 2 and first.code.startswith("3415020118")  # TWIN_DISTRICT_CODE
    assert first.distance_m > 7_000_000
    assert "outside every unit grid: " in first.reason(report.measured_from)
    assert count(conn) == 983


def test_rows_just_outside_the_grid_load_with_a_warning_and_counts(conn, district, tmp_path):
    path = near_file(tmp_path)
    with pytest.raises(ComponentsRejected) as err:
        import_components(conn, path, SETTINGS, mode="replace")
    (far,) = err.value.report.bad_rows
    assert far.row == 7 and "is 12.0 km from district 440106" in far.reason
    report = import_components(conn, path, SETTINGS, mode="replace", skip_invalid=True)
    assert report.loaded == 5 and [b.row for b in report.bad_rows] == [7]
    assert [(o.row, o.code) for o in report.outside] == [
        (5, "4401060118000104"),
        (6, "4401060118000105"),
    ]
    assert [o.distance_m for o in report.outside] == [
        pytest.approx(500, abs=1),
        pytest.approx(3000, abs=1),
    ]
    units = conn.execute(
        "SELECT code, unit_grid FROM twin.components WHERE deleted_at IS NULL ORDER BY code"
    ).fetchall()
    assert len(units) == 5 and sum(u is None for _, u in units) == 2
    assert ("4401060118000106", f"{COMMUNITY}03") in units  # generated, inside
    tight = ComponentSettings(component_max_outside_km=2)
    with pytest.raises(ComponentsRejected) as err:
        import_components(conn, path, tight, mode="replace")
    assert [b.row for b in err.value.report.bad_rows] == [6, 7]


def test_cli_prints_the_warning_and_writes_the_report_where_the_readme_says(
    pg_url, district, tmp_path, monkeypatch
):
    monkeypatch.setenv("TWIN_DATABASE_URL", pg_url)
    monkeypatch.setenv("COLUMNS", "200")
    report = tmp_path / "components.import-report.csv"  # the current folder (README)
    near = near_file(tmp_path)
    result = runner.invoke(app, ["components", "import", str(near), "--replace", "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "warning: 2 of 6 rows are outside every unit grid (loaded; distances from district" in (
        result.output
    )
    assert "4401060118000104" in result.output and "0.50" in result.output
    assert "report: components.import-report.csv" in result.output
    with report.open(encoding="utf-8") as fh:
        lines = [(r["line"], r["code"], r["kind"]) for r in csv.DictReader(fh)]
    assert lines == [
        ("5", "4401060118000104", "outside"),
        ("6", "4401060118000105", "outside"),
        ("7", "4401060118000106", "error"),
    ]

    monkeypatch.setenv("TWIN_DISTRICT_CODE", "341502")
    far = finland(tmp_path)
    result = runner.invoke(app, ["components", "import", str(far)])
    assert result.exit_code == 2 and "nothing was loaded" in result.output
    assert "km from district 440106, farther than TWIN_COMPONENT_MAX_OUTSIDE_KM" in result.output
    assert "report: components.import-report.csv" in result.output
    with report.open(encoding="utf-8") as fh:
        assert sum(1 for r in csv.DictReader(fh) if r["kind"] == "error") == 983
    result = runner.invoke(app, ["components", "import", str(far), "--replace", "--allow-outside"])
    assert result.exit_code == 0, result.output
    assert "warning: 983 of 983 rows are outside every unit grid" in result.output
    assert "... and 973 more in the report" in result.output
    assert "loaded 983 components" in result.output


def test_without_a_grid_the_distance_check_is_skipped_and_said(server_url, tmp_path):
    path = write_csv(
        tmp_path / "far.csv", ["code", *LINES], [["3415020118000001", "0118", "路灯", 24.9, 60.2]]
    )
    with fresh_database(server_url) as url, psycopg.connect(url) as conn:
        report = import_components(conn, path, SETTINGS, report_path=tmp_path / "r.csv")
        assert report.loaded == 1 and not report.outside and not report.bad_rows
        assert report.notes == [NO_GRID]
        assert "no grid is loaded" in (tmp_path / "r.csv").read_text("utf-8")


# --- the sample city ---------------------------------------------------------------------------
def test_sample_city_components_import_into_their_unit_grids(conn, classes, tmp_path):
    generate(tmp_path, seed=3, scale=0.1)
    import_grid_folder(conn, tmp_path, GridSettings())
    conn.commit()
    path = tmp_path / "components.gpkg"
    report = import_components(conn, path, SETTINGS, mode="replace")
    frame = pyogrio.read_dataframe(path)
    assert not report.bad_rows and report.loaded == len(frame) > 500
    assert report.generated == 0
    stored = dict(
        conn.execute(
            "SELECT code, unit_grid FROM twin.components WHERE deleted_at IS NULL"
        ).fetchall()
    )
    agree = sum(stored[c] == u for c, u in zip(frame["code"], frame["unit_grid"], strict=True))
    assert agree / len(frame) >= 0.999
    assert len(report.warnings) == len(frame) - agree
    lamp = conn.execute(
        "SELECT class_name, major, attributes FROM twin.components_current "
        "WHERE class_code = '0118' LIMIT 1"
    ).fetchone()
    assert lamp == ("路灯", "01", {})  # major and class_name come from the class table


def test_chinese_field_names_and_a_projected_crs(conn, district, tmp_path):
    """A GeoPackage in CGCS2000 Gauss-Krüger (EPSG:4547, CM 114°E) with Chinese field names."""
    lon, lat = centre(4)
    frame = gpd.GeoDataFrame(
        {
            "部件标识码": ["4401060402000001"],
            "部件名称": ["行道树"],
            "部件状态": ["丢失"],
            "主管部门": ["天河区园林绿化局"],
            "所在单元网格": [f"{COMMUNITY}04"],
            "初始日期": ["2021年3月4日"],
            "树种": ["榕树"],
        },
        geometry=gpd.points_from_xy([lon], [lat]),
        crs=4326,
    ).to_crs(4547)
    path = tmp_path / "trees.gpkg"
    frame.to_file(path, engine="pyogrio")
    report = import_components(conn, path, SETTINGS, mode="replace")
    assert report.loaded == 1 and not report.warnings and report.source_crs == "EPSG:4547"
    row = conn.execute(
        "SELECT name, status, dept_name, unit_grid, init_date, attributes, ST_X(geom), ST_Y(geom) "
        "FROM twin.components_current WHERE code = '4401060402000001'"
    ).fetchone()
    assert row[:6] == (
        "行道树",
        "丢失",
        "天河区园林绿化局",
        f"{COMMUNITY}04",
        dt.date(2021, 3, 4),
        {"树种": "榕树"},
    )
    assert row[6:] == pytest.approx((lon, lat), abs=1e-7)
