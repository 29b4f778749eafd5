"""Opening the files a scene is registered from, without letting any of them reach other files.

Every open names its driver from an allow-list (never VRT, never a format with header or sidecar
files) and runs with sidecar discovery off. NetCDF comes in two containers: classic netCDF is
self-contained, but netCDF-4 is HDF5, which can keep a variable's bytes in another file
(external storage), map other files into a dataset (virtual datasets) or link to objects in
other files (external links); such a file is refused before GDAL opens it.

The CRS of a file can be given (``--crs``) when the file has none, like GDAL's ``-a_srs`` but
never replacing a CRS the file states: that would be a different claim about where the pixels
are, and a file whose CRS is wrong is best fixed at its source.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyproj
import rasterio
from rasterio.crs import CRS
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioIOError

from twin.errors import InvalidData, InvalidParameter

# Raster formats a scene may come in, tried in this order; VRT is deliberately absent.
# Only self-contained formats: no header or sidecar file can point a read somewhere else.
ALLOWED_DRIVERS = ("GTiff", "JP2OpenJPEG", "netCDF")
# GDAL looks for sidecar files (.ovr, .aux.xml, .msk) next to what it opens, with any driver:
# a VRT dropped beside a scene as "scene.tif.ovr" would be read as its overview. Scenes are
# opened with sibling discovery off.
NO_SIDECARS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
# GDAL's subdataset syntax for one variable of a netCDF file: NETCDF:file.nc:var or
# NETCDF:"file.nc":var (the variable may be a netCDF-4 group path such as /group/var).
NETCDF_VARIABLE = re.compile(r'NETCDF:(?:"(?P<quoted>[^"]+)"|(?P<plain>.+)):(?P<var>[^":]+)', re.I)
OTHER_SUBDATASET = re.compile(r"[A-Za-z][A-Za-z0-9_]*:")
CLASSIC_NETCDF = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class SourceName:
    """A file a scene is made of, and the netCDF variable in it when one was named."""

    path: Path
    variable: str | None = None

    @property
    def name(self) -> str:
        """For messages and the catalog: names only, never the folders."""
        if self.variable is None:
            return self.path.name
        return f"NETCDF:{self.path.name}:{self.variable}"

    @property
    def stem(self) -> str:
        return self.path.stem if self.variable is None else f"{self.path.stem}_{self.variable}"


def source_name(given: str | Path) -> SourceName:
    """A file path, or GDAL's NETCDF:file.nc:variable naming one variable of a local file."""
    text = str(given)
    path = Path(text)
    if path.exists():
        return SourceName(path)
    m = NETCDF_VARIABLE.fullmatch(text)
    if m:
        return SourceName(Path(m.group("quoted") or m.group("plain")), m.group("var"))
    if text.startswith("/vsi") or OTHER_SUBDATASET.match(text):
        raise InvalidParameter(
            f"{text!r} is neither a local file nor NETCDF:file.nc:variable; GDAL virtual file "
            "systems, URLs and other subdataset names are not accepted"
        )
    return SourceName(path)


def check_format(name: str | None) -> str | None:
    """The allowed GDAL driver short name for ``--format``, spelled as GDAL spells it."""
    if name is None:
        return None
    for driver in ALLOWED_DRIVERS:
        if name.strip().lower() == driver.lower():
            return driver
    raise InvalidParameter(
        f"--format {name!r} is not accepted; use one of {', '.join(ALLOWED_DRIVERS)} (formats "
        "that cannot refer to other files: VRT and formats with header or sidecar files are "
        "refused)"
    )


def parse_crs(text: str | None) -> CRS | None:
    """``--crs``: anything PROJ accepts (EPSG:32650, a bare EPSG code, WKT, a PROJ string)."""
    if text is None:
        return None
    try:
        crs = CRS.from_epsg(int(text)) if text.strip().isdigit() else CRS.from_user_input(text)
    except (CRSError, ValueError):
        crs = None
    if not crs:
        raise InvalidParameter(
            f"--crs {text!r} is not a CRS PROJ knows; give e.g. EPSG:4326 for lon/lat degrees "
            "or the EPSG code of the file's projection"
        )
    return crs


def open_source(source: SourceName, fmt: str | None = None) -> rasterio.DatasetReader:
    """The file opened by an allowed driver (``fmt`` only, when given), sidecars ignored."""
    path = source.path
    if not path.is_file():
        raise InvalidParameter(f"file not found: {path.name}")
    if source.variable is not None and fmt not in (None, "netCDF"):
        raise InvalidParameter(
            f"{source.name} names a netCDF variable; --format {fmt} contradicts it"
        )
    if fmt:
        drivers = [fmt]
    else:
        drivers = ["netCDF"] if source.variable else list(ALLOWED_DRIVERS)
    for driver in drivers:
        if driver == "netCDF":
            if not _netcdf_container(path):
                continue
            src = _open_netcdf(source)
        else:
            try:
                with rasterio.Env(**NO_SIDECARS):
                    src = rasterio.open(path, driver=driver)
            except (RasterioIOError, ValueError):
                continue
        return src
    formats = ", ".join(drivers)
    raise InvalidData(
        f"{path.name} is not a raster in a format we accept ({formats}; checked by its content, "
        "not its name)"
    )


