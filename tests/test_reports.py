"""Planners' reports on the sample city: each format decoded (HTML with its embedded map, PDF
text and images, XLSX sheets, CSV rows) and its numbers compared with the spatial query of the
same area; bad levels, formats and codes answered with a message that says what to fix."""

from __future__ import annotations

import base64
import csv
import io
import re
from pathlib import Path

import numpy as np
import openpyxl
import pypdf
import pytest
from conftest import app_client, fresh_database, load_city
from PIL import Image
from typer.testing import CliRunner

from cli import app
from twin.settings import Settings

COMMUNITY = "341502001001"
COMMUNITY_NAME = "新华社区"
UNIT = "34150200100101"
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def settings(pg_url, sample_city, tmp_path_factory) -> Settings:
    return load_city(pg_url, sample_city, tmp_path_factory.mktemp("rasters"))


@pytest.fixture(scope="module")
def client(settings):
    with app_client(settings) as c:
        yield c


@pytest.fixture(scope="module")
def summary(client) -> dict:
    r = client.post("/query/within", json={"grid": COMMUNITY})
    assert r.status_code == 200, r.text
    return r.json()


def report(client, level: str, code: str, fmt: str):
    r = client.get(f"/reports/{level}/{code}", params={"format": fmt})
    assert r.status_code == 200, r.text
    return r


def colour_present(png: Image.Image, rgb: tuple[int, int, int]) -> bool:
    pixels = np.asarray(png.convert("RGB")).reshape(-1, 3)
    return bool((np.abs(pixels.astype(int) - rgb).sum(axis=1) < 30).any())


# --- HTML ------------------------------------------------------------------------------------
def test_html_report_is_self_contained_with_a_map_of_our_own_data(client, summary):
    r = report(client, "community", COMMUNITY, "html")
    assert r.headers["content-type"].startswith("text/html")
    assert 'filename="report-community-341502001001.html"' in r.headers["content-disposition"]
    html = r.text
    assert COMMUNITY_NAME in html and COMMUNITY in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside
    images = IMG.findall(html)
    assert len(images) == 2  # the map and the age profile
    png = Image.open(io.BytesIO(base64.b64decode(images[0])))
    assert png.format == "PNG" and png.width > 800
    assert colour_present(png, (0, 255, 255))  # 给水 JS pipes in their CJJ 61 colour
    assert colour_present(png, (255, 0, 255))  # 燃气 RQ
    assert colour_present(png, (0x2E, 0x7D, 0x32))  # 完好 components
    total = f"{summary['components']['total']:,}"
    assert re.search(rf'<td class="num">{total}</td>\s*</tr>', html)  # the class table's total
    assert "望城街道" in html and "金安区" in html  # the parent chain


# --- PDF -------------------------------------------------------------------------------------
def test_pdf_report_has_the_map_and_chinese_text(client):
    r = report(client, "community", COMMUNITY, "pdf")
    assert r.headers["content-type"] == "application/pdf"
    assert 'filename="report-community-341502001001.pdf"' in r.headers["content-disposition"]
    pdf = pypdf.PdfReader(io.BytesIO(r.content))
    first = pdf.pages[0]
    assert len(first.images) >= 1
    picture = Image.open(io.BytesIO(first.images[0].data))
    assert picture.width > 800
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert COMMUNITY in text and COMMUNITY_NAME in text
    assert "部件" in text and "管龄" in text and "给水" in text
    assert sum(len(p.images) for p in pdf.pages) == 2


# --- XLSX ------------------------------------------------------------------------------------
def sheet_rows(book, name: str) -> list[dict]:
    """The table of a sheet: the header row, then rows up to the blank line before a note."""
    rows = list(book[name].iter_rows(values_only=True))
    header, out = rows[0], []
    for row in rows[1:]:
        if all(v is None for v in row):
            break
        out.append(dict(zip(header, row, strict=False)))
    return out


