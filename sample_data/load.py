"""Loading a generated sample city into the twin, through the same paths users take.

The grid levels go through `twin grid import` (parents first, with every check), the
components through `twin components import`, and every other file through `twin import`.
Anything already loaded is left alone, so a restarted demo starts at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from grid.store import GridImport, import_grid_folder
from layers.batch import import_folder
from layers.components.importer import ComponentImport, import_components
from layers.importer import ImportReport, Progress
from layers.registry import find_layer
from twin.settings import Settings


@dataclass
class Loaded:
    grid: list[GridImport] = field(default_factory=list)
    components: ComponentImport | None = None
    layers: list[ImportReport] = field(default_factory=list)


def _domain_loaded(conn: psycopg.Connection, name: str) -> bool:
    layer = find_layer(conn, name)
    return layer is not None and layer.schema_name == "twin"


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
    loaded.layers = import_folder(
        conn,
        folder,
        only_new=True,
        on_file=on_file,
        skip=lambda p: p.stem.startswith("grid_") or p.stem == "components",
    )
    return loaded
