"""Coordinate reference systems: parsing user CRS names, axis order, GCJ-02.

Everything is stored in EPSG:4326 (lon, lat). CGCS2000 (EPSG:4490) differs from WGS84 by
centimetres and is treated as the same datum, so 4490 <-> 4326 is a no-op. GCJ-02 is not a CRS
in any registry: it is WGS84 plus an obfuscating offset, handled here with numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from twin.errors import InvalidParameter

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GCJ02 = "gcj02"

# CRSs offered on OGC API output (Part 2). Storage is EPSG:4326.
OUTPUT_EPSG = (4326, 4490, 3857, 4526, 4527, 4528, 4547, 4548, 4549)

_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/(EPSG|OGC)/[^/]+/(\w+)$")

# Geographic CRSs with the same datum as storage (CGCS2000 is treated as WGS84).
_SAME_AS_STORAGE = {4326, 4490}


@dataclass(frozen=True)
class CrsRef:
    """A parsed CRS: an EPSG code, CRS84 (lon/lat) or GCJ-02."""

    epsg: int | None  # None for CRS84 and GCJ-02
    kind: str  # "crs84", "epsg" or "gcj02"

    @property
    def uri(self) -> str:
        if self.kind == "crs84":
            return CRS84
        if self.kind == "gcj02":
            return GCJ02
        return f"http://www.opengis.net/def/crs/EPSG/0/{self.epsg}"

    @property
    def srid(self) -> int:
        """PostGIS SRID to transform to (GCJ-02 is computed from 4326)."""
        return self.epsg if self.epsg is not None else 4326

    @property
    def same_as_storage(self) -> bool:
        return self.kind == "crs84" or (self.epsg in _SAME_AS_STORAGE)

    @property
    def northing_first(self) -> bool:
        """True when the authority axis order is lat/lon or northing/easting.

        OGC API Features Part 2 answers in the authority's axis order: EPSG:4326 and 4490 are
        lat, lon and the Gauss-Krüger CRSs 4526-4528 and 4547-4549 are northing, easting.
        CRS84 and EPSG:3857 are x=east first.
        """
        if self.epsg is None:
            return False
        return _northing_first(self.epsg)


@lru_cache(maxsize=64)
def _northing_first(epsg: int) -> bool:
    axes = CRS.from_epsg(epsg).axis_info
    return bool(axes) and axes[0].direction.lower() in ("north", "south")


def parse_crs(value: str | int, *, allow_gcj02: bool = True) -> CrsRef:
    """Parse 'EPSG:4490', '4490', an OGC CRS URI, 'CRS84' or 'gcj02'."""
    text = str(value).strip()
    low = text.lower()
    if low in ("crs84", "ogc:crs84", "urn:ogc:def:crs:ogc:1.3:crs84") or text == CRS84:
        return CrsRef(None, "crs84")
    if low in ("gcj02", "gcj-02", "gcj_02"):
        if not allow_gcj02:
            raise InvalidParameter("GCJ-02 is not offered here; use an EPSG code or CRS84")
        return CrsRef(None, "gcj02")
    epsg: int | None = None
    match = _URI.match(text)
    if match:
        if match.group(1) == "OGC":
            if match.group(2).upper() == "CRS84":
                return CrsRef(None, "crs84")
            raise InvalidParameter(f"unknown CRS {text!r}")
        epsg = _to_int(match.group(2), text)
    elif low.startswith("epsg:"):
        epsg = _to_int(text[5:], text)
    elif text.isdigit():
        epsg = int(text)
    else:
        raise InvalidParameter(
            f"unknown CRS {text!r}: use an EPSG code such as EPSG:4490, an OGC CRS URI, "
            "CRS84 or gcj02"
        )
    try:
        CRS.from_epsg(epsg)
    except CRSError:
        raise InvalidParameter(f"unknown CRS {text!r}: no such EPSG code") from None
    return CrsRef(epsg, "epsg")


def _to_int(text: str, original: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidParameter(f"unknown CRS {original!r}") from None


def output_crs_uris() -> list[str]:
    """The CRS URIs every collection offers (OGC API Features Part 2)."""
    return [CRS84] + [f"http://www.opengis.net/def/crs/EPSG/0/{e}" for e in OUTPUT_EPSG]


def check_output_crs(ref: CrsRef) -> None:
    if ref.kind == "gcj02" or ref.kind == "crs84" or ref.epsg in OUTPUT_EPSG:
        return
    offered = ", ".join(["CRS84"] + [f"EPSG:{e}" for e in OUTPUT_EPSG])
    raise InvalidParameter(f"CRS {ref.uri} is not offered; use one of {offered}")


# --- GCJ-02 -----------------------------------------------------------------------------------
# Constants of the published forward formula (Krasovsky ellipsoid parameters).
_A = 6378245.0
_EE = 0.00669342162296594323


def in_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The rectangle inside which GCJ-02 offsets apply; outside it GCJ-02 equals WGS84.

    Libraries disagree on the exact box; this is the common rectangle, and points outside it
    pass through unchanged in both directions.
    """
    return (lon > 72.004) & (lon < 137.8347) & (lat > 0.8293) & (lat < 55.8271)


