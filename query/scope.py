"""What a caller may see in a summary or a report: decided by the API from their grants, applied
here so that a layer they may not read adds nothing to the numbers, the tables or the map."""

from __future__ import annotations

from dataclasses import dataclass

WITHHELD = "withheld: your credentials do not grant reading this layer"


@dataclass(frozen=True)
class Scope:
    components: bool = True
    buildings: bool = True
    unit_grids: bool = True
    changes: bool = True
    cases: bool = True  # grid-management cases (reports only)
    networks: tuple[str, ...] | None = None  # None: every network
    rasters: tuple[str, ...] | None = None  # None: every raster collection

    @property
    def network_list(self) -> list[str] | None:
        return list(self.networks) if self.networks is not None else None

    @property
    def raster_list(self) -> list[str] | None:
        return list(self.rasters) if self.rasters is not None else None


EVERYTHING = Scope()
