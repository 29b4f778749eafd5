"""Discrete grids: the Beidou grid code (GB/T 39409) and H3, pure functions, no database."""

from __future__ import annotations

import h3
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point, Polygon, box
from shapely.ops import unary_union

from grid import beidou
from grid.discrete import (
    beidou_code,
    beidou_polygon,
    h3_cell,
    h3_cells_many,
    h3_cover,
    h3_polygon,
)
from twin.errors import InvalidParameter, LimitExceeded

HEFEI = (117.2272, 31.8206)
LEVELS = range(1, 11)
LENGTHS = [4, 6, 7, 9, 11, 12, 14, 16, 18, 20]
SECOND = 1 / 3600
# Cell width and height in degrees per level, as GB/T 39409 lists them.
SIZES = {
    1: (6.0, 4.0),
    2: (0.5, 0.5),
    3: (15 / 60, 10 / 60),
    4: (1 / 60, 1 / 60),
    5: (4 * SECOND, 4 * SECOND),
    6: (2 * SECOND, 2 * SECOND),
    7: (SECOND / 4, SECOND / 4),
    8: (SECOND / 32, SECOND / 32),
    9: (SECOND / 256, SECOND / 256),
    10: (SECOND / 2048, SECOND / 2048),
}
# Far below the smallest cell (1/2048″ ≈ 1.4e-7°), far above float noise.
EPS = 1e-11


def random_points(seed: int = 7) -> list[tuple[float, float]]:
    """Points across China and in all four hemispheres, plus the extremes of the grid."""
    rng = np.random.default_rng(seed)
    china = np.column_stack([rng.uniform(73, 135, 150), rng.uniform(18, 54, 150)])
    world = np.column_stack([rng.uniform(-180, 180, 150), rng.uniform(-88, 88, 150)])
    near_origin = rng.uniform(-0.01, 0.01, (40, 2))
    edges = [(180.0, 88.0), (-180.0, -88.0), (0.0, 0.0), (-6.0, -4.0), (179.99, -87.99)]
    return [(float(x), float(y)) for x, y in np.vstack([china, world, near_origin, edges])]


POINTS = random_points()


# --- Beidou grid location code -------------------------------------------------------------


def test_hefei_is_in_level_1_cell_n50h():
    assert beidou.encode(*HEFEI, 1) == "N50H"
    assert beidou_code(*HEFEI, 1) == "N50H"


def test_hefei_codes_extend_their_parents_with_the_documented_lengths():
    codes = [beidou.encode(*HEFEI, level) for level in LEVELS]
    assert [len(c) for c in codes] == LENGTHS
    for coarse, fine in zip(codes, codes[1:], strict=False):
        assert fine.startswith(coarse)
    assert [beidou.level_of(c) for c in codes] == list(LEVELS)


def test_level_table_matches_the_standard_subdivisions():
    for level, (width, height) in SIZES.items():
        assert beidou.cell_size(level) == pytest.approx((width, height), rel=1e-12)
    for level in range(2, 11):
        spec, up = beidou.LEVELS[level], beidou.LEVELS[level - 1]
        assert (spec.cols * spec.width, spec.rows * spec.height) == (up.width, up.height)
    for level, order in beidou.CELL_ORDER.items():
        spec = beidou.LEVELS[level]
        assert spec.single
        assert sorted(order) == [(c, r) for c in range(spec.cols) for r in range(spec.rows)]


@pytest.mark.parametrize("level", LEVELS)
def test_decoded_cell_contains_the_point_and_has_the_level_size(level):
    width, height = SIZES[level]
    for lon, lat in POINTS:
        code = beidou.encode(lon, lat, level)
        west, south, east, north = beidou.decode(code)
        assert west - EPS <= lon <= east + EPS and south - EPS <= lat <= north + EPS, (code, lon)
        # Bounds are exact to a few ulps of 180°, so widths are compared absolutely.
        assert east - west == pytest.approx(width, rel=0, abs=1e-12)
        assert north - south == pytest.approx(height, rel=0, abs=1e-12)
        assert code[0] == ("S" if lat < 0 else "N")


@pytest.mark.parametrize("level", LEVELS)
def test_parent_equals_the_code_encoded_at_the_coarser_level(level):
    for lon, lat in POINTS:
        code = beidou.encode(lon, lat, level)
        for k in range(1, level + 1):
            assert beidou.parent(code, k) == beidou.encode(lon, lat, k)


