"""Tiles, COGs and styles read the way GIS clients read files over HTTP: HEAD for the size and
headers, Range for parts, `{y}.pbf` tile names, and GDAL's own /vsicurl/ reading them.

The server runs in a thread on a free loopback port (uvicorn, as in production) with the demo's
sample city; a recorder around the app notes each request's method, status and body bytes, so
the tests can tell what GDAL fetched.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import mapbox_vector_tile
import psycopg
import pytest
import rasterio
from conftest import fresh_database, load_city, serve

# A tile of the README with components in the sample city (seed 42).
TILE = (15, 26991, 13332)
SCENE = "imagery_2023"
# Response headers that may differ between two answers to the same request.
VOLATILE = {"date"}

needs_gdal = pytest.mark.skipif(
    shutil.which("ogrinfo") is None or shutil.which("gdalinfo") is None,
    reason="make test installs gdal-bin (scripts/ensure-system --browser)",
)


@dataclass
class Recorder:
    """The app, with a note of every HTTP request: method, path, Range, status, body bytes."""

    app: Any
    log: list[dict] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        entry = {
            "method": scope["method"],
            "path": scope["path"],
            "range": headers.get(b"range", b"").decode(),
            "status": 0,
            "bytes": 0,
        }
        self.log.append(entry)

        async def noted(message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            elif message["type"] == "http.response.body":
                entry["bytes"] += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, noted)


@pytest.fixture(scope="module")
def served(server_url, sample_city, tmp_path_factory) -> Iterator[tuple[str, Recorder, str]]:
    """The demo city served over HTTP; the base URL, the recorder, the database URL."""
    with fresh_database(server_url) as url:
        cfg = load_city(url, sample_city, tmp_path_factory.mktemp("rasters"))
        from api.app import create_app

        recorder = Recorder(create_app(cfg))
        with serve(recorder) as base:
            yield base, recorder, url


@pytest.fixture(scope="module")
def http(served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def cog_path(served) -> str:
    with psycopg.connect(served[2]) as conn:
        row = conn.execute("SELECT cog_path FROM twin.raster_scenes WHERE id = %s", [SCENE])
        return str(row.fetchone()[0])


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


@pytest.fixture(scope="module")
def raster_tile(http) -> str:
    """A raster tile in the middle of the scene."""
    west, south, east, north = http.get(f"/raster/scenes/{SCENE}").json()["bbox"]
    x, y = tile_of((west + east) / 2, (south + north) / 2, 16)
    return f"/raster/scenes/{SCENE}/tiles/WebMercatorQuad/16/{x}/{y}.png?preset=truecolor"


def layer_tile(y: str = str(TILE[2])) -> str:
    z, x, _ = TILE
    return f"/collections/components/tiles/WebMercatorQuad/{z}/{x}/{y}"


def map_tile(y: str = str(TILE[2])) -> str:
    z, x, _ = TILE
    return f"/maps/city-management/tiles/WebMercatorQuad/{z}/{x}/{y}"


def comparable(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in VOLATILE}


# --- HEAD -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        layer_tile(),
        map_tile(),
        "/collections/components/tiles/WebMercatorQuad/tilejson.json",
        "/maps/city-management/tiles/WebMercatorQuad/tilejson.json",
        "/maps/city-management/style.json",
        "raster-tile",
        f"/raster/scenes/{SCENE}/data.tif",
    ],
)
def test_head_answers_with_the_headers_of_get_and_no_body(http, raster_tile, path):
    path = raster_tile if path == "raster-tile" else path
    http.get(path)  # fills the tile cache: both answers below are hits
    got = http.get(path)
    head = http.head(path)
    assert got.status_code == head.status_code == 200
    assert got.content
    assert head.content == b""
    assert comparable(head) == comparable(got)
    assert {"content-length", "content-type"} <= set(head.headers)


def test_head_keeps_the_conditional_answers(http):
    etag = http.get(layer_tile()).headers["etag"]
    head = http.head(layer_tile(), headers={"If-None-Match": etag})
    assert head.status_code == 304 and head.headers["etag"] == etag and head.content == b""
    assert http.head(layer_tile("99999999")).status_code == 404
    assert http.head("/collections/nope/tiles/WebMercatorQuad/1/0/0").status_code == 404


def test_head_stays_out_of_the_openapi_document(http):
    paths = http.get("/api").json()["paths"]
    assert all("head" not in ops for ops in paths.values())


# --- Range ----------------------------------------------------------------------------------
def test_ranges_of_the_cog_are_the_slices_of_the_file(http, cog_path):
    path = f"/raster/scenes/{SCENE}/data.tif"
    whole = http.get(path)
    with open(cog_path, "rb") as f:
        assert whole.content == f.read()
    size = len(whole.content)
    assert whole.headers["accept-ranges"] == "bytes"
    for asked, first, last in [
        ("bytes=100-1099", 100, 1099),
        (f"bytes={size - 10}-", size - 10, size - 1),  # open-ended
        ("bytes=-500", size - 500, size - 1),  # suffix
        (f"bytes=0-{size + 1000}", 0, size - 1),  # a last byte past the end is clipped
    ]:
        r = http.get(path, headers={"Range": asked})
        assert r.status_code == 206, asked
        assert r.content == whole.content[first : last + 1]
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert r.headers["content-length"] == str(last - first + 1)
        head = http.head(path, headers={"Range": asked})
        assert head.status_code == 206 and head.content == b""
        assert head.headers["content-range"] == r.headers["content-range"]


def test_a_range_past_the_end_is_416_with_the_size(http, raster_tile):
    for path in (f"/raster/scenes/{SCENE}/data.tif", layer_tile(), raster_tile):
        size = len(http.get(path).content)
        r = http.get(path, headers={"Range": f"bytes={size}-"})
        assert r.status_code == 416, path
        assert r.headers["content-range"] == f"bytes */{size}"
        assert r.json()["code"] == "range-not-satisfiable"
        assert str(size) in r.json()["message"]


@pytest.mark.parametrize("asked", ["bytes=abc", "bytes=9-3", "bytes=-", "0-10"])
def test_a_malformed_range_is_400_saying_the_syntax(http, asked):
    for path in (f"/raster/scenes/{SCENE}/data.tif", layer_tile()):
        r = http.get(path, headers={"Range": asked})
        assert r.status_code == 400, (path, asked)
        assert "bytes=first-last" in r.json()["message"] or "after the last" in r.json()["message"]


def test_several_ranges_or_another_unit_get_the_whole_body(http):
    path = f"/raster/scenes/{SCENE}/data.tif"
    size = int(http.head(path).headers["content-length"])
    for asked in ("bytes=0-9,20-29", "items=0-4"):
        r = http.get(path, headers={"Range": asked})
        assert r.status_code == 200 and len(r.content) == size


def test_ranges_of_a_tile_count_the_uncompressed_bytes(http, raster_tile):
    for path in (layer_tile(), map_tile(), raster_tile, "/maps/city-management/style.json"):
        whole = http.get(path, headers={"Accept-Encoding": "identity"})
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        size = len(whole.content)
        # asked with gzip accepted, as GDAL asks: the range is still of the identity bytes
        r = http.get(path, headers={"Range": "bytes=10-209", "Accept-Encoding": "gzip"})
        assert r.status_code == 206, path
        assert "content-encoding" not in r.headers
        assert r.content == whole.content[10:210]
        assert r.headers["content-range"] == f"bytes 10-209/{size}"
        assert r.headers.get("etag") == whole.headers.get("etag")
        suffix = http.get(path, headers={"Range": "bytes=-7"})
        assert suffix.status_code == 206 and suffix.content == whole.content[-7:]


def test_if_range_with_another_version_gets_the_whole_tile(http):
    whole = http.get(layer_tile(), headers={"Accept-Encoding": "identity"})
    stale = http.get(layer_tile(), headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == whole.content
    current = {"Range": "bytes=0-9", "If-Range": whole.headers["etag"]}
    assert http.get(layer_tile(), headers=current).status_code == 206


# --- {y}.pbf, {y}.mvt -----------------------------------------------------------------------
@pytest.mark.parametrize("tile", [layer_tile, map_tile])
def test_pbf_and_mvt_suffixes_give_the_same_tile(http, tile):
    plain = mapbox_vector_tile.decode(http.get(tile()).content)
    assert any(layer["features"] for layer in plain.values())
    for suffix in (".pbf", ".mvt"):
        r = http.get(tile(f"{TILE[2]}{suffix}"))
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
        assert mapbox_vector_tile.decode(r.content) == plain
    bad = http.get(tile(f"{TILE[2]}.png"))
    assert bad.status_code == 400
    assert "ending .pbf or .mvt" in bad.json()["message"]


# --- GDAL -----------------------------------------------------------------------------------
def gdal(*args: str) -> str:
    """Run a GDAL command-line tool against the test server.

    GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR: /vsicurl/ otherwise asks for the folder of the file
    (a tile's parent URL) to list its siblings, requests that only add 404s to the log. No
    CPL_VSIL_CURL_ALLOWED_EXTENSIONS: GDAL reads any URL unless that option restricts it. A proxy
    set in the environment is bypassed for the loopback server.
    """
    env = {
        **os.environ,
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_gdal
@pytest.mark.parametrize("suffix", [".pbf", ".mvt"])
def test_ogrinfo_reads_a_vector_tile_over_vsicurl(served, http, suffix):
    """GDAL's MVT driver takes a /vsicurl/ URL ending in a bare integer for a folder of tiles
    (a zoom level of a tile set), so a single tile is opened by its {y}.pbf or {y}.mvt name."""
    base, recorder, _ = served
    expected = mapbox_vector_tile.decode(http.get(layer_tile()).content)
    path = layer_tile(f"{TILE[2]}{suffix}")
    before = len(recorder.log)
    out = gdal("ogrinfo", "-ro", "-al", "-so", f"/vsicurl/{base}{path}")
    assert "Layer name: components" in out
    count = re.search(r"Feature Count: (\d+)", out)
    assert count is not None, out
    assert int(count[1]) == len(expected["components"]["features"]) > 0
    asked = [e for e in recorder.log[before:] if e["path"] == path]
    assert [e["method"] for e in asked][:1] == ["HEAD"]  # the size first, then the bytes
    assert {e["status"] for e in asked} <= {200, 206}


@needs_gdal
def test_gdalinfo_reads_the_cog_by_ranges(served, cog_path):
    base, recorder, _ = served
    path = f"/raster/scenes/{SCENE}/data.tif"
    before = len(recorder.log)
    info = json.loads(gdal("gdalinfo", "-json", f"/vsicurl/{base}{path}"))
    with rasterio.open(cog_path) as cog:
        assert info["size"] == [cog.width, cog.height]
        assert f'ID["EPSG",{cog.crs.to_epsg()}]]' in info["coordinateSystem"]["wkt"]
        size = os.path.getsize(cog_path)
    asked = [e for e in recorder.log[before:] if e["path"] == path]
    assert any(e["status"] == 206 for e in asked), asked
    assert all(e["status"] in (200, 206) for e in asked), asked
    fetched = sum(e["bytes"] for e in asked)
    assert size > 1_000_000  # large enough for a partial read to show
    assert fetched < size / 10, (fetched, size, asked)
