"""CQL2 filters (OGC API Features Part 3) compiled to a WHERE fragment with bound values.

The ``cql2`` library parses CQL2-text or CQL2-JSON; we walk its JSON AST and build psycopg SQL
ourselves (``Expr.to_sql`` would inline the values). Every literal becomes a ``%s`` parameter,
every property an ``sql.Identifier`` of a registered field, every operator a fixed template from
the tables below: nothing else from the filter reaches the SQL text.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from itertools import chain
from typing import Any

import cql2
import shapely
from psycopg import sql
from shapely.errors import GEOSException

from layers.registry import Layer
from twin.errors import InvalidParameter

MAX_DEPTH = 50
MAX_NODES = 2000
MAX_CHARS = 100_000
# cql2's text parser recurses in Rust and overflows the C stack (a segfault, not an exception)
# at a few thousand nested parentheses or chained operators, so text is screened before it is
# parsed. The bound is loose: the real depth is checked exactly on the parsed tree.
_SCAN_LIMIT = 4 * MAX_DEPTH
_WORD = re.compile(r"[A-Za-z_]\w*")
_WORD_OPS = {"NOT", "LIKE", "IN", "BETWEEN", "IS", "DIV"}
_SYMBOL_OPS = set("+-*/%^=<>!")

NUMBER = ("integer", "double")
INSTANT = ("date", "timestamp")
_KIND_WORDS = {"integer": "an integer", "double": "a number", "json": "JSON", "text": "text"}
_COMPARE = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARITH = {
    "+": "({} + {})",
    "-": "({} - {})",
    "*": "({} * {})",
    "/": "({}::float8 / NULLIF({}, 0))",  # CQL2 '/' is real division, never integer division
    "%": "mod({}::numeric, NULLIF({}, 0)::numeric)",
    "div": "div({}::numeric, NULLIF({}, 0)::numeric)",
}
_PREDICATES = ("Intersects", "Within", "Contains", "Disjoint", "Equals", "Touches", "Crosses")
_SPATIAL = {f"s_{p.lower()}": f"ST_{p}({{}}, {{}})" for p in (*_PREDICATES, "Overlaps")}
# Metres on the spheroid: storage is lon/lat degrees, so both sides go through geography.
_DWITHIN = "ST_DWithin({}::geography, {}::geography, {})"
_INSTANT_OPS = {"t_after": ">", "t_before": "<", "t_equals": "=", "t_intersects": "="}
# How an instant compares with an interval's (start, end). A '..' end drops out of during and
# intersects; after, before and equals an interval open on the needed side are never true.
_INTERVAL_TESTS = {
    "t_after": ((1, ">"),),
    "t_before": ((0, "<"),),
    "t_equals": ((0, "="), (1, "=")),
    "t_during": ((0, ">"), (1, "<")),
    "t_intersects": ((0, ">="), (1, "<=")),
}
_OPEN_ENDS = {"t_during", "t_intersects"}
# With the literal first: T_AFTER(DATE('2020-01-01'), seen) is T_BEFORE(seen, DATE(...)).
_SWAPPED = {"t_after": "t_before", "t_before": "t_after", "t_equals": "t_equals"}
_SUPPORTED = ", ".join(
    ["and, or, not, =, <>, <, <=, >, >=, like, in, between, isNull, casei", *_ARITH]
    + [*_SPATIAL, "s_dwithin", *_INTERVAL_TESTS]
)


@dataclass(frozen=True)
class Frag:
    """A compiled piece of SQL, its parameters in placeholder order, and its value kind."""

    sql: sql.Composable
    params: tuple[Any, ...]
    kind: str  # a field type (integer, double, text, ...) or geometry
    label: str  # how error messages name it

    def wrap(self, template: str, kind: str | None = None) -> Frag:
        return _fmt(template, self, kind=kind or self.kind, label=self.label)

    @property
    def described(self) -> str:
        return f"{self.label} is {_KIND_WORDS.get(self.kind, 'a ' + self.kind)}"


def _fmt(template: str, *parts: Frag, kind: str, label: str = "an expression") -> Frag:
    """Fill the ``{}`` slots of a fixed template in order; params follow the same order."""
    composed = sql.SQL(template).format(*(p.sql for p in parts))
    return Frag(composed, tuple(chain.from_iterable(p.params for p in parts)), kind, label)


def _concat(parts: list[Frag], sep: str, kind: str) -> Frag:
    composed = sql.SQL(sep).join(p.sql for p in parts)
    return Frag(composed, tuple(chain.from_iterable(p.params for p in parts)), kind, "a list")


def _join(parts: list[Frag], sep: str, kind: str) -> Frag:
    """Conditions joined by AND or OR, in parentheses unless there is only one."""
    return parts[0] if len(parts) == 1 else _concat(parts, sep, kind).wrap("({})")


def _param(value: Any, kind: str, label: str, cast: str = "") -> Frag:
    return Frag(sql.SQL("%s" + cast), (value,), kind, label)


# --- parsing --------------------------------------------------------------------------------------
def compile_filter(text_or_json: str, lang: str, layer: Layer) -> tuple[sql.Composable, list[Any]]:
    """The ``filter`` of a request as a WHERE fragment over ``layer``'s table, and its values."""
    tree = parse_filter(text_or_json, lang)
    check_size(tree)
    frag = _Compiler(layer).expr(tree)
    if frag.kind != "boolean":
        raise InvalidParameter(
            f"filter must be a condition, true or false for each feature, but {frag.described}; "
            "compare it, e.g. height > 10"
        )
    return frag.sql, list(frag.params)