@pytest.mark.parametrize("level", LEVELS)
def test_centre_and_corner_of_a_decoded_cell_encode_back_to_it(level):
    for lon, lat in POINTS:
        code = beidou.encode(lon, lat, level)
        west, south, east, north = beidou.decode(code)
        assert beidou.encode((west + east) / 2, (south + north) / 2, level) == code
        # Cells own their west edge and the edge nearer the equator (south in N, north in S),
        # except that the equator itself belongs to the northern cells.
        if east < 180 and abs(south) < 88 and abs(north) < 88 and north != 0:
            assert beidou.encode(west, north if lat < 0 else south, level) == code


@pytest.mark.parametrize("level", LEVELS)
def test_encode_many_matches_encode_and_keeps_the_shape(level):
    lons, lats = np.array(POINTS).T
    codes = beidou.encode_many(lons, lats, level)
    assert codes.shape == lons.shape
    assert codes.tolist() == [beidou.encode(x, y, level) for x, y in POINTS]
    grid = beidou.encode_many(lons[:10].reshape(2, 5), lats[:10].reshape(2, 5), level)
    assert grid.shape == (2, 5) and grid[1, 0] == codes[5]


def test_southern_hemisphere_mirrors_the_northern():
    for lon, lat in POINTS[:150]:  # China: none on a boundary
        north = beidou.encode(lon, lat, 10)
        assert beidou.encode(lon, -lat, 10) == "S" + north[1:]


def test_western_hemisphere_mirrors_the_eastern():
    for lon, lat in POINTS[:150]:
        east = beidou.encode(lon, lat, 10)
        west = beidou.encode(-lon, lat, 10)
        assert int(west[1:3]) == 61 - int(east[1:3])
        assert west[0] + west[3:] == east[0] + east[3:]


def test_sub_cells_are_counted_away_from_the_equator_and_the_prime_meridian():
    assert beidou.encode(0.1, 0.1, 3) == "N31A000"
    assert beidou.encode(-0.1, -0.1, 3) == "S30A000"
    assert beidou.encode(5.9, 3.9, 3) == "N31AB75"
    assert beidou.encode(-5.9, -3.9, 3) == "S30AB75"
    # Level 3 is one character in Z order from that corner: 0 1 / 2 3 / 4 5 (N-E, north up).
    assert [
        beidou.encode(117 + dx, 31.5 + dy, 3)[-1]
        for dx, dy in [(0.1, 0.05), (0.4, 0.05), (0.1, 0.2), (0.4, 0.2), (0.1, 0.4), (0.4, 0.4)]
    ] == list("012345")
    # Level 6 likewise: 0 1 / 2 3 inside its level-5 parent.
    x0, y0, x1, y1 = beidou.decode(beidou.encode(*HEFEI, 5))
    q = (x1 - x0) / 4
    corners = [(x0 + q, y0 + q), (x1 - q, y0 + q), (x0 + q, y1 - q), (x1 - q, y1 - q)]
    assert [beidou.encode(x, y, 6)[-1] for x, y in corners] == list("0123")


def test_grid_edges_stay_inside_the_grid():
    assert beidou.encode(180, 0, 1) == "N60A"  # the antimeridian is kept in the last column
    assert beidou.encode(-180, 0, 1) == "N01A"
    assert beidou.encode(0, 88, 1) == "N31V"
    assert beidou.encode(0, -88, 1) == "S31V"
    assert beidou.encode(0, 0, 1) == "N31A"
    assert beidou.encode(-6, 1, 1) == "N30A"  # floor(-6/6) + 31
    assert beidou.encode(117, 32, 2) == "N50I60"
    # 4.1° = 4°06′ is a level-4 boundary, but 4.1 × 3600 × 2048 is 30228479.999999996 in floats:
    # the point still belongs to the cell north of the boundary.
    assert beidou.decode(beidou.encode(117, 4.1, 4))[1] == pytest.approx(4.1, abs=1e-12)


def test_cell_polygon_is_the_decoded_rectangle_in_lon_lat_order():
    code = beidou.encode(*HEFEI, 4)
    poly = beidou_polygon(code)
    assert poly.bounds == beidou.decode(code)
    assert poly.contains(Point(*HEFEI))
    assert beidou.cell_polygon(code.lower()).equals(poly)


