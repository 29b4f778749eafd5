"""Planners' reports per management area (unit grid, community, street, district): a summary,
a map drawn from our own data, and tables, as HTML, PDF, CSV or XLSX.

`collect` gathers the data (a plan run on a sync or an async connection, see
`query.plan`); `render` turns it into one of the formats without touching the database.
"""

from __future__ import annotations

from twin.errors import InvalidParameter

# The public level names and the grid_cells levels they stand for.
LEVELS = {"grid": "unit", "community": "community", "street": "street", "district": "district"}
LEVEL_NAMES_ZH = {"unit": "单元网格", "community": "社区", "street": "街道", "district": "区县"}
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FORMATS = tuple(MEDIA_TYPES)


def check_level(level: str) -> str:
    """The grid_cells level of a public level name ('grid' is the unit grid)."""
    key = level.strip().lower()
    if key == "unit":
        key = "grid"
    if key not in LEVELS:
        raise InvalidParameter(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    return LEVELS[key]


def check_format(fmt: str) -> str:
    key = fmt.strip().lower()
    if key not in MEDIA_TYPES:
        raise InvalidParameter(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    return key


def file_name(level: str, code: str, fmt: str) -> str:
    """A download name such as report-community-341502001001.pdf."""
    public = "grid" if level == "unit" else level
    return f"report-{public}-{code}.{fmt}"
