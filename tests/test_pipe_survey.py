"""Survey tables (物探点号 points + lines) read into a NetworkData, with the CJJ 61 checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from pyproj import Transformer
from shapely.geometry import Point

from pipelines.codes import node_code, node_kind, parse_class, segment_code
from pipelines.importers.survey import read_survey
from pipelines.model import Finding, NetworkData
from twin.errors import InvalidData, InvalidParameter

POINTS = """物探点号,X坐标,Y坐标,地面高程,特征,附属物,阀门状态,备注
J1,3515000,500000,20.00,,阀门,关,北门
J2,3515000,500050,20.10,三通,,,
J3,3515050,500050,20.20,,消防栓,,
J4,3515000,500100,20.30,弯头,,,
"""
LINES = (
    "起点点号,终点点号,管径,材质,埋设方式,埋设年代,权属单位,状态,"
    "起点埋深,终点埋深,起点高程,终点高程,管线类别,道路\n"
    """J1,J2,DN300,球墨铸铁,直埋,2009-05,水务集团,0,1.20,1.20,18.80,18.90,JS,长江路
J2,J3,Φ150,PE,ZM,2010,水务集团,在用,1.20,1.00,18.90,19.20,给水,长江路
J2,J4,800X600,ZT,GK,2011,水务集团,废弃,1.20,1.40,18.90,18.90,给水,
"""
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def read(
    tmp_path: Path, points: str, lines: str, crs: str = "EPSG:4548", **kwargs: Any
) -> NetworkData:
    return read_survey(
        write(tmp_path / "points.csv", points),
        write(tmp_path / "lines.csv", lines),
        crs=crs,
        **kwargs,
    )


def find(data: NetworkData, kind: str) -> list[Finding]:
    return [f for f in data.findings if f.kind == kind]


def by_id(items: list, key: str) -> dict:
    return {getattr(i, key): i for i in items}


def test_survey_builds_nodes_and_segments_with_attributes(tmp_path: Path) -> None:
    data = read(tmp_path, POINTS, LINES)
    assert data.findings == []
    assert data.crs == "EPSG:4548"
    nodes = by_id(data.nodes, "node_id")
    assert set(nodes) == {"J1", "J2", "J3", "J4"}
    assert nodes["J1"].kind == "valve" and nodes["J1"].valve_state == "closed"
    assert nodes["J1"].attrs == {"备注": "北门", "appurtenance": "阀门"}
    assert nodes["J2"].kind == "junction" and nodes["J2"].attrs["feature"] == "三通"
    assert nodes["J2"].valve_state is None
    assert nodes["J3"].kind == "hydrant"
    assert nodes["J4"].kind == "junction"
    assert nodes["J1"].ground_elev_m == pytest.approx(20.0)
    assert nodes["J1"].invert_m == pytest.approx(18.8)

    segs = by_id(data.segments, "pipe_id")
    assert list(segs) == ["J1-J2", "J2-J3", "J2-J4"]
    main = segs["J1-J2"]
    assert (main.from_node, main.to_node) == ("J1", "J2")
    assert main.coords == [(500000.0, 3515000.0), (500050.0, 3515000.0)]
    assert main.diameter_mm == 300 and main.section is None
    assert main.material == "QM" and main.laying == "ZM"
    assert main.year_laid == 2009 and main.owner == "水务集团" and main.state == "在用"
    assert main.start_depth_m == pytest.approx(1.2) and main.end_invert_m == pytest.approx(18.9)
    assert main.utility == "JS" and main.subclass is None
    assert main.flow is None  # pressure network: no fixed direction
    assert main.attrs == {"道路": "长江路"}
    assert segs["J2-J3"].diameter_mm == 150 and segs["J2-J3"].material == "PE"
    box = segs["J2-J4"]
    assert box.section == "800x600" and box.diameter_mm is None
    assert (box.material, box.laying, box.state) == ("ZT", "GK", "废弃")
    assert box.attrs == {"道路": None}
    assert main.feature_code == "51001000"
    assert nodes["J1"].feature_code == "51002201"  # fitting 01 valve
    assert nodes["J2"].feature_code == "51002101"  # feature 01 三通


def test_gb18030_csv_with_chinese_headers(tmp_path: Path) -> None:
    points = write(tmp_path / "p.csv", POINTS, "gb18030")
    lines = write(tmp_path / "l.csv", LINES, "gb18030")
    with pytest.raises(UnicodeDecodeError):
        points.read_bytes().decode("utf-8")
    data = read_survey(points, lines, crs="EPSG:4548")
    assert data.findings == []
    nodes = by_id(data.nodes, "node_id")
    assert nodes["J1"].kind == "valve" and nodes["J1"].attrs["备注"] == "北门"
    assert by_id(data.segments, "pipe_id")["J1-J2"].owner == "水务集团"


def test_x_is_northing_in_gauss_kruger(tmp_path: Path) -> None:
    points = "point_no,X,Y\nP1,3515000,500000\nP2,3515000,500010\n"
    lines = "start_point,end_point\nP1,P2\n"
    data = read(tmp_path, points, lines, utility="JS")
    node = by_id(data.nodes, "node_id")["P1"]
    assert (node.x, node.y) == (500000.0, 3515000.0)
    lon, lat = Transformer.from_crs(data.crs, "EPSG:4490", always_xy=True).transform(node.x, node.y)
    assert lon == pytest.approx(117.0, abs=1e-6)  # the zone's central meridian
    assert lat == pytest.approx(31.76, abs=0.01)


def test_lon_lat_columns_with_a_geographic_crs(tmp_path: Path) -> None:
    points = "点号,经度,纬度\nA,117.2272,31.8206\nB,117.2280,31.8206\n"
    data = read(tmp_path, points, "起点,终点\nA,B\n", crs="EPSG:4490", utility="RQ")
    assert by_id(data.nodes, "node_id")["A"].x == pytest.approx(117.2272)
    assert data.crs == "EPSG:4490"
    with pytest.raises(InvalidParameter, match="projected"):
        read(tmp_path, points, "起点,终点\nA,B\n", crs="EPSG:4548", utility="RQ")


def test_english_columns_sizes_and_defaults(tmp_path: Path) -> None:
    points = "id,northing,easting,fitting\nA,0,0,雨水箅\nB,0,10,检查井\nC,0,20,出水口\nD,0,30,\n"
    lines = (
        "from,to,diameter,material,year,state,flow,pipe_id\n"
        "A,B,800×600,钢筋混凝土,2009,1,,p1\n"
        "B,C,800*600,HDPE,2015.0,空管,reverse,p2\n"
        "C,D,D400,PVC,,,正向,\n"
    )
    data = read(tmp_path, points, lines, crs="EPSG:4547", subclass="YS")
    segs = by_id(data.segments, "pipe_id")
    assert list(segs) == ["p1", "p2", "C-D"]
    assert segs["p1"].section == "800x600" and segs["p2"].section == "800x600"
    assert segs["C-D"].diameter_mm == 400
    assert [s.material for s in data.segments] == ["T", "PE", "PVC"]
    assert [s.state for s in data.segments] == ["废弃", "空管", "在用"]
    assert [s.flow for s in data.segments] == ["forward", "reverse", "forward"]
    assert segs["p2"].year_laid == 2015
    assert {(s.utility, s.subclass) for s in data.segments} == {("PS", "YS")}
    assert segs["p1"].feature_code == "52011000"  # 雨水管段 (STANDARDS.md)
    nodes = by_id(data.nodes, "node_id")
    assert [nodes[k].kind for k in "ABCD"] == ["inlet", "manhole", "outfall", "junction"]
    assert nodes["A"].feature_code == "52012204"  # 雨水箅 (STANDARDS.md)


def test_class_column_and_missing_class(tmp_path: Path) -> None:
    points = "点号,X,Y\nA,0,0\nB,0,10\nC,0,20\n"
    lines = "起点,终点,类别\nA,B,YS\nB,C,污水\n"
    data = read(tmp_path, points, lines)
    assert [(s.utility, s.subclass) for s in data.segments] == [("PS", "YS"), ("PS", "WS")]
    with pytest.raises(InvalidParameter, match="pass the utility class"):
        read(tmp_path, points, "起点,终点\nA,B\n")
    with pytest.raises(InvalidParameter, match="unknown utility class"):
        read(tmp_path, points, "起点,终点\nA,B\n", utility="water-ish")


def test_missing_columns_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match="物探点号"):
        read(tmp_path, "X,Y\n0,0\n", "起点,终点\nA,B\n", utility="JS")
    with pytest.raises(InvalidData, match="终点点号"):
        read(tmp_path, "点号,X,Y\nA,0,0\n", "起点\nA\n", utility="JS")
    with pytest.raises(InvalidData, match="coordinate"):
        read(tmp_path, "点号,H\nA,0\n", "起点,终点\nA,B\n", utility="JS")


def test_survey_errors(tmp_path: Path) -> None:
    points = (
        "物探点号,X,Y,地面高程\n"
        "A,0,0,10\n"  # line 2
        "B,0,10,10\n"  # 3
        "C,0,20,abc\n"  # 4: bad ground elevation
        "B,5,5,10\n"  # 5: repeated point number
        "D,,30,10\n"  # 6: no coordinates
        "E,0,x,10\n"  # 7: unusable coordinates
    )
    lines = (
        "起点点号,终点点号,管径,材质,状态,管线类别,起点埋深\n"
        "A,B,300,PE,0,JS,1.0\n"  # 2
        "A,A,300,PE,0,JS,1.0\n"  # 3: same ends
        "B,Z,300,PE,0,JS,1.0\n"  # 4: unknown point
        "B,A,300,PE,0,JS,1.0\n"  # 5: duplicate of row 2, reversed
        ",C,300,PE,0,JS,1.0\n"  # 6: no start
        "B,C,3OO,PE,0,JS,1.O\n"  # 7: bad size and depth
        "C,A,300,XYZ,7,QQQ,\n"  # 8: unknown material, state, class
        "C,D,300,PE,0,JS,\n"  # 9: point without coordinates
    )
    data = read(tmp_path, points, lines)
    assert all(f.severity == "error" for f in data.findings)

    (dup,) = find(data, "duplicate_point")
    assert (dup.row, dup.ref, dup.table) == (5, "B", "points")
    assert "row 3" in dup.message
    no_xy = find(data, "no_coordinates")
    assert [(f.row, f.ref) for f in no_xy] == [(6, "D"), (7, "E")]
    assert "'x'" in no_xy[1].message
    (same,) = find(data, "same_ends")
    assert (same.row, same.ref, same.table) == (3, "A-A", "lines")
    (unknown,) = find(data, "unknown_point")
    assert (unknown.row, unknown.ref) == (4, "B-Z") and "Z" in unknown.message
    (twice,) = find(data, "duplicate_line")
    assert twice.row == 5 and "row 2" in twice.message and "A-B" in twice.message
    (no_start,) = find(data, "missing_end")
    assert no_start.row == 6 and "start" in no_start.message
    bad = find(data, "bad_number")
    assert [(f.row, f.table) for f in bad] == [(4, "points"), (7, "lines"), (7, "lines")]
    assert "地面高程" in bad[0].message and "'abc'" in bad[0].message
    assert any("管径" in f.message and "'3OO'" in f.message for f in bad)
    assert any("起点埋深" in f.message and "'1.O'" in f.message for f in bad)
    (material,) = find(data, "unknown_material")
    assert material.row == 8 and "'XYZ'" in material.message and "QM 球墨铸铁" in material.message
    (state,) = find(data, "unknown_state")
    assert state.row == 8 and "0 在用" in state.message
    (cls,) = find(data, "unknown_class")
    assert cls.row == 8 and "'QQQ'" in cls.message and "JS 给水" in cls.message
    (unplaced,) = find(data, "unplaced_point")
    assert unplaced.row == 9 and "D" in unplaced.message

    # Built where possible: the same-ends line and the reversed duplicate are kept; lines
    # naming an unknown or unplaced point, or missing an end or a class, are not.
    assert [s.pipe_id for s in data.segments] == ["A-B", "A-A", "B-A", "B-C"]  # C-A: no class
    assert find(data, "missing_class") == []
    assert {n.node_id for n in data.nodes} == {"A", "B", "C"}
    assert by_id(data.segments, "pipe_id")["B-C"].diameter_mm is None


def test_elevation_warnings(tmp_path: Path) -> None:
    points = "点号,X,Y,地面高程\nA,0,0,20.00\nB,0,10,20.00\nC,0,20,20.00\n"
    lines = (
        "起点,终点,起点埋深,终点埋深,起点高程,终点高程\n"
        "A,B,1.00,1.00,19.00,18.90\n"  # B end: 1.00 + 18.90 = 19.90 ≠ 20.00
        "B,C,1.05,1.00,18.95,19.00\n"  # 0.05 from line 2 at B: within tolerance
        "C,A,1.00,1.00,19.00,19.00\n"
    )
    data = read(tmp_path, points, lines, utility="JS")
    assert data.errors == []
    (mismatch,) = find(data, "elevation_mismatch")
    assert (mismatch.row, mismatch.ref, mismatch.severity) == (2, "A-B", "warning")
    assert "20.000" in mismatch.message and "19.900" in mismatch.message
    assert "B" in mismatch.message
    assert find(data, "point_elevations_differ") == []

    lines_b = lines.replace("B,C,1.05,1.00,18.95", "B,C,1.00,1.00,19.00")
    data = read(tmp_path, points, lines_b, utility="JS")
    (differ,) = find(data, "point_elevations_differ")
    assert (differ.row, differ.ref, differ.table) == (3, "B", "points")
    assert "A-B 18.900" in differ.message and "B-C 19.000" in differ.message
    assert find(data, "runs_uphill") == []

    # A wider tolerance accepts both.
    data = read(tmp_path, points, lines_b, utility="JS", elevation_tolerance_m=0.2)
    assert data.findings == []


def test_gravity_lines_running_uphill(tmp_path: Path) -> None:
    points = "点号,X,Y\nA,0,0\nB,0,10\nC,0,20\n"
    lines = (
        "起点,终点,起点管底高程,终点管底高程,流向\n"
        "A,B,10.0,10.5,\n"  # forward by default: rises 0.5 m
        "B,C,10.5,10.0,反向\n"  # reverse: flows C -> B, rises 0.5 m
        "C,A,10.0,9.0,\n"  # fine
    )
    data = read(tmp_path, points, lines, subclass="WS")
    uphill = find(data, "runs_uphill")
    assert [(f.row, f.ref, f.severity) for f in uphill] == [
        (2, "A-B", "warning"),
        (3, "B-C", "warning"),
    ]
    assert "0.500" in uphill[0].message
    assert [s.flow for s in data.segments] == ["forward", "reverse", "forward"]
    # Gravity networks do not require one elevation per point.
    assert find(data, "point_elevations_differ") == []
    assert by_id(data.nodes, "node_id")["B"].invert_m == pytest.approx(10.5)


def test_points_from_a_geopackage(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {"point_no": ["A", "B"], "fitting": ["调压箱", None]},
        geometry=[Point(500000, 3515000), Point(500030, 3515040)],
        crs="EPSG:4548",
    )
    frame.to_file(tmp_path / "p.gpkg", driver="GPKG", engine="pyogrio")
    lines = write(tmp_path / "l.csv", "start,end,material\nA,B,钢\n")
    data = read_survey(tmp_path / "p.gpkg", lines, crs="EPSG:4548", utility="RQ")
    nodes = by_id(data.nodes, "node_id")
    assert nodes["A"].kind == "regulator" and (nodes["B"].x, nodes["B"].y) == (500030, 3515040)
    assert data.segments[0].material == "G"
    with pytest.raises(InvalidParameter, match="pass the file's CRS"):
        read_survey(tmp_path / "p.gpkg", lines, crs="EPSG:4547", utility="RQ")


@pytest.mark.skipif("XLSX" not in pyogrio.list_drivers(), reason="GDAL has no XLSX driver")
def test_xlsx_tables(tmp_path: Path) -> None:
    if "w" not in pyogrio.list_drivers()["XLSX"]:
        pytest.skip("GDAL cannot write XLSX here")
    points = pd.DataFrame(
        {
            "物探点号": ["1", "2"],
            "X坐标": [3515000.0, 3515000.0],
            "Y坐标": [500000.0, 500020.0],
            "附属物": ["水表", ""],
        }
    )
    lines = pd.DataFrame(
        {
            "起点点号": ["1", "1"],
            "终点点号": ["2", "9"],
            "管径": ["DN100", "DN100"],
            "埋设年代": [2012, 2012],
        }
    )
    pyogrio.write_dataframe(points, tmp_path / "p.xlsx", driver="XLSX")
    pyogrio.write_dataframe(lines, tmp_path / "l.xlsx", driver="XLSX")
    data = read_survey(tmp_path / "p.xlsx", tmp_path / "l.xlsx", crs="EPSG:4548", utility="JS")
    nodes = by_id(data.nodes, "node_id")
    assert nodes["1"].kind == "meter" and nodes["1"].x == 500000.0
    (seg,) = data.segments
    assert (seg.pipe_id, seg.diameter_mm, seg.year_laid) == ("1-2", 100, 2012)
    (unknown,) = find(data, "unknown_point")
    assert unknown.row == 3  # header is row 1


def test_feature_codes() -> None:
    assert segment_code("PS", "YS") == "52011000"
    assert node_code("PS", "YS", "inlet") == "52012204"
    assert node_code("JS", "SS", "hydrant") == "51022202"
    assert node_code("JS", None, "valve") == "51002201"
    assert node_code("RQ", "TR", "junction", "四通") == "53032102"
    assert node_code("RQ", "TR", "junction") == "53032100"
    assert node_code("XX", None, "valve") is None and segment_code("XX", None) is None


def test_vocabularies() -> None:
    assert parse_class("雨水") == ("PS", "YS")
    assert parse_class("ws") == ("PS", "WS")
    assert parse_class("燃气管线") == ("RQ", None)
    assert parse_class("牛奶") is None
    assert node_kind("阀门井", None) == "valve"
    assert node_kind(None, "三通") == "junction"
    assert node_kind("标石", None) == "fitting"
    assert node_kind("调压箱", "三通") == "regulator"
