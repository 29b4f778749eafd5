"""Every STAC Item and Collection we serve is valid against the STAC 1.0.0 JSON schemas and the
schemas of the extensions it lists, checked offline from the copies in tests/data/stac-schemas.

`stac-validator --pydantic` cannot check the eo and projection extensions without the network;
here every `$ref` (item.json's basics/datetime/..., the GeoJSON schemas, the extensions) is
resolved from a `referencing` Registry of local files, and an unknown URL fails instead of being
fetched.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
from conftest import DATA, app_client, fresh_database, settings_for
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from rasterio.transform import from_origin
from referencing import Registry
from referencing.jsonschema import DRAFT7

from rasters import stac
from rasters.catalog import add_scene
from twin.settings import RasterSettings

SCHEMAS = DATA / "stac-schemas"
SPEC = "https://schemas.stacspec.org/v1.0.0"
CORE = {
    "Feature": f"{SPEC}/item-spec/json-schema/item.json",
    "Collection": f"{SPEC}/collection-spec/json-schema/collection.json",
}
LANDSAT = DATA / "raster" / "landsat8_LC08_L1TP_016037_20170813"
SENTINEL = DATA / "raster" / "sentinel2_l2a_19UDP_20170729_R10m"


@cache
def registry() -> Registry:
    """Every schema file under its own $id; no retrieval function, so nothing is fetched."""
    resources = []
    for path in sorted(SCHEMAS.rglob("*.json")):
        doc = json.loads(path.read_text("utf-8"))
        resources.append((doc["$id"].rstrip("#"), DRAFT7.create_resource(doc)))
    return Registry().with_resources(resources)


def schema_urls(doc: dict) -> list[str]:
    """The core schema of the document's type, then each extension it lists."""
    assert doc.get("stac_version") == "1.0.0", doc.get("stac_version")
    return [CORE[doc["type"]], *doc.get("stac_extensions", [])]


def problems(doc: dict) -> list[str]:
    """Why ``doc`` is not valid, one line per failing schema; empty when it is."""
    found = []
    for url in schema_urls(doc):
        if url.rstrip("#") not in registry():
            found.append(f"{url}: no local copy in {SCHEMAS.name}/ (validation is offline)")
            continue
        validator = Draft7Validator(
            registry().contents(url.rstrip("#")),
            registry=registry(),
            format_checker=Draft7Validator.FORMAT_CHECKER,
        )
        leaves = [leaf for e in validator.iter_errors(doc) for leaf in _leaves(e)]
        if leaves:
            # The deepest error says most: STAC schemas branch (oneOf Item or Collection), and
            # a branch error at the top would only say "not valid under any of the given".
            error = max(leaves, key=lambda e: len(e.absolute_path))
            where = "/".join(str(p) for p in error.absolute_path) or "(document)"
            found.append(f"{url}: {where}: {error.message[:300]}")
    return found


def _leaves(error: ValidationError) -> list[ValidationError]:
    if not error.context:
        return [error]
    return [leaf for e in error.context for leaf in _leaves(e)]


