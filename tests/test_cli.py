"""The twin command line, against the test database (TWIN_DATABASE_URL)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


@pytest.fixture
def env(pg_url, monkeypatch):
    monkeypatch.setenv("TWIN_DATABASE_URL", pg_url)
    monkeypatch.setenv("COLUMNS", "200")


def test_db_url_and_migrate_use_the_external_database(env, pg_url):
    result = runner.invoke(app, ["db", "url"])
    assert result.exit_code == 0 and result.stdout.strip() == pg_url
    result = runner.invoke(app, ["db", "migrate"])
    assert result.exit_code == 0 and "nothing to do" in result.output


def test_db_status_reports_migration_level(env):
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["mode"] == "external" and info["migration_level"] >= 1


def test_import_prints_a_summary(env, tmp_path):
    path = tmp_path / "poles.csv"
    path.write_text("code,lon,lat\nP1,116.5,31.7\nP2,116.6,31.8\n")
    result = runner.invoke(app, ["import", str(path), "--layer", "cli_poles"])
    assert result.exit_code == 0, result.output
    assert "loaded 2 of 2 features into layer cli_poles" in result.output


def test_import_with_bad_rows_exits_non_zero_and_names_them(env, tmp_path):
    path = tmp_path / "poles.csv"
    path.write_text("code,lon,lat\nP1,116.5,31.7\nP2,x,31.8\n")
    result = runner.invoke(app, ["import", str(path), "--layer", "cli_bad"])
    assert result.exit_code == 2
    assert "field lon: 'x' is not a number" in result.output
    assert "nothing was loaded" in result.output
    assert (tmp_path / "cli_bad.import-report.csv").exists()
    result = runner.invoke(app, ["import", str(path), "--layer", "cli_bad", "--skip-invalid"])
    assert result.exit_code == 0 and "skipped 1 bad rows" in result.output


def test_bad_layer_name_and_crs_are_explained(env, tmp_path):
    path = tmp_path / "poles.csv"
    path.write_text("code,lon,lat\nP1,116.5,31.7\n")
    result = runner.invoke(app, ["import", str(path), "--layer", "Bad Name"])
    assert result.exit_code == 2 and "lowercase letters" in result.output
    result = runner.invoke(app, ["import", str(path), "--layer", "ok", "--crs", "EPSG:0"])
    assert result.exit_code == 2 and "unknown CRS" in result.output


def test_components_import_reads_the_standard_field_names(env, tmp_path):
    path = tmp_path / "survey.csv"
    path.write_text(
        "ObjID,ObjName,DeptName1,ObjState,ORDate,lon,lat\n"
        "4101010118000001,路灯,城管局,完好,2021-05-01,100.5,20.5\n"
        "4101010118000002,路灯,城管局,坏了,2021-05-01,100.6,20.5\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["components", "import", str(path)])
    assert result.exit_code == 2 and "坏了" in result.output
    result = runner.invoke(app, ["components", "import", str(path), "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "loaded 1 components" in result.output
    listing = runner.invoke(app, ["components", "classes"])
    assert "0118" in listing.stdout and "路灯" in listing.stdout


def test_import_into_the_components_layer_uses_the_components_rules(env, tmp_path):
    path = tmp_path / "more.csv"
    path.write_text(
        "ObjID,ObjName,ObjState,lon,lat\n4101010305000009,垃圾箱,破损,100.7,20.5\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["import", str(path), "--layer", "components"])
    assert result.exit_code == 0, result.output
    assert "loaded 1 components" in result.output


def test_grid_generate_writes_coded_squares(env, tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    area = tmp_path / "communities.gpkg"
    gpd.GeoDataFrame(
        {"code": ["410101001001"], "name": ["试点社区"]},
        geometry=[box(100.0, 20.0, 100.003, 20.002)],
        crs=4326,
    ).to_file(area, engine="pyogrio")
    out = tmp_path / "units.gpkg"
    result = runner.invoke(
        app, ["grid", "generate", "--area", str(area), "--size", "100", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    cells = gpd.read_file(out)
    assert cells["code"].iloc[0] == "41010100100101" and len(cells) >= 6
    assert abs(cells.union_all().area - box(100.0, 20.0, 100.003, 20.002).area) < 1e-10