def test_codes_are_read_case_insensitively_and_parents_are_canonical():
    assert beidou.decode("n50h672d9") == beidou.decode("N50H672D9")
    assert beidou.parent("n50h672d9", 2) == "N50H67"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("N50", "has 3 characters"),
        ("N50H6", "has 5 characters"),
        ("N50H672D99327055304712", "has 22 characters"),
        ("X50H", "character 1 of Beidou grid code 'X50H' must be N or S"),
        ("N61H", "characters 2-3 of Beidou grid code 'N61H' must be the level-1 longitude"),
        ("N00H", "column 01..60; got '00'"),
        ("N5XH", "got '5X'"),
        ("N50W", "character 4 of Beidou grid code 'N50W' must be the level-1 latitude row A..V"),
        (
            "N50HC7",
            "character 5 of Beidou grid code 'N50HC7' must be a level-2 longitude digit 0-B",
        ),
        ("N50H68", "character 6 of Beidou grid code 'N50H68' must be a level-2 latitude digit 0-7"),
        ("N50H676", "character 7 of Beidou grid code 'N50H676' must be a level-3 cell digit 0-5"),
        ("N50H672FA", "character 8 of Beidou grid code 'N50H672FA' must be a level-4 longitude"),
        ("N50H672DA", "level-4 latitude digit 0-9; got 'A'"),
        ("N50H672D9F3", "level-5 longitude digit 0-E; got 'F'"),
        ("N50H672D9934", "character 12 of Beidou grid code 'N50H672D9934' must be a level-6 cell"),
        ("N50H672D993280", "character 13 of Beidou grid code 'N50H672D993280' must be a level-7"),
        ("N50H672D99327-", "character 14"),
    ],
)
def test_invalid_codes_say_what_is_wrong(code, message):
    with pytest.raises(InvalidParameter, match=message.replace("(", r"\(")) as err:
        beidou.decode(code)
    assert err.value.code == "invalid-parameter"


def test_invalid_inputs_say_what_is_wrong():
    with pytest.raises(InvalidParameter, match="must be a string"):
        beidou.decode(1234)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter, match="level must be 1..10; got 11"):
        beidou.encode(*HEFEI, 11)
    with pytest.raises(InvalidParameter, match="level must be 1..10; got 0"):
        beidou.encode(*HEFEI, 0)
    with pytest.raises(InvalidParameter, match="level must be an integer"):
        beidou.encode(*HEFEI, 2.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter, match="latitude 88.5 is outside ±88°"):
        beidou.encode(117, 88.5, 3)
    with pytest.raises(InvalidParameter, match="latitude -89.0 is outside ±88°"):
        beidou.encode(117, -89, 3)
    with pytest.raises(InvalidParameter, match="longitude 180.5 is outside -180..180°"):
        beidou.encode(180.5, 30, 3)
    with pytest.raises(InvalidParameter, match="longitude must be a finite number; got nan"):
        beidou.encode(float("nan"), 30, 3)
    with pytest.raises(InvalidParameter, match="longitude must be a number"):
        beidou.encode("117", 30, 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter, match="latitude at index 1 "):
        beidou.encode_many([117, 117], [30, 95], 3)
    with pytest.raises(InvalidParameter, match="same shape"):
        beidou.encode_many([117, 117], [30], 3)
    with pytest.raises(InvalidParameter, match="level 5 is finer than the code's level 3"):
        beidou.parent("N50H672", 5)


# --- H3 --------------------------------------------------------------------------------------


def test_h3_cell_contains_the_point():
    for lon, lat in POINTS[:200]:
        cell = h3_cell(lon, lat, 9)
        assert h3.get_resolution(cell) == 9
        assert h3_polygon(cell).contains(Point(lon, lat)), (cell, lon, lat)


def test_h3_polygon_is_in_lon_lat_order():
    poly = h3_polygon(h3_cell(*HEFEI, 9))
    assert poly.centroid.x == pytest.approx(HEFEI[0], abs=0.01)
    assert poly.centroid.y == pytest.approx(HEFEI[1], abs=0.01)
    assert h3_polygon(h3_cell(*HEFEI, 9).upper()).equals(poly)


def equal_area_m2(poly: Polygon) -> float:
    """Area in m² in a Lambert azimuthal equal-area projection centred on the polygon."""
    c = poly.centroid
    laea = Transformer.from_crs(
        "EPSG:4326", f"+proj=laea +lat_0={c.y} +lon_0={c.x} +datum=WGS84", always_xy=True
    )
    return shapely.transform(poly, laea.transform, interleaved=False).area


