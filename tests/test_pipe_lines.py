"""Plain GIS pipe lines read into a NetworkData: snapping, tee splitting, node files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from pyproj import Transformer
from shapely.geometry import LineString, MultiLineString, Point

from pipelines.importers.lines import read_lines
from pipelines.model import NetworkData
from twin.errors import InvalidParameter


def gpkg(path: Path, geoms: list, crs: str | None = "EPSG:4548", **columns: Any) -> Path:
    frame = gpd.GeoDataFrame(columns or {"n": list(range(len(geoms)))}, geometry=geoms, crs=crs)
    frame.to_file(path, driver="GPKG", engine="pyogrio")
    return path


def by_id(items: list, key: str) -> dict:
    return {getattr(i, key): i for i in items}


def flat(coords: list[tuple[float, float]]) -> list[float]:
    return [v for xy in coords for v in xy]


def kinds(data: NetworkData, kind: str) -> list:
    return [f for f in data.findings if f.kind == kind]


def test_ends_within_tolerance_share_a_node(tmp_path: Path) -> None:
    path = gpkg(
        tmp_path / "l.gpkg",
        [LineString([(0, 0), (100, 0)]), LineString([(100.3, 0), (200, 0)])],
    )
    data = read_lines(path, tolerance_m=0.5, utility="JS")
    assert data.findings == []
    assert [n.node_id for n in data.nodes] == ["N1", "N2", "N3"]
    a, b = data.segments
    assert (a.pipe_id, a.from_node, a.to_node) == ("L1", "N1", "N2")
    assert (b.pipe_id, b.from_node, b.to_node) == ("L2", "N2", "N3")
    shared = by_id(data.nodes, "node_id")["N2"]
    assert (shared.x, shared.y) == pytest.approx((100.15, 0.0))
    assert a.coords[-1] == b.coords[0] == pytest.approx((100.15, 0.0))  # ends moved onto it

    apart = read_lines(path, tolerance_m=0.2, utility="JS")
    assert len(apart.nodes) == 4
    assert apart.segments[0].to_node != apart.segments[1].from_node


def test_attributes_are_matched_like_survey_lines(tmp_path: Path) -> None:
    path = gpkg(
        tmp_path / "l.gpkg",
        [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (20, 0)])],
        管线编号=["W1", None],
        管径=["DN200", "600x400"],
        材质=["球墨铸铁", "PE"],
        埋设年代=["2009-05", "2015"],
        道路=["长江路", "长江路"],
    )
    data = read_lines(path, utility="JS", subclass="JP")
    w1, l2 = data.segments
    assert (w1.pipe_id, l2.pipe_id) == ("W1", "L2")
    assert (w1.diameter_mm, w1.material, w1.year_laid) == (200, "QM", 2009)
    assert (l2.section, l2.material) == ("600x400", "PE")
    assert w1.attrs == {"道路": "长江路"}
    assert (w1.utility, w1.subclass, w1.flow) == ("JS", "JP", None)
    assert w1.feature_code == "51041000"
    assert data.crs == "EPSG:4548"


def test_tee_splits_the_main(tmp_path: Path) -> None:
    path = gpkg(
        tmp_path / "l.gpkg",
        [LineString([(0, 0), (30, 0), (100, 0)]), LineString([(60, 0.3), (60, 40)])],
        pipe_id=["M", "B"],
        material=["PE", "G"],
    )
    data = read_lines(path, utility="PS")
    segs = by_id(data.segments, "pipe_id")
    assert set(segs) == {"M-1", "M-2", "B"}
    tee = segs["B"].from_node
    assert segs["M-1"].to_node == tee == segs["M-2"].from_node
    assert flat(segs["M-1"].coords) == pytest.approx([0, 0, 30, 0, 60, 0.3])
    assert flat(segs["M-2"].coords) == pytest.approx([60, 0.3, 100, 0])
    assert segs["M-2"].material == "PE" and segs["M-2"].flow == "forward"  # gravity default

    unsplit = read_lines(path, utility="PS", split_at_tees=False)
    assert {s.pipe_id for s in unsplit.segments} == {"M", "B"}


def test_node_file_attaches_and_splits(tmp_path: Path) -> None:
    lines = gpkg(
        tmp_path / "l.gpkg",
        [LineString([(0, 0), (100, 0)]), LineString([(100, 0), (100, 80)])],
    )
    points = gpkg(
        tmp_path / "n.gpkg",
        [Point(0.2, 0.1), Point(40, 0.4), Point(100, 90), Point(100, 80)],
        id=["V1", "H7", "FAR", "S1"],
        kind=["阀门", "消防栓", "valve", "plant"],
        valve_state=["关", None, None, None],
        note=["a", "b", "c", "d"],
    )
    data = read_lines(lines, utility="JS", nodes=points)
    nodes = by_id(data.nodes, "node_id")
    assert nodes["V1"].kind == "valve" and nodes["V1"].valve_state == "closed"
    assert (nodes["V1"].x, nodes["V1"].y) == (0.0, 0.0)  # the node stays; the point names it
    assert nodes["V1"].attrs == {"note": "a", "appurtenance": "阀门"}
    assert nodes["S1"].kind == "plant"
    assert nodes["H7"].kind == "hydrant" and (nodes["H7"].x, nodes["H7"].y) == (40, 0.4)
    assert nodes["H7"].feature_code == "51002202"
    segs = by_id(data.segments, "pipe_id")
    assert set(segs) == {"L1-1", "L1-2", "L2"}
    assert (segs["L1-1"].from_node, segs["L1-1"].to_node) == ("V1", "H7")
    assert (segs["L1-2"].from_node, segs["L1-2"].to_node) == ("H7", "N2")
    assert segs["L2"].to_node == "S1"
    (far,) = kinds(data, "unattached_point")
    assert (far.severity, far.row, far.ref, far.table) == ("warning", 3, "FAR", "nodes")
    assert "10.00 m" in far.message
    assert "FAR" not in nodes


def test_self_loop_multipart_and_empty(tmp_path: Path) -> None:
    path = gpkg(
        tmp_path / "l.gpkg",
        [
            LineString([(0, 0), (10, 0), (10, 10), (0.2, 0)]),
            MultiLineString([[(50, 0), (60, 0)], [(70, 0), (80, 0)]]),
            None,
            MultiLineString([[(90, 0), (95, 0)]]),
        ],
    )
    data = read_lines(path, utility="RQ")
    (loop,) = kinds(data, "self_loop")
    assert (loop.severity, loop.row, loop.ref) == ("error", 1, "L1")
    assert "33.97 m" in loop.message  # measured between the snapped ends
    (multi,) = kinds(data, "multipart")
    assert (multi.row, multi.ref) == (2, "L2") and "2 parts" in multi.message
    (empty,) = kinds(data, "empty_geometry")
    assert empty.row == 3
    assert [s.pipe_id for s in data.segments] == ["L1", "L4"]  # a one-part multi is fine
    assert data.segments[0].from_node == data.segments[0].to_node


def test_geographic_file_snaps_in_metres(tmp_path: Path) -> None:
    to_lonlat = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)

    def lonlat(*xy: tuple[float, float]) -> LineString:
        return LineString([to_lonlat.transform(x, y) for x, y in xy])

    path = gpkg(
        tmp_path / "l.gpkg",
        [
            lonlat((521000, 3521000), (521100, 3521000)),
            lonlat((521100.3, 3521000), (521200, 3521000)),
        ],
        crs="EPSG:4490",
    )
    assert len(read_lines(path, tolerance_m=0.5, utility="JS").nodes) == 3
    data = read_lines(path, tolerance_m=0.2, utility="JS")
    assert len(data.nodes) == 4
    assert data.crs == "EPSG:4490"
    assert data.nodes[0].x == pytest.approx(117.2, abs=0.1)  # lon/lat back out
    assert data.segments[0].coords[0] == pytest.approx((data.nodes[0].x, data.nodes[0].y))


def test_crs_required_or_overridden(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="crs"):  # geopandas warns about writing no CRS
        path = gpkg(tmp_path / "l.gpkg", [LineString([(0, 0), (10, 0)])], crs=None)
    with pytest.raises(InvalidParameter, match="has no CRS"):
        read_lines(path, utility="JS")
    assert read_lines(path, utility="JS", crs="EPSG:4547").crs == "EPSG:4547"
    with pytest.raises(InvalidParameter, match="pass the utility class"):
        read_lines(path, crs="EPSG:4547")