def _delta(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = lon - 105.0
    y = lat - 35.0
    dlat = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * np.sqrt(np.abs(x))
        + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
        + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
        + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    )
    dlon = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * np.sqrt(np.abs(x))
        + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
        + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
        + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    )
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward GCJ-02 offset (vectorised); points outside China are returned unchanged."""
    lon = np.asarray(lon, dtype="float64")
    lat = np.asarray(lat, dtype="float64")
    dlon, dlat = _delta(lon, lat)
    inside = in_china(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def gcj02_to_wgs84(
    lon: np.ndarray, lat: np.ndarray, *, tolerance_deg: float = 1e-9, max_iter: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse GCJ-02 by fixed-point iteration (no closed form exists).

    1e-9 degrees is about 0.1 mm; convergence takes a handful of iterations because the offset
    varies slowly (a few hundred metres over the whole country).
    """
    glon = np.asarray(lon, dtype="float64")
    glat = np.asarray(lat, dtype="float64")
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(max_iter):
        flon, flat = wgs84_to_gcj02(wlon, wlat)
        elon, elat = flon - glon, flat - glat
        wlon = wlon - elon
        wlat = wlat - elat
        if np.all(np.abs(elon) < tolerance_deg) and np.all(np.abs(elat) < tolerance_deg):
            break
    outside = ~in_china(glon, glat)
    return np.where(outside, glon, wlon), np.where(outside, glat, wlat)


# --- transforms of coordinate arrays ---------------------------------------------------------
@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def epsg_xy(coords: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Transform an (N, 2) array of x, y (east first) from EPSG:src to EPSG:dst, with a
    transformer built once per pair (building one costs more than a small polygon's work)."""
    x, y = _transformer(f"EPSG:{src}", f"EPSG:{dst}").transform(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def to_wgs84_xy(coords: np.ndarray, src: CrsRef | CRS) -> np.ndarray:
    """Transform an (N, 2) array of x=east/lon, y=north/lat coordinates to WGS84 lon/lat."""
    if isinstance(src, CrsRef):
        if src.kind == "gcj02":
            lon, lat = gcj02_to_wgs84(coords[:, 0], coords[:, 1])
            return np.column_stack([lon, lat])
        if src.same_as_storage:
            return coords
        src_text = f"EPSG:{src.epsg}"
    else:
        epsg = src.to_epsg()
        if epsg in _SAME_AS_STORAGE:
            return coords
        src_text = src.to_wkt()
    t = _transformer(src_text, "EPSG:4326")
    x, y = t.transform(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def axis_ordered_to_wgs84(coords: np.ndarray, src: CrsRef) -> np.ndarray:
    """Like `to_wgs84_xy`, for coordinates a client gave in the CRS's own axis order
    (northing first for the Gauss-Krüger CRSs), as query parameters and bodies give them."""
    if src.northing_first and src.kind == "epsg" and not src.same_as_storage:
        coords = coords[:, ::-1]
    return to_wgs84_xy(np.asarray(coords, dtype="float64"), src)


def from_wgs84_xy(coords: np.ndarray, dst: CrsRef) -> np.ndarray:
    """Transform WGS84 lon/lat (N, 2) to dst, x=east first (always_xy)."""
    if dst.kind == "gcj02":
        lon, lat = wgs84_to_gcj02(coords[:, 0], coords[:, 1])
        return np.column_stack([lon, lat])
    if dst.same_as_storage:
        return coords
    t = _transformer("EPSG:4326", f"EPSG:{dst.epsg}")
    x, y = t.transform(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def utm_or_gk_epsg(lon: float) -> int:
    """The CGCS2000 3-degree Gauss-Krüger CRS (no zone prefix) for a longitude.

    Used for metric measures. Zones are centred on multiples of 3 degrees; 4534 is the CM 75E
    zone and codes run consecutively to 4554 (CM 135E), so Anhui gives 4547-4549.
    """
    cm = int(round(lon / 3.0)) * 3
    cm = min(max(cm, 75), 135)
    return 4534 + (cm - 75) // 3