def _netcdf_container(path: Path) -> bool:
    """True for classic netCDF, and for netCDF-4 (HDF5) that reaches no other file."""
    with path.open("rb") as f:
        head = f.read(4)
        if head in CLASSIC_NETCDF:  # nothing in a classic file can name another file
            return True
        if not _is_hdf5(f, path.stat().st_size):
            return False
    reason = hdf5_outside_reference(path)
    if reason:
        raise InvalidData(f"{path.name} is refused: {reason}")
    return True


def _is_hdf5(f: Any, size: int) -> bool:
    # The superblock may follow a user block: at 0, 512, 1024, 2048, ... (as netCDF looks).
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        f.seek(offset)
        if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _open_netcdf(source: SourceName) -> rasterio.DatasetReader:
    path = source.path.resolve()
    if '"' in str(path) or "#" in str(path):  # both mean something in the names GDAL parses
        raise InvalidParameter(f"{source.path.name}: rename the file without '\"' or '#'")
    name = str(path) if source.variable is None else f'NETCDF:"{path}":{source.variable}'
    try:
        src = _gdal_netcdf(name)
    except RasterioIOError:
        if source.variable is None:
            raise InvalidData(f"{source.path.name} cannot be read as netCDF") from None
        with _gdal_netcdf(str(path)) as container:
            names = _variables(container)
        raise InvalidParameter(
            f"{source.path.name} has no raster variable {source.variable!r}; it holds "
            f"{', '.join(names) or 'none'}"
        ) from None
    if src.count == 0:  # a container of several variables: GDAL lists them as subdatasets
        names = _variables(src)
        src.close()
        if not names:
            raise InvalidData(f"{source.path.name} holds no raster variable")
        raise InvalidParameter(
            f"{source.path.name} holds several variables ({', '.join(names)}); name one as "
            f"NETCDF:{source.path}:{names[0]}"
        )
    return src


def _gdal_netcdf(name: str) -> rasterio.DatasetReader:
    with rasterio.Env(**NO_SIDECARS), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # containers have no grid
        return rasterio.open(name, driver="netCDF")


def _variables(src: Any) -> list[str]:
    """The raster variables GDAL finds in an open netCDF file."""
    if src.count:
        return [str(src.tags(1).get("NETCDF_VARNAME", ""))]
    return [s.rsplit(":", 1)[1] for s in src.subdatasets]


# --- georeferencing -------------------------------------------------------------------------
def source_crs(src: Any, name: str, assigned: CRS | None) -> CRS:
    """The CRS the file's pixels are in: its own, or ``--crs`` when it has none. Refuses a
    file whose CRS or geotransform is missing, saying which."""
    has_crs = bool(src.crs)
    if src.transform.is_identity:
        own = f"a CRS ({crs_label(src.crs)})" if has_crs else "no CRS"
        hint = (
            "it has ground control points only: warp it onto a grid first (gdalwarp)"
            if src.gcps[0]
            else "georeference it first (e.g. gdal_translate -a_ullr, or gdalwarp with GCPs)"
        )
        raise InvalidData(
            f"{name} has {own} and no geotransform (where its pixels lie on the map); {hint}"
        )
    if not has_crs:
        if assigned is None:
            raise InvalidData(
                f"{name} has a geotransform but no CRS; give its CRS with --crs (e.g. "
                "--crs EPSG:4326 when its coordinates are lon/lat degrees)"
            )
        return assigned
    if assigned is not None and not same_crs(src.crs, assigned):
        raise InvalidParameter(
            f"{name} states its own CRS ({crs_label(src.crs)}); --crs {crs_label(assigned)} "
            "only assigns a CRS to files that have none and never reprojects. Leave --crs "
            "out, or fix the file's CRS at its source if it is wrong"
        )
    return src.crs


def same_crs(a: CRS, b: CRS) -> bool:
    """The same CRS however it is written (an EPSG code, WKT, a PROJ string)."""
    pa, pb = pyproj.CRS.from_wkt(a.to_wkt()), pyproj.CRS.from_wkt(b.to_wkt())
    return bool(pa.equals(pb, ignore_axis_order=True))


