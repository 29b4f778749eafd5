"""EPANET .inp reader: sections, units, valve/pump splits, affine placement, isolation valves
and the line-numbered errors. No database needed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pyproj import Geod

from pipelines.importers.epanet import parse_affine, read_inp, read_valve_layer
from pipelines.model import NetworkData, Node, Segment
from twin.errors import InvalidData, InvalidParameter

DATA = Path(__file__).resolve().parent / "data" / "pipelines" / "epanet"
LOOPED = DATA / "looped.inp"
CONTROLS = DATA / "controls.inp"  # a PRV, a closed FCV and a TCV among the pipes
CONTROLS_CSV = DATA / "controls_valves.csv"  # its isolation valves (link,node)

# A small valid network used as the base of the error cases; line numbers matter below.
MINIMAL = """\
[JUNCTIONS]
J1 10
J2 11
J3 12
[PIPES]
P1 J1 J2 100 200 100
P2 J2 J3 100 200 100
[COORDINATES]
J1 0 0
J2 100 0
J3 200 0
[OPTIONS]
UNITS LPS
"""


def write(tmp_path: Path, text: str, name: str = "net.inp") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def nodes_by_id(net: NetworkData) -> dict[str, Node]:
    return {n.node_id: n for n in net.nodes}


def segs_by_id(net: NetworkData) -> dict[str, Segment]:
    return {s.pipe_id: s for s in net.segments}


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(InvalidData) as info:
        read_inp(write(tmp_path, text), crs="EPSG:3857")
    return info.value.message


# --------------------------------------------------------------------------- content


def test_looped_network_nodes_and_order():
    net = read_inp(LOOPED, crs="EPSG:3857")
    assert net.crs == "EPSG:3857"
    assert net.source == "looped.inp"
    assert [n.node_id for n in net.nodes] == [
        "J1",
        "J2",
        "J3",
        "J4",
        "J5",
        "J6",
        "R1",
        "T1",
        "PU1",
        "V1",
    ]
    kinds = [n.kind for n in net.nodes]
    assert kinds.count("junction") == 6
    assert kinds[6:] == ["reservoir", "tank", "pump_station", "control_valve"]
    nodes = nodes_by_id(net)
    j2 = nodes["J2"]
    assert (j2.x, j2.y) == (100.0, 0.0)
    assert j2.invert_m == 12.0
    assert j2.attrs["elevation_m"] == 12.0 and j2.attrs["demand"] == 1.5
    assert j2.attrs["pattern"] == "PAT1"
    assert nodes["J6"].attrs["elevation_m"] == 10.5  # the trailing comment is not a field
    assert nodes["R1"].attrs["head_m"] == 50.0
    tank = nodes["T1"]
    assert tank.invert_m == 30.0
    assert tank.attrs["elevation_m"] == 30.0 and tank.attrs["max_level_m"] == 6.0
    assert tank.attrs["diameter_m"] == 12.0
    assert net.findings == []


def test_looped_network_segments():
    net = read_inp(LOOPED, crs="EPSG:3857", utility="JS", subclass="SS")
    assert [s.pipe_id for s in net.segments] == [
        "P1",
        "P2",
        "P3",
        "P4",
        "P5",
        "P6",
        "P7",
        "PU1-1",
        "PU1-2",
        "V1-1",
        "V1-2",
    ]
    segs = segs_by_id(net)
    p1 = segs["P1"]
    assert (p1.from_node, p1.to_node) == ("J1", "J2")
    assert p1.coords == [(0.0, 0.0), (100.0, 0.0)]
    assert p1.diameter_mm == 200.0 and p1.utility == "JS" and p1.subclass == "SS"
    assert p1.attrs["length_m"] == 100.0 and p1.attrs["roughness"] == 100.0
    assert segs["P6"].attrs["minor_loss"] == 0.5
    assert segs["P3"].attrs["status"] == "CV"
    assert segs["P1"].attrs["status"] == "Open"
    assert segs["P7"].attrs["status"] == "Closed"  # from [STATUS]


def test_vertices_are_kept_in_order():
    p2 = segs_by_id(read_inp(LOOPED, crs="EPSG:3857"))["P2"]
    assert p2.coords == [(100.0, 0.0), (110.0, 30.0), (110.0, 70.0), (100.0, 100.0)]


def test_valve_is_split_halfway_along_its_vertices():
    net = read_inp(LOOPED, crs="EPSG:3857")
    valve = nodes_by_id(net)["V1"]
    # J4 (0,100) -> (0,160) -> (200,160) -> J6 (200,100): 320 long, half is 100 along the top.
    assert valve.kind == "control_valve" and valve.valve_state == "open"
    assert (valve.x, valve.y) == pytest.approx((100.0, 160.0))
    assert valve.attrs["valve_type"] == "PRV" and valve.attrs["setting"] == 30.0
    segs = segs_by_id(net)
    first, second = segs["V1-1"], segs["V1-2"]
    assert (first.from_node, first.to_node) == ("J4", "V1")
    assert (second.from_node, second.to_node) == ("V1", "J6")
    assert first.coords == [(0.0, 100.0), (0.0, 160.0), (100.0, 160.0)]
    assert second.coords == [(100.0, 160.0), (200.0, 160.0), (200.0, 100.0)]
    assert first.diameter_mm == second.diameter_mm == 150.0


def test_pump_is_split_halfway():
    net = read_inp(LOOPED, crs="EPSG:3857")
    pump = nodes_by_id(net)["PU1"]
    assert pump.kind == "pump_station" and pump.valve_state is None
    assert (pump.x, pump.y) == (-50.0, 0.0)
    assert pump.attrs["pump"] == {"HEAD": "C1", "SPEED": 1.2}
    segs = segs_by_id(net)
    assert (segs["PU1-1"].from_node, segs["PU1-1"].to_node) == ("R1", "PU1")
    assert (segs["PU1-2"].from_node, segs["PU1-2"].to_node) == ("PU1", "J1")
    assert segs["PU1-1"].coords == [(-100.0, 0.0), (-50.0, 0.0)]
    assert segs["PU1-2"].diameter_mm is None


def test_control_valves_are_nodes_of_their_own_kind_with_type_and_setting():
    net = read_inp(CONTROLS, crs="EPSG:3857", isolation_valves=read_valve_layer(CONTROLS_CSV))
    nodes = nodes_by_id(net)
    prv, fcv, tcv = nodes["PRV1"], nodes["FCV1"], nodes["TCV1"]
    assert {prv.kind, fcv.kind, tcv.kind} == {"control_valve"}
    assert prv.attrs == {"valve_type": "PRV", "setting": 35.0, "minor_loss": 0.2}
    assert (prv.x, prv.y) == (150.0, 0.0) and prv.valve_state == "open"
    assert fcv.valve_state == "closed" and fcv.attrs["status"] == "Closed"  # from [STATUS]
    assert fcv.attrs["valve_type"] == "FCV" and fcv.attrs["setting"] == 4.5
    # J5 (400,0) -> (500,0) -> (500,200) -> J8 (400,200): 400 long, halfway is (500, 100)
    assert (tcv.x, tcv.y) == (500.0, 100.0) and tcv.attrs["valve_type"] == "TCV"
    # the isolation valves from the CSV stay valves, and on pipes only
    assert {n.node_id for n in net.nodes if n.kind == "valve"} == {"P2@J1", "P4@J5"}
    segs = segs_by_id(net)
    assert (segs["TCV1-1"].to_node, segs["TCV1-2"].from_node) == ("TCV1", "TCV1")
    assert segs["PRV1-1"].attrs == {"link_id": "PRV1", "link_type": "valve"}
    assert segs["PRV1-2"].diameter_mm == 300.0


@pytest.mark.parametrize(
    ("line", "attrs"),
    [
        ("V9 J1 J3 100 PSV 20", {"valve_type": "PSV", "setting": 20.0}),
        ("V9 J1 J3 100 pbv 5 0.3", {"valve_type": "PBV", "setting": 5.0, "minor_loss": 0.3}),
        ("V9 J1 J3 100 GPV C7", {"valve_type": "GPV", "setting": "C7"}),  # a head-loss curve
        ("V9 J1 J3 100 PCV 40 0 C2", {"valve_type": "PCV", "setting": 40.0, "curve": "C2"}),
    ],
)
def test_every_control_valve_type_is_read_with_its_setting(tmp_path, line, attrs):
    text = MINIMAL.replace("[COORDINATES]", f"[VALVES]\n{line}\n[COORDINATES]")
    valve = nodes_by_id(read_inp(write(tmp_path, text), crs="EPSG:3857"))["V9"]
    assert valve.kind == "control_valve" and valve.valve_state == "open"
    assert attrs.items() <= valve.attrs.items()
    assert (valve.x, valve.y) == (100.0, 0.0)  # halfway from J1 (0,0) to J3 (200,0)


def test_a_control_valve_setting_from_status_overrides_the_file(tmp_path):
    text = MINIMAL.replace("[COORDINATES]", "[VALVES]\nV9 J1 J3 100 TCV 3\n[COORDINATES]")
    valve = nodes_by_id(read_inp(write(tmp_path, text + "[STATUS]\nV9 7.5\n"), crs="EPSG:3857"))
    assert valve["V9"].attrs["status"] == "Active" and valve["V9"].attrs["setting"] == 7.5
    assert valve["V9"].valve_state == "open"


def test_closed_valve_and_pump_status(tmp_path):
    text = LOOPED.read_text().replace(" P7\tClosed", " P7 Closed\n V1 Closed\n PU1 0")
    net = read_inp(write(tmp_path, text), crs="EPSG:3857")
    nodes = nodes_by_id(net)
    assert nodes["V1"].valve_state == "closed"
    assert nodes["PU1"].attrs["status"] == "Closed" and nodes["PU1"].attrs["speed"] == 0.0


def test_crlf_bom_and_tabs_read_the_same(tmp_path):
    text = LOOPED.read_text()
    path = tmp_path / "crlf.inp"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert read_inp(path, crs="EPSG:3857").nodes == read_inp(LOOPED, crs="EPSG:3857").nodes
    assert read_inp(path, crs="EPSG:3857").segments == read_inp(LOOPED, crs="EPSG:3857").segments


def test_utf16_file(tmp_path):
    path = tmp_path / "utf16.inp"
    path.write_bytes(MINIMAL.replace("\n", "\r\n").encode("utf-16"))
    assert [n.node_id for n in read_inp(path, crs="EPSG:3857").nodes] == ["J1", "J2", "J3"]


def test_gb18030_file_with_chinese_ids(tmp_path):
    text = MINIMAL.replace("J1", "节点1").replace("P1", "管1") + "[TITLE]\n供水管网\n"
    path = tmp_path / "gbk.inp"
    path.write_bytes(text.encode("gb18030"))
    net = read_inp(path, crs="EPSG:3857")
    assert net.nodes[0].node_id == "节点1"
    assert segs_by_id(net)["管1"].from_node == "节点1"


def test_quoted_ids_and_lower_case_sections(tmp_path):
    text = MINIMAL.replace("[PIPES]", "[pipes]").replace("P1 J1", '"pipe one" J1')
    net = read_inp(write(tmp_path, text), crs="EPSG:3857")
    assert net.segments[0].pipe_id == "pipe one"


def test_skipped_sections_are_accepted(tmp_path):
    skipped = (
        "DEMANDS PATTERNS CURVES CONTROLS RULES ENERGY EMITTERS QUALITY SOURCES REACTIONS "
        "MIXING TIMES REPORT LABELS BACKDROP TAGS LEAKAGE"
    ).split()
    text = MINIMAL + "".join(f"[{s.lower()}]\n anything 1 2 3\n" for s in skipped)
    net = read_inp(write(tmp_path, text + "[END]\n[NONSENSE]\n"), crs="EPSG:3857")
    assert len(net.nodes) == 3 and len(net.segments) == 2


# --------------------------------------------------------------------------- units


GPM_NET = """\
[JUNCTIONS]
A 100 5
B 90
[RESERVOIRS]
R 200
[TANKS]
T 120 10 5 20 50 1000
[PIPES]
P1 A B 1000 12 130
P2 R A 500 8 130
[VALVES]
V B T 6 TCV 3
[COORDINATES]
A 0 0
B 1000 0
R -500 0
T 1000 500
"""


@pytest.mark.parametrize("options", ["[OPTIONS]\nUNITS GPM\n", "[OPTIONS]\nunits cfs\n", ""])
def test_us_customary_units_are_converted(tmp_path, options):
    net = read_inp(write(tmp_path, options + GPM_NET), crs="EPSG:3857")
    segs, nodes = segs_by_id(net), nodes_by_id(net)
    assert segs["P1"].diameter_mm == pytest.approx(304.8)  # 12 in
    assert segs["P1"].attrs["length_m"] == pytest.approx(304.8)  # 1000 ft
    assert segs["P2"].diameter_mm == pytest.approx(203.2)
    assert segs["V-1"].diameter_mm == pytest.approx(152.4)
    assert nodes["A"].invert_m == pytest.approx(30.48)
    assert nodes["A"].attrs["demand"] == 5.0  # flows stay in the file's flow units
    assert nodes["R"].attrs["head_m"] == pytest.approx(60.96)
    assert nodes["T"].attrs["diameter_m"] == pytest.approx(15.24)
    assert nodes["T"].attrs["min_volume_m3"] == pytest.approx(1000 * 0.3048**3)
    assert nodes["A"].x == 0.0 and nodes["B"].x == 1000.0  # map coordinates are not scaled


def test_si_units_after_the_pipes_are_not_converted(tmp_path):
    net = read_inp(write(tmp_path, GPM_NET + "[OPTIONS]\n Units CMH\n"), crs="EPSG:3857")
    assert segs_by_id(net)["P1"].diameter_mm == 12.0
    assert segs_by_id(net)["P1"].attrs["length_m"] == 1000.0


# --------------------------------------------------------------------------- affine


def test_affine_scales_and_shifts(tmp_path):
    net = read_inp(LOOPED, crs="EPSG:4547", affine=(2.0, 0.0, 500000.0, 0.0, 2.0, 3500000.0))
    nodes = nodes_by_id(net)
    assert net.crs == "EPSG:4547"
    assert (nodes["J2"].x, nodes["J2"].y) == (500200.0, 3500000.0)
    assert (nodes["J3"].x, nodes["J3"].y) == (500200.0, 3500200.0)
    assert (nodes["V1"].x, nodes["V1"].y) == pytest.approx((500200.0, 3500320.0))
    assert segs_by_id(net)["P2"].coords[1] == (500220.0, 3500060.0)


def test_affine_rotation_uses_rasterio_order(tmp_path):
    # x' = a*x + b*y + c, y' = d*x + e*y + f with a quarter turn: (x, y) -> (-y, x)
    net = read_inp(LOOPED, crs="EPSG:3857", affine=(0.0, -1.0, 10.0, 1.0, 0.0, 20.0))
    j3 = nodes_by_id(net)["J3"]
    assert (j3.x, j3.y) == (-90.0, 120.0)
    j2 = nodes_by_id(net)["J2"]
    assert (j2.x, j2.y) == (10.0, 120.0)


def test_affine_to_lon_lat_measures_in_local_units():
    # Strongly anisotropic: 1 local unit = 1e-5 deg east but 1e-4 deg north. The halfway point
    # is measured in local units, so it is still (100, 160) locally.
    net = read_inp(LOOPED, crs="EPSG:4490", affine=(1e-5, 0.0, 117.0, 0.0, 1e-4, 31.0))
    valve = nodes_by_id(net)["V1"]
    assert valve.x == pytest.approx(117.0 + 100 * 1e-5)
    assert valve.y == pytest.approx(31.0 + 160 * 1e-4)


def test_parse_affine():
    assert parse_affine(" 0.5, 0, 100, 0, -0.5 ,200") == (0.5, 0.0, 100.0, 0.0, -0.5, 200.0)
    with pytest.raises(InvalidParameter, match="six numbers"):
        parse_affine("1,0,0,0,1")
    with pytest.raises(InvalidParameter, match="value e = 'x' is not a number"):
        parse_affine("1,0,0,0,x,0")
    with pytest.raises(InvalidParameter, match="singular"):
        parse_affine("1,2,0,2,4,0")
    with pytest.raises(InvalidParameter, match="not a number"):
        parse_affine("1,0,0,0,nan,0")


def test_bad_arguments(tmp_path):
    with pytest.raises(InvalidParameter, match="utility"):
        read_inp(LOOPED, utility="XX")
    with pytest.raises(InvalidParameter, match="subclass"):
        read_inp(LOOPED, utility="JS", subclass="YS")
    with pytest.raises(InvalidParameter, match="crs"):
        read_inp(LOOPED, crs="not a crs")
    with pytest.raises(InvalidParameter, match="valve_offset_m"):
        read_inp(LOOPED, valve_offset_m=0)
    with pytest.raises(InvalidParameter, match="file not found"):
        read_inp(tmp_path / "missing.inp")


# --------------------------------------------------------------------------- isolation valves


def test_isolation_valve_at_the_start_of_a_pipe():
    net = read_inp(LOOPED, crs="EPSG:3857", isolation_valves=[("P1", "J1")])
    nodes, segs = nodes_by_id(net), segs_by_id(net)
    valve = nodes["P1@J1"]
    assert valve.kind == "valve" and valve.valve_state == "open"
    assert (valve.x, valve.y) == (1.0, 0.0)
    stub, rest = segs["P1@J1"], segs["P1"]
    assert (stub.from_node, stub.to_node) == ("J1", "P1@J1")
    assert stub.coords == [(0.0, 0.0), (1.0, 0.0)]
    assert (rest.from_node, rest.to_node) == ("P1@J1", "J2")
    assert rest.coords == [(1.0, 0.0), (100.0, 0.0)]
    assert stub.diameter_mm == rest.diameter_mm == 200.0
    assert stub.attrs["length_m"] == pytest.approx(1.0)
    assert rest.attrs["length_m"] == pytest.approx(99.0)
    assert stub.attrs["roughness"] == 100.0 and stub.utility == "JS"
    assert len(net.nodes) == 11 and len(net.segments) == 12
    # the stub sits just before its pipe, the valve right after the pipe's nodes
    ids = [s.pipe_id for s in net.segments]
    assert ids.index("P1@J1") + 1 == ids.index("P1")


def test_isolation_valves_at_both_ends_of_a_pipe_with_vertices():
    net = read_inp(
        LOOPED, crs="EPSG:3857", isolation_valves=[("P2", "J3"), ("P2", "J2")], valve_offset_m=2
    )
    nodes, segs = nodes_by_id(net), segs_by_id(net)
    # P2: (100,0) -> (110,30) -> (110,70) -> (100,100); the first part is sqrt(1000) long.
    ux, uy = 10 / math.sqrt(1000), 30 / math.sqrt(1000)
    start, end = nodes["P2@J2"], nodes["P2@J3"]
    assert (start.x, start.y) == pytest.approx((100 + 2 * ux, 2 * uy))
    assert (end.x, end.y) == pytest.approx((100 + 2 * ux, 100 - 2 * uy))
    first, main, last = segs["P2@J2"], segs["P2"], segs["P2@J3"]
    assert (first.from_node, first.to_node) == ("J2", "P2@J2")
    assert (main.from_node, main.to_node) == ("P2@J2", "P2@J3")
    assert (last.from_node, last.to_node) == ("P2@J3", "J3")
    assert main.coords[1:3] == [(110.0, 30.0), (110.0, 70.0)]
    assert len(main.coords) == 4 and len(first.coords) == 2 and len(last.coords) == 2
    assert last.coords[-1] == (100.0, 100.0)
    ids = [s.pipe_id for s in net.segments]
    assert ids[1:4] == ["P2@J2", "P2", "P2@J3"]
    total = 120.0  # the hydraulic length is shared out, not the drawn one
    drawn = 2 * math.sqrt(1000) + 40
    assert first.attrs["length_m"] == pytest.approx(total * 2 / drawn)
    assert main.attrs["length_m"] + 2 * first.attrs["length_m"] == pytest.approx(total)


def test_isolation_offset_is_capped_at_a_tenth_of_the_pipe():
    net = read_inp(LOOPED, crs="EPSG:3857", isolation_valves=[("P6", "T1")], valve_offset_m=20)
    valve = nodes_by_id(net)["P6@T1"]  # P6: J5 (180,0) -> T1 (230,0), 50 long
    assert (valve.x, valve.y) == pytest.approx((225.0, 0.0))


def test_isolation_offset_is_measured_after_the_affine():
    affine = (2.0, 0.0, 0.0, 0.0, 2.0, 0.0)
    net = read_inp(LOOPED, crs="EPSG:3857", affine=affine, isolation_valves=[("P1", "J2")])
    valve = nodes_by_id(net)["P1@J2"]  # P1 is 200 m long on the map
    assert (valve.x, valve.y) == pytest.approx((199.0, 0.0))


def test_isolation_offset_in_local_units_for_lon_lat_output():
    affine = (1e-5, 0.0, 117.0, 0.0, 1e-5, 31.0)
    net = read_inp(LOOPED, crs="EPSG:4326", affine=affine, isolation_valves=[("P1", "J1")])
    valve = nodes_by_id(net)["P1@J1"]
    assert (valve.x, valve.y) == pytest.approx((117.0 + 1e-5, 31.0))


def test_isolation_offset_is_geodesic_for_lon_lat_without_affine(tmp_path):
    text = MINIMAL.replace("J2 100 0", "J2 117.001 31").replace("J1 0 0", "J1 117 31")
    net = read_inp(write(tmp_path, text), isolation_valves=[("P1", "J1")], valve_offset_m=1.5)
    valve = nodes_by_id(net)["P1@J1"]
    distance = Geod(ellps="WGS84").inv(117.0, 31.0, valve.x, valve.y)[2]
    assert distance == pytest.approx(1.5, abs=1e-6)
    assert valve.y == pytest.approx(31.0)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("NOPE", "J1")], "isolation valve #1 (NOPE, J1): there is no link 'NOPE'"),
        ([("V1", "J4")], "'V1' is a PRV control valve, not a pipe; isolation valves go on pipes"),
        ([("PU1", "J1")], "'PU1' is a pump, not a pipe"),
        ([("P1", "J3")], "node 'J3' is not an end of pipe 'P1' (its ends are 'J1' and 'J2')"),
        (
            [("P1", "J1"), ("P1", "J1")],
            "isolation valve #2 (P1, J1): given twice (first isolation valve #1 (P1, J1))",
        ),
    ],
)
def test_isolation_valve_errors(pairs, expected):
    with pytest.raises(InvalidParameter) as info:
        read_inp(LOOPED, crs="EPSG:3857", isolation_valves=pairs)
    assert expected in info.value.message


def test_valve_layer_csv_as_pandas_writes_it(tmp_path):
    path = tmp_path / "valves.csv"
    path.write_text(",link,node,diameter\n0,P1,J1,200\n\n1,P1,J2,200\n2,P2,J3,150\n")
    pairs = read_valve_layer(path)
    assert [tuple(p) for p in pairs] == [("P1", "J1"), ("P1", "J2"), ("P2", "J3")]
    net = read_inp(LOOPED, crs="EPSG:3857", isolation_valves=pairs)
    assert {"P1@J1", "P1@J2", "P2@J3"} <= set(nodes_by_id(net))


def test_valve_layer_errors_name_the_csv_line(tmp_path):
    path = tmp_path / "valves.csv"
    path.write_text("link,node\nP1,J1\nP1,J9\nP1,J1\n")
    with pytest.raises(InvalidParameter) as info:
        read_inp(LOOPED, crs="EPSG:3857", isolation_valves=read_valve_layer(path))
    message = info.value.message
    assert "(P1, J9) (valves.csv line 3): node 'J9' is not an end" in message
    assert "(P1, J1) (valves.csv line 4): given twice (first" in message
    assert "valves.csv line 2" in message


def test_valve_layer_file_errors(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("pipe,junction\nP1,J1\n")
    with pytest.raises(InvalidData, match="v.csv line 1: the header needs columns"):
        read_valve_layer(path)
    path.write_text("link,node\nP1,J1\nP2,\n")
    with pytest.raises(InvalidData, match="v.csv line 3: both link and node"):
        read_valve_layer(path)


# --------------------------------------------------------------------------- errors


def test_data_before_the_first_section(tmp_path):
    message = error_of(tmp_path, "; header comment\nJ0 5\n" + MINIMAL)
    assert "net.inp line 2: data before the first [SECTION] header" in message


def test_unknown_section(tmp_path):
    message = error_of(tmp_path, MINIMAL + "[JUNCTION]\nJ9 1\n")
    assert "net.inp line 14: unknown section [JUNCTION]: did you mean [JUNCTIONS]?" in message


def test_too_few_fields(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("P2 J2 J3 100 200 100", "P2 J2 J3 100"))
    assert "net.inp line 7 [PIPES]: 4 field(s) where at least 6 are needed" in message
    assert "id node1 node2 length diameter roughness" in message


def test_bad_number_names_the_field(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("P2 J2 J3 100", "P2 J2 J3 abc"))
    assert message == "net.inp line 7 [PIPES]: length 'abc' is not a number"
    message = error_of(tmp_path, MINIMAL.replace("J3 200 0", "J3 200 1,5"))
    assert "line 11 [COORDINATES]: y '1,5' is not a number" in message


def test_duplicate_node_id(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("[PIPES]", "[TANKS]\nJ2 1 1 1 1 1\n[PIPES]"))
    assert "net.inp line 6 [TANKS]: node id 'J2' is already used on line 3 [JUNCTIONS]" in message


def test_duplicate_link_id(tmp_path):
    message = error_of(
        tmp_path, MINIMAL.replace("[COORDINATES]", "[VALVES]\nP1 J1 J3 100 TCV 1\n[COORDINATES]")
    )
    assert "net.inp line 9 [VALVES]: link id 'P1' is already used on line 6 [PIPES]" in message


def test_link_to_an_undefined_node(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("P2 J2 J3", "P2 J2 J7"))
    assert "net.inp line 7 [PIPES]: pipe 'P2': node 'J7' is not defined" in message


def test_nodes_without_coordinates_are_listed(tmp_path):
    extra = "".join(f"X{i} 1\n" for i in range(12))
    message = error_of(tmp_path, MINIMAL.replace("J3 12\n", "J3 12\n" + extra))
    assert "net.inp line 5 [JUNCTIONS]: 12 node(s) have no coordinates" in message
    assert "X0, X1, X2, X3, X4, X5, X6, X7, X8, X9 and 2 more" in message
    assert "X10" not in message


def test_unknown_valve_type(tmp_path):
    text = MINIMAL.replace("[COORDINATES]", "[VALVES]\nV1 J1 J3 100 XYZ 1\n[COORDINATES]")
    message = error_of(tmp_path, text)
    assert "net.inp line 9 [VALVES]: valve type 'XYZ' is not one of PRV, PSV" in message


def test_valve_id_that_is_also_a_node_id(tmp_path):
    text = MINIMAL.replace("[COORDINATES]", "[VALVES]\nJ2 J1 J3 100 TCV 1\n[COORDINATES]")
    message = error_of(tmp_path, text)
    assert "line 9 [VALVES]: valve 'J2' becomes a node" in message
    assert "already defined on line 3 [JUNCTIONS]" in message


def test_node_and_pipe_may_share_an_id(tmp_path):
    net = read_inp(write(tmp_path, MINIMAL.replace("P1 J1", "J1 J1")), crs="EPSG:3857")
    assert net.segments[0].pipe_id == "J1" and net.nodes[0].node_id == "J1"


def test_status_of_an_undefined_link_and_bad_units(tmp_path):
    message = error_of(
        tmp_path, MINIMAL.replace("UNITS LPS", "UNITS LITRES") + "[STATUS]\nP9 Closed\n"
    )
    assert "line 13 [OPTIONS]: UNITS 'LITRES' is not one of" in message
    assert "line 15 [STATUS]: link 'P9' is not defined" in message


def test_several_problems_are_reported_together_in_line_order(tmp_path):
    text = MINIMAL.replace("J2 11", "J2 eleven").replace("P2 J2 J3", "P2 J2 J7")
    message = error_of(tmp_path, text)
    assert message.startswith("net.inp: 2 problems in the EPANET file:")
    first = message.index("line 3 [JUNCTIONS]: elevation 'eleven' is not a number")
    second = message.index("line 7 [PIPES]: pipe 'P2': node 'J7' is not defined")
    assert first < second


def test_a_short_node_line_does_not_cascade(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("J2 11", "J2"))
    assert message == (
        "net.inp line 3 [JUNCTIONS]: 1 field(s) where at least 2 are needed: id elevation"
    )


def test_a_file_without_nodes(tmp_path):
    message = error_of(tmp_path, "[TITLE]\nnot a network\n")
    assert message.startswith("net.inp holds no nodes")


def test_coordinates_of_unknown_nodes_are_a_warning(tmp_path):
    net = read_inp(write(tmp_path, MINIMAL + "[COORDINATES]\nGHOST 1 1\n"), crs="EPSG:3857")
    assert [(f.kind, f.severity, f.row, f.ref) for f in net.findings] == [
        ("unknown_node", "warning", 15, "GHOST")
    ]


# --------------------------------------------------------------------------- speed


def lattice(rows: int, cols: int) -> str:
    """A grid network: rows*(cols-1) + (rows-1)*cols pipes, fed by one reservoir."""
    junctions = [f"N{r}_{c}\t{10 + r % 7}\t0.5" for r in range(rows) for c in range(cols)]
    coords = [f"N{r}_{c}\t{c * 50.0}\t{r * 50.0}" for r in range(rows) for c in range(cols)]
    pipes = [
        f"H{r}_{c}\tN{r}_{c}\tN{r}_{c + 1}\t50\t150\t100"
        for r in range(rows)
        for c in range(cols - 1)
    ]
    pipes += [
        f"V{r}_{c}\tN{r}_{c}\tN{r + 1}_{c}\t50\t150\t100"
        for r in range(rows - 1)
        for c in range(cols)
    ]
    return "\n".join(
        [
            "[TITLE]",
            "lattice",
            "[JUNCTIONS]",
            *junctions,
            "[RESERVOIRS]",
            "SRC\t80",
            "[PIPES]",
            *pipes,
            "[PUMPS]",
            "PMP\tSRC\tN0_0\tHEAD\tC1",
            "[COORDINATES]",
            *coords,
            "SRC\t-100\t0",
            "[OPTIONS]",
            "UNITS\tLPS",
            "[END]",
            "",
        ]
    )


def test_a_4000_pipe_lattice_is_read_whole(tmp_path):
    # how fast is for bench/ (timed assertions fail on a busy machine); this checks the content
    path = write(tmp_path, lattice(32, 64), "lattice.inp")  # 32*63 + 31*64 = 4000 pipes
    net = read_inp(path, crs="EPSG:3857", isolation_valves=[("H0_0", "N0_0")])
    assert sum(s.pipe_id[0] in "HV" and "@" not in s.pipe_id for s in net.segments) == 4000
    assert len(net.segments) == 4000 + 2 + 1  # + the pump's two halves + one stub
    assert len(net.nodes) == 32 * 64 + 1 + 1 + 1  # + reservoir, pump, isolation valve
