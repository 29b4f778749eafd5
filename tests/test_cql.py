"""CQL2 filters compiled to bound SQL: the SQL alone, then the rows a real PostGIS returns."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cql2
import psycopg
import pytest
from psycopg import sql

from layers.cql import MAX_DEPTH, MAX_NODES, compile_filter
from layers.registry import Field, Layer
from twin.errors import InvalidParameter

FIELDS = (
    Field("name", "text"),
    Field("height", "integer"),
    Field("ratio", "double"),
    Field("ok", "boolean"),
    Field("seen", "date"),
)
LAYER = Layer(
    name="t",
    title="t",
    description="",
    schema_name="published",
    table_name="t",
    geometry_type="Point",
    fields=FIELDS,
)
DB_LAYER = Layer(
    name="cql_t",
    title="cql_t",
    description="",
    schema_name="published",
    table_name="cql_t",
    geometry_type="Point",
    fields=(*FIELDS, Field("at", "timestamp")),
)
REPO = Path(__file__).resolve().parents[1]


def text_sql(filter_text: str, lang: str = "cql2-text") -> tuple[str, list]:
    where, params = compile_filter(filter_text, lang, LAYER)
    return where.as_string(None), params


def refused(filter_text: str, lang: str = "cql2-text", layer: Layer = LAYER) -> str:
    with pytest.raises(InvalidParameter) as info:
        compile_filter(filter_text, lang, layer)
    return info.value.message


# --- the SQL alone ------------------------------------------------------------------------------
def test_comparisons_bind_every_value_and_quote_every_property():
    where, params = text_sql("name = 'a' AND height > 3 OR ratio <= 0.5")
    assert where == '((("name" = %s::text) AND ("height" > %s)) OR ("ratio" <= %s))'
    assert params == ["a", 3, 0.5]


def test_literal_is_typed_after_the_property_it_is_compared_with():
    assert text_sql("height = 3") == ('("height" = %s)', [3])
    assert type(text_sql("height = 3")[1][0]) is int
    assert text_sql("3 < height") == ('(%s < "height")', [3])
    assert type(text_sql("ratio = 3")[1][0]) is float
    assert text_sql("height = 3.5")[1] == [3.5]
    where, params = text_sql("seen = '2024-02-15'")
    assert where == '("seen" = %s)' and str(params[0]) == "2024-02-15"


def test_text_and_json_forms_compile_to_the_same_sql():
    text = "name LIKE 'B%' AND height BETWEEN 1 AND 5"
    as_json = json.dumps(
        {
            "op": "and",
            "args": [
                {"op": "like", "args": [{"property": "name"}, "B%"]},
                {"op": "between", "args": [{"property": "height"}, 1, 5]},
            ],
        }
    )
    assert text_sql(text) == text_sql(as_json, "cql2-json")


def test_in_between_is_null_casei_and_not():
    assert text_sql("height IN (1, 2)") == ('("height" IN (%s, %s))', [1, 2])
    assert text_sql("NOT height BETWEEN 1 AND 3") == ('(NOT ("height" BETWEEN %s AND %s))', [1, 3])
    assert text_sql("name IS NOT NULL") == ('(NOT ("name" IS NULL))', [])
    assert text_sql("CASEI(name) LIKE CASEI('Pa%')") == (
        '(lower("name") LIKE lower(%s::text))',
        ["Pa%"],
    )


def test_arithmetic_divides_as_real_numbers_and_never_by_zero():
    where, params = text_sql("height / 4 + 1 > ratio")
    assert where == '((("height"::float8 / NULLIF(%s, 0)) + %s) > "ratio")'
    assert params == [4.0, 1.0]


def test_spatial_literals_are_bound_geojson_and_envelopes():
    where, params = text_sql("S_INTERSECTS(geom, POINT(117.2 31.8))")
    assert where == (
        'ST_Intersects("geom", ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(%s::text), 4326)))'
    )
    assert json.loads(params[0]) == {"type": "Point", "coordinates": [117.2, 31.8]}
    where, params = text_sql("S_WITHIN(geometry, BBOX(117, 31, 118, 32))")
    assert where == 'ST_Within("geom", ST_MakeEnvelope(%s, %s, %s, %s, 4326))'
    assert params == [117.0, 31.0, 118.0, 32.0]
    for op in ("S_CONTAINS", "S_DISJOINT", "S_EQUALS", "S_TOUCHES", "S_CROSSES", "S_OVERLAPS"):
        name = "ST_" + op[2:].capitalize()
        assert text_sql(f"{op}(geom, BBOX(0, 0, 1, 1))")[0].startswith(f'{name}("geom", ')


def test_dwithin_measures_metres_on_the_spheroid():
    where, params = text_sql("S_DWITHIN(geom, POINT(117.2 31.8), 250)")
    assert where.startswith('ST_DWithin("geom"::geography, ST_Force2D(')
    assert where.endswith("::geography, %s)") and params[1] == 250.0


def test_temporal_operators_against_instants_and_open_intervals():
    assert text_sql("T_AFTER(seen, DATE('2024-01-01'))")[0] == '("seen" > %s)'
    where, params = text_sql("T_DURING(seen, INTERVAL('2024-01-01', '2024-12-31'))")
    assert where == '(("seen" > %s) AND ("seen" < %s))' and len(params) == 2
    assert text_sql("T_INTERSECTS(seen, INTERVAL('2024-01-01', '..'))")[0] == '("seen" >= %s)'
    assert text_sql("T_AFTER(seen, INTERVAL('2024-01-01', '..'))") == ("FALSE", [])
    assert text_sql("T_AFTER(DATE('2024-01-01'), seen)")[0] == '("seen" < %s)'


def test_values_never_reach_the_sql_text():
    filters = [
        "name = 'x''); DROP TABLE t; --'",
        "name LIKE '%/* */%' OR name IN ('a\"b', 'pg_sleep(10)')",
        "S_INTERSECTS(geom, POINT(1 2)) AND T_AFTER(seen, DATE('2024-01-01'))",
    ]
    for text in filters:
        where, params = text_sql(text)
        assert where.count("%s") == len(params)
        for banned in ("DROP", "--", "/*", "pg_sleep", "'"):
            assert banned not in where


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name = 'a", ["CQL2-TEXT", "line 1 column 8"]),
        ("name == 'a'", ["CQL2-TEXT", "column 7"]),
        ("x = 1", ["unknown property 'x'", "geom, id, name, height, ratio, ok, seen"]),
        ('"name; DROP TABLE x" = 1', ["unknown property 'name; DROP TABLE x'"]),
        ('"na""me" = 1', ["unknown property 'na\"me'"]),
        ("pg_sleep(10) = 1", ["'pg_sleep'", "supported"]),
        ("A_CONTAINS(name, ('a'))", ["'a_contains'"]),
        ("ACCENTI(name) = ACCENTI('a')", ["'accenti'"]),
        ("height ^ 2 > 4", ["'^'"]),
        ("name LIKE 5", ["LIKE needs text", "5 is a number"]),
        ("height LIKE 'a%'", ["LIKE needs text", "property 'height' is an integer"]),
        ("height = 'a'", ["type mismatch", "'a' is text"]),
        ("ok = 1", ["type mismatch"]),
        ("S_INTERSECTS(height, POINT(1 2))", ["S_INTERSECTS needs geometries", "'height'"]),
        ("geom = POINT(1 2)", ["S_EQUALS"]),
        ("T_AFTER(height, DATE('2024-01-01'))", ["T_AFTER needs a date or timestamp"]),
        ("T_DURING(seen, DATE('2024-01-01'))", ["INTERVAL"]),
        ("T_AFTER(seen, DATE('2024-02-30'))", ["'2024-02-30' is not a date"]),
        ("T_CONTAINS(seen, DATE('2024-01-01'))", ["'t_contains'"]),
        ("height = NULL", ["IS NULL"]),
        ("height", ["must be a condition"]),
        ("ok AND height", ["AND needs conditions"]),
        ("S_INTERSECTS(geom, POINT(500000 3500000))", ["longitude/latitude"]),
        ("S_INTERSECTS(geom, BBOX(1, 0, 0, 1))", ["inverted"]),
        ("S_INTERSECTS(geom, POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)))", ["invalid", "Self-inter"]),
        ("S_DWITHIN(geom, POINT(1 2), -5)", ["metres"]),
        ("height = 1e400", ["out of range"]),
    ],
)
def test_bad_filters_are_refused_with_what_to_fix(text, words):
    message = refused(text)
    for word in words:
        assert word in message


def test_bad_json_and_language_are_refused():
    assert "CQL2-JSON" in refused("{oops", "cql2-json")
    assert "CQL2-JSON" in refused('{"op": "=", "args": [{"property": ["x"]}, 1]}', "cql2-json")
    assert "takes 2 arguments" in refused(
        '{"op": "=", "args": [{"property": "name"}]}', "cql2-json"
    )
    assert "must be a condition" in refused('"name"', "cql2-json")
    assert "cql2-text or cql2-json" in refused("name = 'a'", "sql")


def test_nesting_and_size_limits():
    ok = "NOT " * (MAX_DEPTH - 1) + "ok"
    assert text_sql(ok)[0].count("NOT") == MAX_DEPTH - 1
    assert "levels deep" in refused("NOT " * MAX_DEPTH + "ok")
    nested: dict = {"property": "ok"}
    for _ in range(MAX_DEPTH + 10):
        nested = {"op": "not", "args": [nested]}
    assert "levels deep" in refused(json.dumps(nested), "cql2-json")
    many = "height IN (" + ", ".join(str(i) for i in range(MAX_NODES + 1)) + ")"
    assert f"more than {MAX_NODES}" in refused(many)
    assert "longer than" in refused("name = '" + "x" * 200_000 + "'")


def test_deep_text_is_refused_before_the_parser_can_overflow_its_stack():
    """cql2's Rust parser segfaults on a few thousand nested levels, so run it out of process."""
    attacks = [
        "(" * 5000 + "ok" + ")" * 5000,
        "NOT " * 20000 + "ok",
        "height" + " + 1" * 20000 + " > 0",
        "-" * 20000 + "1 = height",
        "f(" * 5000 + "1" + ")" * 5000 + " = 1",
        "POINT AND (" + "-" * 20000 + "1 = 1)",
        "S_INTERSECTS(geom, POINT(1" + " -1" * 20000 + "))",
        "name = '" + "(" * 20000 + "' AND " + "NOT " * 20000 + "ok",
    ]
    script = textwrap.dedent(
        """
        import json, sys
        from layers.cql import compile_filter
        from layers.registry import Field, Layer
        from twin.errors import InvalidParameter
        layer = Layer("t", "t", "", "published", "t", "Point", fields=(Field("ok", "boolean"),))
        for attack in json.load(sys.stdin):
            try:
                compile_filter(attack, "cql2-text", layer)
            except InvalidParameter:
                continue
            raise SystemExit("compiled: " + attack[:40])
        print("all refused")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(attacks),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "all refused"


# --- against PostGIS ----------------------------------------------------------------------------
ROWS = [
    # fid, lon, lat, name, height, ratio, ok, seen, at
    (1, 117.20, 31.80, "Alpha Park", 10, 0.5, True, "2024-01-01", "2024-01-01T08:00:00Z"),
    (2, 117.21, 31.81, "beta", 20, 1.5, False, "2024-02-15", "2024-02-15T12:00:00Z"),
    (3, 117.22, 31.82, "O'Brien; --", 30, 2.5, True, "2024-03-31", "2024-03-31T23:30:00Z"),
    (4, 117.30, 31.90, "Gamma park", None, None, None, None, None),
    (5, -70.0, -33.0, "delta 100%", 5, -1.0, False, "2023-12-31", "2023-12-31T23:59:00Z"),
    (6, None, None, None, 40, 10.0, True, "2024-06-01", "2024-06-01T00:00:00Z"),
]


@pytest.fixture(scope="module")
def cql_table(pg_url):
    with psycopg.connect(pg_url) as conn:
        conn.execute("DROP TABLE IF EXISTS published.cql_t")
        conn.execute(
            "CREATE TABLE published.cql_t (fid bigint PRIMARY KEY, geom geometry(Point, 4326), "
            "name text, height bigint, ratio double precision, ok boolean, seen date, "
            "at timestamptz)"
        )
        for fid, lon, lat, *values in ROWS:
            conn.execute(
                "INSERT INTO published.cql_t VALUES (%s, "
                "CASE WHEN %s::float8 IS NULL THEN NULL "
                "ELSE ST_SetSRID(ST_MakePoint(%s, %s), 4326) END, %s, %s, %s, %s, %s, %s)",
                (fid, lon, lon, lat, *values),
            )
    yield "published.cql_t"


def matching(conn: psycopg.Connection, filter_text: str, lang: str = "cql2-text") -> list[int]:
    where, params = compile_filter(filter_text, lang, DB_LAYER)
    query = sql.SQL("SELECT fid FROM published.cql_t WHERE {} ORDER BY fid").format(where)
    with conn.transaction():
        conn.execute("SET LOCAL statement_timeout = '5s'")
        return [row[0] for row in conn.execute(query, params).fetchall()]


CASES = [
    ("height > 15", [2, 3, 6]),
    ("height = 10", [1]),
    ("height = 10.0", [1]),
    ("height <> 10", [2, 3, 5, 6]),
    ("ratio >= 1.5", [2, 3, 6]),
    ("ratio < 0", [5]),
    ("height > 9.5 AND height < 20.5", [1, 2]),
    ("height < 10 OR ratio > 2", [3, 5, 6]),
    ("NOT (height > 15)", [1, 5]),
    ("ok = TRUE", [1, 3, 6]),
    ("ok", [1, 3, 6]),
    ("NOT ok", [2, 5]),
    ("name = 'beta'", [2]),
    ("\"name\" = 'beta'", [2]),
    ("name = 'O''Brien; --'", [3]),
    ("name <> 'beta'", [1, 3, 4, 5]),
    ("name LIKE '%ark'", [1, 4]),
    ("name LIKE 'A%'", [1]),
    ("name LIKE '%100\\%'", [5]),
    ("name LIKE '_eta'", [2]),
    ("CASEI(name) LIKE CASEI('%PARK')", [1, 4]),
    ("CASEI(name) = CASEI('BETA')", [2]),
    ("name IN ('beta', 'Gamma park')", [2, 4]),
    ("height IN (5, 40)", [5, 6]),
    ("height NOT IN (5, 40)", [1, 2, 3]),
    ("height BETWEEN 10 AND 30", [1, 2, 3]),
    ("height NOT BETWEEN 10 AND 30", [5, 6]),
    ("name IS NULL", [6]),
    ("height IS NOT NULL", [1, 2, 3, 5, 6]),
    ("height * 2 > 50", [3, 6]),
    ("height / 4 = 2.5", [1]),
    ("height / 0 = 1 OR height = 5", [5]),
    ("height + ratio > 30", [3, 6]),
    ("height - 5 = 0", [5]),
    ("height % 3 = 1", [1, 6]),
    ("id = 3", [3]),
    ("fid IN (1, 2)", [1, 2]),
    ("S_INTERSECTS(geom, BBOX(117.19, 31.79, 117.215, 31.815))", [1, 2]),
    ("S_INTERSECTS(geom, POINT(117.21 31.81))", [2]),
    ("S_INTERSECTS(geom, 'POINT(117.21 31.81)')", [2]),
    (
        "S_WITHIN(geom, POLYGON((117.19 31.79, 117.25 31.79, 117.25 31.85, 117.19 31.85, "
        "117.19 31.79)))",
        [1, 2, 3],
    ),
    (
        "S_CONTAINS(POLYGON((117.19 31.79, 117.25 31.79, 117.25 31.85, 117.19 31.85, "
        "117.19 31.79)), geom)",
        [1, 2, 3],
    ),
    ("S_DISJOINT(geom, BBOX(117.19, 31.79, 117.215, 31.815))", [3, 4, 5]),
    ("S_EQUALS(geom, POINT(-70 -33))", [5]),
    ("S_TOUCHES(geom, LINESTRING(117.21 31.81, 117.21 31.9))", [2]),
    ("S_CROSSES(geom, LINESTRING(117 31, 118 32))", []),
    ("S_OVERLAPS(geom, MULTIPOINT((117.2 31.8), (0 0)))", []),
    ("S_INTERSECTS(geom, MULTIPOINT((117.2 31.8), (-70 -33)))", [1, 5]),
    ("S_DWITHIN(geom, POINT(117.2 31.8), 1000)", [1]),
    ("S_DWITHIN(geom, POINT(117.2 31.8), 2000)", [1, 2]),
    ("T_AFTER(seen, DATE('2024-02-15'))", [3, 6]),
    ("T_BEFORE(seen, DATE('2024-01-01'))", [5]),
    ("T_EQUALS(seen, DATE('2024-02-15'))", [2]),
    ("T_INTERSECTS(seen, DATE('2024-02-15'))", [2]),
    ("T_AFTER(DATE('2024-03-01'), seen)", [1, 2, 5]),
    ("T_DURING(seen, INTERVAL('2024-01-01', '2024-03-31'))", [2]),
    ("T_INTERSECTS(seen, INTERVAL('2024-01-01', '2024-03-31'))", [1, 2, 3]),
    ("T_DURING(seen, INTERVAL('2024-01-01', '..'))", [2, 3, 6]),
    ("T_AFTER(seen, INTERVAL('2024-01-01', '2024-03-31'))", [6]),
    ("T_BEFORE(seen, INTERVAL('..', '2024-03-31'))", []),
    ("T_INTERSECTS(seen, INTERVAL('..', '..'))", [1, 2, 3, 5, 6]),
    ("seen = '2024-02-15'", [2]),
    ("seen > TIMESTAMP('2024-02-15T10:00:00Z')", [3, 6]),
    ("seen < TIMESTAMP('2024-01-01T00:00:00Z')", [5]),
    ("T_AFTER(at, TIMESTAMP('2024-02-15T11:00:00Z'))", [2, 3, 6]),
    ("at > TIMESTAMP('2024-02-15T13:00:00+02:00')", [2, 3, 6]),
    ("T_DURING(at, INTERVAL('2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z'))", [1]),
    ("at < DATE('2024-01-01')", [5]),
    ("(ok OR height IS NULL) AND S_INTERSECTS(geom, BBOX(117, 31, 118, 32))", [1, 3, 4]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_filter_returns_exactly_the_matching_features(cql_table, conn, text, expected):
    assert matching(conn, text) == expected
    as_json = json.dumps(cql2.parse_text(text).to_json())
    assert matching(conn, as_json, "cql2-json") == expected


@pytest.mark.parametrize(
    ("as_json", "expected"),
    [
        ({"op": "=", "args": [{"property": "height"}, 20]}, [2]),
        ({"op": "in", "args": [{"property": "name"}, ["beta", "nobody"]]}, [2]),
        ({"op": "between", "args": [{"property": "ratio"}, [0, 2]]}, [1, 2]),
        ({"op": "isNull", "args": [{"property": "seen"}]}, [4]),
        (
            {"op": "like", "args": [{"op": "casei", "args": [{"property": "name"}]}, "%park"]},
            [1, 4],
        ),
        (
            {
                "op": "s_intersects",
                "args": [{"property": "geom"}, {"type": "Point", "coordinates": [117.21, 31.81]}],
            },
            [2],
        ),
        (
            {"op": "s_intersects", "args": [{"property": "geom"}, {"bbox": [117, 31, 118, 32]}]},
            [1, 2, 3, 4],
        ),
        (
            {
                "op": "t_during",
                "args": [
                    {"property": "seen"},
                    {"interval": [{"date": "2024-01-01"}, {"date": "2024-03-31"}]},
                ],
            },
            [2],
        ),
        (
            {"op": "t_after", "args": [{"property": "at"}, {"timestamp": "2024-03-01T00:00:00Z"}]},
            [3, 6],
        ),
        (
            {
                "op": "s_dwithin",
                "args": [
                    {"property": "geom"},
                    {"type": "Point", "coordinates": [117.2, 31.8]},
                    2000,
                ],
            },
            [1, 2],
        ),
    ],
)
def test_hand_written_json_filters(cql_table, conn, as_json, expected):
    assert matching(conn, json.dumps(as_json), "cql2-json") == expected


INJECTIONS = [
    # (filter, lang, rows it matches, or None when it must be refused)
    ("name = 'x''; DROP TABLE published.cql_t; --'", "cql2-text", []),
    ("name = 'O''Brien; --'", "cql2-text", [3]),
    ("name LIKE '%/* x */%' OR name LIKE '%'';%'", "cql2-text", []),
    ("name IN ('pg_sleep(10)', 'beta')", "cql2-text", [2]),
    ("name = 'a' /* comment */", "cql2-text", None),
    ("name = 'a' -- comment", "cql2-text", None),
    ("name = 'beta'; DROP TABLE published.cql_t", "cql2-text", None),
    ("height = 1; SELECT pg_sleep(10)", "cql2-text", None),
    ("pg_sleep(10) = 1", "cql2-text", None),
    ("height = pg_sleep(10)", "cql2-text", None),
    ('"name; DROP TABLE published.cql_t" = 1', "cql2-text", None),
    ('"name""; DROP TABLE published.cql_t; --" = 1', "cql2-text", None),
    ("name = E'\\x27'", "cql2-text", None),
    ("name = $$x$$", "cql2-text", None),
    ("S_INTERSECTS(geom, 'POINT(1 2)); DROP TABLE published.cql_t; --')", "cql2-text", None),
    ("T_AFTER(seen, DATE('2024-01-01''); DROP TABLE x; --'))", "cql2-text", None),
    ("(" * 100 + "ok" + ")" * 100, "cql2-text", [1, 3, 6]),  # redundant, so harmless
    ("(" * 150 + "ok" + ")" * 150, "cql2-text", None),
    (
        '{"op": "=", "args": [{"property": "name\\"; DROP TABLE published.cql_t; --"}, "x"]}',
        "cql2-json",
        None,
    ),
    ('{"op": "pg_sleep", "args": [10]}', "cql2-json", None),
    ('{"op": "= 1 OR 1", "args": [{"property": "height"}, 1]}', "cql2-json", None),
    (
        '{"op": "=", "args": [{"property": "name"}, "\'; DROP TABLE published.cql_t; --"]}',
        "cql2-json",
        [],
    ),
    (
        '{"op": "t_after", "args": [{"property": "seen"}, {"date": "2024\'); DROP"}]}',
        "cql2-json",
        None,
    ),
    ('{"op": "not", "args": [' * 3000 + "true" + "]}" * 3000, "cql2-json", None),
]


@pytest.mark.parametrize(("attack", "lang", "expected"), INJECTIONS)
def test_injection_attempts_are_data_or_refused(cql_table, conn, attack, lang, expected):
    if expected is None:
        with pytest.raises(InvalidParameter):
            compile_filter(attack, lang, DB_LAYER)
    else:
        assert matching(conn, attack, lang) == expected


def test_table_survives_every_injection_attempt(cql_table, conn):
    for attack, lang, _ in INJECTIONS:
        try:
            matching(conn, attack, lang)
        except InvalidParameter:
            pass
    assert conn.execute("SELECT to_regclass('published.cql_t') IS NOT NULL").fetchone() == (True,)
    assert conn.execute("SELECT count(*) FROM published.cql_t").fetchone() == (len(ROWS),)
