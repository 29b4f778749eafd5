"""Cases (案件) on the sample city: reported at a point or at a component, located to the
unit grid, dispatched by the component's department or the most specific rule, moved through
上报 → 立案 → 派遣 → 处置 → 核查 → 结案 with ETags (and rework), counted per grid and
department with overdue and on-time figures, audited, streamed as events, guarded by roles and
departments, and reported in the planners' reports."""

from __future__ import annotations

import csv
import io
import math
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import mapbox_vector_tile
import numpy as np
import openpyxl
import psycopg
import pytest
from conftest import fresh_database, load_city, make_key
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cases.rules import Rule, save_rules
from cli import app as cli
from twin.crs import epsg_xy

CITY_MGMT = "34150202"  # 金安区城市管理局
GARDENS = "34150210"  # 金安区园林绿化管理所
HOUSING = "34150201"  # 六安市住房和城乡建设局: the sample rule for 0402 自来水管破裂
COMMUNITY = "341502001001"
UNIT = "34150200100101"
runner = CliRunner()


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def settings(pg_url, sample_city, tmp_path_factory):
    return load_city(pg_url, sample_city, tmp_path_factory.mktemp("rasters"))


@pytest.fixture(scope="module")
def api(settings):
    from api.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def keys(settings, pg_url) -> dict[str, dict[str, str]]:
    made = {
        "viewer": make_key(pg_url, "viewer"),
        "editor": make_key(pg_url, "editor"),
        "city_mgmt": make_key(pg_url, "editor", department=CITY_MGMT),
        "gardens": make_key(pg_url, "editor", department=GARDENS),
        "admin": make_key(pg_url, "admin"),
    }
    return {who: {"Authorization": f"Bearer {token}"} for who, token in made.items()}


@pytest.fixture
def env(pg_url, monkeypatch):
    monkeypatch.setenv("TWIN_DATABASE_URL", pg_url)
    monkeypatch.setenv("COLUMNS", "200")