def parse_filter(text: str, lang: str) -> Any:
    """The JSON AST of a CQL2 filter, as the cql2 library produces it."""
    if lang not in ("cql2-text", "cql2-json"):
        raise InvalidParameter(
            f"filter-lang {lang[:40]!r} is not supported: use cql2-text or cql2-json"
        )
    if len(text) > MAX_CHARS:
        raise InvalidParameter(f"filter is longer than {MAX_CHARS} characters; simplify it")
    try:
        if lang == "cql2-json":  # serde_json refuses nesting beyond 128 levels by itself
            return cql2.parse_json(text).to_json()
        if _nesting_estimate(text) > _SCAN_LIMIT:
            raise InvalidParameter(f"filter is nested more than {MAX_DEPTH} levels deep")
        return cql2.parse_text(text).to_json()
    except cql2.ParseError as exc:
        raise InvalidParameter(f"filter is not valid {lang.upper()}: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    """Position and expectation from the parser's multi-line message, without the echo."""
    message = str(exc).strip()
    where = re.search(r"-->\s*(\d+):(\d+)", message)
    expected = re.search(r"=\s*((?:un)?expected .*)$", message, re.MULTILINE)
    if where:
        detail = f"at line {where[1]} column {where[2]}"
        return f"{detail}, {expected[1][:160]}" if expected else detail
    first = message.splitlines()[0][:200] if message else "it cannot be parsed"
    return f"{first}; check the ops ({{op, args}}), properties ({{property}}) and values"


def _skip_quoted(text: str, i: int) -> int:
    """Index after the quoted string or identifier starting at i (a doubled quote escapes)."""
    quote, i = text[i], i + 1
    while i < len(text):
        if text[i] == quote:
            if text[i + 1 : i + 2] != quote:
                return i + 1
            i += 1
        i += 1
    return i


def _nesting_estimate(text: str) -> int:
    """An upper bound of the parse depth: open levels plus the operators chained on each.

    AND, OR and commas start a new chain, so long conjunctions, IN lists and the coordinates
    of a WKT literal (where '-' is a sign) stay shallow.
    """
    levels: list[int] = []  # the chain length on each enclosing level
    ops = total = worst = i = 0
    while i < len(text):
        c = text[i]
        if c in "'\"":
            i = _skip_quoted(text, i)
            continue
        word = _WORD.match(text, i)
        if word:
            upper = word[0].upper()
            ops = 0 if upper in ("AND", "OR") else ops + (upper in _WORD_OPS)
            i = word.end()
            continue
        if c == "(":
            levels.append(ops)
            total, ops = total + ops + 2, 0
        elif c == ")" and levels:
            ops = levels.pop()
            total -= ops + 2
        elif c == ",":
            ops = 0
        elif c in _SYMBOL_OPS:
            ops += 1
        worst = max(worst, total + ops)
        i += 1
    return worst


def check_size(tree: Any) -> None:
    """Refuse trees deeper than MAX_DEPTH or with more than MAX_NODES nodes (no recursion)."""
    stack: list[tuple[Any, int]] = [(tree, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise InvalidParameter(f"filter is nested more than {MAX_DEPTH} levels deep")
        if nodes > MAX_NODES:
            raise InvalidParameter(f"filter has more than {MAX_NODES} terms; simplify it")
        stack.extend((child, depth + 1) for child in _children(node))


def _children(node: Any) -> list[Any]:
    """Sub-expressions; a geometry literal counts as one node whatever its size."""
    if isinstance(node, list):
        return node
    if isinstance(node, dict) and "type" not in node:
        inner = node.get("args", node.get("interval"))
        return inner if isinstance(inner, list) else []
    return []


def _is_literal(node: Any) -> bool:
    return not (isinstance(node, dict) and ("op" in node or "property" in node))


# --- literals -------------------------------------------------------------------------------------
def _scalar(value: Any, expect: str | None) -> Frag:
    if value is None:
        raise InvalidParameter("NULL cannot be compared: use IS NULL or IS NOT NULL")
    if isinstance(value, bool):
        return _param(value, "boolean", str(value).upper())
    if isinstance(value, int | float):
        return _number(value, expect)
    if isinstance(value, str):
        return _string(value, expect)
    if isinstance(value, list):
        raise InvalidParameter("a list of values is only allowed after IN, e.g. height IN (1, 2)")
    raise InvalidParameter(f"unsupported value {str(value)[:40]!r} in filter")


def _number(value: float, expect: str | None) -> Frag:
    if not math.isfinite(value):
        raise InvalidParameter("a number in the filter is out of range")
    if expect == "integer" and float(value).is_integer() and abs(value) < 2**63:
        return _param(int(value), "integer", str(int(value)))
    return _param(float(value), "double", f"{value:g}")


def _string(value: str, expect: str | None) -> Frag:
    if expect in INSTANT:
        return _instant(value, expect)
    if expect == "time":
        try:
            return _param(time.fromisoformat(value), "time", repr(value))
        except ValueError:
            raise InvalidParameter(f"{value[:40]!r} is not a time: use HH:MM:SS") from None
    return _param(value, "text", repr(value[:40]), "::text")


def _instant(text: Any, expect: str | None) -> Frag:
    """A date or timestamp literal, converted to what it is compared with.

    Dates are UTC days (as the datetime parameter reads them): a timestamp compared with a date
    column is bound as a naive UTC timestamp, so the session time zone plays no part.
    """
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        if len(text) == 10:
            day = date.fromisoformat(text)
            if expect != "timestamp":
                return _param(day, "date", f"DATE {text}")
            return _param(datetime(day.year, day.month, day.day, tzinfo=UTC), "timestamp", text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"{str(text)[:40]!r} is not a date or timestamp: use RFC 3339, e.g. 2024-05-01 or "
            "2024-05-01T12:00:00Z"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if expect == "date":
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return _param(moment, "timestamp", f"TIMESTAMP {text}")


def _geometry(geom: shapely.Geometry) -> Frag:
    """A geometry literal in CRS84 (lon, lat), bound as GeoJSON text, flattened to 2D."""
    if geom.is_empty:
        raise InvalidParameter("a geometry literal in the filter is empty")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise InvalidParameter(f"a geometry literal in the filter is invalid: {reason[:80]}")
    _check_lonlat(geom.bounds, "a geometry literal")
    literal = _param(shapely.to_geojson(geom), "geometry", "a geometry literal", "::text")
    return literal.wrap("ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON({}), 4326))")


def _check_lonlat(bounds: Any, what: str) -> None:
    minx, miny, maxx, maxy = bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidParameter(
            f"{what} is outside longitude/latitude range: filter geometries are CRS84, "
            "longitude first"
        )


def _bbox(values: Any) -> Frag:
    ok = isinstance(values, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )
    if ok and len(values) == 6:  # minx, miny, minz, maxx, maxy, maxz: heights are ignored
        values = [values[0], values[1], values[3], values[4]]
    if not ok or len(values) != 4:
        raise InvalidParameter("BBOX needs 4 numbers: minlon, minlat, maxlon, maxlat")
    if values[0] > values[2] or values[1] > values[3]:  # no crossing of the antimeridian
        raise InvalidParameter("BBOX is inverted: give the lower corner first (min <= max)")
    _check_lonlat(values, "BBOX")
    text = "ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
    return Frag(sql.SQL(text), tuple(float(v) for v in values), "geometry", "BBOX")


def _geometry_literal(node: Any) -> Frag:
    try:
        if isinstance(node, str):  # WKT in quotes
            return _geometry(shapely.from_wkt(node))
        return _geometry(shapely.from_geojson(json.dumps(node)))
    except GEOSException as exc:
        raise InvalidParameter(f"a geometry literal cannot be read: {str(exc)[:100]}") from None


# --- the walk -------------------------------------------------------------------------------------
def _need(frag: Frag, kinds: tuple[str, ...], what: str, hint: str) -> Frag:
    if frag.kind not in kinds:
        raise InvalidParameter(f"{what}, but {frag.described}; {hint}")
    return frag


def _comparable(a: Frag, b: Frag, op: str) -> None:
    for side in (a, b):
        if side.kind in ("geometry", "json"):
            raise InvalidParameter(
                f"{side.described} and cannot be used with {op.upper()}; compare geometries "
                "with S_EQUALS or S_INTERSECTS"
            )
    same = a.kind == b.kind or all(k in NUMBER for k in (a.kind, b.kind))
    if not (same or all(k in INSTANT for k in (a.kind, b.kind))):
        raise InvalidParameter(
            f"type mismatch in {op.upper()}: {a.described} but {b.described}; compare values "
            "of the same type (quote text, use DATE('2024-01-31') for dates)"
        )


def _arity(op: str, args: list[Any], count: int) -> None:
    if len(args) != count:
        raise InvalidParameter(f"{op.upper()} takes {count} arguments, got {len(args)}")


class _Compiler:
    """Walks the cql2 JSON AST of one filter against one layer's fields."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        self.kinds = {f.name: f.type for f in layer.fields}
        self.ops = {"and": self._logic, "or": self._logic, "not": self._not, "in": self._in}
        self.ops |= {"like": self._like, "between": self._between, "isnull": self._is_null}
        self.ops |= {"casei": self._casei, "s_dwithin": self._dwithin}
        self.ops |= dict.fromkeys(_COMPARE, self._compare)
        self.ops |= dict.fromkeys(_ARITH, self._arith)
        self.ops |= dict.fromkeys(_SPATIAL, self._spatial)
        self.ops |= dict.fromkeys(_INTERVAL_TESTS, self._temporal)

    def expr(self, node: Any, expect: str | None = None) -> Frag:
        if isinstance(node, dict):
            if "op" in node:
                return self._op(node)
            if "property" in node:
                return self._property(node["property"])
            return self._literal_object(node, expect)
        return _scalar(node, expect)

    def _op(self, node: dict) -> Frag:
        name, args = node["op"], node.get("args", [])
        if not isinstance(name, str) or not isinstance(args, list):
            raise InvalidParameter("filter has a malformed operation: give op and args")
        handler = self.ops.get(name.lower())
        if handler is None:
            reason = " (no unaccent in the database)" if name.lower() == "accenti" else ""
            raise InvalidParameter(
                f"unknown or unsupported function or operator {name[:40]!r}{reason}; "
                f"supported: {_SUPPORTED}"
            )
        return handler(name.lower(), args)

    def _property(self, name: Any) -> Frag:
        if isinstance(name, str) and name in self.kinds:
            return Frag(sql.Identifier(name), (), self.kinds[name], f"property {name!r}")
        if name in ("geom", "geometry"):
            return Frag(sql.Identifier("geom"), (), "geometry", "the geometry")
        if name in ("id", "fid"):
            return Frag(sql.Identifier("fid"), (), "integer", "the feature id")
        raise InvalidParameter(
            f"unknown property {str(name)[:60]!r} in collection {self.layer.name!r}; "
            f"queryable properties are: {', '.join(['geom', 'id', *self.kinds])}"
        )

    def _literal_object(self, node: dict, expect: str | None) -> Frag:
        if "date" in node or "timestamp" in node:
            return _instant(node.get("date", node.get("timestamp")), expect)
        if "bbox" in node:
            return _bbox(node["bbox"])
        if "type" in node:
            return _geometry_literal(node)
        if "interval" in node:
            raise InvalidParameter("INTERVAL(start, end) is only allowed as second argument of T_*")
        raise InvalidParameter(f"unsupported value {json.dumps(node)[:60]} in filter")

    def _pair(self, left: Any, right: Any) -> tuple[Frag, Frag]:
        """Both sides, a literal typed after the other side: height = 3 binds the integer 3."""
        if _is_literal(left) and not _is_literal(right):
            b = self.expr(right)
            return self.expr(left, b.kind), b
        a = self.expr(left)
        return a, self.expr(right, a.kind)

    # --- logic and comparison
    def _logic(self, op: str, args: list[Any]) -> Frag:
        if not args:
            raise InvalidParameter(f"{op.upper()} needs at least one condition")
        word = {"and": " AND ", "or": " OR "}[op]
        return _join([self._condition(a, op) for a in args], word, "boolean")

    def _condition(self, node: Any, op: str) -> Frag:
        hint = "give a condition such as height > 10"
        return _need(self.expr(node), ("boolean",), f"{op.upper()} needs conditions", hint)

    def _not(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 1)
        return self._condition(args[0], op).wrap("(NOT {})")

    def _compare(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 2)
        a, b = self._pair(args[0], args[1])
        _comparable(a, b, op)
        return _fmt("({} " + _COMPARE[op] + " {})", a, b, kind="boolean")

    def _like(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 2)
        hint = "LIKE works on text; compare numbers and dates with =, <, > or BETWEEN"
        a, b = (_need(f, ("text",), "LIKE needs text", hint) for f in self._pair(*args))
        return _fmt("({} LIKE {})", a, b, kind="boolean")

    def _casei(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 1)
        hint = "use CASEI on text, e.g. CASEI(name) = CASEI('Park')"
        text = _need(self.expr(args[0], "text"), ("text",), "CASEI needs text", hint)
        return text.wrap("lower({})")

    def _in(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 2)
        if not isinstance(args[1], list) or not args[1]:
            raise InvalidParameter("IN needs a non-empty list of values, e.g. height IN (1, 2)")
        value = self.expr(args[0])
        items = [self._pair(args[0], item)[1] for item in args[1]]
        for item in items:
            _comparable(value, item, op)
        return _fmt("({} IN ({}))", value, _concat(items, ", ", value.kind), kind="boolean")

    def _between(self, op: str, args: list[Any]) -> Frag:
        if len(args) == 2 and isinstance(args[1], list):
            args = [args[0], *args[1]]
        _arity(op, args, 3)
        value = self.expr(args[0])
        low, high = self.expr(args[1], value.kind), self.expr(args[2], value.kind)
        _comparable(value, low, op)
        _comparable(value, high, op)
        return _fmt("({} BETWEEN {} AND {})", value, low, high, kind="boolean")

    def _is_null(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 1)
        return self.expr(args[0]).wrap("({} IS NULL)", "boolean")

    def _arith(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 2)
        what = f"{op.upper()} needs numbers"
        a, b = (_need(self.expr(x), NUMBER, what, "arithmetic works on numbers") for x in args)
        both_int = a.kind == b.kind == "integer" and op in "+-*"
        return _fmt(_ARITH[op], a, b, kind="integer" if both_int else "double")

    # --- space and time
    def _geometry_arg(self, node: Any, op: str) -> Frag:
        if isinstance(node, str):
            return _geometry_literal(node)
        hint = "use geom or a geometry literal such as POINT(lon lat) or BBOX(...)"
        return _need(self.expr(node), ("geometry",), f"{op.upper()} needs geometries", hint)

    def _spatial(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 2)
        a, b = (self._geometry_arg(x, op) for x in args)
        return _fmt(_SPATIAL[op], a, b, kind="boolean")

    def _dwithin(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 3)
        a, b = (self._geometry_arg(x, op) for x in args[:2])
        if not isinstance(args[2], int | float) or isinstance(args[2], bool) or args[2] < 0:
            raise InvalidParameter("S_DWITHIN needs a distance in metres >= 0 as third argument")
        return _fmt(_DWITHIN, a, b, _number(args[2], None), kind="boolean")

    def _temporal(self, op: str, args: list[Any]) -> Frag:
        _arity(op, args, 2)
        left, right = args
        if _is_literal(left) and not _is_literal(right) and op in _SWAPPED:
            op, left, right = _SWAPPED[op], right, left
        hint = "give a date or timestamp property first, e.g. T_AFTER(seen, DATE('2024-01-01'))"
        what = f"{op.upper()} needs a date or timestamp"
        prop = _need(self.expr(left), INSTANT, what, hint)
        if isinstance(right, dict) and "interval" in right:
            return self._interval(op, prop, right["interval"])
        if op not in _INSTANT_OPS:
            raise InvalidParameter(f"{op.upper()} needs INTERVAL(start, end) as second argument")
        other = _need(self.expr(right, prop.kind), INSTANT, what, hint)
        return _fmt("({} " + _INSTANT_OPS[op] + " {})", prop, other, kind="boolean")

    def _interval(self, op: str, prop: Frag, bounds: Any) -> Frag:
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise InvalidParameter("INTERVAL needs a start and an end ('..' for an open end)")
        ends = [_interval_end(b, prop.kind) for b in bounds]
        tests = []
        for index, symbol in _INTERVAL_TESTS[op]:
            end = ends[index]
            if end is None and op not in _OPEN_ENDS:
                return Frag(sql.SQL("FALSE"), (), "boolean", "FALSE")
            if end is not None:
                tests.append(_fmt("({} " + symbol + " {})", prop, end, kind="boolean"))
        if not tests:
            return prop.wrap("({} IS NOT NULL)", "boolean")
        return _join(tests, " AND ", "boolean")


def _interval_end(node: Any, kind: str) -> Frag | None:
    if node in ("..", ""):
        return None
    if isinstance(node, dict) and ("date" in node or "timestamp" in node):
        return _instant(node.get("date", node.get("timestamp")), kind)
    if isinstance(node, str):
        return _instant(node, kind)
    raise InvalidParameter("INTERVAL bounds must be dates, timestamps or '..'")