@pytest.mark.parametrize(("resolution", "km2"), [(7, 5.161), (9, 0.1053), (10, 0.01505)])
def test_h3_cell_area_is_near_the_published_average(resolution, km2):
    for lon, lat in [HEFEI, (121.47, 31.23), (116.40, 39.90), (113.26, 23.13)]:
        area = equal_area_m2(h3_polygon(h3_cell(lon, lat, resolution))) / 1e6
        assert area == pytest.approx(km2, rel=0.3)


def test_h3_cells_many_matches_h3_cell():
    lons, lats = np.array(POINTS[:50]).T
    cells = h3_cells_many(lons, lats, 8)
    assert cells.shape == (50,)
    assert cells.tolist() == [h3_cell(x, y, 8) for x, y in POINTS[:50]]


def test_h3_polygon_across_the_antimeridian_is_one_small_ring():
    poly = h3_polygon(h3_cell(180.0, 0.0, 5))
    west, _, east, _ = poly.bounds
    assert east - west < 1 and poly.is_valid


def hefei_square(side_m: float) -> Polygon:
    """A side_m square centred on Hefei, built in UTM 50N and returned in lon/lat."""
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32650", always_xy=True)
    to_lonlat = Transformer.from_crs("EPSG:32650", "EPSG:4326", always_xy=True)
    x, y = to_utm.transform(*HEFEI)
    half = side_m / 2
    square = box(x - half, y - half, x + half, y + half)
    return shapely.transform(square, to_lonlat.transform, interleaved=False)


def test_h3_cover_of_a_100m_square_is_a_handful_of_cells_covering_it():
    square = hefei_square(100)
    cells = h3_cover(square, 10)
    assert 2 <= len(cells) <= 8
    assert cells == sorted(set(cells))
    union = unary_union([h3_polygon(c) for c in cells])
    assert union.buffer(1e-9).covers(square)
    for c in cells:  # every cell is needed: each overlaps the square's interior
        assert h3_polygon(c).intersection(square).area > 0


def test_h3_cover_of_a_larger_polygon_includes_the_centre_fill():
    square = hefei_square(2000)
    cells = set(h3_cover(square, 9))
    assert set(h3.geo_to_cells(square, 9)) < cells
    assert unary_union([h3_polygon(c) for c in cells]).buffer(1e-9).covers(square)


def test_h3_cover_of_a_multipolygon_covers_each_part():
    a, b = hefei_square(100), shapely.affinity.translate(hefei_square(100), 0.05, 0.0)
    cells = h3_cover(shapely.MultiPolygon([a, b]), 10)
    union = unary_union([h3_polygon(c) for c in cells]).buffer(1e-9)
    assert union.covers(a) and union.covers(b)


def test_h3_invalid_inputs_say_what_is_wrong():
    with pytest.raises(InvalidParameter, match="H3 resolution must be 0..15; got 16"):
        h3_cell(*HEFEI, 16)
    with pytest.raises(InvalidParameter, match="H3 resolution must be 0..15; got -1"):
        h3_cell(*HEFEI, -1)
    with pytest.raises(InvalidParameter, match="must be an integer"):
        h3_cell(*HEFEI, True)
    with pytest.raises(InvalidParameter, match="latitude must be a finite number within ±90°"):
        h3_cell(117, 91, 9)
    with pytest.raises(InvalidParameter, match="longitude at index 0 must be a finite"):
        h3_cells_many([float("inf"), 1], [0, 0], 9)
    with pytest.raises(InvalidParameter, match="'not-a-cell' is not a valid H3 cell id"):
        h3_polygon("not-a-cell")
    with pytest.raises(InvalidParameter, match="is not a valid H3 cell id"):
        h3_polygon("ffffffffffffffff")
    with pytest.raises(InvalidParameter, match="is not a valid H3 cell id"):
        h3_polygon("f" * 20)  # past 64 bits: h3 overflows before it can say invalid
    with pytest.raises(InvalidParameter, match="must be a string"):
        h3_polygon(0x8928308280FFFFF)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter, match="look projected"):
        h3_cover(box(500000, 3500000, 500100, 3500100), 10)
    with pytest.raises(InvalidParameter, match="Polygon or MultiPolygon"):
        h3_cover(Point(*HEFEI), 10)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter, match="not valid: Self-intersection"):
        h3_cover(Polygon([(117, 31), (117.1, 31.1), (117.1, 31), (117, 31.1)]), 10)
    with pytest.raises(LimitExceeded, match="coarser resolution"):
        h3_cover(box(110, 30, 120, 40), 12)