def sql(url: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(query, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
    return rows


def inside(url: str, unit: str) -> list[float]:
    """A point inside a unit grid, lon/lat."""
    row = sql(
        url,
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM twin.grid_cells "
        "WHERE code = %s AND valid_to IS NULL) q",
        [unit],
    )[0]
    return [row[0], row[1]]


def units(url: str, prefix: str) -> list[str]:
    rows = sql(
        url,
        "SELECT code FROM twin.grid_cells WHERE level = 'unit' AND valid_to IS NULL "
        "AND code LIKE %s ORDER BY code",
        [prefix + "%"],
    )
    return [r[0] for r in rows]


def report(api, keys, who="editor", **body):
    r = api.post("/cases", json={"title": "测试案件"} | body, headers=keys[who])
    assert r.status_code == 201, r.text
    return r


def move(api, keys, case, to, who="editor", expect=200, **extra):
    """One transition from the case as last read; returns the case after it."""
    headers = keys[who] | {"If-Match": f'"{case["version"]}"'}
    r = api.post(f"/cases/{case['code']}/transitions", json={"to": to} | extra, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def run_to(api, keys, case, *states, who="editor"):
    for to in states:
        case = move(api, keys, case, to, who=who)
    return case


def snapshot(url: str, code: str) -> tuple:
    """What a refused transition must leave as it was: the row, its steps, events, audit."""
    row = sql(url, "SELECT id, version, state, updated_at FROM twin.cases WHERE code = %s", [code])
    counts = sql(
        url,
        "SELECT (SELECT count(*) FROM twin.case_steps WHERE case_id = %(id)s), "
        "(SELECT count(*) FROM twin.events WHERE kind = 'case' AND payload->>'code' = %(code)s),"
        "(SELECT count(*) FROM twin.audit_log WHERE target = 'cases' AND feature_id = %(id)s)",
        {"id": row[0][0], "code": code},
    )
    return row[0], counts[0]


# --- reporting -------------------------------------------------------------------------------
def test_a_case_at_a_point_is_located_and_proposed_to_the_rule_department(api, keys, pg_url):
    lon, lat = inside(pg_url, UNIT)
    r = report(api, keys, kind="事件", class_code="0402", point=[lon, lat], title="自来水管破裂")
    case = r.json()
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/cases/{case['code']}"
    assert (case["unit_grid"], case["community"]) == (UNIT, COMMUNITY)
    assert (case["street"], case["district"]) == (UNIT[:9], UNIT[:6])
    assert case["community_name"] and case["street_name"] and case["unit_grid_name"]
    assert case["class_name"] == "自来水管破裂" and case["deadline_hours"] == 4
    assert (case["department_code"], case["dispatch_basis"]) == (HOUSING, "rule")
    assert case["state"] == "上报" and case["next"] == ["立案", "作废"]
    assert case["overdue"] is False and case["deadline"] is None
    today = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
    assert case["code"].startswith("341502" + today) and len(case["code"]) == 19
    assert [s["action"] for s in case["steps"]] == ["上报"]
    # The same place in CGCS2000 Gauss-Krüger (northing first, as EPSG:4548 orders its axes).
    east, north = epsg_xy(np.array([[lon, lat]]), 4326, 4548)[0]
    gk = report(api, keys, class_code="0402", point=[north, east], crs="EPSG:4548").json()
    assert gk["unit_grid"] == UNIT and gk["kind"] == "事件"
    assert gk["lon"] == pytest.approx(lon, abs=1e-6) and gk["lat"] == pytest.approx(lat, abs=1e-6)
    assert int(gk["code"][-5:]) == int(case["code"][-5:]) + 1  # the day's sequence


def test_a_case_at_a_component_takes_its_place_class_and_department(api, keys, pg_url):
    code, cls, unit, lon, lat = sql(
        pg_url,
        "SELECT code, class_code, unit_grid, ST_X(geom), ST_Y(geom) FROM twin.components_current "
        "WHERE dept_code = %s AND class_code = '0102' ORDER BY code LIMIT 1",
        [CITY_MGMT],
    )[0]
    case = report(api, keys, component=code, title="污水井盖破损").json()
    assert (case["kind"], case["class_code"], case["component_code"]) == ("部件", cls, code)
    assert (case["lon"], case["lat"]) == (pytest.approx(lon), pytest.approx(lat))
    assert case["unit_grid"] == unit and case["community"] == unit[:12]
    assert (case["department_code"], case["department_name"]) == (CITY_MGMT, "金安区城市管理局")
    assert case["dispatch_basis"] == "component" and case["deadline_hours"] == 8
    # A class that is not the component's is refused, saying which it is.
    r = api.post(
        "/cases",
        json={"title": "x", "component": code, "class_code": "0101"},
        headers=keys["editor"],
    )
    assert r.status_code == 422 and "0102" in r.json()["message"]
    r = api.post(
        "/cases", json={"title": "x", "component": "3415029999999999"}, headers=keys["editor"]
    )
    assert r.status_code == 422 and "3415029999999999" in r.json()["message"]


def test_bad_reports_are_refused_saying_what_to_fix_and_store_nothing(api, keys, pg_url):
    before = sql(pg_url, "SELECT count(*) FROM twin.cases")[0][0]
    point = inside(pg_url, UNIT)
    r = api.post(
        "/cases",
        json={"title": "x", "class_code": "0402", "point": [116.0, 40.0]},
        headers=keys["editor"],
    )
    assert r.status_code == 422 and "outside every unit grid" in r.json()["message"]
    r = api.post(
        "/cases", json={"title": "x", "class_code": "0999", "point": point}, headers=keys["editor"]
    )
    assert r.status_code == 422
    assert (
        "unknown 事件 class '0999'" in r.json()["message"]
        and "/cases/classes" in r.json()["message"]
    )
    r = api.post(
        "/cases",
        json={"title": "x", "kind": "部件", "class_code": "0199", "point": point},
        headers=keys["editor"],
    )
    assert r.status_code == 422 and "unknown 部件 class" in r.json()["message"]
    r = api.post("/cases", json={"title": "x", "class_code": "0402"}, headers=keys["editor"])
    assert r.status_code == 400 and "point" in r.json()["message"]
    r = api.post("/cases", json={"title": "x", "point": point}, headers=keys["editor"])
    assert r.status_code == 400 and "class_code" in r.json()["message"]
    r = api.post(
        "/cases",
        json={"title": "x", "class_code": "0402", "point": point, "crs": "EPSG:1"},
        headers=keys["editor"],
    )
    assert r.status_code == 400 and "CRS" in r.json()["message"]
    assert sql(pg_url, "SELECT count(*) FROM twin.cases")[0][0] == before


# --- the lifecycle ---------------------------------------------------------------------------
def test_the_full_lifecycle_with_etags_rework_steps_events_and_audit(api, keys, pg_url):
    point = inside(pg_url, UNIT)
    case = report(api, keys, class_code="0101", point=point, title="暴露垃圾").json()
    code = case["code"]
    case = move(api, keys, case, "立案", note="属实")
    assert case["version"] == 2 and case["state"] == "立案" and case["next"] == ["派遣"]
    case = move(api, keys, case, "派遣")
    assert case["department_code"] == "34150209"  # 事件 01 → 环境卫生管理处 (sample rule)
    dispatched = datetime.fromisoformat(case["dispatched_at"])
    deadline = datetime.fromisoformat(case["deadline"])
    assert deadline - dispatched == timedelta(hours=4)  # 暴露垃圾: 4 hours
    case = move(api, keys, case, "处置", note="已清运")
    assert case["handled_at"] and case["state"] == "处置"
    case = move(api, keys, case, "派遣", note="核查未通过: 仍有垃圾")  # 返工
    assert (case["state"], case["rework_count"], case["handled_at"]) == ("派遣", 1, None)
    assert case["deadline"] == deadline.isoformat()  # rework does not reset the clock
    case = run_to(api, keys, case, "处置", "核查", "结案")
    assert case["state"] == "结案" and case["closed_at"] and case["next"] == []
    assert case["version"] == 8 and case["overdue"] is False
    r = api.get(f"/cases/{code}", headers=keys["viewer"])
    assert r.headers["etag"] == '"8"'
    steps = r.json()["steps"]
    assert [s["action"] for s in steps] == [
        "上报",
        "立案",
        "派遣",
        "处置",
        "返工",
        "处置",
        "核查",
        "结案",
    ]
    assert [s["to_state"] for s in steps][4] == "派遣" and steps[4]["from_state"] == "处置"
    assert steps[1]["note"] == "属实" and [s["version"] for s in steps] == list(range(1, 9))
    assert all(s["actor"].startswith("key:") and s["role"] == "editor" for s in steps)
    events = sql(
        pg_url,
        "SELECT action, target, department, unit_grid, payload->>'state' FROM twin.events "
        "WHERE kind = 'case' AND payload->>'code' = %s ORDER BY id",
        [code],
    )
    assert [e[0] for e in events] == [
        "created",
        "立案",
        "派遣",
        "处置",
        "返工",
        "处置",
        "核查",
        "结案",
    ]
    assert {(e[1], e[3]) for e in events} == {("cases", UNIT)}
    assert events[2][2] == "34150209" and events[-1][4] == "结案"
    audit = sql(
        pg_url,
        "SELECT action, version_before, version_after, detail->>'to' FROM twin.audit_log "
        "WHERE target = 'cases' AND detail->>'code' = %s ORDER BY id",
        [code],
    )
    assert audit[0][:3] == ("create", None, 1)
    assert [a[0] for a in audit[1:]] == ["transition"] * 7
    assert [(a[1], a[2]) for a in audit[1:]] == [(v, v + 1) for v in range(1, 8)]


def test_a_report_not_accepted_is_closed_as_void(api, keys, pg_url):
    case = report(api, keys, class_code="0503", point=inside(pg_url, UNIT)).json()
    case = move(api, keys, case, "作废", note="重复上报")
    assert case["state"] == "作废" and case["closed_at"] and case["next"] == []
    r = move(api, keys, case, "立案", expect=409)
    assert "closed" in r["message"]


def test_out_of_order_is_409_and_changes_nothing(api, keys, pg_url):
    case = report(api, keys, class_code="0103", point=inside(pg_url, UNIT)).json()
    before = snapshot(pg_url, case["code"])
    for to in ("处置", "结案", "派遣", "返工"):
        r = move(api, keys, case, to, expect=409)
        assert r["code"] == "conflict" and "立案 or 作废" in r["message"], r
    r = move(api, keys, case, "done", expect=400)
    assert "unknown state" in r["message"]
    r = move(api, keys, case, "立案", expect=400, department=CITY_MGMT)
    assert "department is given only with 派遣" in r["message"]
    case = move(api, keys, case, "立案")
    r = move(api, keys, case, "处置", expect=409)
    assert "it can go to 派遣 next" in r["message"]
    after = snapshot(pg_url, case["code"])
    assert after[0][1] == before[0][1] + 1 and after[1] == tuple(n + 1 for n in before[1])


def test_a_stale_etag_is_412_and_a_missing_one_428(api, keys, pg_url):
    case = report(api, keys, class_code="0104", point=inside(pg_url, UNIT)).json()
    move(api, keys, case, "立案")
    before = snapshot(pg_url, case["code"])
    r = move(api, keys, case, "派遣", expect=412)  # still version 1
    assert r["code"] == "stale-version" and "version 2" in r["message"]
    r = api.post(f"/cases/{case['code']}/transitions", json={"to": "派遣"}, headers=keys["editor"])
    assert r.status_code == 428 and "If-Match" in r.json()["message"]
    assert snapshot(pg_url, case["code"]) == before
    r = api.post(
        "/cases/3415020000000000001/transitions",
        json={"to": "立案"},
        headers=keys["editor"] | {"If-Match": '"1"'},
    )
    assert r.status_code == 404
    assert api.get("/cases/nope", headers=keys["viewer"]).status_code == 404


# --- dispatch --------------------------------------------------------------------------------
def test_the_most_specific_rule_decides_and_priority_comes_first(api, keys, pg_url):
    unit_b = units(pg_url, COMMUNITY)[1]
    other = next(u for u in units(pg_url, UNIT[:6]) if not u.startswith(UNIT[:9]))
    with psycopg.connect(pg_url) as conn:
        save_rules(
            conn,
            [
                Rule("事件", "05", "", 0, "D-05", "五"),
                Rule("事件", "0505", "", 0, "D-0505", "五五"),
                Rule("事件", "0505", COMMUNITY, 0, "D-0505-C", "社区"),
                Rule("事件", "0505", unit_b, 0, "D-0505-U", "网格"),
                Rule("事件", "06", UNIT[:9], 1, "D-06-P1", "街道优先"),
                Rule("事件", "0602", "", 0, "D-0602", "六零二"),
            ],
        )

    def dept(cls: str, unit: str) -> str:
        case = report(api, keys, class_code=cls, point=inside(pg_url, unit)).json()
        assert case["dispatch_basis"] == "rule"
        return case["department_code"]

    assert dept("0504", UNIT) == "D-05"  # only the major matches
    assert dept("0505", other) == "D-0505"  # the class, anywhere
    assert dept("0505", UNIT) == "D-0505-C"  # the class in the community
    assert dept("0505", unit_b) == "D-0505-U"  # the class in that unit grid
    assert dept("0602", UNIT) == "D-06-P1"  # a higher priority beats a longer class prefix
    assert dept("0602", other) == "D-0602"
    listed = api.get("/cases/rules", headers=keys["viewer"]).json()["rules"]
    assert listed[0]["department_code"] == "D-06-P1"


def test_no_rule_is_a_clear_conflict_and_a_named_department_dispatches(api, keys, pg_url):
    sql(pg_url, "DELETE FROM twin.case_dispatch_rules WHERE kind = '事件' AND class_prefix = ''")
    try:
        # 0406 道路积雪结冰: no sample rule but the catch-all just removed
        case = report(api, keys, class_code="0406", point=inside(pg_url, UNIT)).json()
        assert case["department_code"] is None and case["dispatch_basis"] is None
        case = move(api, keys, case, "立案")
        before = snapshot(pg_url, case["code"])
        r = move(api, keys, case, "派遣", expect=409)
        message = r["message"]
        assert "no dispatch rule" in message and "0406" in message and UNIT in message
        assert "twin cases rules import" in message
        assert snapshot(pg_url, case["code"]) == before
        r = move(api, keys, case, "派遣", expect=422, department="99999999")
        assert "department '99999999' is unknown" in r["message"]
        case = move(api, keys, case, "派遣", department=CITY_MGMT)
        assert (case["department_code"], case["department_name"]) == (CITY_MGMT, "金安区城市管理局")
        assert case["dispatch_basis"] == "override"
    finally:
        with psycopg.connect(pg_url) as conn:
            save_rules(conn, [Rule("事件", "", "", 0, CITY_MGMT, "金安区城市管理局")])


# --- overdue and statistics ------------------------------------------------------------------
def test_overdue_is_computed_from_the_class_deadline(api, keys, pg_url, env, tmp_path):
    path = tmp_path / "local.csv"
    path.write_text(
        "class_code,major,name_zh,major_name_zh,deadline_hours\n"
        "0699,06,测试极短时限,扩展事件,0.0003\n",
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["cases", "classes", "import", str(path)])
    assert result.exit_code == 0, result.output
    listing = runner.invoke(cli, ["cases", "classes"])
    assert (
        listing.exit_code == 0
        and "测试极短时限" in listing.output
        and "自来水管破裂" in listing.output
    )
    classes = api.get("/cases/classes?kind=事件", headers=keys["viewer"]).json()["classes"]
    assert {"class_code": "0699", "local": True}.items() <= next(
        c for c in classes if c["class_code"] == "0699"
    ).items()
    case = report(api, keys, class_code="0699", point=inside(pg_url, UNIT)).json()
    case = run_to(api, keys, case, "立案", "派遣")
    assert case["overdue"] is False
    time.sleep(1.5)  # 0.0003 hours is about a second
    case = api.get(f"/cases/{case['code']}", headers=keys["viewer"]).json()
    assert case["overdue"] is True
    found = api.get("/cases", params={"overdue": "true", "grid": UNIT}, headers=keys["viewer"])
    assert case["code"] in {c["code"] for c in found.json()["cases"]}
    not_overdue = api.get("/cases", params={"overdue": "false"}, headers=keys["viewer"]).json()
    assert case["code"] not in {c["code"] for c in not_overdue["cases"]}
    case = move(api, keys, case, "处置")
    assert case["overdue"] is True  # handled, but late


def test_stats_per_grid_and_department_with_the_on_time_rate(api, keys, pg_url, env):
    unit = units(pg_url, COMMUNITY)[2]  # a unit grid no other test reports in
    point = inside(pg_url, unit)

    def new(cls: str):
        return report(api, keys, class_code=cls, point=point).json()

    on_time = run_to(api, keys, new("0101"), "立案", "派遣", "处置", "核查", "结案")
    late = run_to(api, keys, new("0102"), "立案", "派遣")
    sql(
        pg_url,
        "UPDATE twin.cases SET deadline = now() - interval '1 hour' WHERE code = %s",
        [late["code"]],
    )
    late = move(api, keys, api.get(f"/cases/{late['code']}", headers=keys["viewer"]).json(), "处置")
    open_late = run_to(api, keys, new("0503"), "立案", "派遣")
    sql(
        pg_url,
        "UPDATE twin.cases SET deadline = now() - interval '1 minute' WHERE code = %s",
        [open_late["code"]],
    )
    new("0201")  # 上报 only
    r = api.get(
        "/cases/stats", params={"by": "grid", "grid": unit, "format": "csv"}, headers=keys["viewer"]
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 1 and rows[0]["unit_grid"] == unit and rows[0]["name"]
    row = rows[0]
    assert {k: int(row[k]) for k in ("total", "上报", "派遣", "处置", "结案", "overdue")} == {
        "total": 4,
        "上报": 1,
        "派遣": 1,
        "处置": 1,
        "结案": 1,
        "overdue": 2,
    }
    assert (int(row["handled"]), int(row["on_time"]), float(row["on_time_rate"])) == (2, 1, 0.5)
    # Per department: sanitation handled one on time and one late; the traffic police has one
    # open and overdue; the 上报 case has its proposed department (城管局) and nothing else.
    data = api.get(
        "/cases/stats", params={"by": "department", "grid": unit}, headers=keys["viewer"]
    ).json()
    by = {r["code"]: r for r in data["rows"]}
    assert by["34150209"]["on_time_rate"] == 0.5 and by["34150209"]["handled"] == 2
    assert by["34150207"]["overdue"] == 1 and by["34150207"]["on_time_rate"] is None
    assert by["34150202"]["上报"] == 1 and by["34150202"]["name"] == "金安区城市管理局"
    assert data["total"]["total"] == 4 and data["total"]["on_time_rate"] == 0.5
    # The same figures from the command line.
    result = runner.invoke(
        cli, ["cases", "stats", "--by", "department", "--grid", unit, "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    cli_rows = {r["department_code"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert cli_rows["34150209"]["on_time_rate"] == "0.5"
    result = runner.invoke(cli, ["cases", "stats", "--by", "department"])
    assert result.exit_code == 0 and "34150209" in result.stdout
    r = api.get("/cases/stats", params={"by": "parish"}, headers=keys["viewer"])
    assert r.status_code == 400 and "grid, community, street, district, department" in r.text
    assert late["overdue"] is True and on_time["overdue"] is False


def test_list_filters_and_pages(api, keys, pg_url):
    everything = api.get("/cases", params={"limit": 1000}, headers=keys["viewer"]).json()
    total = everything["numberMatched"]
    assert total == len(everything["cases"]) > 5
    first = api.get("/cases", params={"limit": 2}, headers=keys["viewer"]).json()
    assert first["numberReturned"] == 2 and first["links"][0]["rel"] == "next"
    assert "offset=2" in first["links"][0]["href"]
    closed = api.get("/cases", params={"state": "结案,作废"}, headers=keys["viewer"]).json()
    assert closed["cases"] and {c["state"] for c in closed["cases"]} <= {"结案", "作废"}
    mine = api.get("/cases", params={"department": "34150209"}, headers=keys["viewer"]).json()
    assert {c["department_code"] for c in mine["cases"]} == {"34150209"}
    lon, lat = inside(pg_url, UNIT)
    box = f"{lon - 1e-5},{lat - 1e-5},{lon + 1e-5},{lat + 1e-5}"
    near = api.get("/cases", params={"bbox": box, "limit": 1000}, headers=keys["viewer"]).json()
    assert near["cases"] and {c["unit_grid"] for c in near["cases"]} == {UNIT}
    for bad in ({"state": "done"}, {"bbox": "1,2,3"}, {"grid": "34x"}, {"limit": 0}):
        r = api.get("/cases", params=bad, headers=keys["viewer"])
        assert r.status_code == 400, bad


# --- access ----------------------------------------------------------------------------------
def test_reading_needs_a_viewer_and_writing_an_editor(api, keys, pg_url):
    for path in ("/cases", "/cases/stats?by=grid", "/cases/classes"):
        r = api.get(path)
        assert r.status_code == 401 and "credentials" in r.json()["message"], path
        assert api.get(path, headers=keys["viewer"]).status_code == 200, path
    body = {"title": "x", "class_code": "0402", "point": inside(pg_url, UNIT)}
    assert api.post("/cases", json=body).status_code == 401
    assert api.post("/cases", json=body, headers=keys["viewer"]).status_code == 403
    anonymous = {c["id"] for c in api.get("/collections").json()["collections"]}
    viewer = api.get("/collections", headers=keys["viewer"]).json()["collections"]
    assert "cases" not in anonymous and "cases" in {c["id"] for c in viewer}


def test_only_the_dispatched_department_handles_a_case(api, keys, pg_url):
    code = sql(
        pg_url,
        "SELECT code FROM twin.components_current WHERE dept_code = %s AND class_code = '0118' "
        "ORDER BY code LIMIT 1",
        [CITY_MGMT],
    )[0][0]
    case = report(api, keys, "city_mgmt", component=code, title="路灯不亮").json()
    case = run_to(api, keys, case, "立案", "派遣", who="city_mgmt")
    before = snapshot(pg_url, case["code"])
    r = move(api, keys, case, "处置", who="gardens", expect=403)
    assert CITY_MGMT in r["message"] and GARDENS in r["message"]
    assert snapshot(pg_url, case["code"]) == before
    case = move(api, keys, case, "处置", who="city_mgmt")
    assert case["steps"][-1]["actor_department"] == CITY_MGMT
    case = move(api, keys, case, "派遣", who="editor")  # rework by the checker
    case = move(api, keys, case, "处置", who="admin")  # an admin may handle any case


def test_the_collection_serves_cases_as_features_and_fresh_tiles(api, keys, pg_url):
    lon, lat = inside(pg_url, UNIT)
    case = report(api, keys, class_code="0405", point=[lon, lat], title="道路积水").json()
    items = api.get(
        "/collections/cases/items",
        params={"limit": 1000, "bbox": f"{lon - 1e-4},{lat - 1e-4},{lon + 1e-4},{lat + 1e-4}"},
        headers=keys["viewer"],
    ).json()
    feature = next(f for f in items["features"] if f["properties"]["code"] == case["code"])
    assert feature["properties"]["state"] == "上报" and feature["geometry"]["type"] == "Point"
    z = 18
    x = int((lon + 180) / 360 * 2**z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
    path = f"/collections/cases/tiles/WebMercatorQuad/{z}/{x}/{y}"

    def states() -> dict[str, str]:
        r = api.get(path, headers=keys["viewer"])
        assert r.status_code == 200
        layer = mapbox_vector_tile.decode(r.content)["cases"]
        return {f["properties"]["code"]: f["properties"]["state"] for f in layer["features"]}

    assert states()[case["code"]] == "上报"
    move(api, keys, case, "立案")
    assert states()[case["code"]] == "立案"  # the cached tile was dropped by the step
    assert api.get(path).status_code == 404  # anonymous callers do not see the collection


# --- reports ---------------------------------------------------------------------------------
def test_the_area_report_counts_its_cases_and_withholds_them_from_anonymous_callers(api, keys):
    stats = api.get("/cases/stats", params={"by": "community"}, headers=keys["viewer"]).json()
    expected = next(r for r in stats["rows"] if r["code"] == COMMUNITY)
    r = api.get(f"/reports/community/{COMMUNITY}?format=csv", headers=keys["viewer"])
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))

    def section(name: str) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for x in rows:
            if x["section"] == name:
                out.setdefault(x["row"], {})[x["column"]] = x["value"]
        return out

    summary = {v["item"]: v["value"] for v in section("cases_summary").values()}
    assert int(summary["案件 cases"]) == expected["total"]
    assert int(summary["超期 overdue"]) == expected["overdue"]
    assert float(summary["按期处置率 on-time rate"]) == expected["on_time_rate"]
    by_state = {v["state"]: int(v["count"]) for v in section("cases_by_state").values()}
    assert by_state == {s: expected[s] for s in stats["states"]}
    departments = {v["department_code"]: v for v in section("cases_by_department").values()}
    assert "34150209" in departments and departments["34150209"]["department_name"]
    xlsx = api.get(f"/reports/grid/{UNIT}?format=xlsx", headers=keys["viewer"])
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert {"cases_summary", "cases_by_state", "cases_by_department"} <= set(book.sheetnames)
    html = api.get(f"/reports/community/{COMMUNITY}", headers=keys["viewer"]).text
    assert "处置部门 Cases by department" in html
    # Anonymous callers may not read cases: the sections are there, empty and saying why.
    anonymous = api.get(f"/reports/community/{COMMUNITY}?format=csv").content.decode("utf-8-sig")
    assert "cases_by_state" not in anonymous
    html = api.get(f"/reports/community/{COMMUNITY}").text
    assert "案件状态 Cases by state" in html and "withheld" in html


# --- rules from the command line -------------------------------------------------------------
def test_rules_import_checks_the_whole_file_first(env, pg_url, tmp_path):
    count = sql(pg_url, "SELECT count(*) FROM twin.case_dispatch_rules")[0][0]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "kind,class_prefix,grid_prefix,priority,department_code,department_name\n"
        "事件,0701,,0,D-0701,七\n"
        ",0702,,0,D-0702,七二\n",
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["cases", "rules", "import", str(bad)])
    assert result.exit_code == 2 and "line 3" in result.output and "needs a kind" in result.output
    assert sql(pg_url, "SELECT count(*) FROM twin.case_dispatch_rules")[0][0] == count
    good = tmp_path / "good.csv"
    good.write_text(
        "kind,class_prefix,grid_prefix,priority,department_code,department_name\n"
        "事件,0701,,0,D-0701,七\n",
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["cases", "rules", "import", str(good)])
    assert result.exit_code == 0, result.output
    assert sql(pg_url, "SELECT count(*) FROM twin.case_dispatch_rules")[0][0] == count + 1
    audit = sql(
        pg_url,
        "SELECT actor FROM twin.audit_log WHERE action = 'cases.rules.import' ORDER BY id DESC",
    )
    assert audit and audit[0][0].startswith("cli:")
    listing = runner.invoke(cli, ["cases", "rules", "list"])
    assert listing.exit_code == 0 and "D-0701" in listing.output
