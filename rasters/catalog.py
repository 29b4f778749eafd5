"""The scene catalog: registering scenes as Cloud Optimized GeoTIFFs the twin keeps.

A scene is one multi-band file or one file per band (Landsat-8 ``*_B2.TIF`` .. ``*_B5.TIF``,
Sentinel-2 ``B02`` .. ``B08``). The format is read from the content (GDAL opens what it
recognises, whatever the name; a ``.jp2`` holding a GeoTIFF is fine), never from the extension.
Files that are already valid COGs with every band in one file are referenced where they are;
everything else is stacked and written as a COG (rio-cogeo) into the managed directory. The row
keeps the footprint, date, sensor, band names, CRS, resolution and per-band statistics, and is
served as a STAC Item.

GDAL's VRT driver is never used to open anything: a VRT file can point at any file or URL.
Every open names its driver from an allow-list (VRT is not on it; see ``sources``), so GDAL
identifies the content only among those; catalogued COGs are opened as GTiff and nothing else.
(rasterio's warper builds in-memory warped VRTs internally; those never come from a request.)
"""

from __future__ import annotations

import math
import re
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import rasterio
import shapely
from psycopg.types.json import Jsonb
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling, reproject, transform_geom

from rasters.sources import (
    NO_SIDECARS,
    SourceName,
    check_format,
    crs_label,
    open_source,
    parse_crs,
    resolution_unit,
    same_crs,
    source_crs,
    source_name,
)
from twin.errors import Conflict, InvalidData, InvalidParameter, NotFound, TwinError

SCENE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
BAND_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# One answer for an unknown id and for anything that is not an id at all (a path, a URL):
# which of the two it was is not the caller's business.
UNKNOWN_SCENE = "no such scene or collection; they are listed at /raster/collections"
COMMON_BANDS = ("coastal", "blue", "green", "red", "nir", "swir16", "swir22", "pan")
# Band numbers of one-file-per-band products, by sensor family.
LANDSAT_BANDS = {
    "B1": "coastal",
    "B2": "blue",
    "B3": "green",
    "B4": "red",
    "B5": "nir",
    "B6": "swir16",
    "B7": "swir22",
    "B8": "pan",
}
SENTINEL2_BANDS = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B08": "nir",
    "B8A": "nir08",
    "B11": "swir16",
    "B12": "swir22",
}
DEFAULT_COLLECTION = "scenes"


@dataclass
class SceneReport:
    id: str
    collection: str
    datetime: datetime
    sensor: str
    bands: list[str]
    converted: bool
    width: int
    height: int
    resolution: tuple[float, float]
    resolution_unit: str  # the CRS's: "°" for lon/lat, "m", "US ft", ...
    epsg: int | None
    crs: str  # EPSG:n, or the CRS's name when it has no EPSG code
    seconds: float = 0.0
    stale_file: str | None = None  # the replaced scene's COG: delete it once this commits


def check_scene_id(scene_id: str) -> str:
    if not SCENE_ID.fullmatch(scene_id):
        raise NotFound(UNKNOWN_SCENE)
    return scene_id


def open_cog(path: str | Path) -> rasterio.DatasetReader:
    """A catalogued scene's COG, opened by the GTiff driver only, ignoring sidecar files."""
    with rasterio.Env(**NO_SIDECARS):
        return rasterio.open(path, driver="GTiff")


def _band_of_file(source: SourceName) -> str | None:
    """The common band name of a one-band file named like a Landsat or Sentinel-2 band."""
    stem = source.stem.upper()
    for table in (SENTINEL2_BANDS, LANDSAT_BANDS):
        for key, name in table.items():
            if stem == key or stem.endswith("_" + key):
                return name
    return None


