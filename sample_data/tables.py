"""Packaged code tables and name pools (data files, not code)."""

from __future__ import annotations

import csv
import tomllib
from functools import lru_cache
from typing import Any

from sample_data.frame import DATA_DIR


@lru_cache(maxsize=1)
def name_pools() -> dict[str, Any]:
    """Street, sub-district and community name pools from names.toml."""
    with open(DATA_DIR / "names.toml", "rb") as fh:
        return tomllib.load(fh)


@lru_cache(maxsize=1)
def component_classes() -> dict[str, dict[str, str]]:
    """GB/T 30428.2 classes used by the sample city, keyed by 4-digit minor code."""
    with open(DATA_DIR / "component_classes.csv", encoding="utf-8", newline="") as fh:
        return {row["minor"]: row for row in csv.DictReader(fh)}
