"""Component codes (部件标识码, GB/T 30428.2) and the sequences that generate them.

16 digits = 6 district (GB/T 2260) + 2 major class + 2 minor class + 6 sequence; in 17-digit
mode (GB/T 47678, unverified) the minor class has 3 digits. The sequence counts per district
and class; ``twin.component_sequences`` keeps the last number given, and every number is taken
under that row's lock, so concurrent writers never share one.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from components.classes import class_width
from twin.errors import InvalidData, InvalidParameter

DISTRICT_DIGITS = 6
SEQUENCE_DIGITS = 6
MAX_SEQUENCE = 10**SEQUENCE_DIGITS - 1


def _layout(width: int) -> str:
    minor = class_width(width) - 2
    return f"6 district + 2 major class + {minor} minor class + 6 sequence"


def code_problem(code: str, width: int = 16) -> str | None:
    """What is wrong with a component code, in words a surveyor can act on; None when valid."""
    layout = _layout(width)
    if not code:
        return "empty code"
    if not (code.isascii() and code.isdigit()):
        return f"code {code!r} must have digits only ({width} digits: {layout})"
    if len(code) != width:
        return f"code {code} has {len(code)} digits; a component code has {width} ({layout})"
    district, class_code, seq = split_code(code, width)
    if district == "000000":
        return f"code {code} has a zero district (the first 6 digits)"
    if class_code[:2] == "00" or class_code[2:].strip("0") == "":
        return f"code {code} has a zero major or minor class ({class_code})"
    if seq == 0:
        return f"code {code} has a zero sequence (the last 6 digits start at 000001)"
    return None


def split_code(code: str, width: int = 16) -> tuple[str, str, int]:
    """(district, class code, sequence number) of a code of the given width."""
    if len(code) != width:
        raise InvalidData(f"code {code!r} does not have {width} digits")
    end = DISTRICT_DIGITS + class_width(width)
    return code[:DISTRICT_DIGITS], code[DISTRICT_DIGITS:end], int(code[end:])


def make_code(district: str, class_code: str, seq: int) -> str:
    return f"{district}{class_code}{seq:0{SEQUENCE_DIGITS}d}"


def district_problem(district: str) -> str | None:
    if len(district) == DISTRICT_DIGITS and district.isascii() and district.isdigit():
        return None
    return f"district {district!r} must be a 6-digit district code (GB/T 2260)"


def _check_key(district: str, class_code: str, width: int) -> None:
    why = district_problem(district)
    if why:
        raise InvalidParameter(why)
    digits = class_width(width)
    if not (len(class_code) == digits and class_code.isascii() and class_code.isdigit()):
        raise InvalidParameter(f"class {class_code!r} must be a {digits}-digit class code")


def next_codes(
    conn: psycopg.Connection, district: str, class_code: str, n: int = 1, width: int = 16
) -> list[str]:
    """Take ``n`` consecutive new codes of a district and class (in the caller's transaction).

    One upsert moves the sequence by ``n`` and returns where it ends, holding the row lock until
    the transaction ends: a concurrent caller waits and then continues after these numbers.
    """
    _check_key(district, class_code, width)
    if n < 1:
        raise InvalidParameter(f"cannot take {n} codes")
    row = conn.execute(TAKE_SQL, (district, class_code, n)).fetchone()
    assert row is not None
    return codes_ending_at(district, class_code, int(row[0]), n)


# Moves a sequence on by n and returns where it ends; the upsert holds the row lock until the
# transaction ends, so a concurrent caller waits and continues after these numbers.
TAKE_SQL = (
    "INSERT INTO twin.component_sequences AS s (district, class_code, last) "
    "VALUES (%s, %s, %s) ON CONFLICT (district, class_code) "
    "DO UPDATE SET last = s.last + EXCLUDED.last RETURNING last"
)
# Raises sequences to at least the given numbers, never lowers them.
ADVANCE_SQL = (
    "INSERT INTO twin.component_sequences AS s (district, class_code, last) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
    "ON CONFLICT (district, class_code) DO UPDATE SET last = greatest(s.last, EXCLUDED.last)"
)


def codes_ending_at(district: str, class_code: str, last: int, n: int) -> list[str]:
    """The n codes whose sequence numbers end at ``last``; refuses past the 6-digit range."""
    if last > MAX_SEQUENCE:
        raise InvalidData(
            f"district {district} class {class_code} has no free sequence numbers left "
            f"({n} wanted, the 6-digit sequence ends at {MAX_SEQUENCE})"
        )
    return [make_code(district, class_code, s) for s in range(last - n + 1, last + 1)]


def advance_params(codes: Iterable[str]) -> tuple[list[str], list[str], list[int]] | None:
    """ADVANCE_SQL's arrays for some codes, in a fixed order so writers lock rows alike."""
    top = highest_sequences(codes)
    if not top:
        return None
    keys = sorted(top)
    return [k[0] for k in keys], [k[1] for k in keys], [top[k] for k in keys]


def highest_sequences(codes: Iterable[str]) -> dict[tuple[str, str], int]:
    """(district, class) → the highest sequence number among valid codes (width by length)."""
    top: dict[tuple[str, str], int] = {}
    for code in codes:
        if len(code) not in (16, 17) or code_problem(code, len(code)):
            continue
        district, class_code, seq = split_code(code, len(code))
        key = (district, class_code)
        top[key] = max(seq, top.get(key, 0))
    return top


def advance_past(conn: psycopg.Connection, codes: Iterable[str]) -> int:
    """Raise each sequence to at least the highest of the given codes, never lower it.

    Called with imported or hand-given codes, so codes generated later never collide with them.
    Returns how many sequences were looked at.
    """
    params = advance_params(codes)
    if params is None:
        return 0
    conn.execute(ADVANCE_SQL, params)
    return len(params[0])
