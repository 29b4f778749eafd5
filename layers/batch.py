"""Publishing every vector file of a folder (the demo loads the sample city this way)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from layers.importer import ImportReport, Progress, default_layer_name, import_file
from layers.registry import find_layer

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".csv")


def vector_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in VECTOR_SUFFIXES and p.name != "manifest.json"
    )


def import_folder(
    conn: psycopg.Connection,
    folder: Path,
    *,
    only_new: bool = False,
    on_file: Callable[[Path], Progress | None] | None = None,
    skip: Callable[[Path], bool] | None = None,
) -> list[ImportReport]:
    """Import each file as the layer named after it, replacing layers of the same name.

    With ``only_new`` a layer that already exists is left alone (the demo restarts quickly).
    """
    reports = []
    for path in vector_files(folder):
        if skip is not None and skip(path):
            continue
        name = default_layer_name(path)
        if only_new and find_layer(conn, name) is not None:
            continue
        progress = on_file(path) if on_file else None
        reports.append(import_file(conn, path, layer_name=name, mode="replace", progress=progress))
    return reports
