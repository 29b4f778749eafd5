"""Composite one-map tiles: one MVT with every vector layer of a map, zoom rules applied.

A map's statement depends on the zoom only through which layers are drawn and how (features,
per-cell counts, or nothing), so one statement is compiled per distinct set of those modes and
reused with z/x/y bound. The per-layer MVTs are concatenated in SQL (a concatenation of MVT
layers is a valid MVT), in one round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from layers.cql import compile_filter
from layers.registry import Layer
from tiles.maps import MapDef, MapLayer
from tiles.mvt import bounds_cte, cell_margin, cells_sql, features_sql, tile_fields
from twin.errors import InvalidParameter, SetupError
from twin.settings import TileSettings


@dataclass(frozen=True)
class Part:
    """A map layer bound to its published collection, with its filter compiled."""

    spec: MapLayer
    layer: Layer
    where: sql.Composable | None
    stored: bool = False  # the table keeps a Web Mercator copy of its geometry


@dataclass
class MapTiles:
    """The compiled tile statements of one map over the collections published now."""

    map: MapDef
    parts: list[Part]
    settings: TileSettings
    missing: list[str]
    _statements: dict[tuple[str | None, ...], sql.Composed | None] = field(default_factory=dict)

    @property
    def data_version(self) -> str:
        """The data versions of every bound layer, in one short string for cache keys."""
        text = "|".join(sorted(f"{p.layer.name}:{p.layer.data_version}" for p in self.parts))
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

    def readable_by(self, allowed: Callable[[Layer], bool]) -> MapTiles:
        """The same map without the layers ``allowed`` refuses (its own compiled statements)."""
        parts = [p for p in self.parts if allowed(p.layer)]
        if len(parts) == len(self.parts):
            return self
        return MapTiles(self.map, parts, self.settings, self.missing)

    def collections_at(self, z: int) -> list[str]:
        return sorted({p.layer.name for p in self.parts if p.spec.mode_at(z)})

    def statement(self, z: int) -> sql.Composed | None:
        modes = tuple(p.spec.mode_at(z) for p in self.parts)
        if modes not in self._statements:
            self._statements[modes] = self._compile(modes)
        return self._statements[modes]

    def _compile(self, modes: tuple[str | None, ...]) -> sql.Composed | None:
        pieces: list[sql.Composable] = []
        for part, mode in zip(self.parts, modes, strict=True):
            spec = part.spec
            if mode == "features":
                fields = spec.properties or tile_fields(part.layer)
                pieces.append(
                    features_sql(
                        part.layer,
                        self.settings,
                        name=spec.id,
                        fields=fields,
                        where=part.where,
                        stored=part.stored,
                    )
                )
            elif mode == "cells":
                pieces.append(
                    cells_sql(
                        part.layer,
                        self.settings,
                        name=spec.cells_id,
                        by=spec.aggregate_by,
                        where=part.where,
                        stored=part.stored,
                    )
                )
        if not pieces:
            return None
        if "cells" in modes:
            margin = cell_margin(self.settings)
        else:
            margin = self.settings.tile_buffer / self.settings.tile_extent
        joined = sql.SQL(" || ").join(sql.SQL("({})").format(p) for p in pieces)
        return sql.SQL("WITH {} SELECT {}").format(bounds_cte(margin), joined)

    async def render(
        self, conn: psycopg.AsyncConnection, z: int, x: int, y: int, extent: int
    ) -> bytes:
        query = self.statement(z)
        if query is None:
            return b""
        cur = await conn.execute(query, {"z": z, "x": x, "y": y, "extent": extent})
        row = await cur.fetchone()
        return bytes(row[0]) if row and row[0] is not None else b""


def _check_fields(spec: MapLayer, layer: Layer, map_id: str) -> None:
    names = set(layer.field_names)
    wanted = [*(spec.properties or []), *([spec.aggregate_by] if spec.aggregate_by else [])]
    wanted += [spec.style.color_by] if spec.style.color_by else []
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise SetupError(
            f"map {map_id!r}, layer {spec.id!r}: collection {layer.name!r} has no field "
            f"{', '.join(unknown)} (its fields: {', '.join(layer.field_names)})"
        )
    if spec.aggregate_below is not None and "Point" not in layer.geometry_type:
        raise SetupError(
            f"map {map_id!r}, layer {spec.id!r}: only point layers are aggregated, and "
            f"{layer.name!r} holds {layer.geometry_type}"
        )


async def _where(
    conn: psycopg.AsyncConnection, spec: MapLayer, layer: Layer, map_id: str
) -> sql.Composable | None:
    """The layer's CQL2 filter as SQL with its values inlined (the statement binds only z/x/y).

    The values come from the map file, not from a request; they are quoted by psycopg.
    """
    if not spec.filter:
        return None
    try:
        frag, params = compile_filter(spec.filter, "cql2-text", layer)
    except InvalidParameter as exc:
        raise SetupError(f"map {map_id!r}, layer {spec.id!r}: filter: {exc}") from None
    text = psycopg.AsyncClientCursor(conn).mogrify(sql.Composed([frag]), params)
    return sql.SQL(text.replace("%", "%%"))


async def build_map_tiles(
    conn: psycopg.AsyncConnection,
    map_def: MapDef,
    layers: dict[str, Layer],
    settings: TileSettings,
    stored: frozenset[str] = frozenset(),
) -> MapTiles:
    """Bind a map to the collections published now; layers whose collection is absent (a
    network not imported yet) are left out and listed."""
    parts: list[Part] = []
    missing: list[str] = []
    for spec in map_def.vector_layers:
        layer = layers.get(spec.collection or "")
        if layer is None:
            missing.append(spec.id)
            continue
        _check_fields(spec, layer, map_def.id)
        where = await _where(conn, spec, layer, map_def.id)
        parts.append(Part(spec, layer, where, layer.name in stored))
    return MapTiles(map_def, parts, settings, missing)
