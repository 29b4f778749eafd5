"""The sample city's sensors (物联感知): where they stand, what they measure and the thresholds
they alarm at, written as ``sensors.geojson`` in the format of ``POST /sensors``.

Sensors on a network carry no geometry but their attachment (pressure at water junctions, water
level in storm manholes and gutter inlets, gas concentration in gas valve chambers): the
registry places them on their node, as it would a city's own list. Rain gauges and air-quality
stations stand free, with a lon/lat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from sample_data.frame import CityFrame
from sample_data.grid import Grid
from sample_data.network import Network

SENSORS_FILE = "sensors.geojson"


@dataclass(frozen=True)
class Kind:
    """One kind of demo sensor: its id prefix, unit, owner and alarm thresholds."""

    kind: str
    prefix: str
    title: str
    unit: str
    department: str | None
    thresholds: tuple[tuple[str, float], ...]


# Departments as in the sample dispatch rules: water and gas under 住建局, drainage and rain
# under 城管局. Thresholds: 0.20 MPa is a usual minimum service pressure; 1.2 m of water in a
# storm manhole means the pipe is surcharged; 20 %LEL is the first gas alarm stage; 30 mm/h is
# heavy rain (暴雨); 115 µg/m³ of PM2.5 is 中度污染 in HJ 633.
KINDS = {
    "pressure": Kind("pressure", "P", "供水压力", "MPa", "34150201", (("threshold_low", 0.20),)),
    "level": Kind(
        "level",
        "L",
        "井下水位",
        "m",
        "34150202",
        (("threshold_high", 1.2), ("threshold_rate", 0.5)),
    ),
    "gas": Kind("gas", "G", "燃气浓度", "%LEL", "34150201", (("threshold_high", 20.0),)),
    "rain": Kind("rain", "R", "雨量站", "mm/h", "34150202", (("threshold_high", 30.0),)),
    "air": Kind("air", "AQ", "空气质量站", "µg/m³", None, (("threshold_high", 115.0),)),
}
NETWORK_NAMES = {"JS": "water", "YS": "storm", "RQ": "gas"}

# Shares of the candidate places that get a sensor (about 220 sensors at scale 1).
SHARE = {
    ("JS", "junction"): 0.09,
    ("YS", "manhole"): 0.08,
    ("YS", "inlet"): 0.015,
    ("RQ", "valve"): 0.4,
}
RAIN_GAUGES_PER_KM2 = 1.2


def spread(xy: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of k points spread evenly over xy (farthest-point sampling from a random start),
    so sensors cover the network instead of clustering where nodes are dense."""
    n = len(xy)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=int)
    chosen = [int(rng.integers(n))]
    dist = np.hypot(*(xy - xy[chosen[0]]).T)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.hypot(*(xy - xy[nxt]).T))
    return np.array(sorted(chosen))


def _attached(network: Network, rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """(kind, node kind, node index) of the sensors on one network."""
    kind = {"JS": "pressure", "YS": "level", "RQ": "gas"}[network.prefix]
    out = []
    for (prefix, node_kind), share in SHARE.items():
        if prefix != network.prefix:
            continue
        idx = np.array([i for i, n in enumerate(network.nodes) if n.kind == node_kind])
        if len(idx) == 0:
            continue
        xy = np.array([network.nodes[i].xy for i in idx])
        k = max(1, round(share * len(idx)))
        out += [(kind, node_kind, int(idx[j])) for j in spread(xy, k, rng)]
    return out


def place_sensors(
    networks: list[Network], grid: Grid, frame: CityFrame, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """The demo sensors as GeoJSON features (ids numbered per kind in node order)."""
    features: list[dict[str, Any]] = []
    counters = dict.fromkeys(KINDS, 0)

    def feature(kind: str, name: str, lonlat=None, **attach: str) -> dict[str, Any]:
        spec = KINDS[kind]
        counters[kind] += 1
        width = 4 if spec.prefix in ("P", "L", "G") else 3
        sid = f"{spec.prefix}-{counters[kind]:0{width}d}"
        props: dict[str, Any] = {"sensor_id": sid, "name": f"{spec.title} {name}"}
        props |= {"kind": kind, "unit": spec.unit, **attach}
        if spec.department:
            props["department"] = spec.department
        props |= dict(spec.thresholds)
        geometry = None
        if lonlat is not None:
            coords = [round(float(lonlat[0]), 7), round(float(lonlat[1]), 7)]
            geometry = {"type": "Point", "coordinates": coords}
        return {"type": "Feature", "geometry": geometry, "properties": props}

    for network in networks:
        if network.prefix not in NETWORK_NAMES:
            continue
        for kind, _, i in sorted(_attached(network, rng), key=lambda a: (a[0], a[2])):
            node_id = network.node_id(i)
            features.append(
                feature(kind, node_id, network=NETWORK_NAMES[network.prefix], node_id=node_id)
            )
    units = np.array([shapely.point_on_surface(c.geom).coords[0] for c in grid.units])
    gauges = spread(units, max(2, round(frame.district.area / 1e6 * RAIN_GAUGES_PER_KM2)), rng)
    for j in gauges:
        lonlat = frame.xy_to_lonlat(units[j : j + 1])[0]
        features.append(feature("rain", grid.units[j].code, lonlat))
    # one air-quality station per community, at a point inside it
    for community in grid.communities:
        xy = np.array([shapely.point_on_surface(community.geom).coords[0]])
        features.append(feature("air", community.name, frame.xy_to_lonlat(xy)[0]))
    return features


def write_sensors(out_dir: Path, features: list[dict[str, Any]]) -> int:
    """sensors.geojson, one feature a line (readable diffs; byte-identical for a seed)."""
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
    text = '{"type":"FeatureCollection","name":"sensors","features":[\n'
    text += ",\n".join(lines) + "\n]}\n"
    (out_dir / SENSORS_FILE).write_text(text, encoding="utf-8")
    return len(features)
