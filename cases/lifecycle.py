"""The case lifecycle: which transitions exist, and who may make them.

    上报 ─立案→ 立案 ─派遣→ 派遣 ─处置→ 处置 ─核查→ 核查 ─结案→ 结案
     └─作废→ 作废                ↑              │
                                 └────返工──────┘

A state names the last step done. 上报 that is not accepted is closed as 作废 (a duplicate,
not the city's business, no such problem on site); nothing else is ever thrown away. A case
that fails its 核查 goes back to its department (返工, rework: ``{"to": "派遣"}`` or
``{"to": "返工"}`` from 处置); its deadline still runs from the first 派遣, so rework does not
reset the clock. 处置 is for the department the case was dispatched to (its editors, editors
without a department, admins); every other step needs the editor role.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.auth import Principal
from twin.errors import (
    Conflict,
    Forbidden,
    InvalidParameter,
    PreconditionFailed,
    PreconditionRequired,
)

from . import STATES

REWORK = "返工"


@dataclass(frozen=True)
class Move:
    action: str  # the step's name in the history: a state, or 返工
    to: str  # the state after it
    by_department: bool = False  # reserved to the dispatched department


MOVES: dict[tuple[str, str], Move] = {
    ("上报", "立案"): Move("立案", "立案"),
    ("上报", "作废"): Move("作废", "作废"),
    ("立案", "派遣"): Move("派遣", "派遣"),
    ("派遣", "处置"): Move("处置", "处置", by_department=True),
    ("处置", "核查"): Move("核查", "核查"),
    ("处置", "派遣"): Move(REWORK, "派遣"),
    ("核查", "结案"): Move("结案", "结案"),
}
FINAL = ("结案", "作废")


def allowed_from(state: str) -> list[str]:
    return [to for (frm, to) in MOVES if frm == state]


def next_move(code: str, state: str, to: str) -> Move:
    """The move from ``state`` to ``to``; anything out of order is a conflict that says which
    moves there are."""
    target = "派遣" if to == REWORK else to
    if target not in STATES:
        raise InvalidParameter(
            f"unknown state {to!r}: a case goes to one of {', '.join(STATES)} (or {REWORK}, "
            "rework after a failed 核查)"
        )
    move = MOVES.get((state, target))
    if move is None or (to == REWORK and move.action != REWORK):
        if state in FINAL:
            raise Conflict(f"case {code} is {state}: a closed case does not move any more")
        options = " or ".join(allowed_from(state))
        raise Conflict(f"case {code} is {state}: it can go to {options} next, not to {to}")
    return move


def check_actor(who: Principal, move: Move, code: str, department: str | None) -> None:
    """Only the dispatched department handles a case (403 for another department's editor)."""
    if not move.by_department or who.role == "admin" or who.department is None:
        return
    if who.department != department:
        raise Forbidden(
            f"case {code} is dispatched to department {department}: editors of "
            f"{who.department} handle (处置) only the cases dispatched to them"
        )


def parse_version(if_match: str | None) -> int:
    """The case version in an If-Match header ("3" or W/"3"); a step without one is refused,
    so nobody moves a case on a state they have not seen."""
    if not if_match:
        raise PreconditionRequired(
            "send If-Match with the ETag of the case as you read it (GET /cases/{code}), so "
            "a step is never taken on a state you have not seen"
        )
    digits = if_match.strip().removeprefix("W/").strip('"')
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 9):
        raise PreconditionFailed(f"If-Match {if_match!r} is not an ETag of a case")
    return int(digits)
