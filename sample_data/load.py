"""Loading a generated sample city into the twin, through the same paths users take.

The grid levels go through `twin grid import` (parents first, with every check), the
components through `twin components import`, the pipe networks through `twin pipelines
import`, the sensors through the sensor registry (with their last hours of readings through
the readings ingest), and every other file through `twin import`.
Anything already loaded is left alone, so a restarted demo starts at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from components.importer import ComponentImport, import_components
from grid.store import GridImport, import_grid_folder
from layers.batch import import_folder
from layers.importer import ImportReport, Progress
from layers.registry import find_layer
from pipelines.importers.native import read_native
from pipelines.store import NetworkImport, save_network
from rasters.catalog import SceneReport, add_scene
from sample_data.live import SensorLoad, load_sensors
from sample_data.sensors import SENSORS_FILE
from twin.settings import Settings


@dataclass
class Loaded:
    grid: list[GridImport] = field(default_factory=list)
    components: ComponentImport | None = None
    layers: list[ImportReport] = field(default_factory=list)
    networks: list[NetworkImport] = field(default_factory=list)
    scenes: list[SceneReport] = field(default_factory=list)
    changes: dict | None = None
    sensors: SensorLoad | None = None


def _domain_loaded(conn: psycopg.Connection, name: str) -> bool:
    layer = find_layer(conn, name)
    return layer is not None and layer.schema_name == "twin"


def _network_loaded(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM twin.pipe_networks WHERE name = %s", [name]).fetchone()
    return row is not None


SAMPLE_COLLECTION = "sample-city"


def _load_imagery(
    conn: psycopg.Connection, folder: Path, settings: Settings, loaded: Loaded
) -> None:
    """Both image dates as scenes of one collection, and the changes between them."""
    from rasters.changes import run_change_detection

    images = sorted(folder.glob("imagery_*.tif"))
    for path in images:
        known = conn.execute("SELECT 1 FROM twin.raster_scenes WHERE id = %s", [path.stem])
        if known.fetchone() is None:
            loaded.scenes.append(
                add_scene(conn, [path], settings.raster_dir, collection=SAMPLE_COLLECTION)
            )
            conn.commit()
    done = conn.execute(
        "SELECT 1 FROM twin.raster_changes WHERE change_set = 'sample-city' LIMIT 1"
    ).fetchone()
    if len(images) >= 2 and done is None:
        loaded.changes = run_change_detection(conn, images[0].stem, images[-1].stem, "sample-city")
        conn.commit()


def _seed_case_rules(conn: psycopg.Connection) -> None:
    """The case classes, and dispatch rules for the sample departments unless the city has
    rules already (the demo then creates and dispatches cases out of the box)."""
    from importlib import resources

    from cases.classes import sync_case_classes
    from cases.rules import parse_rules, save_rules

    sync_case_classes(conn)
    if conn.execute("SELECT 1 FROM twin.case_dispatch_rules LIMIT 1").fetchone() is None:
        text = resources.files("sample_data").joinpath("data", "dispatch_rules.csv")
        save_rules(conn, parse_rules(text.read_text("utf-8"), "dispatch_rules.csv"))
    conn.commit()


def load_sample_city(
    conn: psycopg.Connection,
    folder: Path,
    settings: Settings,
    on_file: Callable[[Path], Progress | None] | None = None,
) -> Loaded:
    loaded = Loaded()
    if not _domain_loaded(conn, "grid_unit"):
        loaded.grid = import_grid_folder(conn, folder, settings.grid)
        conn.commit()
    path = folder / "components.gpkg"
    if path.exists() and not _domain_loaded(conn, "components"):
        loaded.components = import_components(conn, path, settings.components, mode="replace")
        conn.commit()
    for pipes in sorted(folder.glob("*_pipes.gpkg")):
        name = pipes.name.removesuffix("_pipes.gpkg")
        nodes = folder / f"{name}_nodes.gpkg"
        if nodes.exists() and not _network_loaded(conn, name):
            data = read_native(pipes, nodes)
            # an older demo database published these files as plain layers: they give way
            loaded.networks.append(save_network(conn, name, data, replace_layers=True))
            conn.commit()
    _load_imagery(conn, folder, settings, loaded)
    _seed_case_rules(conn)
    loaded.layers = import_folder(
        conn,
        folder,
        only_new=True,
        on_file=on_file,
        skip=lambda p: (
            p.stem.startswith("grid_")
            or p.stem == "components"
            or p.stem.endswith(("_pipes", "_nodes"))
            or p.name == SENSORS_FILE  # registered as sensors below, not a plain layer
        ),
    )
    loaded.sensors = load_sensors(conn, folder, settings)
    return loaded
