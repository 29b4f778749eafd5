"""Access control: the API walked as anonymous, viewer, a layer-limited viewer, a department
editor and admin, on the sample city with restricted pipe networks and imagery."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta

import jwt
import mapbox_vector_tile
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import fresh_database, load_city, make_key, settings_for
from twin.auth import BAD_CREDENTIALS

CITY_MGMT = "34150202"  # 金安区城市管理局: 主管部门 of lamps, covers, ...
GARDENS = "34150210"  # 金安区园林绿化管理所


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    return (
        int((lon + 180) / 360 * n),
        int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n),
    )


@pytest.fixture(scope="module")
def city(server_url, sample_city, tmp_path_factory):
    with fresh_database(server_url) as url:
        load_city(url, sample_city, tmp_path_factory.mktemp("rasters"))
        with psycopg.connect(url) as conn:
            # Water is for viewers and up, gas for editors and up, imagery for viewers.
            conn.execute(
                "UPDATE twin.layers SET read_role = 'viewer' "
                "WHERE name IN ('water_pipes', 'water_nodes')"
            )
            conn.execute(
                "UPDATE twin.layers SET read_role = 'editor' "
                "WHERE name IN ('gas_pipes', 'gas_nodes')"
            )
            conn.execute("UPDATE twin.raster_collections SET read_role = 'viewer'")
            conn.commit()
        yield url


@pytest.fixture(scope="module")
def keys(city) -> dict[str, str]:
    return {
        "viewer": make_key(city, "viewer"),
        "water_only": make_key(city, "viewer", layers=["water_pipes"]),
        "editor": make_key(city, "editor", department=CITY_MGMT),
        "admin": make_key(city, "admin"),
    }


@pytest.fixture(scope="module")
def api(city):
    with TestClient(create_app(settings_for(city))) as c:
        yield c


def as_(keys: dict[str, str], who: str) -> dict[str, str]:
    return {} if who == "anonymous" else {"Authorization": f"Bearer {keys[who]}"}


def collections(api, headers) -> set[str]:
    r = api.get("/collections", headers=headers)
    assert r.status_code == 200
    return {c["id"] for c in r.json()["collections"]}


EXPECTED_HIDDEN = {
    "anonymous": {"water_pipes", "water_nodes", "gas_pipes", "gas_nodes"},
    "viewer": {"gas_pipes", "gas_nodes"},
    "water_only": {"water_nodes", "gas_pipes", "gas_nodes"},
    "editor": set(),
    "admin": set(),
}


@pytest.mark.parametrize("who", list(EXPECTED_HIDDEN))
def test_each_caller_sees_the_collections_their_grants_allow(api, keys, who):
    seen = collections(api, as_(keys, who))
    assert "components" in seen and "grid_unit" in seen and "storm_pipes" in seen
    assert not (seen & EXPECTED_HIDDEN[who])
    assert EXPECTED_HIDDEN["anonymous"] - EXPECTED_HIDDEN[who] <= seen


@pytest.mark.parametrize("who", ["anonymous", "water_only"])
def test_a_hidden_layer_is_as_unknown_as_a_missing_one(api, keys, who):
    headers = as_(keys, who)
    missing = api.get("/collections/nothing_here/items", headers=headers)
    for path in (
        "/collections/gas_pipes",
        "/collections/gas_pipes/items?limit=1",
        "/collections/gas_pipes/tiles/WebMercatorQuad/14/13398/6666",
        "/collections/gas_pipes/tiles/WebMercatorQuad/tilejson.json",
        "/grid/stats?layer=gas_pipes&measure=length",
    ):
        r = api.get(path, headers=headers)
        assert r.status_code == 404, path
        assert r.json()["message"] == missing.json()["message"].replace("nothing_here", "gas_pipes")


def test_composite_tiles_hold_only_readable_layers_and_never_share_a_cache_entry(api, keys):
    x, y = tile_of(116.535, 31.76, 15)
    path = f"/maps/pipelines/tiles/WebMercatorQuad/15/{x}/{y}"
    admin = api.get(path, headers=as_(keys, "admin"))
    assert admin.headers["x-tile-cache"] == "miss"
    assert {"water_pipes", "gas_pipes", "storm_pipes"} <= set(
        mapbox_vector_tile.decode(admin.content)
    )
    assert admin.headers["cache-control"].startswith("private")
    # The same tile for an anonymous caller right after: rendered for them, not the admin's.
    anon = api.get(path)
    assert anon.headers["x-tile-cache"] == "miss"
    layers = set(mapbox_vector_tile.decode(anon.content))
    assert "storm_pipes" in layers and not layers & {"water_pipes", "gas_pipes", "water_valves"}
    assert anon.headers["cache-control"].startswith("public")
    again = api.get(path)
    assert again.headers["x-tile-cache"] == "hit" and again.content == anon.content
    viewer = api.get(path, headers=as_(keys, "viewer"))
    layers = set(mapbox_vector_tile.decode(viewer.content))
    assert "water_pipes" in layers and "gas_pipes" not in layers
    # A single-layer tile cached for the admin is not served to anyone else.
    single = f"/collections/water_pipes/tiles/WebMercatorQuad/15/{x}/{y}"
    assert api.get(single, headers=as_(keys, "admin")).status_code == 200
    assert api.get(single).status_code == 404


def test_styles_and_map_documents_leave_out_what_the_caller_may_not_read(api, keys):
    style = api.get("/maps/pipelines/style.json").json()
    layer_ids = {lyr.get("source-layer") for lyr in style["layers"]}
    assert "storm_pipes" in layer_ids and not layer_ids & {"water_pipes", "gas_pipes"}
    doc = api.get("/maps/pipelines").json()
    assert "water_pipes" not in {lyr["collection"] for lyr in doc["layers"]}
    imagery = api.get("/maps/imagery-ecology/style.json").json()
    assert not [s for s in imagery["sources"].values() if s["type"] == "raster"]
    imagery = api.get("/maps/imagery-ecology/style.json", headers=as_(keys, "viewer")).json()
    assert [s for s in imagery["sources"].values() if s["type"] == "raster"]


def test_imagery_follows_its_collection_read_role(api, keys):
    assert api.get("/raster/collections").json()["collections"] == []
    viewer = as_(keys, "viewer")
    scenes = api.get("/raster/collections/sample-city/items", headers=viewer).json()["features"]
    scene = scenes[0]["id"]
    unknown = api.get("/raster/scenes/no-such-scene").json()["message"]
    for path in (
        f"/raster/scenes/{scene}",
        f"/raster/scenes/{scene}/data.tif",
        f"/raster/scenes/{scene}/point?lon=116.535&lat=31.76",
        "/raster/collections/sample-city",
    ):
        r = api.get(path)
        assert r.status_code == 404 and r.json()["message"] == unknown, path
        assert api.get(path, headers=viewer).status_code == 200, path
    # Imagery sent to a caller with credentials is for them only: no shared cache keeps it.
    x, y = tile_of(116.535, 31.76, 14)
    tile = api.get(f"/raster/scenes/{scene}/tiles/WebMercatorQuad/14/{x}/{y}.png", headers=viewer)
    assert tile.status_code == 200 and tile.headers["cache-control"].startswith("private")


def test_queries_and_reports_count_only_readable_layers(api, keys):
    body = {"grid": "341502001001"}
    anon = api.post("/query/within", json=body).json()
    admin = api.post("/query/within", json=body, headers=as_(keys, "admin")).json()
    anon_classes = {u["utility"] for u in anon["pipes"]["by_utility"]}
    admin_classes = {u["utility"] for u in admin["pipes"]["by_utility"]}
    assert {"JS", "RQ"} <= admin_classes and not anon_classes & {"JS", "RQ"}
    assert "PS" in anon_classes
    assert anon["imagery"]["scenes"] == [] and admin["imagery"]["scenes"]
    report = api.get("/reports/community/341502001001?format=csv").text
    full = api.get("/reports/community/341502001001?format=csv", headers=as_(keys, "admin")).text
    assert "给水" in full and "给水" not in report


def _component(city, dept: str) -> tuple[int, str]:
    with psycopg.connect(city) as conn:
        row = conn.execute(
            "SELECT id, version FROM twin.components WHERE dept_code = %s AND deleted_at IS NULL "
            "ORDER BY id LIMIT 1",
            [dept],
        ).fetchone()
    assert row is not None
    return row[0], f'"{row[1]}"'


def test_edits_need_an_editor_and_a_department_edits_only_its_own(api, keys, city):
    own, etag = _component(city, CITY_MGMT)
    other, other_etag = _component(city, GARDENS)
    patch = {"properties": {"status": "破损"}}
    r = api.patch(f"/collections/components/items/{own}", json=patch, headers={"If-Match": etag})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = api.patch(
        f"/collections/components/items/{own}",
        json=patch,
        headers={"If-Match": etag, **as_(keys, "viewer")},
    )
    assert r.status_code == 403 and "editor" in r.json()["message"]
    editor = as_(keys, "editor")
    r = api.patch(
        f"/collections/components/items/{other}",
        json=patch,
        headers={"If-Match": other_etag, **editor},
    )
    assert r.status_code == 403 and CITY_MGMT in r.json()["message"]
    assert _component_version(city, other) == other_etag  # nothing written
    r = api.patch(
        f"/collections/components/items/{own}", json=patch, headers={"If-Match": etag, **editor}
    )
    assert r.status_code == 204
    # Handing one's component to another department is refused, and leaves it as it was.
    etag = r.headers["etag"]
    r = api.patch(
        f"/collections/components/items/{own}",
        json={
            "properties": {
                "dept_code": GARDENS,
                "dept_name": "金安区园林绿化管理所",
                "maint_code": None,
                "maint_name": "金安区园林绿化养护中心",
            }
        },
        headers={"If-Match": etag, **editor},
    )
    assert r.status_code == 403
    assert _component_version(city, own) == etag
    # The admin edits anything.
    r = api.patch(
        f"/collections/components/items/{other}",
        json=patch,
        headers={"If-Match": other_etag, **as_(keys, "admin")},
    )
    assert r.status_code == 204


def _component_version(city, fid: int) -> str:
    with psycopg.connect(city) as conn:
        row = conn.execute("SELECT version FROM twin.components WHERE id = %s", [fid]).fetchone()
    assert row is not None
    return f'"{row[0]}"'


def test_every_write_is_in_the_audit_log_and_only_admins_read_it(api, keys, city):
    fid, etag = _component(city, CITY_MGMT)
    r = api.patch(
        f"/collections/components/items/{fid}",
        json={"properties": {"note": "audit me"}},
        headers={"If-Match": etag, **as_(keys, "editor")},
    )
    assert r.status_code == 204
    assert api.get("/admin/audit").status_code == 401
    assert api.get("/admin/audit", headers=as_(keys, "editor")).status_code == 403
    entries = api.get("/admin/audit?target=components", headers=as_(keys, "admin")).json()[
        "entries"
    ]
    mine = [e for e in entries if e["feature_id"] == fid and e["action"] == "patch"]
    key_id = keys["editor"].split("_")[1]
    assert mine[0]["actor"] == f"key:{key_id}" and mine[0]["department"] == CITY_MGMT
    assert (mine[0]["version_before"], mine[0]["version_after"]) == (
        int(etag.strip('"')),
        int(r.headers["etag"].strip('"')),
    )


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer ct_0123456789ab_wrongsecret"},
        {"X-API-Key": "ct_zz_bad"},
        {"Authorization": "Bearer a.b.c"},
    ],
)
def test_bad_credentials_get_one_401_without_detail(api, header):
    r = api.get("/collections", headers=header)
    assert r.status_code == 401 and r.json()["message"] == BAD_CREDENTIALS


def test_revoked_and_expired_keys_are_refused(api, keys, city):
    token = make_key(city, "viewer")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/collections", headers=headers).status_code == 200
    key_id = token.split("_")[1]
    assert api.delete(f"/admin/keys/{key_id}", headers=as_(keys, "admin")).status_code == 204
    r = api.get("/collections", headers=headers)
    assert r.status_code == 401 and r.json()["message"] == BAD_CREDENTIALS
    old = make_key(city, "viewer", expires_at=datetime.now(UTC) - timedelta(minutes=1))
    r = api.get("/collections", headers={"X-API-Key": old})
    assert r.status_code == 401 and r.json()["message"] == BAD_CREDENTIALS


def test_admins_create_keys_over_http_and_the_token_works_once_shown(api, keys):
    r = api.post(
        "/admin/keys",
        json={"role": "viewer", "name": "dashboard", "layers": ["water_pipes"]},
        headers=as_(keys, "admin"),
    )
    assert r.status_code == 201
    token = r.json()["token"]
    listed = api.get("/admin/keys", headers=as_(keys, "admin")).json()["keys"]
    assert all("secret" not in json.dumps(k) and token not in json.dumps(k) for k in listed)
    seen = collections(api, {"X-API-Key": token})
    assert "water_pipes" in seen and "water_nodes" not in seen
    r = api.post("/admin/keys", json={"role": "root"}, headers=as_(keys, "admin"))
    assert r.status_code == 400 and "viewer, editor, admin" in r.json()["message"]


# --- JWT from a configured issuer --------------------------------------------------------
@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    return private, path


def token(private, **claims) -> str:
    now = int(time.time())
    body = {"iss": "https://sso.city.example", "sub": "zhang.san", "exp": now + 600, **claims}
    return jwt.encode(body, private, algorithm="RS256", headers={"kid": "k1"})


def test_bearer_tokens_of_the_configured_issuer_map_claims_to_roles(city, issuer, keys):
    private, path = issuer
    settings = settings_for(city)
    settings.auth.auth_jwks = str(path)
    settings.auth.auth_issuer = "https://sso.city.example"
    settings.auth.auth_role_map = {"gis-editors": "editor"}
    with TestClient(create_app(settings)) as api:

        def get(tok: str):
            return api.get("/collections", headers={"Authorization": f"Bearer {tok}"})

        good = token(private, role=["staff", "gis-editors"], department=CITY_MGMT)
        assert "gas_pipes" in {c["id"] for c in get(good).json()["collections"]}
        fid, etag = _component(city, CITY_MGMT)
        r = api.patch(
            f"/collections/components/items/{fid}",
            json={"properties": {"note": "from sso"}},
            headers={"Authorization": f"Bearer {good}", "If-Match": etag},
        )
        assert r.status_code == 204
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for bad in (
            token(private, role="gis-editors", exp=int(time.time()) - 10),
            token(private, role="gis-editors", iss="https://elsewhere.example"),
            token(other, role="gis-editors"),
        ):
            r = get(bad)
            assert r.status_code == 401 and r.json()["message"] == BAD_CREDENTIALS
        # A valid token without a known role is a public caller with a name.
        seen = {c["id"] for c in get(token(private, role="visitor")).json()["collections"]}
        assert "water_pipes" not in seen


# --- floods --------------------------------------------------------------------------------
def test_a_flood_from_one_key_is_refused_with_the_limit_and_others_go_on(city):
    settings = settings_for(city)
    settings.auth.rate_limit_per_minute = 60
    flood, calm = make_key(city, "viewer"), make_key(city, "viewer")
    with TestClient(create_app(settings)) as api:
        codes = [
            api.get("/conformance", headers={"X-API-Key": flood}).status_code for _ in range(30)
        ]
        assert codes.count(200) >= 10 and codes.count(429) >= 10
        r = api.get("/conformance", headers={"X-API-Key": flood})
        assert r.status_code == 429 and "60 requests per minute" in r.json()["message"]
        assert int(r.headers["retry-after"]) >= 1
        assert api.get("/conformance", headers={"X-API-Key": calm}).status_code == 200


# --- the OpenAPI walk: every write route refuses anonymous and wrong-role callers ----------
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _fill(path: str) -> str:
    values = {
        "collectionId": "components",
        "featureId": "1",
        "keyId": "0123456789ab",
        "network": "water",
        "scene_id": "imagery_2024",
        "code": "3415020000000000001",  # a case
        "alarmId": "1",
    }
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path


def test_every_write_route_refuses_anonymous_and_wrong_role_callers(api, keys):
    spec = api.get("/api").json()
    walked = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method not in WRITE_METHODS or op.get("x-citytwin-read-only"):
                continue
            url = _fill(path)
            anon = api.request(method.upper(), url, json={})
            assert anon.status_code == 401, (method, path, anon.text)
            low = "editor" if path.startswith("/admin") else "viewer"
            r = api.request(method.upper(), url, json={}, headers=as_(keys, low))
            assert r.status_code == 403, (method, path, r.text)
            walked += 1
    assert walked >= 10  # edits, restore, topology refresh, change detection, admin routes
