"""Beidou grid location code (北斗网格位置码, GB/T 39409-2020), levels 1–10: encode and decode.

Written here by hand because no maintained library implements the code. Level 1 is a 6°×4° cell
written as N/S, a two-digit longitude column (floor(lon/6°) + 31) and a latitude row letter
counted from the equator (A = 0–4°, B = 4–8°, … V = 84–88°). Levels 2–10 subdivide it into
30′, 15′×10′, 1′, 4″, 2″, 1/4″, 1/32″, 1/256″ and 1/2048″ cells, giving codes of 4, 6, 7, 9, 11,
12, 14, 16, 18 and 20 characters.

All arithmetic is on integer counts of the level-10 cell (1/2048″), so every level boundary is
exact and decode/encode agree. Cells are counted away from the equator and the prime meridian in
every hemisphere (the standard's mirroring): the N/S letter and the level-1 column carry the
sign. The polar caps beyond ±88° are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from shapely.geometry import Polygon, box

from twin.errors import InvalidParameter

UNITS_PER_SECOND: Final = 2048  # one unit is the level-10 cell, 1/2048″
UNITS_PER_DEGREE: Final = 3600 * UNITS_PER_SECOND
MAX_LAT: Final = 88.0
MIN_LEVEL: Final = 1
MAX_LEVEL: Final = 10

_HEX: Final = "0123456789ABCDEF"
_HEX_BYTES: Final = np.frombuffer(_HEX.encode("ascii"), dtype=np.uint8)
_ROW_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUV"  # level-1 rows, 4° each from the equator to 88°

# A decimal coordinate meant to sit on a cell boundary (31.8 = 31°48′) may land a hair below it
# after multiplying by UNITS_PER_DEGREE. Values this close to a whole unit (~1.4e-12°, well under
# a micrometre) are taken as that unit, so boundary points and decoded corners encode stably.
_SNAP_UNITS: Final = 1e-5


@dataclass(frozen=True)
class Level:
    """How one level splits its parent cell and how it is written."""

    cols: int  # subdivisions of the parent along longitude
    rows: int  # subdivisions of the parent along latitude
    width: int  # cell width in units (1/2048″)
    height: int  # cell height in units
    single: bool  # one character for (column, row), via CELL_ORDER; else column char, row char


_S = UNITS_PER_SECOND
LEVELS: Final[dict[int, Level]] = {
    1: Level(60, 22, 6 * 3600 * _S, 4 * 3600 * _S, single=False),  # written "N50H" (see above)
    2: Level(12, 8, 1800 * _S, 1800 * _S, single=False),  # 30′: column 0-B, row 0-7
    3: Level(2, 3, 900 * _S, 600 * _S, single=True),  # 15′×10′: one char 0-5
    4: Level(15, 10, 60 * _S, 60 * _S, single=False),  # 1′: column 0-E, row 0-9
    5: Level(15, 15, 4 * _S, 4 * _S, single=False),  # 4″: column 0-E, row 0-E
    6: Level(2, 2, 2 * _S, 2 * _S, single=True),  # 2″: one char 0-3
    7: Level(8, 8, _S // 4, _S // 4, single=False),  # 1/4″: column 0-7, row 0-7
    8: Level(8, 8, _S // 32, _S // 32, single=False),  # 1/32″
    9: Level(8, 8, _S // 256, _S // 256, single=False),  # 1/256″
    10: Level(8, 8, 1, 1, single=False),  # 1/2048″
}

# Ordering convention, in one place. GB/T 39409 publishes no test vectors we could check, so
# this is the convention we chose; change it here (the tests check the table stays a bijection).
#
# - Index 0 is the sub-cell in the corner of the parent nearest the equator and the prime
#   meridian. Column indices grow away from the prime meridian (eastwards in the eastern
#   hemisphere, westwards in the western), row indices away from the equator.
# - Two-character levels write the column index, then the row index, as hex-style digits.
# - Single-character levels (3 and 6) number the sub-cells row by row from that corner, columns
#   first (a "Z" order). Entry d is the (column, row) written as digit d. Drawn for the
#   north-eastern hemisphere (north up, east right); the other hemispheres are its mirror image:
#
#       level 3 (2 × 3)      level 6 (2 × 2)
#           4 5                  2 3
#           2 3                  0 1
#           0 1
CELL_ORDER: Final[dict[int, tuple[tuple[int, int], ...]]] = {
    3: ((0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)),
    6: ((0, 0), (1, 0), (0, 1), (1, 1)),
}


def _code_lengths() -> dict[int, int]:
    """Cumulative code length per level: 4, 6, 7, 9, 11, 12, 14, 16, 18, 20."""
    lengths = {1: 4}
    for n in range(2, MAX_LEVEL + 1):
        lengths[n] = lengths[n - 1] + (1 if LEVELS[n].single else 2)
    return lengths


def _digit_tables() -> dict[int, npt.NDArray[np.uint8]]:
    """(column, row) -> digit per single-character level, the inverse of CELL_ORDER."""
    tables = {}
    for n, order in CELL_ORDER.items():
        table = np.zeros((LEVELS[n].cols, LEVELS[n].rows), dtype=np.uint8)
        for digit, (col, row) in enumerate(order):
            table[col, row] = digit
        tables[n] = table
    return tables


CODE_LENGTH: Final = _code_lengths()
_LEVEL_OF_LENGTH: Final = {length: n for n, length in CODE_LENGTH.items()}
_DIGIT_OF: Final = _digit_tables()
_L1: Final = LEVELS[1]
_EAST_COLUMNS: Final = 30  # level-1 columns 31..60 (0-based 30..59) are the eastern hemisphere


def check_level(level: object) -> int:
    """The level as an int, or InvalidParameter if it is not an integer 1..10."""
    if isinstance(level, bool) or not isinstance(level, int | np.integer):
        raise InvalidParameter(f"Beidou grid level must be an integer 1..10; got {level!r}")
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise InvalidParameter(f"Beidou grid level must be 1..10; got {level}")
    return int(level)


def cell_size(level: int) -> tuple[float, float]:
    """Width and height of a cell at this level, in degrees."""
    spec = LEVELS[check_level(level)]
    return spec.width / UNITS_PER_DEGREE, spec.height / UNITS_PER_DEGREE


def encode(lon: float, lat: float, level: int) -> str:
    """The Beidou grid code of the cell at `level` holding the WGS84/CGCS2000 point."""
    for name, value in (("longitude", lon), ("latitude", lat)):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InvalidParameter(f"{name} must be a number; got {value!r}")
    return str(encode_many(np.array([lon], dtype=float), np.array([lat], dtype=float), level)[0])


def lonlat_arrays(
    lons: npt.ArrayLike, lats: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Longitudes and latitudes as float arrays of one shape (any shape)."""
    lon = np.asarray(lons, dtype=float)
    lat = np.asarray(lats, dtype=float)
    if lon.shape != lat.shape:
        raise InvalidParameter(
            f"longitudes and latitudes must have the same shape; got {lon.shape} and {lat.shape}"
        )
    return lon, lat