def _band_names(files: list[SourceName], sources: list[Any], bands: list[str] | None) -> list[str]:
    counts = [s.count for s in sources]
    total = sum(counts)
    if bands:
        if len(bands) != total:
            raise InvalidParameter(
                f"--bands names {len(bands)} band(s) but the file(s) hold {total}"
            )
        if len(set(bands)) != len(bands) or not all(BAND_NAME.fullmatch(b) for b in bands):
            raise InvalidParameter(
                "--bands are distinct names of letters, digits and '_' starting with a letter "
                "(expressions use them), e.g. blue,green,red,nir"
            )
        return bands
    if len(files) > 1:
        names = [_band_of_file(f) for f in files]
        if all(names) and all(c == 1 for c in counts):
            return [n for n in names if n]
        raise InvalidParameter(
            "name the bands with --bands (e.g. blue,green,red,nir): the file names do not say"
        )
    described = [d.strip().lower() if d else "" for d in sources[0].descriptions]
    if total == 1 and not described[0]:  # a netCDF variable: its name says what it holds
        described = [str(sources[0].tags(1).get("NETCDF_VARNAME", "")).lower()]
    usable = all(BAND_NAME.fullmatch(d) for d in described)
    if usable and len(set(described)) == len(described):
        return described
    return [f"b{i}" for i in range(1, total + 1)]


def _mtl_date(folder: Path) -> date | None:
    for mtl in folder.glob("*_MTL.txt"):
        for line in mtl.read_text(errors="replace").splitlines():
            if line.strip().startswith("DATE_ACQUIRED"):
                return date.fromisoformat(line.split("=")[1].strip())
    return None


def _scene_date(files: list[SourceName], sources: list[Any], given: str | None) -> datetime:
    if given:
        try:
            parsed = datetime.fromisoformat(given)
        except ValueError:
            raise InvalidParameter(
                f"--datetime {given!r} is not an ISO date such as 2024-08-20"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    tags = sources[0].tags()
    for key in ("ACQUISITION_DATE", "DATETIME", "TIFFTAG_DATETIME"):
        if key in tags:
            text = tags[key].replace(":", "-", 2) if key == "TIFFTAG_DATETIME" else tags[key]
            try:
                return datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)
            except ValueError:
                pass
    path = files[0].path
    found = _mtl_date(path.parent)
    if found is None:
        m = re.search(r"_(20\d{2})(\d{2})(\d{2})(?:_|$)", path.parent.name + "_")
        if m is None:
            m = re.search(r"_(20\d{2})(\d{2})(\d{2})_", path.name)
        if m:
            found = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if found is None:
        raise InvalidParameter(f"{files[0].name}: no acquisition date found; give --datetime")
    return datetime(found.year, found.month, found.day, tzinfo=UTC)


def _sensor(files: list[SourceName], sources: list[Any], given: str | None) -> str:
    if given:
        return given
    tags = sources[0].tags()
    if tags.get("SENSOR"):
        return tags["SENSOR"]
    text = (files[0].path.parent.name + " " + files[0].path.name).upper()
    if "LC08" in text or "LANDSAT" in text:
        return "landsat-8"
    if "SENTINEL2" in text or re.search(r"\bS2[AB]_", text) or "_L2A_" in text:
        return "sentinel-2"
    return ""


def _is_cog(path: Path) -> bool:
    from rio_cogeo.cogeo import cog_validate

    try:
        valid, _, _ = cog_validate(str(path), quiet=True)
    except Exception:  # noqa: BLE001 - anything GDAL cannot validate is not a COG for us
        return False
    return bool(valid)


def _scene_crs(crss: list[CRS]) -> CRS:
    for crs in crss[1:]:
        if not same_crs(crs, crss[0]):
            raise InvalidData(
                f"the band files are in different CRSs ({crs_label(crs)} and "
                f"{crs_label(crss[0])}); a scene's bands share one CRS"
            )
    return crss[0]


def _stack(sources: list[Any], crs: CRS, out: Path) -> None:
    """Every band of every source on the finest grid among them, in one GeoTIFF."""
    ref = min(sources, key=lambda s: abs(s.transform.a))
    dtypes = {s.dtypes[0] for s in sources}
    dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
    count = sum(s.count for s in sources)
    profile = {
        "driver": "GTiff",
        "width": ref.width,
        "height": ref.height,
        "count": count,
        "dtype": dtype,
        "crs": crs,
        "transform": ref.transform,
        "nodata": ref.nodata,
        "tiled": True,
        "compress": "deflate",
    }
    with rasterio.open(out, "w", **profile) as dst:
        band = 1
        for s in sources:
            for i in range(1, s.count + 1):
                data = np.zeros((ref.height, ref.width), dtype=dtype)
                if s is ref or (s.transform == ref.transform and s.shape == ref.shape):
                    data[:] = s.read(i)
                else:
                    reproject(  # from an array: the file's own CRS may be missing
                        s.read(i),
                        data,
                        src_transform=s.transform,
                        src_crs=crs,
                        src_nodata=s.nodata,
                        dst_transform=ref.transform,
                        dst_crs=crs,
                        resampling=Resampling.bilinear,
                    )
                dst.write(data, band)
                band += 1