# --- the documents we serve -------------------------------------------------------------------
def plain_geotiff(path: Path) -> Path:
    """Four bands with no sensor tag and a name no sensor is recognised from."""
    profile = {
        "driver": "GTiff",
        "width": 64,
        "height": 64,
        "count": 4,
        "dtype": "uint16",
        "crs": "EPSG:4548",
        "transform": from_origin(510_000, 3_520_000, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.arange(4 * 64 * 64, dtype="uint16").reshape(4, 64, 64))
    return path


@pytest.fixture(scope="module")
def client(server_url, sample_city, tmp_path_factory):
    """Real Landsat-8 and Sentinel-2 excerpts, the sample city's imagery, a scene of unknown
    sensor, and a collection without scenes."""
    raster_dir = tmp_path_factory.mktemp("rasters")
    plain = plain_geotiff(tmp_path_factory.mktemp("plain") / "plain.tif")
    with fresh_database(server_url) as url:
        with psycopg.connect(url) as conn:
            add_scene(conn, sorted(LANDSAT.glob("*_B[2-5].TIF")), raster_dir)
            add_scene(
                conn,
                [SENTINEL / f"{b}.jp2" for b in ("B02", "B03", "B04", "B08")],
                raster_dir,
                scale=0.0001,
            )
            add_scene(conn, [sample_city / "imagery_2023.tif"], raster_dir, collection="sample")
            bands = ["blue", "green", "red", "nir"]
            add_scene(conn, [plain], raster_dir, collection="plain", when="2020-05-01", bands=bands)
            # Left empty when its scenes are replaced into another collection.
            conn.execute("INSERT INTO twin.raster_collections (id, title) VALUES ('empty', '')")
            conn.commit()
        settings = settings_for(url)
        settings.rasters = RasterSettings(raster_dir=raster_dir)
        with app_client(settings) as c:
            yield c


@pytest.fixture(scope="module")
def served(client) -> list[tuple[str, dict]]:
    """(where it was served, document) for every STAC Collection and Item."""
    docs = []
    listing = client.get("/raster/collections")
    assert listing.status_code == 200, listing.text
    for coll in listing.json()["collections"]:
        cid = coll["id"]
        docs.append((f"/raster/collections [{cid}]", coll))
        docs.append((f"/raster/collections/{cid}", client.get(f"/raster/collections/{cid}").json()))
        items = client.get(f"/raster/collections/{cid}/items").json()["features"]
        for item in items:
            docs.append((f"/raster/collections/{cid}/items [{item['id']}]", item))
            path = f"/raster/scenes/{item['id']}"
            docs.append((path, client.get(path).json()))
    return docs


def test_every_served_stac_document_is_valid_offline(served):
    kinds = sorted({doc["type"] for _, doc in served})
    ids = {doc["id"] for _, doc in served}
    assert kinds == ["Collection", "Feature"]
    assert {"landsat8_LC08_L1TP_016037_20170813", "imagery_2023", "plain", "empty"} <= ids
    failures = [f"{where}: {p}" for where, doc in served for p in problems(doc)]
    assert not failures, "\n".join(failures)


def test_every_extension_we_list_has_a_local_schema(served):
    listed = {url for _, doc in served for url in doc.get("stac_extensions", [])}
    assert listed == set(stac.EXTENSIONS)
    for url in listed:
        assert url in registry(), f"{url} has no local copy in tests/data/stac-schemas"


# --- the check itself fails on invalid documents -----------------------------------------------
def valid_copy(served, kind: str) -> dict:
    """A deep copy of a served document of ``kind`` that names its platform."""
    for _, doc in served:
        fields = doc.get("properties") if kind == "Feature" else doc.get("summaries")
        if doc["type"] == kind and (fields or {}).get("platform"):
            return copy.deepcopy(doc)
    raise AssertionError(f"no {kind} with a platform was served")


@pytest.mark.parametrize(
    ("kind", "damage", "says"),
    [
        ("Feature", lambda d: d["properties"].pop("datetime"), "item.json: properties"),
        ("Feature", lambda d: d["properties"].update(platform=None), "item.json: properties"),
        ("Feature", lambda d: d["geometry"].pop("coordinates"), "item.json: geometry"),
        (
            "Feature",
            lambda d: d["assets"]["data"]["eo:bands"][0].update(common_name="infrared"),
            "eo/v1.1.0/schema.json: assets/data/eo:bands/0/common_name",
        ),
        ("Collection", lambda d: d.pop("extent"), "collection.json"),
        (
            "Collection",
            lambda d: d["summaries"].update(platform=[]),
            "collection.json: summaries/platform",
        ),
    ],
)
def test_a_broken_copy_fails_validation(served, kind, damage, says):
    doc = valid_copy(served, kind)
    before = set(problems(doc))
    damage(doc)
    found = set(problems(doc)) - before
    assert any(says in p for p in found), found


def test_an_extension_without_a_local_schema_fails_instead_of_being_fetched(served):
    doc = valid_copy(served, "Feature")
    url = "https://stac-extensions.github.io/sat/v1.0.0/schema.json"
    before = problems(doc)
    doc["stac_extensions"].append(url)
    missing = f"{url}: no local copy in {SCHEMAS.name}/ (validation is offline)"
    assert problems(doc) == [*before, missing]


def test_every_schema_file_is_listed_in_the_attribution():
    text = (SCHEMAS / "ATTRIBUTION.md").read_text("utf-8")
    assert (SCHEMAS / "LICENSE").read_text("utf-8").lstrip().startswith("Apache License")
    for path in SCHEMAS.rglob("*.json"):
        assert path.name in text, f"{path.relative_to(SCHEMAS)} is not in ATTRIBUTION.md"


def test_gsd_is_given_in_metres_only():
    """STAC's gsd is metres: a lon/lat scene (0.2° pixels) gives none rather than 0.2."""
    from types import SimpleNamespace

    from rasters.stac import gsd

    assert gsd(SimpleNamespace(epsg=32650, resolution=(10.0, 10.0))) == 10.0
    assert gsd(SimpleNamespace(epsg=4326, resolution=(0.2, 0.2))) is None
    assert gsd(SimpleNamespace(epsg=2263, resolution=(3.0, 3.0))) is None  # US survey feet
    assert gsd(SimpleNamespace(epsg=None, resolution=(1.0, 1.0))) is None