def crs_label(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else pyproj.CRS.from_wkt(crs.to_wkt()).name


# Linear units as people write them after a number; other units keep PROJ's name.
UNIT_SYMBOLS = {"metre": "m", "meter": "m", "US survey foot": "US ft", "foot": "ft"}


def resolution_unit(crs: CRS) -> str:
    """The unit of a CRS's coordinates, so of a pixel size in it: degrees or a length."""
    if crs.is_geographic:
        return "°"
    unit, _ = crs.linear_units_factor
    return UNIT_SYMBOLS.get(unit, unit)


def resolution_text(resolution: tuple[float, ...] | list[float], unit: str) -> str:
    """A pixel size with its unit: '10 m', '0.2°', '0.25 × 0.2°' for non-square pixels."""
    x, y = f"{resolution[0]:g}", f"{resolution[-1]:g}"  # equal when they print the same
    size = x if x == y else f"{x} × {y}"
    return f"{size}{unit}" if unit == "°" else f"{size} {unit}"


# --- netCDF-4 / HDF5: references to other files ---------------------------------------------
# Neither GDAL nor rasterio tells whether an HDF5 file reaches other files, and h5py is no
# dependency, so the HDF5 library GDAL already loads is asked directly (a read-only walk).
H5L_TYPE_HARD, H5L_TYPE_SOFT = 0, 1  # the other link types (external, user-defined) leave the file
H5I_DATASET = 5
H5D_VIRTUAL = 3
hid_t = ctypes.c_int64  # HDF5 >= 1.10
VISIT = ctypes.CFUNCTYPE(ctypes.c_int, hid_t, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p)


@lru_cache(maxsize=1)
def _hdf5() -> Any:
    """The HDF5 library GDAL's netCDF driver reads through, or None if it cannot be found."""
    candidates = []
    maps = Path("/proc/self/maps")  # Linux: the copy already loaded with GDAL
    if maps.exists():
        for line in maps.read_text().splitlines():
            mapped = line.split()[-1]
            if re.search(r"/libhdf5(?:_serial)?(?:-[0-9a-f]+)?\.(?:so|dylib)", mapped):
                candidates.append(mapped)
    wheel = Path(rasterio.__file__).parent
    candidates += [str(p) for p in wheel.parent.glob("rasterio.libs/libhdf5-*")]
    candidates += [str(p) for p in wheel.glob(".dylibs/libhdf5.*")]
    found = ctypes.util.find_library("hdf5")
    candidates += [found] if found else []
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            visit = getattr(lib, "H5Lvisit2", None) or lib.H5Lvisit
            version = [ctypes.c_uint() for _ in range(3)]
            lib.H5get_libversion(*(ctypes.byref(v) for v in version))
        except (OSError, AttributeError):
            continue
        if (version[0].value, version[1].value) < (1, 10):  # hid_t was 32 bits before 1.10
            continue
        for fn in ("H5Fopen", "H5Oopen", "H5Dget_create_plist"):
            getattr(lib, fn).restype = hid_t
        lib.H5Fopen.argtypes = [ctypes.c_char_p, ctypes.c_uint, hid_t]
        lib.H5Oopen.argtypes = [hid_t, ctypes.c_char_p, hid_t]
        for fn in ("H5Iget_type", "H5Dget_create_plist", "H5Pget_external_count"):
            getattr(lib, fn).argtypes = [hid_t]
        lib.H5Pget_layout.argtypes = [hid_t]
        for fn in ("H5Oclose", "H5Pclose", "H5Fclose"):
            getattr(lib, fn).argtypes = [hid_t]
        visit.argtypes = [hid_t, ctypes.c_int, ctypes.c_int, VISIT, ctypes.c_void_p]
        lib.H5Eset_auto2(hid_t(0), None, None)  # failures are answered here, not printed
        return lib, visit
    return None


def hdf5_outside_reference(path: Path) -> str | None:
    """Why reading this HDF5 file would read another file too, or None when it would not."""
    found = _hdf5()
    if found is None:
        return (
            "it is netCDF-4 (HDF5), which can refer to other files, and the HDF5 library to "
            "check it is not found here; convert it to classic netCDF (nccopy -k classic)"
        )
    lib, visit = found
    reasons: list[str] = []

    def look(group: int, name: bytes, info: int, _: Any) -> int:
        link = ctypes.cast(info, ctypes.POINTER(ctypes.c_int))[0]  # H5L_info_t starts with it
        what = name.decode(errors="replace")
        if link not in (H5L_TYPE_HARD, H5L_TYPE_SOFT):
            reasons.append(f"{what} links to an object in another file")
        elif link == H5L_TYPE_HARD:
            reasons.extend(_dataset_elsewhere(lib, group, name, what))
        return 1 if reasons else 0  # a positive answer stops the walk

    fid = lib.H5Fopen(str(path).encode(sys.getfilesystemencoding()), 0, 0)  # read-only
    if fid < 0:
        return "it looks like netCDF-4 (HDF5) but HDF5 cannot open it"
    try:
        if visit(fid, 0, 0, VISIT(look), None) < 0 and not reasons:
            reasons.append("HDF5 cannot list its contents")
    finally:
        lib.H5Fclose(fid)
    return f"{reasons[0]} (netCDF-4 files are read only when self-contained)" if reasons else None


def _dataset_elsewhere(lib: Any, group: int, name: bytes, what: str) -> list[str]:
    obj = lib.H5Oopen(group, name, 0)
    if obj < 0:
        return [f"{what} cannot be opened"]
    try:
        if lib.H5Iget_type(obj) != H5I_DATASET:
            return []
        plist = lib.H5Dget_create_plist(obj)
        try:
            if lib.H5Pget_external_count(plist) != 0:
                return [f"variable {what} keeps its data in another file"]
            if lib.H5Pget_layout(plist) == H5D_VIRTUAL:
                return [f"variable {what} is a virtual dataset made of other files"]
            return []
        finally:
            lib.H5Pclose(plist)
    finally:
        lib.H5Oclose(obj)
