"""GB/T 30428.1 grid codes: 6 district + 3 street + 3 community + 2 or 3 unit-grid digits."""

from __future__ import annotations

from twin.errors import InvalidParameter

LEVELS = ("district", "street", "community", "unit")
PARENT = {"street": "district", "community": "street", "unit": "community"}
CHILD = {v: k for k, v in PARENT.items()}
_FIXED = {"district": 6, "street": 9, "community": 12}
_PARTS = "6 district + 3 street + 3 community"


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise InvalidParameter(f"unknown grid level {level!r}; use one of {', '.join(LEVELS)}")
    return level


def code_width(level: str, unit_width: int) -> int:
    return unit_width if level == "unit" else _FIXED[check_level(level)]


def code_problem(code: str, level: str, unit_width: int) -> str | None:
    """Why a code is not a valid code of this level, or None."""
    width = code_width(level, unit_width)
    if not code:
        return "missing code"
    if not code.isdigit() or not code.isascii():
        return f"code {code!r} must be digits only"
    if len(code) != width:
        parts = {
            "district": "6 digits (GB/T 2260)",
            "street": "9 digits (6 district + 3 street)",
            "community": "12 digits (6 district + 3 street + 3 community)",
            "unit": f"{width} digits ({_PARTS} + {width - 12} sequence)",
        }[level]
        return f"code {code} has {len(code)} digits; a {level} code has {parts}"
    if level != "district" and int(code[-(width - code_width(PARENT[level], unit_width)) :]) == 0:
        return f"code {code} ends in a zero sequence number"
    return None


def parent_code(code: str, level: str, unit_width: int) -> str | None:
    if level == "district":
        return None
    return code[: code_width(PARENT[level], unit_width)]


def unit_code(community: str, sequence: int, unit_width: int) -> str:
    digits = unit_width - 12
    if not 1 <= sequence < 10**digits:
        raise InvalidParameter(
            f"community {community} would need unit grid number {sequence}; a {unit_width}-digit "
            f"code holds at most {10**digits - 1} per community"
        )
    return f"{community}{sequence:0{digits}d}"
