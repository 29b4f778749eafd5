"""Editing components over HTTP: codes, ETags, history, soft delete, restore, nearby."""

from __future__ import annotations

import threading

import psycopg
import pytest
from shapely.geometry import box

from components.publish import register_components
from grid.store import import_grid
from twin.settings import GridSettings

# A synthetic district of its own (see test_grid for the same construction).
X0, Y0, D = 112.0, 28.0, 0.01
LAMP = {"class_code": "0118", "name": "路灯", "status": "完好", "dept_name": "城管局"}


def lamp(lon: float, lat: float, **props) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {**LAMP, **props},
    }


@pytest.fixture(scope="module")
def editable(pg_url, tmp_path_factory, client):
    import geopandas as gpd

    folder = tmp_path_factory.mktemp("edit")
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO twin.component_classes (class_code, major, name_zh, name_en) VALUES "
            "('0118', '01', '路灯', 'street lamp'), ('0305', '03', '垃圾箱', 'litter bin') "
            "ON CONFLICT DO NOTHING"
        )
        square = box(X0, Y0, X0 + D, Y0 + D)
        for level, code in (
            ("district", "430102"),
            ("street", "430102001"),
            ("community", "430102001001"),
            ("unit", "43010200100101"),
        ):
            path = folder / f"{level}.gpkg"
            gpd.GeoDataFrame(
                {"code": [code], "name": [level]}, geometry=[square], crs=4326
            ).to_file(path, engine="pyogrio")
            import_grid(conn, path, level, GridSettings())
        register_components(conn)
    client.app.state.catalog._loaded_at = 0
    return client


def read(client, fid):
    r = client.get(f"/collections/components/items/{fid}")
    assert r.status_code == 200, r.text
    return r.json(), r.headers["etag"]


def create(client, feature):
    r = client.post("/collections/components/items", json=feature)
    assert r.status_code == 201, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def test_new_component_gets_a_code_unit_grid_and_version(editable):
    fid = create(editable, lamp(X0 + 0.001, Y0 + 0.001))
    doc, etag = read(editable, fid)
    props = doc["properties"]
    assert props["code"].startswith("4301020118") and len(props["code"]) == 16
    assert props["unit_grid"] == "43010200100101" and props["class_name"] == "路灯"
    assert etag == '"1"' and props["version"] == 1
    second = create(editable, lamp(X0 + 0.002, Y0 + 0.001))
    code2 = read(editable, second)[0]["properties"]["code"]
    assert int(code2[-6:]) == int(props["code"][-6:]) + 1


def test_codes_stay_unique_under_concurrent_inserts(editable):
    codes: list[str] = []

    def add() -> None:
        fid = create(editable, lamp(X0 + 0.003, Y0 + 0.003, class_code="0305"))
        codes.append(read(editable, fid)[0]["properties"]["code"])

    threads = [threading.Thread(target=add) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(codes)) == 6


def test_two_edits_with_one_version_leave_one_change_and_one_refusal(editable):
    fid = create(editable, lamp(X0 + 0.004, Y0 + 0.004))
    _, etag = read(editable, fid)
    results = []

    def patch(status: str) -> None:
        r = editable.patch(
            f"/collections/components/items/{fid}",
            json={"properties": {"status": status}},
            headers={"If-Match": etag},
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=patch, args=(s,)) for s in ("破损", "丢失")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [204, 412]
    doc, new_etag = read(editable, fid)
    assert new_etag == '"2"' and doc["properties"]["status"] in ("破损", "丢失")


def test_stale_or_missing_if_match_changes_nothing(editable):
    fid = create(editable, lamp(X0 + 0.005, Y0 + 0.005))
    r = editable.patch(
        f"/collections/components/items/{fid}", json={"properties": {"status": "破损"}}
    )
    assert r.status_code == 428 and "If-Match" in r.json()["message"]
    r = editable.patch(
        f"/collections/components/items/{fid}",
        json={"properties": {"status": "破损"}},
        headers={"If-Match": '"7"'},
    )
    assert r.status_code == 412 and "version 1, not 7" in r.json()["message"]
    assert read(editable, fid)[0]["properties"]["status"] == "完好"


