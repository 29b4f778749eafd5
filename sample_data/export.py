"""Attribute tables of the output layers, built from the generated objects (local frame)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from sample_data.blocks import Land
from sample_data.buildings import Building
from sample_data.changes import Change
from sample_data.frame import Boundary, CityFrame
from sample_data.gravity import MATERIALS as GRAVITY_MATERIALS
from sample_data.grid import GridCell
from sample_data.network import Network
from sample_data.pressure import MATERIAL_NAMES
from sample_data.topology import StreetNetwork

Layer = tuple[dict[str, Any], Any]  # columns, lon/lat geometries
CHANGE_DATES = ("2023-08-15", "2024-08-20")


def boundary_layer(boundary: Boundary) -> Layer:
    columns = {"name": [boundary.name], "adcode": [boundary.adcode]}
    return columns, [boundary.lonlat]


def streets_layer(net: StreetNetwork, frame: CityFrame) -> Layer:
    streets = [net.street_of(e) for e in net.edges]
    columns = {
        "seg_id": np.arange(1, len(streets) + 1),
        "name": [s.name for s in streets],
        "class": [s.cls for s in streets],
        "width_m": [s.width for s in streets],
        "lanes": [s.lanes for s in streets],
        "length_m": [round(e.geom.length, 2) for e in net.edges],
    }
    return columns, frame.to_lonlat(np.array([e.geom for e in net.edges]))


def blocks_layer(land: Land, frame: CityFrame) -> Layer:
    columns = {
        "block_id": [b.block_id for b in land.blocks],
        "landuse": [b.landuse for b in land.blocks],
        "area_m2": [round(b.geom.area, 2) for b in land.blocks],
    }
    return columns, frame.to_lonlat(np.array([b.geom for b in land.blocks]))


def buildings_layer(buildings: list[Building], frame: CityFrame) -> Layer:
    columns = {
        "bldg_id": [b.bldg_id for b in buildings],
        "block_id": [b.block_id for b in buildings],
        "use": [b.use for b in buildings],
        "floors": [b.floors for b in buildings],
        "height_m": [b.height for b in buildings],
        "year_built": [b.year for b in buildings],
        "roof": [b.roof for b in buildings],
        "area_m2": [round(b.geom.area, 2) for b in buildings],
    }
    return columns, frame.to_lonlat(np.array([b.geom for b in buildings]))


def grid_layer(cells: list[GridCell], frame: CityFrame) -> Layer:
    columns = {
        "code": [c.code for c in cells],
        "name": [c.name for c in cells],
        "parent_code": [c.parent_code for c in cells],
        "level": [c.level for c in cells],
        "area_m2": [c.area_m2 for c in cells],
    }
    return columns, frame.to_lonlat(np.array([c.geom for c in cells]))


def components_layer(table: dict[str, np.ndarray], frame: CityFrame) -> Layer:
    columns = {k: v for k, v in table.items() if k != "xy"}
    lonlat = frame.xy_to_lonlat(table["xy"]) if len(table["xy"]) else np.empty((0, 2))
    return columns, shapely.points(lonlat)


def nodes_layer(network: Network, frame: CityFrame) -> Layer:
    gravity = network.utility == "PS"
    fields = ["valve_state"] if not gravity else ["invert_m"]
    fields += ["ground_elev_m", "depth_m", "name"]
    if network.prefix == "JS":
        fields.append("building_id")
    columns: dict[str, Any] = {
        "node_id": [network.node_id(i) for i in range(len(network.nodes))],
        "kind": [n.kind for n in network.nodes],
    }
    for f in fields:
        columns[f] = [n.attrs.get(f) for n in network.nodes]
    xy = np.array([n.xy for n in network.nodes]).reshape(-1, 2)
    return columns, shapely.points(frame.xy_to_lonlat(xy))


def pipes_layer(network: Network, frame: CityFrame) -> Layer:
    gravity = network.utility == "PS"
    names = GRAVITY_MATERIALS if gravity else MATERIAL_NAMES
    pipes = network.pipes
    columns: dict[str, Any] = {
        "pipe_id": [network.pipe_id(i) for i in range(len(pipes))],
        "from_node": [network.node_id(p.a) for p in pipes],
        "to_node": [network.node_id(p.b) for p in pipes],
        "utility": [network.utility] * len(pipes),
        "subclass": [network.subclass] * len(pipes),
        "diameter_mm": [p.attrs["diameter_mm"] for p in pipes],
        "material": [p.attrs["material"] for p in pipes],
        "material_name": [names[p.attrs["material"]] for p in pipes],
        "year_laid": [p.attrs["year_laid"] for p in pipes],
        "depth_m": [p.attrs["depth_m"] for p in pipes],
    }
    if gravity:
        for f in ("start_invert_m", "end_invert_m", "slope"):
            columns[f] = [p.attrs[f] for p in pipes]
        columns["flow"] = ["forward"] * len(pipes)
    columns["length_m"] = [round(p.length, 2) for p in pipes]
    columns["owner"] = [network.owner] * len(pipes)
    lines = shapely.linestrings(np.vstack([p.coords for p in pipes]), indices=_index(pipes))
    return columns, frame.to_lonlat(lines)


def _index(pipes) -> np.ndarray:
    return np.repeat(np.arange(len(pipes)), [len(p.coords) for p in pipes])


def changes_layer(changes: list[Change], frame: CityFrame) -> Layer:
    columns = {
        "change_id": [f"C{i + 1:03d}" for i in range(len(changes))],
        "kind": [c.kind for c in changes],
        "before": [c.before for c in changes],
        "after": [c.after for c in changes],
        "date_before": [CHANGE_DATES[0]] * len(changes),
        "date_after": [CHANGE_DATES[1]] * len(changes),
        "area_m2": [round(c.geom.area, 2) for c in changes],
    }
    return columns, frame.to_lonlat(np.array([c.geom for c in changes]))