def _to_cog(source: Any, dest: Path, crs: CRS) -> None:
    """Write the already-open dataset as a COG (never reopening the source by name, so no
    other driver gets a chance to read it), in ``crs`` when the file states none."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    profile = cog_profiles.get("deflate")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if not source.crs:  # the same grid with the CRS given to it: a pixel-for-pixel copy
            source = stack.enter_context(
                WarpedVRT(
                    source,
                    src_crs=crs,
                    crs=crs,
                    transform=source.transform,
                    width=source.width,
                    height=source.height,
                )
            )
        cog_translate(
            source, str(dest), profile, quiet=True, overview_resampling="average", in_memory=False
        )


def _stats(path: Path) -> tuple[list[dict[str, float]], dict[str, Any]]:
    with open_cog(path) as src:
        scale = max(1, max(src.width, src.height) // 1024)
        shape = (src.count, max(1, src.height // scale), max(1, src.width // scale))
        data = src.read(out_shape=shape, masked=True)
        out = []
        for band in data:
            valid = band.compressed().astype("float64")
            if valid.size == 0:
                out.append({"valid_percent": 0.0})
                continue
            p2, p98 = np.percentile(valid, [2, 98])
            out.append(
                {
                    "min": float(valid.min()),
                    "max": float(valid.max()),
                    "mean": round(float(valid.mean()), 4),
                    "std": round(float(valid.std()), 4),
                    "p2": float(p2),
                    "p98": float(p98),
                    "valid_percent": round(100.0 * valid.size / band.size, 2),
                }
            )
        ring = shapely.box(*src.bounds)
        ring = shapely.segmentize(ring, max(src.width, src.height) * abs(src.transform.a) / 16)
        footprint = shapely.geometry.shape(
            transform_geom(src.crs, "EPSG:4326", shapely.geometry.mapping(ring), precision=7)
        )
        _check_on_the_globe(footprint, src.crs)
        info = {
            "epsg": src.crs.to_epsg(),
            "crs_wkt": src.crs.to_wkt(),
            "crs": crs_label(src.crs),
            "resolution_unit": resolution_unit(src.crs),
            "resolution": [abs(src.transform.a), abs(src.transform.e)],
            "width": src.width,
            "height": src.height,
            "dtype": src.dtypes[0],
            "nodata": src.nodata,
            "footprint": footprint,
            "scale": float(src.scales[0]) if src.scales and src.scales[0] not in (0, 1) else 1.0,
            "tags": src.tags(),
        }
    return out, info


def _check_on_the_globe(footprint: Any, crs: CRS) -> None:
    """Refuse coordinates that are no place on Earth in this CRS (metres read as degrees, a
    wrong --crs): they would be stored as a footprint nothing ever overlaps."""
    west, south, east, north = footprint.bounds
    # a pixel's edge may lie a little beyond the poles or the antimeridian; 0..360 longitudes
    # are left alone
    if all(map(math.isfinite, footprint.bounds)) and -91 <= south <= north <= 91:
        if -181 <= west <= east <= 361:
            return
    raise InvalidData(
        f"in {crs_label(crs)} the file lies at lon {west:.6g}..{east:.6g}, lat "
        f"{south:.6g}..{north:.6g}, which is not on Earth; is that its CRS?"
    )


def add_scene(
    conn: psycopg.Connection,
    files: list[Path] | list[str],
    raster_dir: Path,
    *,
    scene_id: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    when: str | None = None,
    sensor: str | None = None,
    bands: list[str] | None = None,
    scale: float | None = None,
    replace: bool = False,
    crs: str | None = None,
    fmt: str | None = None,
) -> SceneReport:
    """Register one scene (the caller commits). Nothing is written on any error.

    ``files`` are paths or NETCDF:file.nc:variable; ``crs`` is given to files that have none;
    ``fmt`` names the one GDAL driver (from the allow-list) to read them with.
    """
    import time

    started = time.perf_counter()
    if not files:
        raise InvalidParameter("give the scene's file, or one file per band")
    names = [source_name(f) for f in files]
    if len(names) > 1 and not bands:  # names from file names: band order follows them
        names.sort(key=lambda n: (str(n.path), n.variable or ""))
    assigned, driver = parse_crs(crs), check_format(fmt)
    scene_id = scene_id or _default_id(names)
    if not SCENE_ID.fullmatch(scene_id):
        raise InvalidParameter(
            f"scene id {scene_id!r}: letters, digits, '_', '.', '-' (at most 100), starting "
            "with a letter or digit"
        )
    if not SCENE_ID.fullmatch(collection) or len(collection) > 64:
        raise InvalidParameter(f"collection id {collection!r}: letters, digits, '_', '.', '-'")
    exists = conn.execute("SELECT 1 FROM twin.raster_scenes WHERE id = %s", [scene_id]).fetchone()
    if exists and not replace:
        raise Conflict(f"scene {scene_id} is registered already; --replace to register it again")
    sources: list[Any] = []
    try:
        for name in names:
            sources.append(open_source(name, driver))
        scene_crs = _scene_crs(
            [source_crs(s, n.name, assigned) for s, n in zip(sources, names, strict=True)]
        )
        band_names = _band_names(names, sources, bands)
        datetime_ = _scene_date(names, sources, when)
        who = _sensor(names, sources, sensor)
        # a new name each time: a scene being replaced keeps serving its old file until the
        # new row commits, and a failure leaves nothing behind
        dest = raster_dir / collection / f"{scene_id}.{uuid.uuid4().hex[:8]}.tif"
        in_place = len(names) == 1 and sources[0].driver == "GTiff" and sources[0].crs
        converted = not (in_place and _is_cog(names[0].path))
        if converted:
            _convert(sources, scene_crs, dest, raster_dir)
            cog = dest
        else:
            cog = names[0].path.resolve()
    finally:
        for s in sources:
            s.close()
    try:
        stats, info = _stats(cog)
    except TwinError:
        dest.unlink(missing_ok=True)
        raise
    except (RasterioIOError, ValueError) as exc:
        dest.unlink(missing_ok=True)
        raise InvalidData(f"{names[0].name}: cannot be read as a georeferenced raster") from exc
    band_scale = scale if scale is not None else _scale_from(info)
    old = conn.execute(
        "SELECT cog_path, converted FROM twin.raster_scenes WHERE id = %s", [scene_id]
    ).fetchone()
    try:
        _insert(
            conn,
            scene_id,
            collection,
            datetime_,
            who,
            band_names,
            band_scale,
            cog,
            converted,
            [n.name for n in names],
            info,
            stats,
        )
    except Exception:
        if converted:
            dest.unlink(missing_ok=True)
        raise
    return SceneReport(
        scene_id,
        collection,
        datetime_,
        who,
        band_names,
        converted,
        info["width"],
        info["height"],
        tuple(info["resolution"]),
        info["resolution_unit"],
        info["epsg"],
        info["crs"],
        time.perf_counter() - started,
        stale_file=old[0] if old and old[1] and old[0] != str(cog) else None,
    )


def _insert(
    conn: psycopg.Connection,
    scene_id: str,
    collection: str,
    datetime_: datetime,
    who: str,
    names: list[str],
    band_scale: float,
    cog: Path,
    converted: bool,
    files: list[str],
    info: dict[str, Any],
    stats: list[dict[str, float]],
) -> None:
    conn.execute(
        "INSERT INTO twin.raster_collections (id, title) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        [collection, collection],
    )
    conn.execute("DELETE FROM twin.raster_scenes WHERE id = %s", [scene_id])
    conn.execute(
        """
        INSERT INTO twin.raster_scenes (id, collection, datetime, sensor, bands, scale, cog_path,
            converted, sources, epsg, crs_wkt, resolution, width, height, dtype, nodata, stats,
            footprint)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                ST_SetSRID(ST_GeomFromText(%s), 4326))
        """,
        [
            scene_id,
            collection,
            datetime_,
            who,
            names,
            band_scale,
            str(cog),
            converted,
            files,
            info["epsg"],
            info["crs_wkt"],
            info["resolution"],
            info["width"],
            info["height"],
            info["dtype"],
            info["nodata"],
            Jsonb(dict(zip(names, stats, strict=True))),
            info["footprint"].wkt,
        ],
    )


def _convert(sources: list[Any], crs: CRS, dest: Path, raster_dir: Path) -> None:
    try:
        if len(sources) == 1:
            _to_cog(sources[0], dest, crs)
            return
        with tempfile.TemporaryDirectory(dir=_tmp_parent(raster_dir)) as tmp:
            stacked = Path(tmp) / "stack.tif"
            _stack(sources, crs, stacked)
            with rasterio.open(stacked, driver="GTiff") as stack:
                _to_cog(stack, dest, crs)
    except Exception:
        dest.unlink(missing_ok=True)
        raise


def _tmp_parent(raster_dir: Path) -> Path:
    raster_dir.mkdir(parents=True, exist_ok=True)
    return raster_dir


def _scale_from(info: dict[str, Any]) -> float:
    tags = info["tags"]
    if "REFLECTANCE_SCALE" in tags:
        return float(tags["REFLECTANCE_SCALE"])
    return float(info["scale"])


def _default_id(files: list[SourceName]) -> str:
    if len(files) > 1:
        base = files[0].path.parent.name
    else:
        base = files[0].stem
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_.-") or "scene"
    return clean[:100]


# --- reading the catalog -------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    id: str
    collection: str
    datetime: datetime
    sensor: str
    bands: tuple[str, ...]
    scale: float
    cog_path: str
    epsg: int | None
    resolution: tuple[float, ...]
    width: int
    height: int
    dtype: str
    nodata: float | None
    stats: dict[str, Any]
    footprint: dict[str, Any]  # GeoJSON
    bbox: tuple[float, float, float, float]

    def band_index(self, name: str) -> int:
        return self.bands.index(name) + 1


SCENE_COLUMNS = (
    "id, collection, datetime, sensor, bands, scale, cog_path, epsg, resolution, width, height, "
    "dtype, nodata, stats, ST_AsGeoJSON(footprint, 7)::jsonb, ST_XMin(footprint), "
    "ST_YMin(footprint), ST_XMax(footprint), ST_YMax(footprint)"
)


def scene_from_row(row: tuple) -> Scene:
    (
        sid,
        coll,
        dt,
        sensor,
        bands,
        scale,
        path,
        epsg,
        res,
        width,
        height,
        dtype,
        nodata,
        stats,
        fp,
        x0,
        y0,
        x1,
        y1,
    ) = row
    return Scene(
        sid,
        coll,
        dt,
        sensor,
        tuple(bands),
        float(scale),
        path,
        epsg,
        tuple(res),
        width,
        height,
        dtype,
        nodata,
        stats,
        fp,
        (x0, y0, x1, y1),
    )


async def get_scene(conn: Any, scene_id: str) -> Scene:
    """A scene by id; unknown and malformed ids get the same answer."""
    if not SCENE_ID.fullmatch(scene_id):
        raise NotFound(UNKNOWN_SCENE)
    cur = await conn.execute(
        f"SELECT {SCENE_COLUMNS} FROM twin.raster_scenes WHERE id = %s",  # noqa: S608
        [scene_id],
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(UNKNOWN_SCENE)
    return scene_from_row(row)


# Who may read a raster collection (public, viewer, editor or admin); for the CLI and the API.
SET_READ_ROLE_SQL = "UPDATE twin.raster_collections SET read_role = %s WHERE id = %s RETURNING id"


async def set_read_role(conn: Any, cid: str, read_role: str) -> None:
    """Set who may read a raster collection; an unknown one is a 404."""
    cur = await conn.execute(SET_READ_ROLE_SQL, [read_role, cid])
    if await cur.fetchone() is None:
        raise NotFound(f"no raster collection {cid!r}")


def get_scene_sync(conn: psycopg.Connection, scene_id: str) -> Scene:
    if not SCENE_ID.fullmatch(scene_id):
        raise NotFound(UNKNOWN_SCENE)
    row = conn.execute(
        f"SELECT {SCENE_COLUMNS} FROM twin.raster_scenes WHERE id = %s",  # noqa: S608
        [scene_id],
    ).fetchone()
    if row is None:
        raise NotFound(UNKNOWN_SCENE)
    return scene_from_row(row)