def test_move_reassigns_the_unit_grid_and_history_restores_any_state(editable):
    fid = create(editable, lamp(X0 + 0.006, Y0 + 0.006, name="first"))
    _, etag = read(editable, fid)
    r = editable.put(
        f"/collections/components/items/{fid}",
        json=lamp(X0 - 0.5, Y0 - 0.5, name="moved out", status="破损"),
        headers={"If-Match": etag},
    )
    assert r.status_code == 204
    doc, etag = read(editable, fid)
    assert doc["properties"]["unit_grid"] is None and doc["properties"]["name"] == "moved out"
    history = editable.get(f"/collections/components/items/{fid}/history").json()["versions"]
    assert [v["version"] for v in history] == [1, 2]
    assert history[0]["state"]["name"] == "first" and history[-1]["current"]
    r = editable.post(f"/collections/components/items/{fid}/restore?version=1")
    assert r.status_code == 200 and r.headers["etag"] == '"3"'
    doc, _ = read(editable, fid)
    assert doc["properties"]["name"] == "first" and doc["properties"]["status"] == "完好"
    assert doc["properties"]["unit_grid"] == "43010200100101"
    assert doc["geometry"]["coordinates"] == pytest.approx([X0 + 0.006, Y0 + 0.006])


def test_delete_is_soft_and_can_be_undone(editable):
    fid = create(editable, lamp(X0 + 0.007, Y0 + 0.007))
    _, etag = read(editable, fid)
    assert (
        editable.delete(
            f"/collections/components/items/{fid}", headers={"If-Match": etag}
        ).status_code
        == 204
    )
    assert editable.get(f"/collections/components/items/{fid}").status_code == 404
    assert editable.post(f"/collections/components/items/{fid}/restore").status_code == 200
    assert read(editable, fid)[0]["properties"]["version"] == 3


@pytest.mark.parametrize(
    ("feature", "status", "says"),
    [
        (lamp(X0, Y0, class_code="9999"), 422, "class '9999' is unknown"),
        (lamp(X0, Y0, status="坏了"), 422, "status '坏了' is unknown"),
        (lamp(X0, Y0, code="43010201180000"), 422, "must have 16 digits"),
        (lamp(X0, Y0, code="4301020305000001"), 422, "is of class 0305, not 0118"),
        (lamp(X0, Y0, init_date="yesterday"), 422, "not a date"),
        (
            {
                "type": "Feature",
                "properties": LAMP,
                "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
            },
            422,
            "a component is a Point",
        ),
        (lamp(100, 10), 422, "outside every unit grid"),
    ],
)
def test_bad_components_are_refused_and_nothing_is_added(editable, pg_url, feature, status, says):
    with psycopg.connect(pg_url) as conn:
        before = conn.execute("SELECT count(*) FROM twin.components").fetchone()[0]
    r = editable.post("/collections/components/items", json=feature)
    assert r.status_code == status and says in r.json()["message"], r.text
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM twin.components").fetchone()[0] == before


def test_duplicate_code_is_a_conflict(editable):
    fid = create(editable, lamp(X0 + 0.008, Y0 + 0.008))
    code = read(editable, fid)[0]["properties"]["code"]
    r = editable.post("/collections/components/items", json=lamp(X0, Y0, code=code))
    assert r.status_code == 409


def test_other_collections_are_read_only(editable):
    r = editable.post("/collections/grid_unit/items", json=lamp(X0, Y0))
    assert r.status_code == 405 and "twin grid import" in r.json()["message"]
    r = editable.patch(
        "/collections/some_layer/items/1", json={"properties": {}}, headers={"If-Match": '"1"'}
    )
    assert r.status_code == 405 and "read-only" in r.json()["message"]


