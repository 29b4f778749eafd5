"""One-map views (一张图) as data: a TOML file per thematic map, read and checked at start-up.

A map names the collections it shows, the zoom range of each, how dense point layers are
aggregated at low zoom, a CQL2 filter where a layer shows part of a collection, and the look of
each layer in a small vocabulary (colour, colour by a property, width, radius, dash). The MVT
of a map, its TileJSON and its MapLibre style are all built from this; adding a view is adding
a file (packaged ones in ``tiles/maps/``, more in ``TWIN_MAPS_DIR``).
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from twin.errors import NotFound, SetupError

MAP_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
LAYER_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COLOR = re.compile(r"^(#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?|rgba?\([0-9., ]+\))$")


class Style(BaseModel):
    """How a layer is drawn; the legend is made from the same fields."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["fill", "line", "circle", "raster"]
    color: str = "#34495e"
    color_by: str | None = Field(None, description="A property whose values pick the colour")
    colors: dict[str, str] = Field(default_factory=dict, description="value → colour")
    outline: str | None = Field(None, description="Polygon outline colour (fill layers)")
    opacity: float = Field(1.0, ge=0, le=1)
    width: float = Field(1.0, gt=0, le=50)
    radius: float = Field(3.0, gt=0, le=50)
    dash: list[float] | None = None

    @model_validator(mode="after")
    def _colours(self) -> Style:
        for value in [self.color, self.outline, *self.colors.values()]:
            if value is not None and not COLOR.match(value):
                raise ValueError(f"{value!r} is not a colour: use #rrggbb, #rgb or rgb(r,g,b)")
        if self.colors and not self.color_by:
            raise ValueError("colors needs color_by, the property whose values they colour")
        return self


class RasterSource(BaseModel):
    """Imagery from the scene catalog: a collection's mosaic (the newest one when absent)."""

    model_config = ConfigDict(extra="forbid")
    collection: str | None = None
    preset: Literal["truecolor", "falsecolor", "ndvi", "ndwi"] = "truecolor"


class MapLayer(BaseModel):
    """One layer of a map: a collection (or part of it) or imagery."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="The layer's name inside the map's tiles and style")
    title: str = ""
    collection: str | None = Field(None, description="The published collection it shows")
    raster: RasterSource | None = None
    filter: str | None = Field(None, description="CQL2 text: only the features it selects")
    properties: list[str] | None = Field(None, description="Tile attributes (default: all)")
    minzoom: int = Field(0, ge=0, le=24)
    maxzoom: int = Field(24, ge=0, le=24, description="Last zoom at which it is drawn")
    aggregate_below: int | None = Field(
        None, ge=1, le=24, description="Points: per-cell counts below this zoom"
    )
    aggregate_by: str | None = Field(None, description="A property counted per value too")
    visible: bool = True
    style: Style

    @model_validator(mode="after")
    def _check(self) -> MapLayer:
        if not LAYER_ID.match(self.id):
            raise ValueError(f"layer id {self.id!r}: lowercase letters, digits and '_'")
        if (self.collection is None) == (self.raster is None):
            raise ValueError(f"layer {self.id!r} needs exactly one of collection or raster")
        if self.raster is not None and self.style.type != "raster":
            raise ValueError(f"layer {self.id!r} shows imagery: its style type must be raster")
        if self.collection is not None and self.style.type == "raster":
            raise ValueError(f"layer {self.id!r} is vector: fill, line or circle, not raster")
        if self.minzoom > self.maxzoom:
            raise ValueError(f"layer {self.id!r}: minzoom {self.minzoom} > maxzoom {self.maxzoom}")
        if self.aggregate_by and self.aggregate_below is None:
            raise ValueError(f"layer {self.id!r}: aggregate_by needs aggregate_below")
        return self

    @property
    def is_vector(self) -> bool:
        return self.collection is not None

    def mode_at(self, z: int) -> str | None:
        """What the layer contributes to a tile at zoom z: features, cells or nothing."""
        if not self.is_vector or not self.minzoom <= z <= self.maxzoom:
            return None
        if self.aggregate_below is not None and z < self.aggregate_below:
            return "cells"
        return "features"

    @property
    def cells_id(self) -> str:
        return f"{self.id}_cells"


class MapDef(BaseModel):
    """A thematic map."""

    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    description: str = ""
    background: str = "#f2f1ec"
    layers: list[MapLayer] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> MapDef:
        if not MAP_ID.match(self.id):
            raise ValueError(f"map id {self.id!r}: lowercase letters, digits and '-'")
        ids = [layer.id for layer in self.layers]
        ids += [layer.cells_id for layer in self.layers if layer.aggregate_below]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"map {self.id!r} has more than one layer named {', '.join(dupes)}")
        return self

    @property
    def vector_layers(self) -> list[MapLayer]:
        return [layer for layer in self.layers if layer.is_vector]

    @property
    def collections(self) -> set[str]:
        return {layer.collection for layer in self.layers if layer.collection}


def _read(path: Path, text: str) -> MapDef:
    try:
        data = tomllib.loads(text)
        return MapDef.model_validate(data)
    except tomllib.TOMLDecodeError as exc:
        raise SetupError(f"map definition {path.name}: not valid TOML ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'map'}: {e['msg']}" for e in exc.errors()
        )
        raise SetupError(f"map definition {path.name}: {problems}") from None


def load_maps(extra_dir: Path | None = None) -> dict[str, MapDef]:
    """The packaged maps, then those of ``extra_dir`` (a file there may replace a packaged map
    by using its id)."""
    found: dict[str, MapDef] = {}
    packaged = resources.files("tiles") / "maps"
    files = [(Path(p.name), p.read_text(encoding="utf-8")) for p in packaged.iterdir()]
    if extra_dir is not None:
        if not extra_dir.is_dir():
            raise SetupError(f"TWIN_MAPS_DIR {extra_dir} is not a folder of .toml map files")
        files += [(p, p.read_text(encoding="utf-8")) for p in extra_dir.iterdir()]
    for path, text in sorted(files, key=lambda f: f[0].name):
        if path.suffix == ".toml":
            m = _read(path, text)
            found[m.id] = m
    return found


def get_map(maps: dict[str, MapDef], map_id: str) -> MapDef:
    try:
        return maps[map_id]
    except KeyError:
        raise NotFound(
            f"no map named {map_id!r}; the maps are {', '.join(sorted(maps))} (see /maps)"
        ) from None
