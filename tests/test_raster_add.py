"""Registering scenes from files that need help: pixel sizes in the CRS's own unit, files
without a CRS or a geotransform, ``--crs``, netCDF (one variable, several, netCDF-4 that reaches
other files) and ``--format``."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
import rasterio.shutil
from conftest import fresh_database
from rasterio.transform import from_origin
from scipy.io import netcdf_file
from typer.testing import CliRunner

from cli import app
from rasters.catalog import add_scene
from rasters.sources import _hdf5, hid_t
from twin.errors import InvalidData, InvalidParameter

DAY = "2024-05-01"
UTM = from_origin(500000, 3500040, 10, 10)  # EPSG:32650, near Guangzhou


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture
def cli(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_DATABASE_URL", pg_url)
    monkeypatch.setenv("TWIN_RASTER_DIR", str(tmp_path / "managed"))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, ["raster", *args])
        return r.exit_code, " ".join(r.output.split())  # rich wraps long lines anywhere

    return run


def _tif(path: Path, *, crs: str | None, transform=None, size: int = 8, value: int = 7) -> Path:
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8"}
    if crs:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, size, size), value, dtype="uint8"))
    return path


def _add(url: str, files: list, tmp_path: Path, **kw):
    """Register and look at the result without keeping it (the CLI tests commit theirs)."""
    with psycopg.connect(url) as conn:
        report = add_scene(conn, files, tmp_path / "managed", when=DAY, replace=True, **kw)
        path = conn.execute(
            "SELECT cog_path FROM twin.raster_scenes WHERE id = %s", [report.id]
        ).fetchone()[0]
        conn.rollback()
    return report, path


def _netcdf(path: Path, variables: dict[str, np.ndarray], *, lonlat: bool) -> Path:
    """A classic netCDF file as CF writes it: rows run south to north (y increasing)."""
    rows, cols = next(iter(variables.values())).shape
    with netcdf_file(path, "w") as f:
        ydim, xdim = ("lat", "lon") if lonlat else ("y", "x")
        f.createDimension(ydim, rows)
        f.createDimension(xdim, cols)
        y = f.createVariable(ydim, "f8", (ydim,))
        x = f.createVariable(xdim, "f8", (xdim,))
        if lonlat:  # cell centres 20.1, 20.3, ... east and 10.1, 10.3, ... north: 0.2° pixels
            y[:], x[:] = 10.1 + 0.2 * np.arange(rows), 20.1 + 0.2 * np.arange(cols)
            y.units, x.units = "degrees_north", "degrees_east"
        else:
            y[:], x[:] = 3500005 + 10.0 * np.arange(rows), 500005 + 10.0 * np.arange(cols)
            y.units = x.units = "m"
            y.standard_name, x.standard_name = "projection_y_coordinate", "projection_x_coordinate"
        for name, data in variables.items():
            f.createVariable(name, "f4", (ydim, xdim))[:] = data
    return path


# --- pixel sizes --------------------------------------------------------------------------
def test_cli_gives_pixel_sizes_in_degrees_for_lon_lat_and_in_the_crs_unit_otherwise(cli, tmp_path):
    lonlat = _tif(tmp_path / "lonlat.tif", crs="EPSG:4326", transform=from_origin(20, 11, 0.2, 0.2))
    code, out = cli("add", str(lonlat), "--datetime", DAY)
    assert code == 0, out
    assert "0.2°" in out and "0.2 m" not in out and "EPSG:4326" in out
    utm = _tif(tmp_path / "utm.tif", crs="EPSG:32650", transform=UTM)
    code, out = cli("add", str(utm), "--datetime", DAY)
    assert code == 0 and "8×8 px at 10 m, EPSG:32650" in out, out
    # New York Long Island in US survey feet
    feet = from_origin(1000000, 200000, 3, 3)
    code, out = cli(
        "add", str(_tif(tmp_path / "nyc.tif", crs="EPSG:2263", transform=feet)), "--datetime", DAY
    )
    assert code == 0 and "at 3 US ft, EPSG:2263" in out, out
    code, out = cli("list")
    assert "0.2°" in out and "10 m" in out and "3 US ft" in out, out


# --- missing georeferencing and --crs --------------------------------------------------------
def test_a_file_without_a_crs_is_named_as_such_and_takes_one_from_crs(pg_url, tmp_path):
    src = _tif(tmp_path / "nocrs.tif", crs=None, transform=UTM, value=9)
    with psycopg.connect(pg_url) as conn, pytest.raises(InvalidData) as err:
        add_scene(conn, [src], tmp_path / "managed", when=DAY)
    assert "has a geotransform but no CRS; give its CRS with --crs" in err.value.message
    report, cog = _add(pg_url, [src], tmp_path, crs="EPSG:32650")
    assert report.converted and report.crs == "EPSG:32650" and report.resolution_unit == "m"
    with rasterio.open(cog) as out:  # the assigned CRS is in the COG itself
        assert out.crs.to_epsg() == 32650 and out.transform == UTM
        assert set(np.unique(out.read(1))) == {9}
    report, _ = _add(pg_url, [src], tmp_path, crs="32650", scene_id="bare-code")
    assert report.epsg == 32650


def test_crs_never_replaces_a_crs_the_file_states(pg_url, tmp_path):
    src = _tif(tmp_path / "stated.tif", crs="EPSG:32650", transform=UTM)
    with psycopg.connect(pg_url) as conn, pytest.raises(InvalidParameter) as err:
        add_scene(conn, [src], tmp_path / "managed", when=DAY, crs="EPSG:32651")
    assert "states its own CRS (EPSG:32650); --crs EPSG:32651 only assigns" in err.value.message
    report, _ = _add(pg_url, [src], tmp_path, crs="+proj=utm +zone=50 +datum=WGS84")
    assert report.epsg == 32650  # the same CRS written otherwise is no conflict
    with psycopg.connect(pg_url) as conn, pytest.raises(InvalidParameter, match="not a CRS"):
        add_scene(conn, [src], tmp_path / "managed", when=DAY, crs="gcj02")


def test_a_crs_that_does_not_fit_the_coordinates_is_refused(pg_url, tmp_path):
    src = _tif(tmp_path / "metres.tif", crs=None, transform=UTM)
    with psycopg.connect(pg_url) as conn, pytest.raises(InvalidData, match="not on Earth"):
        add_scene(conn, [src], tmp_path / "managed", when=DAY, crs="EPSG:4326")
    assert not list((tmp_path / "managed").rglob("*.tif"))  # the converted COG is gone too


def test_a_file_without_a_geotransform_says_which_part_is_missing(pg_url, tmp_path):
    crs_only = _tif(tmp_path / "crsonly.tif", crs="EPSG:32650")
    neither = _tif(tmp_path / "plain.tif", crs=None)
    with psycopg.connect(pg_url) as conn:
        with pytest.raises(InvalidData) as err:
            add_scene(conn, [crs_only], tmp_path, when=DAY)
        assert "has a CRS (EPSG:32650) and no geotransform" in err.value.message
        with pytest.raises(InvalidData) as err:  # --crs cannot stand in for the geotransform
            add_scene(conn, [neither], tmp_path, when=DAY, crs="EPSG:32650")
        assert "has no CRS and no geotransform" in err.value.message


# --- netCDF ---------------------------------------------------------------------------------
def test_a_lon_lat_netcdf_variable_lands_at_its_lon_lat(cli, pg_url, tmp_path):
    temp = np.arange(20, dtype="float32").reshape(4, 5)  # row 0 is the southernmost
    nc = _netcdf(tmp_path / "temperature.nc", {"temp": temp}, lonlat=True)
    code, out = cli("add", str(nc), "--datetime", DAY)
    assert code == 2 and "has a geotransform but no CRS" in out, out
    code, out = cli("add", str(nc), "--datetime", DAY, "--crs", "EPSG:4326")
    assert code == 0, out
    assert "bands temp," in out and "5×4 px at 0.2°, EPSG:4326" in out
    with psycopg.connect(pg_url) as conn:
        cog, sources = conn.execute(
            "SELECT cog_path, sources FROM twin.raster_scenes WHERE id = 'temperature'"
        ).fetchone()
    assert sources == ["temperature.nc"]
    with rasterio.open(cog) as out:
        assert out.crs.to_epsg() == 4326
        assert out.bounds == pytest.approx((20.0, 10.0, 21.0, 10.8))
        centres = [(20.1, 10.1), (20.9, 10.1), (20.1, 10.7), (20.5, 10.3)]
        assert [v[0] for v in out.sample(centres)] == [0, 4, 15, 7]
        assert np.array_equal(out.read(1), np.flipud(temp))  # every pixel, north up


def test_a_netcdf_with_several_variables_asks_for_one(pg_url, tmp_path):
    a = np.zeros((4, 5), dtype="float32")
    b = np.arange(20, dtype="float32").reshape(4, 5)
    nc = _netcdf(tmp_path / "two.nc", {"a": a, "b": b}, lonlat=False)
    with psycopg.connect(pg_url) as conn:
        with pytest.raises(InvalidParameter) as err:
            add_scene(conn, [nc], tmp_path, when=DAY, crs="EPSG:32650")
        assert f"two.nc holds several variables (a, b); name one as NETCDF:{nc}:a" in (
            err.value.message
        )
        with pytest.raises(InvalidParameter) as err:
            add_scene(conn, [f"NETCDF:{nc}:c"], tmp_path, when=DAY, crs="EPSG:32650")
        assert "has no raster variable 'c'; it holds a, b" in err.value.message
    report, cog = _add(pg_url, [f'NETCDF:"{nc}":b'], tmp_path, crs="EPSG:32650", fmt="netcdf")
    assert report.id == "two_b" and report.bands == ["b"]
    with rasterio.open(cog) as out:
        assert out.crs.to_epsg() == 32650 and out.transform.almost_equals(UTM)
        assert out.read(1)[0, 0] == 15 and out.read(1)[-1, -1] == 4  # north up


def _hdf5_lib():
    found = _hdf5()
    if found is None:
        pytest.skip("no HDF5 library to write netCDF-4 test files with")
    lib = found[0]
    for fn in ("H5Fcreate", "H5Screate_simple", "H5Pcreate", "H5Dcreate2"):
        getattr(lib, fn).restype = hid_t
    return lib


def _hdf5_with_external_storage(path: Path, secret: Path) -> Path:
    lib = _hdf5_lib()
    create = hid_t.in_dll(lib, "H5P_CLS_DATASET_CREATE_ID_g")
    byte = hid_t.in_dll(lib, "H5T_NATIVE_UCHAR_g")
    f = hid_t(lib.H5Fcreate(str(path).encode(), 2, hid_t(0), hid_t(0)))  # truncate
    space = hid_t(lib.H5Screate_simple(2, (ctypes.c_uint64 * 2)(4, 5), None))
    plist = hid_t(lib.H5Pcreate(create))
    lib.H5Pset_external(plist, str(secret).encode(), ctypes.c_int64(0), ctypes.c_uint64(20))
    d = hid_t(lib.H5Dcreate2(f, b"secret", byte, space, hid_t(0), plist, hid_t(0)))
    for close, handle in (("H5Dclose", d), ("H5Pclose", plist), ("H5Sclose", space)):
        getattr(lib, close)(handle)
    lib.H5Fclose(f)
    return path


def _hdf5_with_external_link(path: Path, target: Path) -> Path:
    lib = _hdf5_lib()
    f = hid_t(lib.H5Fcreate(str(path).encode(), 2, hid_t(0), hid_t(0)))
    lib.H5Lcreate_external(str(target).encode(), b"/x", f, b"elsewhere", hid_t(0), hid_t(0))
    lib.H5Fclose(f)
    return path


def test_netcdf4_is_read_only_when_it_reaches_no_other_file(pg_url, tmp_path):
    utm = _tif(tmp_path / "utm.tif", crs="EPSG:32650", transform=UTM, value=3)
    nc4 = tmp_path / "utm4.nc"
    rasterio.shutil.copy(utm, nc4, driver="netCDF", FORMAT="NC4")
    report, cog = _add(pg_url, [nc4], tmp_path)
    assert report.epsg == 32650 and report.converted
    with rasterio.open(cog) as out:
        assert set(np.unique(out.read(1))) == {3}
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"TOPSECRET-" * 10)
    external = _hdf5_with_external_storage(tmp_path / "external.nc", secret)
    linked = _hdf5_with_external_link(tmp_path / "linked.nc", nc4)
    with psycopg.connect(pg_url) as conn:
        with pytest.raises(InvalidData, match="variable secret keeps its data in another file"):
            add_scene(conn, [external], tmp_path, when=DAY, crs="EPSG:32650")
        with pytest.raises(InvalidData, match="elsewhere links to an object in another file"):
            add_scene(conn, [f"NETCDF:{linked}:elsewhere"], tmp_path, when=DAY)


# --- formats and names that are refused ------------------------------------------------------
def test_vrt_other_drivers_and_other_names_are_refused(cli, tmp_path):
    utm = _tif(tmp_path / "target.tif", crs="EPSG:32650", transform=UTM)
    vrt = tmp_path / "evil.nc"  # a VRT under a netCDF name, or named as a netCDF variable
    vrt.write_text(
        f'<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand dataType="Byte" band="1">'
        f"<SimpleSource><SourceFilename>{utm}</SourceFilename></SimpleSource></VRTRasterBand>"
        "</VRTDataset>"
    )
    nc = _netcdf(tmp_path / "one.nc", {"v": np.ones((4, 5), "float32")}, lonlat=False)
    cases = [
        ([str(utm), "--format", "VRT"], "--format 'VRT' is not accepted; use one of GTiff"),
        ([str(utm), "--format", "ENVI"], "--format 'ENVI' is not accepted"),
        ([str(vrt)], "evil.nc is not a raster in a format we accept"),
        ([f"NETCDF:{vrt}:v"], "evil.nc is not a raster in a format we accept (netCDF;"),
        ([str(nc), "--format", "GTiff"], "one.nc is not a raster in a format we accept (GTiff;"),
        ([f"NETCDF:{nc}:v", "--format", "GTiff"], "names a netCDF variable; --format GTiff"),
        ([f"/vsicurl/http://example.com/{utm.name}"], "is neither a local file nor NETCDF:"),
        ([f'HDF5:"{nc}"://v'], "is neither a local file nor NETCDF:"),
        ([f"NETCDF:{tmp_path}/missing.nc:v"], "file not found: missing.nc"),
    ]
    for args, words in cases:
        code, out = cli("add", *args, "--datetime", DAY, "--crs", "EPSG:32650")
        assert code == 2 and words in out, (args, out)
    assert not list((tmp_path / "managed").rglob("*.tif"))
