"""Where the sample city sits: the real 金安区 boundary and the city's local metric frame.

All layout work happens in a local frame (u east-ish, v north-ish, metres) whose origin is the
city centre and whose axes are turned by a small seeded angle against the Gauss-Krüger grid, so
that streets drawn along u and v are not perfectly north-up. `CityFrame` converts local
geometries to Gauss-Krüger (for measures and rasters) and to WGS84 lon/lat (for output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from pyproj import Transformer

from twin.crs import gcj02_to_wgs84, utm_or_gk_epsg

DATA_DIR = Path(__file__).resolve().parent / "data"
COUNTY_FILE = DATA_DIR / "anhui_county" / "anhui_county.shp"

DISTRICT_CODE = "341502"
DISTRICT_NAME = "金安区"
CITY_CODE = "341500"

# City centre in WGS84: the urban part of 金安区 east of the 淠河, about 3.5 km inside the
# district boundary, so the scale-1 city (2.3 km square) never touches it.
CENTRE_LONLAT = (116.540, 31.762)
BASE_SIDE_M = 2300.0
MAX_ANGLE_DEG = 10.0


@dataclass(frozen=True)
class Boundary:
    """The real district polygon, converted from GCJ-02 to WGS84."""

    name: str
    adcode: str
    lonlat: shapely.Polygon


def load_boundary(adcode: str = DISTRICT_CODE) -> Boundary:
    """Read one county polygon from the packaged AMap data and undo its GCJ-02 offset."""
    frame = pyogrio.read_dataframe(COUNTY_FILE, encoding="UTF-8", columns=["name", "adcode"])
    row = frame[frame["adcode"] == adcode]
    if row.empty:
        raise ValueError(f"no county {adcode} in {COUNTY_FILE.name}")
    geom = row.geometry.iloc[0]
    # Several Anhui units are multi-part although the layer says Polygon; 金安区 is one part,
    # but keep the largest part so the rest of the generator can rely on a Polygon.
    if geom.geom_type == "MultiPolygon":
        geom = max(geom.geoms, key=lambda g: g.area)

    def ungcj(xy: np.ndarray) -> np.ndarray:
        lon, lat = gcj02_to_wgs84(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    lonlat = shapely.make_valid(shapely.transform(geom, ungcj))
    return Boundary(str(row["name"].iloc[0]), adcode, lonlat)


@dataclass(frozen=True)
class CityFrame:
    """The local frame of the city and the district area it covers."""

    epsg: int
    x0: float
    y0: float
    angle_deg: float
    half: float
    boundary_gk: shapely.Polygon
    district: shapely.Polygon  # local frame: the city square clipped to the real boundary

    @property
    def _rotation(self) -> np.ndarray:
        a = math.radians(self.angle_deg)
        return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

    def xy_to_gk(self, xy: np.ndarray) -> np.ndarray:
        """Local (N, 2) coordinates to Gauss-Krüger easting/northing."""
        return xy @ self._rotation.T + np.array([self.x0, self.y0])

    def xy_to_local(self, xy: np.ndarray) -> np.ndarray:
        return (xy - np.array([self.x0, self.y0])) @ self._rotation

    def xy_to_lonlat(self, xy: np.ndarray) -> np.ndarray:
        gk = self.xy_to_gk(xy)
        lon, lat = _to_wgs84(self.epsg).transform(gk[:, 0], gk[:, 1])
        return np.column_stack([lon, lat])

    def to_gk(self, geoms):
        """Local geometry (or array of them) to Gauss-Krüger."""
        return shapely.transform(geoms, self.xy_to_gk)

    def to_lonlat(self, geoms):
        """Local geometry (or array of them) to WGS84 lon/lat, the output CRS."""
        return shapely.transform(geoms, self.xy_to_lonlat)


@lru_cache(maxsize=8)
def _to_wgs84(epsg: int) -> Transformer:
    return Transformer.from_crs(epsg, 4326, always_xy=True)


@lru_cache(maxsize=8)
def _to_gk(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


def plan_frame(boundary: Boundary, rng: np.random.Generator, scale: float) -> CityFrame:
    """Place a square city of area ∝ scale at the centre, turned by a small angle, clipped."""
    epsg = utm_or_gk_epsg(CENTRE_LONLAT[0])
    to_gk = _to_gk(epsg)
    x0, y0 = to_gk.transform(*CENTRE_LONLAT)

    def gk(xy: np.ndarray) -> np.ndarray:
        x, y = to_gk.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    boundary_gk = shapely.transform(boundary.lonlat, gk)
    half = BASE_SIDE_M * math.sqrt(scale) / 2.0
    angle = float(rng.uniform(-MAX_ANGLE_DEG, MAX_ANGLE_DEG))
    frame = CityFrame(epsg, float(x0), float(y0), angle, half, boundary_gk, shapely.Polygon())
    boundary_local = shapely.transform(boundary_gk, frame.xy_to_local)
    square = shapely.box(-half, -half, half, half)
    # 1 m inside the real boundary, so that rounding on the way back to lon/lat never puts a
    # feature on the wrong side of it.
    inner = shapely.buffer(boundary_local, -1.0)
    district = _largest_part(shapely.set_precision(shapely.intersection(square, inner), 0.01))
    shapely.prepare(district)
    return CityFrame(epsg, float(x0), float(y0), angle, half, boundary_gk, district)


def _largest_part(geom: shapely.Geometry) -> shapely.Polygon:
    if geom.geom_type == "Polygon":
        return geom
    parts = [g for g in shapely.get_parts(geom) if g.geom_type == "Polygon"]
    return max(parts, key=lambda g: g.area)
