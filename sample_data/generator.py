"""The sample-city pipeline: place the city, lay out streets and blocks, build, grid, pipe,
equip with components, photograph twice, and write it all out deterministically."""

from __future__ import annotations

import operator
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sample_data import export
from sample_data.blocks import Land, build_land
from sample_data.buildings import Building, number_buildings, place_buildings
from sample_data.changes import Change, plant_changes
from sample_data.component_codes import component_table
from sample_data.components import place_components
from sample_data.frame import Boundary, CityFrame, load_boundary, plan_frame
from sample_data.gravity import build_sewer, build_storm
from sample_data.grid import Grid, build_grid
from sample_data.imagery import write_imagery
from sample_data.landcover import Scene
from sample_data.network import Network
from sample_data.output import fixed_timestamps, write_layer, write_manifest, write_readme
from sample_data.pressure import build_gas, build_water
from sample_data.seeds import stream
from sample_data.sensors import SENSORS_FILE, place_sensors, write_sensors
from sample_data.streets import plan_streets
from sample_data.terrain import make_terrain
from sample_data.topology import StreetNetwork, build_network

MIN_SCALE, MAX_SCALE = 0.02, 50.0
NETWORK_FILES = {"JS": "water", "WS": "sewer", "YS": "storm", "RQ": "gas"}


@dataclass
class City:
    """Everything generated, in the local frame, before writing."""

    boundary: Boundary
    frame: CityFrame
    net: StreetNetwork
    land: Land
    buildings: list[Building]
    changes: list[Change]
    grid: Grid
    networks: list[Network]
    components: dict[str, np.ndarray]


def generate(
    out_dir: pathlib.Path,
    *,
    seed: int = 42,
    scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Generate the sample city into out_dir; return (and write as manifest.json) a summary.

    The summary maps each written file to its feature count (rasters to their size) and adds
    area_km2, seed and scale. The same seed and scale give byte-identical files.
    """
    seed = operator.index(seed)  # numpy integers too; floats are refused
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be between {MIN_SCALE} and {MAX_SCALE}")
    say = progress or (lambda message: None)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    city = build_city(seed, scale, say)
    summary: dict[str, Any] = {}
    say("writing vector layers")
    with fixed_timestamps():
        summary.update(_write_vectors(city, out_dir))
    features = place_sensors(city.networks, city.grid, city.frame, stream(seed, "sensors"))
    summary[SENSORS_FILE] = write_sensors(out_dir, features)
    say("painting imagery")
    scene = Scene(
        city.frame,
        city.net,
        city.land,
        city.buildings,
        city.changes,
        city.components["xy"][city.components["minor"] == "0402"],
    )
    summary.update(write_imagery(scene, out_dir, stream(seed, "imagery")))
    summary.update(area_km2=round(city.frame.district.area / 1e6, 4), seed=seed, scale=scale)
    write_manifest(out_dir, summary)
    write_readme(out_dir, summary)
    say(f"done: {out_dir}")
    return summary


def build_city(seed: int, scale: float, say: Callable[[str], None]) -> City:
    """Run every generation step in memory."""
    say("placing the city in 金安区")
    boundary = load_boundary()
    frame = plan_frame(boundary, stream(seed, "frame"), scale)
    say("laying out streets")
    net = build_network(plan_streets(frame, stream(seed, "streets")), frame.district)
    say(f"cutting blocks and buildings ({len(net.edges)} street segments)")
    land = build_land(net, stream(seed, "land"))
    buildings = place_buildings(land, stream(seed, "buildings"))
    changes = plant_changes(land, buildings, stream(seed, "changes"))
    number_buildings(buildings)
    say(f"building the grid hierarchy ({len(buildings)} buildings)")
    grid = build_grid(net, frame, stream(seed, "grid"))
    say("laying water, sewer, storm and gas networks")
    terrain = make_terrain(stream(seed, "terrain"), frame.half)
    networks = [
        build_water(net, buildings, terrain, stream(seed, "water")),
        build_sewer(net, terrain, stream(seed, "sewer")),
        build_storm(net, terrain, stream(seed, "storm")),
        build_gas(net, terrain, stream(seed, "gas")),
    ]
    say("placing city components")
    placed = place_components(net, land, networks, stream(seed, "components"))
    table = component_table(placed, grid.units, frame, stream(seed, "component-attributes"))
    return City(boundary, frame, net, land, buildings, changes, grid, networks, table)


def _write_vectors(city: City, out_dir: pathlib.Path) -> dict[str, int]:
    frame = city.frame
    layers: dict[str, export.Layer] = {
        "boundary": export.boundary_layer(city.boundary),
        "streets": export.streets_layer(city.net, frame),
        "blocks": export.blocks_layer(city.land, frame),
        "buildings": export.buildings_layer(city.buildings, frame),
        "grid_district": export.grid_layer(city.grid.district, frame),
        "grid_street": export.grid_layer(city.grid.streets, frame),
        "grid_community": export.grid_layer(city.grid.communities, frame),
        "grid_unit": export.grid_layer(city.grid.units, frame),
        "components": export.components_layer(city.components, frame),
        "changes_truth": export.changes_layer(city.changes, frame),
    }
    for network in city.networks:
        stem = NETWORK_FILES[network.prefix]
        layers[f"{stem}_pipes"] = export.pipes_layer(network, frame)
        layers[f"{stem}_nodes"] = export.nodes_layer(network, frame)
    return {
        f"{stem}.gpkg": write_layer(out_dir, stem, columns, geometry)
        for stem, (columns, geometry) in layers.items()
    }
