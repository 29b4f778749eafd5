"""CRS parsing, axis order, the Hefei Gauss-Krüger check and the GCJ-02 test vectors."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from twin.crs import gcj02_to_wgs84, parse_crs, to_wgs84_xy, utm_or_gk_epsg, wgs84_to_gcj02
from twin.errors import InvalidParameter

# STANDARDS.md: WGS84 (lat, lon) -> GCJ-02 (lat, lon)
GCJ_VECTORS = [
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),
]


@pytest.mark.parametrize(("wgs", "gcj"), GCJ_VECTORS)
def test_gcj02_forward_matches_the_vectors(wgs, gcj):
    lon, lat = wgs84_to_gcj02(np.array([wgs[1]]), np.array([wgs[0]]))
    assert lon[0] == pytest.approx(gcj[1], abs=1e-9) and lat[0] == pytest.approx(gcj[0], abs=1e-9)


@pytest.mark.parametrize(("wgs", "gcj"), GCJ_VECTORS)
def test_gcj02_inverse_is_well_under_a_metre(wgs, gcj):
    lon, lat = gcj02_to_wgs84(np.array([gcj[1]]), np.array([gcj[0]]))
    assert abs(lon[0] - wgs[1]) < 1e-6 and abs(lat[0] - wgs[0]) < 1e-6  # ~0.1 m


def test_gcj02_leaves_points_outside_china_alone():
    lon, lat = wgs84_to_gcj02(np.array([2.35]), np.array([48.85]))
    assert (lon[0], lat[0]) == (2.35, 48.85)


def test_hefei_in_gauss_kruger_117(pg_url):
    east, north = to_wgs84_xy(np.array([[117.2272, 31.8206]]), parse_crs("EPSG:4326"))[0]
    assert (east, north) == (117.2272, 31.8206)
    with psycopg.connect(pg_url) as conn:
        for srid, offset in ((4548, 0), (4527, 39_000_000)):
            x, y = conn.execute(
                "SELECT ST_X(p), ST_Y(p) FROM ST_Transform("
                "ST_SetSRID(ST_MakePoint(117.2272, 31.8206), 4490), %s) p",
                (srid,),
            ).fetchone()
            assert x == pytest.approx(521510.564 + offset, abs=0.001)
            assert y == pytest.approx(3521982.109, abs=0.001)
    assert utm_or_gk_epsg(117.2272) == 4548


@pytest.mark.parametrize(
    ("text", "epsg", "northing_first"),
    [
        ("EPSG:4490", 4490, True),
        ("4326", 4326, True),
        ("http://www.opengis.net/def/crs/EPSG/0/4548", 4548, True),
        ("EPSG:3857", 3857, False),
        ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", None, False),
        ("CRS84", None, False),
    ],
)
def test_parse_crs_and_axis_order(text, epsg, northing_first):
    ref = parse_crs(text)
    assert ref.epsg == epsg and ref.northing_first is northing_first


@pytest.mark.parametrize("text", ["EPSG:abc", "EPSG:999999", "wgs", "urn:x", ""])
def test_unknown_crs_is_refused_with_advice(text):
    with pytest.raises(InvalidParameter, match="unknown CRS"):
        parse_crs(text)