def test_xlsx_report_has_one_sheet_per_table_with_the_query_numbers(client, summary):
    r = report(client, "community", COMMUNITY, "xlsx")
    assert r.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    assert {
        "area",
        "components_by_status",
        "components_by_class",
        "pipes_by_utility",
        "pipes_by_material",
        "pipes_by_decade",
        "imagery_scenes",
        "imagery_changes",
        "buildings",
        "unit_grids",
    } <= set(book.sheetnames)
    area = {r["item"]: r["value"] for r in sheet_rows(book, "area")}
    assert area["代码 code"] == COMMUNITY and area["名称 name"] == COMMUNITY_NAME
    status = {r["status"]: r["count"] for r in sheet_rows(book, "components_by_status")}
    assert status == {r["status"]: r["count"] for r in summary["components"]["by_status"]}
    pipes = {r["utility"]: r["length_m"] for r in sheet_rows(book, "pipes_by_utility")}
    assert pipes == {r["utility"]: r["length_m"] for r in summary["pipes"]["by_utility"]}
    grids = [r["code"] for r in sheet_rows(book, "unit_grids")]
    assert grids == [c["code"] for c in summary["unit_grids"]["cells"]]
    buildings = sheet_rows(book, "buildings")
    assert buildings[-1]["count"] == summary["buildings"]["count"]


# --- CSV -------------------------------------------------------------------------------------
def test_csv_report_is_long_format_with_every_table(client, summary):
    r = report(client, "community", COMMUNITY, "csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert set(rows[0]) == {"section", "row", "column", "value"}
    decades = [
        float(x["value"])
        for x in rows
        if x["section"] == "pipes_by_decade" and x["column"] == "length_m"
    ]
    assert sum(decades) == pytest.approx(summary["pipes"]["total_length_m"], abs=0.5)
    counts = {x["row"]: x["value"] for x in rows if x["section"] == "components_by_status"}
    assert len(counts) == 5
    classes = [x for x in rows if x["section"] == "components_by_class" and x["column"] == "total"]
    assert int(classes[-1]["value"]) == summary["components"]["total"]
    assert any(x["value"] == COMMUNITY_NAME for x in rows)


def test_a_unit_grid_report_is_named_grid(client):
    r = report(client, "grid", UNIT, "csv")
    assert 'filename="report-grid-34150200100101.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    level = [x["value"] for x in rows if x["section"] == "area" and x["row"] == "3"]
    assert "单元网格" in level[1]


# --- bad requests ----------------------------------------------------------------------------
def test_unknown_code_is_404_naming_the_level_and_code(client):
    r = client.get("/reports/community/341502001099", params={"format": "html"})
    assert r.status_code == 404
    assert "community" in r.json()["message"] and "341502001099" in r.json()["message"]
    r = client.get(f"/reports/street/{COMMUNITY}")  # a community code asked as a street
    assert r.status_code == 404 and "street" in r.json()["message"]


def test_unknown_level_and_format_list_the_allowed_values(client):
    r = client.get(f"/reports/block/{COMMUNITY}")
    assert r.status_code == 400
    assert "grid, community, street, district" in r.json()["message"]
    r = client.get(f"/reports/community/{COMMUNITY}", params={"format": "docx"})
    assert r.status_code == 400
    assert "html, pdf, csv, xlsx" in r.json()["message"]


# --- the command line ------------------------------------------------------------------------
runner = CliRunner()


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("TWIN_DATABASE_URL", settings.db.database_url)
    monkeypatch.setenv("COLUMNS", "200")


def test_cli_writes_the_report_and_a_summary(env, tmp_path, summary):
    out = tmp_path / "c.xlsx"
    result = runner.invoke(
        app, ["report", "community", COMMUNITY, "--format", "xlsx", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "report written to" in result.output and COMMUNITY_NAME in result.output
    book = openpyxl.load_workbook(out)
    assert "components_by_class" in book.sheetnames
    result = runner.invoke(app, ["report", "district", "341502", "--format", "pdf"])
    assert result.exit_code == 0, result.output
    assert Path("report-district-341502.pdf").exists()  # the default name, in the cwd


def test_cli_unknown_code_exits_1_with_a_message(env):
    result = runner.invoke(app, ["report", "street", "341502009"])
    assert result.exit_code == 2
    assert "no current street with code 341502009" in result.output
    result = runner.invoke(app, ["report", "block", "341502009"])
    assert result.exit_code == 2 and "grid, community, street, district" in result.output