def encode_many(lons: npt.ArrayLike, lats: npt.ArrayLike, level: int) -> npt.NDArray[np.str_]:
    """Beidou grid codes for arrays of points, vectorised with numpy; same shape as the input."""
    level = check_level(level)
    lon, lat = lonlat_arrays(lons, lats)
    _check_coordinates(lon.ravel(), lat.ravel())
    ox, oy, column, row = _origin_offsets(lon.ravel(), lat.ravel())

    length = CODE_LENGTH[level]
    chars = np.empty((lon.size, length), dtype=np.uint8)
    # lat = -0.0 is on the equator and written N, like 0.0.
    chars[:, 0] = np.where(lat.ravel() < 0, ord("S"), ord("N"))
    chars[:, 1] = ord("0") + (column + 1) // 10
    chars[:, 2] = ord("0") + (column + 1) % 10
    chars[:, 3] = ord("A") + row
    pos = 4
    for n in range(2, level + 1):
        spec = LEVELS[n]
        col_n = (ox // spec.width) % spec.cols
        row_n = (oy // spec.height) % spec.rows
        if spec.single:
            chars[:, pos] = _HEX_BYTES[_DIGIT_OF[n][col_n, row_n]]
            pos += 1
        else:
            chars[:, pos] = _HEX_BYTES[col_n]
            chars[:, pos + 1] = _HEX_BYTES[row_n]
            pos += 2
    return chars.view(f"S{length}").reshape(lon.shape).astype(f"U{length}")


def _check_coordinates(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]) -> None:
    """InvalidParameter naming the first point that is not finite or is off the grid."""
    one = lon.size == 1
    for name, values, limit in (("longitude", lon, 180.0), ("latitude", lat, MAX_LAT)):
        bad = ~np.isfinite(values) | (np.abs(values) > limit)
        if not bad.any():
            continue
        i = int(np.argmax(bad))
        where = "" if one else f" at index {i}"
        if not np.isfinite(values[i]):
            raise InvalidParameter(f"{name}{where} must be a finite number; got {values[i]}")
        if name == "latitude":
            raise InvalidParameter(
                f"latitude{where} {values[i]} is outside ±88°: the Beidou grid's polar caps "
                "are not supported"
            )
        raise InvalidParameter(f"longitude{where} {values[i]} is outside -180..180°")


def _to_units(degrees: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Degrees as whole units (1/2048″), rounding down except within _SNAP_UNITS of a unit."""
    scaled = degrees * UNITS_PER_DEGREE
    nearest = np.rint(scaled)
    snapped = np.where(np.abs(scaled - nearest) < _SNAP_UNITS, nearest, np.floor(scaled))
    return snapped.astype(np.int64)


def _origin_offsets(
    lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], ...]:
    """Unit offsets inside the level-1 cell counted from its origin corner, and the cell.

    Returns (ox, oy, column, row): ox counted away from the prime meridian, oy away from the
    equator, column 0..59 (written +1) and row 0..21 (written as a letter).
    """
    # Longitude follows the level-1 formula floor(lon/6°) + 31 on the signed value, so every
    # cell is [west, east); lon = 180° (the antimeridian) is kept in column 60 rather than
    # wrapped to column 1, so the cell still contains the point.
    world_width = 360 * UNITS_PER_DEGREE
    east_of_antimeridian = np.minimum(_to_units(lon) + 180 * UNITS_PER_DEGREE, world_width - 1)
    column = east_of_antimeridian // _L1.width
    ox = east_of_antimeridian - column * _L1.width
    # Western hemisphere: mirror so the offset counts westwards from the cell's eastern edge.
    ox = np.where(column < _EAST_COLUMNS, _L1.width - 1 - ox, ox)

    # Latitude is counted on |lat| (rows A, B, … away from the equator in both hemispheres), so
    # a southern cell is (south, north]; |lat| = 88° is kept in row V.
    from_equator = np.minimum(_to_units(np.abs(lat)), int(MAX_LAT) * UNITS_PER_DEGREE - 1)
    row = from_equator // _L1.height
    oy = from_equator - row * _L1.height
    return ox, oy, column, row


@dataclass(frozen=True)
class _Parsed:
    level: int
    south: bool
    column: int  # 0..59
    row: int  # 0..21
    ox: int  # offset of the cell's origin corner from the level-1 origin corner, in units
    oy: int


def _parse(code: object) -> _Parsed:
    """Validate a code and read it, or raise InvalidParameter saying what is wrong."""
    if not isinstance(code, str):
        raise InvalidParameter(f"a Beidou grid code must be a string; got {code!r}")
    level = _LEVEL_OF_LENGTH.get(len(code))
    if level is None:
        lengths = ", ".join(str(n) for n in CODE_LENGTH.values())
        raise InvalidParameter(
            f"Beidou grid code {code!r} has {len(code)} characters; codes of levels 1..10 have "
            f"{lengths} characters"
        )
    text = code.upper()
    if text[0] not in "NS":
        raise InvalidParameter(
            f"character 1 of Beidou grid code {code!r} must be N or S (hemisphere); got {code[0]!r}"
        )
    digits = text[1:3]
    if not (digits.isascii() and digits.isdigit() and 1 <= int(digits) <= 60):
        raise InvalidParameter(
            f"characters 2-3 of Beidou grid code {code!r} must be the level-1 longitude "
            f"column 01..60; got {code[1:3]!r}"
        )
    if text[3] not in _ROW_LETTERS:
        raise InvalidParameter(
            f"character 4 of Beidou grid code {code!r} must be the level-1 latitude row A..V "
            f"(4° bands from the equator to 88°); got {code[3]!r}"
        )
    ox = oy = 0
    pos = 4
    for n in range(2, level + 1):
        spec = LEVELS[n]
        if spec.single:
            value = _digit(code, pos, n, "cell", len(CELL_ORDER[n]))
            col_n, row_n = CELL_ORDER[n][value]
            pos += 1
        else:
            col_n = _digit(code, pos, n, "longitude", spec.cols)
            row_n = _digit(code, pos + 1, n, "latitude", spec.rows)
            pos += 2
        ox += col_n * spec.width
        oy += row_n * spec.height
    return _Parsed(level, text[0] == "S", int(digits) - 1, _ROW_LETTERS.index(text[3]), ox, oy)


def _digit(code: str, pos: int, level: int, what: str, count: int) -> int:
    """The value of the hex-style character at `pos`, which must be below `count`."""
    value = _HEX.find(code[pos].upper())
    if value < 0 or value >= count:
        raise InvalidParameter(
            f"character {pos + 1} of Beidou grid code {code!r} must be a level-{level} {what} "
            f"digit 0-{_HEX[count - 1]}; got {code[pos]!r}"
        )
    return value


def level_of(code: str) -> int:
    """The level (1..10) of a valid code."""
    return _parse(code).level


def parent(code: str, level: int) -> str:
    """The code of the cell at a coarser (or the same) level that contains this one."""
    parsed = _parse(code)
    level = check_level(level)
    if level > parsed.level:
        raise InvalidParameter(
            f"level {level} is finer than the code's level {parsed.level}; "
            f"a parent must be at level 1..{parsed.level}"
        )
    return code[: CODE_LENGTH[level]].upper()


def decode(code: str) -> tuple[float, float, float, float]:
    """The cell's bounds (west, south, east, north) in degrees."""
    p = _parse(code)
    spec = LEVELS[p.level]
    if p.column < _EAST_COLUMNS:
        # Western hemisphere: ox counts westwards from the cell's eastern edge.
        west_units = (p.column + 1) * _L1.width - p.ox - spec.width
    else:
        west_units = p.column * _L1.width + p.ox
    west_units -= 180 * UNITS_PER_DEGREE
    low = p.row * _L1.height + p.oy  # distance of the equator-side edge from the equator
    south_units, north_units = (-(low + spec.height), -low) if p.south else (low, low + spec.height)
    # Integer units divided once, so each bound is the correctly rounded degree value.
    return (
        west_units / UNITS_PER_DEGREE,
        south_units / UNITS_PER_DEGREE,
        (west_units + spec.width) / UNITS_PER_DEGREE,
        north_units / UNITS_PER_DEGREE,
    )


def cell_polygon(code: str) -> Polygon:
    """The cell as a lon/lat rectangle (EPSG:4326, x = longitude)."""
    return box(*decode(code))