def test_nearby_finds_the_closest_lamps_in_metres(editable):
    here = (X0 + 0.0095, Y0 + 0.0095)
    near = create(editable, lamp(here[0] + 0.0001, here[1]))  # ~10 m east
    doc = editable.get(
        f"/components/nearby?lon={here[0]}&lat={here[1]}&radius=50&class=0118"
    ).json()
    assert doc["features"][0]["id"] == near
    assert 8 < doc["features"][0]["properties"]["distance_m"] < 11
    assert all(f["properties"]["distance_m"] <= 50 for f in doc["features"])
    none = editable.get(
        f"/components/nearby?lon={here[0]}&lat={here[1]}&radius=50&class=0305"
    ).json()
    assert none["features"] == []


def test_a_code_set_by_hand_moves_the_sequence_so_new_codes_never_collide(editable):
    fid = create(editable, lamp(X0 + 0.0091, Y0 + 0.0091))
    doc, etag = read(editable, fid)
    code = doc["properties"]["code"]
    ahead = code[:-6] + f"{int(code[-6:]) + 2:06d}"
    r = editable.patch(
        f"/collections/components/items/{fid}",
        json={"properties": {"code": ahead}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 204
    for _ in range(3):
        create(editable, lamp(X0 + 0.0092, Y0 + 0.0092))


def test_patch_merges_attributes_and_class_changes_need_a_code(editable):
    fid = create(editable, lamp(X0 + 0.0093, Y0 + 0.0093, attributes={"a": 1, "b": 2}))
    _, etag = read(editable, fid)
    r = editable.patch(
        f"/collections/components/items/{fid}",
        json={"properties": {"attributes": {"a": 3}}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 204
    doc, etag = read(editable, fid)
    assert doc["properties"]["attributes"] == {"a": 3, "b": 2}
    r = editable.patch(
        f"/collections/components/items/{fid}",
        json={"properties": {"class_code": "0305"}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 422 and "changing the class changes the code" in r.json()["message"]


def test_restoring_a_deleted_component_whose_code_was_reused_is_a_conflict(editable):
    fid = create(editable, lamp(X0 + 0.0094, Y0 + 0.0094))
    doc, etag = read(editable, fid)
    code = doc["properties"]["code"]
    editable.delete(f"/collections/components/items/{fid}", headers={"If-Match": etag})
    create(editable, lamp(X0 + 0.0094, Y0 + 0.0094, code=code))  # the code is free again
    r = editable.post(f"/collections/components/items/{fid}/restore")
    assert r.status_code == 409


def test_nearby_with_an_unknown_class_is_400(editable):
    r = editable.get(f"/components/nearby?lon={X0}&lat={Y0}&class=zz")
    assert r.status_code == 400 and "unknown" in r.json()["message"]


def test_components_follow_a_moved_unit_grid_boundary(editable):
    fid = create(editable, lamp(X0 + 0.0097, Y0 + 0.0097))
    assert read(editable, fid)[0]["properties"]["unit_grid"] == "43010200100101"
    cells = editable.get(
        "/collections/grid_unit/items", params={"filter": "code = '43010200100101'"}
    ).json()["features"]
    cell_id = cells[0]["id"]
    r = editable.get(f"/collections/grid_unit/items/{cell_id}")
    smaller = {
        "type": "Polygon",
        "coordinates": [
            [[X0, Y0], [X0 + D / 2, Y0], [X0 + D / 2, Y0 + D / 2], [X0, Y0 + D / 2], [X0, Y0]]
        ],
    }
    r = editable.put(
        f"/collections/grid_unit/items/{cell_id}",
        json={"type": "Feature", "geometry": smaller, "properties": {"name": "u"}},
        headers={"If-Match": r.headers["etag"]},
    )
    assert r.status_code == 204, r.text
    assert read(editable, fid)[0]["properties"]["unit_grid"] is None
