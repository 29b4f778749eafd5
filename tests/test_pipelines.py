"""Pipe networks end to end: store, topology report, traces, isolation (against an independent
oracle), conflicts, editing, serving — on hand-built networks and on the sample city."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import mapbox_vector_tile
import psycopg
import pytest
from conftest import app_client, fresh_database, settings_for

from components.importer import import_components
from grid.store import import_grid_folder
from pipelines import graph as graphs
from pipelines.importers.native import read_native
from pipelines.model import NetworkData, Node, Segment
from pipelines.store import NetworkRejected, save_network
from sample_data import generate

LON0, LAT0 = 116.53, 31.75


def ll(x: float, y: float) -> tuple[float, float]:
    """Metres east/north of a local origin to lon/lat (close enough for tests)."""
    return LON0 + x / 94_600.0, LAT0 + y / 110_900.0


def node(node_id: str, kind: str, x: float, y: float, **kw) -> Node:
    lon, lat = ll(x, y)
    if kind == "valve":
        kw.setdefault("valve_state", "open")
    return Node(node_id, kind, lon, lat, **kw)


def pipe(pid: str, a: Node, b: Node, utility: str = "JS", **kw) -> Segment:
    return Segment(pid, a.node_id, b.node_id, [(a.x, a.y), (b.x, b.y)], utility, **kw)


def tiny() -> NetworkData:
    """A source, a chain of valve segments with meters and a hydrant, and a loop closed by
    the valve V4:

        S -p1- J1 -p2- V1 -p3- J2 -p4- V2 -p5- J3 -p6- V3 -p7- J4
                                 |p10          |p8           |p9
                                 H1            M1            M2
        J1 -p12- V4 (closed) -p11- J4
    """
    n = {
        "S": node("S", "plant", 0, 0),
        "J1": node("J1", "junction", 100, 0),
        "V1": node("V1", "valve", 150, 0),
        "J2": node("J2", "junction", 200, 0),
        "V2": node("V2", "valve", 250, 0),
        "J3": node("J3", "junction", 300, 0),
        "V3": node("V3", "valve", 350, 0),
        "J4": node("J4", "junction", 400, 0),
        "M1": node("M1", "meter", 300, 50),
        "M2": node("M2", "meter", 400, 50),
        "H1": node("H1", "hydrant", 200, -50),
        "V4": node("V4", "valve", 250, 100, valve_state="closed"),
    }
    links = [
        ("p1", "S", "J1"),
        ("p2", "J1", "V1"),
        ("p3", "V1", "J2"),
        ("p4", "J2", "V2"),
        ("p5", "V2", "J3"),
        ("p6", "J3", "V3"),
        ("p7", "V3", "J4"),
        ("p8", "J3", "M1"),
        ("p9", "J4", "M2"),
        ("p10", "J2", "H1"),
        ("p11", "J4", "V4"),
        ("p12", "J1", "V4"),
    ]
    segs = [
        pipe(
            p,
            n[a],
            n[b],
            diameter_mm=300 if p in ("p1", "p2") else 100,
            material="QM",
            depth_m=1.2,
            owner="水务集团",
        )
        for p, a, b in links
    ]
    return NetworkData(list(n.values()), segs, "EPSG:4326", source="tiny")


def drain() -> NetworkData:
    """Gravity: W1 → W2 → W3 → W4 → W5 → outfall O, and a branch W6 → W3."""
    xs = {"W1": 0, "W2": 50, "W3": 100, "W4": 150, "W5": 200, "O": 250}
    n = {k: node(k, "manhole", x, 0) for k, x in xs.items()}
    n["O"] = node("O", "outfall", 250, 0)
    n["W6"] = node("W6", "manhole", 100, 60)
    links = [
        ("d1", "W1", "W2"),
        ("d2", "W2", "W3"),
        ("d3", "W3", "W4"),
        ("d4", "W4", "W5"),
        ("d5", "W5", "O"),
        ("d6", "W6", "W3"),
    ]
    segs = []
    for i, (p, a, b) in enumerate(links):
        z = 38.0 - i * 0.1
        segs.append(
            pipe(
                p,
                n[a],
                n[b],
                "PS",
                subclass="YS",
                start_invert_m=z,
                end_invert_m=z - 0.05,
                diameter_mm=600,
                depth_m=2.0,
            )
        )
    segs[3].start_invert_m, segs[3].end_invert_m = 37.5, 37.8  # d4 runs uphill
    return NetworkData(list(n.values()), segs, "EPSG:4326", source="drain")


@pytest.fixture(scope="module")
def pg_url(server_url):
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("city")
    generate(folder, seed=11, scale=1.0)
    return folder


@pytest.fixture(scope="module")
def loaded(pg_url, city) -> str:
    settings = settings_for(pg_url)
    with psycopg.connect(pg_url) as conn:
        import_grid_folder(conn, city, settings.grid)
        conn.commit()
        import_components(conn, city / "components.gpkg", settings.components, mode="replace")
        conn.commit()
        for name in ("water", "sewer", "storm", "gas"):
            data = read_native(city / f"{name}_pipes.gpkg", city / f"{name}_nodes.gpkg")
            save_network(conn, name, data)
        save_network(conn, "tiny", tiny())
        save_network(conn, "drain", drain())
        conn.commit()
    return pg_url


@pytest.fixture(scope="module")
def client(loaded):
    with app_client(settings_for(loaded)) as c:
        yield c


# --- the oracle: valve segments by connected components, written independently ----------------
def oracle_segments(pipes: list[tuple[str, str, str]], valves: set[str]) -> dict[str, int]:
    """Remove the valve nodes; pipes sharing any other node are in one segment."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pid, a, b in pipes:
        for end in (a, b):
            if end not in valves:
                parent[find("pipe:" + pid)] = find("node:" + end)
    roots: dict[str, int] = {}
    return {pid: roots.setdefault(find("pipe:" + pid), len(roots)) for pid, _, _ in pipes}


def oracle_groups(pipes, valves) -> dict[str, frozenset[str]]:
    label = oracle_segments(pipes, valves)
    groups: dict[int, set[str]] = {}
    for pid, lab in label.items():
        groups.setdefault(lab, set()).add(pid)
    return {pid: frozenset(groups[lab]) for pid, lab in label.items()}


@pytest.mark.parametrize("name", ["water", "gas"])
def test_isolation_equals_the_valve_segment_oracle_on_the_sample_city(loaded, city, name):
    import pyogrio

    pipes = pyogrio.read_dataframe(city / f"{name}_pipes.gpkg", read_geometry=False)
    nodes = pyogrio.read_dataframe(city / f"{name}_nodes.gpkg", read_geometry=False)
    valves = set(nodes.node_id[(nodes.kind == "valve") & (nodes.valve_state != "inoperable")])
    rows = list(zip(pipes.pipe_id, pipes.from_node, pipes.to_node, strict=True))
    expected = oracle_groups(rows, valves)
    assert len(set(expected.values())) > 10  # the valves really cut the network up
    with psycopg.connect(loaded) as conn:
        g = graphs.load(conn, name)
    for pid, want in expected.items():
        iso = g.isolate(g.seg_index[pid])
        assert {g.seg_name[s] for s in iso.isolated} == want, pid


def test_isolation_over_http_matches_the_oracle(client, city):
    import pyogrio

    pipes = pyogrio.read_dataframe(city / "water_pipes.gpkg", read_geometry=False)
    nodes = pyogrio.read_dataframe(city / "water_nodes.gpkg", read_geometry=False)
    valves = set(nodes.node_id[nodes.kind == "valve"])
    rows = list(zip(pipes.pipe_id, pipes.from_node, pipes.to_node, strict=True))
    expected = oracle_groups(rows, valves)
    for pid in random.Random(3).sample(sorted(expected), 15):
        r = client.post("/pipelines/isolate", json={"start": {"segment": pid}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["isolated"]["pipe_ids"]) == expected[pid]
        # every valve to close touches the isolated segment
        touching = {v for p, a, b in rows if p in expected[pid] for v in (a, b) if v in valves}
        closed = {v["node_id"] for v in body["valves_to_close"]}
        closed |= {v["node_id"] for v in body["valves_already_closed"]}
        assert closed <= touching
        assert body["outage_area"]["type"] in ("Polygon", "MultiPolygon")
        assert body["unit_grids"], "the outage crosses unit grids of the sample city"


# --- isolation on a network whose answer is known by hand ----------------------------------
def test_burst_closes_the_two_valves_and_cuts_off_what_lies_beyond(client):
    r = client.post("/pipelines/isolate", json={"start": {"segment": "p4"}, "network": "tiny"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [v["node_id"] for v in body["valves_to_close"]] == ["V1", "V2"]
    assert set(body["isolated"]["pipe_ids"]) == {"p3", "p4", "p10"}
    assert set(body["cut_off"]["pipe_ids"]) == {"p5", "p6", "p7", "p8", "p9", "p11"}
    assert set(body["service_points"]["node_ids"]) == {"M1", "M2"}
    assert body["affected_nodes_by_kind"]["hydrant"] == 1
    roles = {
        f["properties"].get("pipe_id") or f["properties"]["node_id"]: f["properties"]["role"]
        for f in body["features"]
    }
    assert roles["p4"] == "burst" and roles["p3"] == "isolated" and roles["p7"] == "cut_off"
    assert roles["V1"] == "valve_to_close"
    assert body["outage_area_m2"] > 10_000


def test_an_inoperable_valve_extends_the_search_and_a_second_pass_goes_further(client):
    r = client.post(
        "/pipelines/isolate",
        json={
            "start": {"segment": "p4"},
            "network": "tiny",
            "inoperable": ["V2"],
            "second_pass": True,
        },
    )
    body = r.json()
    assert [v["node_id"] for v in body["valves_to_close"]] == ["V1", "V3"]
    assert set(body["isolated"]["pipe_ids"]) == {"p3", "p4", "p10", "p5", "p6", "p8"}
    assert set(body["cut_off"]["pipe_ids"]) == {"p7", "p9", "p11"}
    assert [v["node_id"] for v in body["valves_inoperable"]] == ["V2"]
    second = body["second_pass"]
    assert second["assumes_failed"] == ["V1", "V3"]
    assert second["valves_to_close"] == [] and second["warnings"]


def test_opening_the_loop_valve_keeps_supply_and_editing_is_versioned(client):
    items = client.get("/collections/tiny_nodes/items", params={"node_id": "V4"}).json()
    fid = items["features"][0]["id"]
    item = client.get(f"/collections/tiny_nodes/items/{fid}")
    etag = item.headers["etag"]
    r = client.patch(
        f"/collections/tiny_nodes/items/{fid}",
        json={"properties": {"valve_state": "open"}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 204, r.text
    try:
        body = client.post(
            "/pipelines/isolate", json={"start": {"segment": "p4"}, "network": "tiny"}
        ).json()
        assert body["cut_off"]["pipe_ids"] == []  # the loop through V4 feeds J3 and J4 now
        history = client.get(f"/collections/tiny_nodes/items/{fid}/history").json()
        states = [v["state"]["valve_state"] for v in history["versions"]]
        assert states == ["closed", "open"]
        stale = client.patch(
            f"/collections/tiny_nodes/items/{fid}",
            json={"properties": {"valve_state": "closed"}},
            headers={"If-Match": etag},
        )
        assert stale.status_code == 412
    finally:
        r = client.post(f"/collections/tiny_nodes/items/{fid}/restore", params={"version": 1})
        assert r.status_code == 200, r.text
    assert client.post(
        "/pipelines/isolate", json={"start": {"segment": "p4"}, "network": "tiny"}
    ).json()["cut_off"]["pipe_ids"]


def test_a_network_without_sources_says_so(client, loaded):
    data = tiny()
    data.nodes = [n if n.node_id != "S" else Node("S", "junction", n.x, n.y) for n in data.nodes]
    with psycopg.connect(loaded) as conn:
        save_network(conn, "nosource", data)
        conn.commit()
    body = client.post(
        "/pipelines/isolate", json={"start": {"segment": "p4"}, "network": "nosource"}
    ).json()
    assert body["sources"] == 0
    assert body["cut_off"]["pipe_ids"] == []
    assert any("no sources" in w for w in body["warnings"])
    assert set(body["isolated"]["pipe_ids"]) == {"p3", "p4", "p10"}
    r = client.post(
        "/pipelines/trace",
        json={"start": {"segment": "p4"}, "network": "nosource", "direction": "upstream"},
    )
    assert r.status_code == 422 and "no sources" in r.json()["message"]


# --- traces --------------------------------------------------------------------------------
def _traced(client, start, direction, network):
    r = client.post(
        "/pipelines/trace", json={"start": start, "direction": direction, "network": network}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    pipes = {f["properties"]["pipe_id"] for f in body["features"] if "pipe_id" in f["properties"]}
    return body, pipes


def test_pressure_traces_go_toward_and_away_from_the_sources(client):
    body, up = _traced(client, {"segment": "p7"}, "upstream", "tiny")
    assert up == {"p1", "p2", "p3", "p4", "p5", "p6", "p7"}
    assert body["totals"]["nodes_by_kind"]["plant"] == 1
    _, down = _traced(client, {"segment": "p5"}, "downstream", "tiny")
    assert {"p5", "p6", "p7", "p8", "p9"} <= down and not down & {"p1", "p2", "p3", "p4"}
    body, everything = _traced(client, {"node": "J2"}, "connected", "tiny")
    assert everything == {f"p{i}" for i in range(1, 13)}
    assert body["stopped_at_closed_valves"] == ["V4"]
    assert body["totals"]["length_by_diameter_mm"]["300"] == pytest.approx(150, rel=0.02)


def test_a_closed_valve_stops_a_trace(client, loaded):
    with psycopg.connect(loaded) as conn:
        data = tiny()
        for n in data.nodes:
            if n.node_id == "V2":
                n.valve_state = "closed"
        save_network(conn, "tiny2", data)
        conn.commit()
    _, reached = _traced(client, {"segment": "p3"}, "connected", "tiny2")
    assert reached == {"p1", "p2", "p3", "p4", "p10", "p12"}  # V2 and V4 are closed
    _, reached = _traced(client, {"segment": "p5"}, "connected", "tiny2")
    assert reached == {"p5", "p6", "p7", "p8", "p9", "p11"}  # V2 and V4 closed


def test_gravity_traces_follow_the_flow(client):
    _, down = _traced(client, {"segment": "d6"}, "downstream", "drain")
    assert down == {"d6", "d3", "d4", "d5"}
    _, up = _traced(client, {"segment": "d4"}, "upstream", "drain")
    assert up == {"d4", "d3", "d2", "d1", "d6"}
    body, down = _traced(client, {"node": "W2"}, "downstream", "drain")
    assert down == {"d2", "d3", "d4", "d5"}
    assert body["flow_rule"] == "flow direction"


def test_sample_sewer_downstream_reaches_the_plant(client):
    body, down = _traced(client, {"segment": "WSL000002"}, "downstream", "sewer")
    kinds = body["totals"]["nodes_by_kind"]
    assert kinds.get("treatment_plant") == 1 or kinds.get("outfall")
    _, up = _traced(client, {"segment": "WSL000002"}, "upstream", "sewer")
    assert up & down == {"WSL000002"}


def test_a_point_snaps_to_the_nearest_pipe(client):
    lon, lat = ll(225, 3)  # 3 m off p4, between J2 and V2
    body, _ = _traced(client, {"point": [lon, lat]}, "connected", "tiny")
    assert body["start"]["segment"] == "p4"
    assert body["start"]["snapped"]["distance_m"] == pytest.approx(3, abs=0.5)
    # CGCS2000 Gauss-Krüger (northing first) input finds the same pipe
    from pyproj import Transformer

    north, east = Transformer.from_crs(4326, 4548).transform(lat, lon)
    body, _ = _traced(client, {"point": [north, east], "crs": "EPSG:4548"}, "connected", "tiny")
    assert body["start"]["segment"] == "p4"


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"start": {"segment": "nope"}, "direction": "connected"}, 404, "no pipe 'nope'"),
        ({"start": {"node": "nope"}, "direction": "connected"}, 404, "no node 'nope'"),
        (
            {"start": {"segment": "p4"}, "direction": "sideways", "network": "tiny"},
            400,
            "upstream, downstream, connected",
        ),
        (
            {"start": {"point": list(ll(225, 400))}, "direction": "connected", "network": "tiny"},
            400,
            "m from the point, farther than max_distance_m = 50",
        ),
        (
            {"start": {"segment": "p4", "node": "J2"}, "direction": "connected"},
            400,
            "exactly one of",
        ),
        ({"start": {"segment": "p4"}, "direction": "connected"}, 400, "name the network"),
        ({"start": {"point": [500, 500]}, "direction": "connected"}, 400, "outside lon/lat"),
    ],
)
def test_bad_trace_requests_say_what_to_fix(client, body, status, words):
    r = client.post("/pipelines/trace", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["message"]


def test_the_distance_to_the_nearest_pipe_is_named(client):
    r = client.post(
        "/pipelines/isolate", json={"start": {"point": list(ll(225, 400))}, "network": "tiny"}
    )
    assert r.status_code == 400
    message = r.json()["message"]
    assert re.search(r"nearest pipe \(p\d+ in tiny\) is \d+\.\d m from the point", message)


def test_isolation_refuses_gravity_networks_and_non_valves(client):
    r = client.post("/pipelines/isolate", json={"start": {"segment": "d3"}, "network": "drain"})
    assert r.status_code == 400 and "gravity" in r.json()["message"]
    r = client.post(
        "/pipelines/isolate",
        json={"start": {"segment": "p4"}, "network": "tiny", "inoperable": ["J2"]},
    )
    assert r.status_code == 400 and "'J2' is not a valve" in r.json()["message"]


# --- topology report -----------------------------------------------------------------------
def messy() -> NetworkData:
    n = {
        "S": node("S", "plant", 0, 0),
        "A": node("A", "junction", 100, 0, ground_elev_m=40.0, depth_m=2.0, invert_m=37.0),
        "B": node("B", "junction", 200, 0),
        "C": node("C", "junction", 300, 0),  # dangling
        "X": node("X", "junction", 0, 500),  # island
        "Y": node("Y", "junction", 100, 500),
        "Z": node("Z", "junction", 500, 500),  # orphan
    }
    loop = Segment(
        "loop", "B", "B", [(n["B"].x, n["B"].y), ll(210, 10), (n["B"].x, n["B"].y)], "JS"
    )
    return NetworkData(
        list(n.values()),
        [
            pipe("s1", n["S"], n["A"]),
            pipe("s2", n["A"], n["B"]),
            pipe("s2dup", n["A"], n["B"]),
            pipe("s2rev", n["B"], n["A"]),
            pipe("s3", n["B"], n["C"]),
            loop,
            pipe("i1", n["X"], n["Y"]),
        ],
        "EPSG:4326",
        source="messy",
    )


def test_topology_report_names_every_kind_of_problem(client, loaded):
    with psycopg.connect(loaded) as conn:
        result = save_network(conn, "messy", messy())
        conn.commit()
    kinds = {(f["kind"], f["ref"]) for f in result.topology}
    assert ("self_loop", "loop") in kinds
    assert ("duplicate", "s2dup") in kinds
    assert ("reversed_duplicate", "s2rev") in kinds
    assert ("dangling_end", "C") in kinds
    assert ("orphan_node", "Z") in kinds
    assert ("node_elevation", "A") in kinds
    assert any(k == "island" for k, _ in kinds)
    body = client.get("/pipelines/messy/topology").json()
    assert body["counts"]["island"] == 1 and body["counts"]["self_loop"] == 1
    island = next(f for f in body["findings"] if f["kind"] == "island")
    assert "2 nodes and 1 pipes" in island["message"]
    drain = client.get("/pipelines/drain/topology").json()
    slope = [f for f in drain["findings"] if f["kind"] == "adverse_slope"]
    assert [f["ref"] for f in slope] == ["d4"] and "rises from 37.5 m to 37.8 m" in slope[0][
        "message"
    ]
    layer = client.get(
        "/collections/pipe_findings/items", params={"network": "messy", "limit": 100}
    ).json()
    assert {f["properties"]["kind"] for f in layer["features"]} >= {"self_loop", "island"}


def test_the_sample_city_networks_are_clean(client):
    for name in ("water", "sewer", "storm", "gas"):
        counts = client.get(f"/pipelines/{name}/topology").json()["counts"]
        serious = {k: v for k, v in counts.items() if k != "dangling_end"}
        assert serious == {}, (name, counts)


def test_a_network_with_broken_references_loads_nothing(loaded):
    data = tiny()
    data.segments.append(Segment("bad", "J1", "NOPE", [ll(0, 0), ll(1, 1)], "JS"))
    with psycopg.connect(loaded) as conn:
        before = conn.execute(
            "SELECT count(*) FROM twin.pipe_segments WHERE network = 'tiny'"
        ).fetchone()[0]
        with pytest.raises(NetworkRejected, match="NOPE"):
            save_network(conn, "tiny", data)
        conn.rollback()
        after = conn.execute(
            "SELECT count(*) FROM twin.pipe_segments WHERE network = 'tiny'"
        ).fetchone()[0]
    assert before == after == 12


# --- excavation conflicts ------------------------------------------------------------------
def test_conflicts_list_pipes_above_the_dig_depth_with_their_owners(client):
    line = {"type": "LineString", "coordinates": [ll(120, -20), ll(120, 5)]}  # across p2
    r = client.post(
        "/pipelines/conflicts",
        json={"geometry": line, "width_m": 2, "dig_depth_m": 1.0, "networks": ["tiny"]},
    )
    body = r.json()
    assert r.status_code == 200, r.text
    assert [f["properties"]["pipe_id"] for f in body["features"]] == ["p2"]
    assert body["by_owner"] == {"水务集团": 1}
    assert body["features"][0]["properties"]["length_in_footprint_m"] == pytest.approx(2, abs=0.3)
    shallow = client.post(
        "/pipelines/conflicts",
        json={
            "geometry": line,
            "width_m": 2,
            "dig_depth_m": 0.5,
            "clearance_m": 0.2,
            "networks": ["tiny"],
        },
    ).json()
    assert shallow["conflicts"] == 0  # the pipe lies at 1.2 m, below 0.5 + 0.2


@pytest.mark.parametrize(
    ("geometry", "extra", "status", "words"),
    [
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            {},
            400,
            "invalid geometry",
        ),
        ({"type": "Point", "coordinates": [116.5, 31.7]}, {}, 400, "not Point"),
        (
            {
                "type": "Polygon",
                "coordinates": [[[116.5, 31.7], [116.6, 31.7], [116.6, 31.8], [116.5, 31.7]]],
            },
            {},
            422,
            "limit",
        ),
        (
            {"type": "LineString", "coordinates": [[116.5, 31.7], [116.5001, 31.7]]},
            {"crs": "EPSG:9999999"},
            400,
            "9999999",
        ),
        (
            {"type": "LineString", "coordinates": [[116.5, 31.7], [116.5001, 31.7]]},
            {"width_m": 0},
            400,
            "width_m",
        ),
    ],
)
def test_bad_conflict_requests(client, geometry, extra, status, words):
    r = client.post("/pipelines/conflicts", json={"geometry": geometry, "dig_depth_m": 2, **extra})
    assert r.status_code == status, r.text
    assert words in r.json()["message"]


# --- serving and editing -------------------------------------------------------------------
def test_pipes_are_collections_and_tiles_with_cjj61_colours(client):
    cols = {c["id"] for c in client.get("/collections").json()["collections"]}
    assert {"water_pipes", "water_nodes", "sewer_pipes", "pipe_findings"} <= cols
    items = client.get("/collections/water_pipes/items", params={"limit": 3}).json()
    props = items["features"][0]["properties"]
    assert props["utility"] == "JS" and props["color"] == "#00ffff"
    assert props["feature_code"].startswith("51")
    assert props["unit_grid"]
    tj = client.get("/collections/water_pipes/tiles/WebMercatorQuad/tilejson.json").json()
    assert tj["vector_layers"][0]["color"] == "#00ffff"
    assert tj["vector_layers"][0]["utility"] == "JS"
    gas = client.get("/collections/gas_nodes/tiles/WebMercatorQuad/tilejson.json").json()
    assert gas["vector_layers"][0]["color"] == "#ff00ff"
    z, x, y = 15, *_tile_of(props, tj)
    tile = client.get(f"/collections/water_pipes/tiles/WebMercatorQuad/{z}/{x}/{y}")
    assert tile.status_code == 200
    decoded = mapbox_vector_tile.decode(tile.content)
    colours = {f["properties"]["color"] for f in decoded["water_pipes"]["features"]}
    assert colours == {"#00ffff"}
    sewer = client.get("/collections/sewer_pipes/items", params={"limit": 1}).json()
    assert sewer["features"][0]["properties"]["color"] == "#4c3926"


def _tile_of(props, tj):
    import math

    lon, lat = tj["center"][0], tj["center"][1]
    n = 2**15
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def test_moving_a_node_moves_its_pipe_ends_and_bad_edits_are_refused(client):
    fid = client.get("/collections/tiny_nodes/items", params={"node_id": "J3"}).json()["features"][
        0
    ]["id"]
    etag = client.get(f"/collections/tiny_nodes/items/{fid}").headers["etag"]
    lon, lat = ll(300, 10)
    r = client.patch(
        f"/collections/tiny_nodes/items/{fid}",
        json={"geometry": {"type": "Point", "coordinates": [lon, lat]}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 204, r.text
    p5 = client.get("/collections/tiny_pipes/items", params={"pipe_id": "p5"}).json()["features"][0]
    assert p5["geometry"]["coordinates"][-1] == pytest.approx([lon, lat], abs=1e-7)
    assert p5["properties"]["version"] == 2
    # a pipe must end on its node
    far = [list(ll(250, 0)), list(ll(300, 80))]
    r = client.patch(
        f"/collections/tiny_pipes/items/{p5['id']}",
        json={"geometry": {"type": "LineString", "coordinates": far}},
        headers={"If-Match": '"2"'},
    )
    assert r.status_code == 422 and "from its node J3" in r.json()["message"]
    # a node with pipes cannot go
    r = client.delete(f"/collections/tiny_nodes/items/{fid}", headers={"If-Match": '"2"'})
    assert r.status_code == 409 and "p5" in r.json()["message"]
    r = client.patch(
        f"/collections/tiny_pipes/items/{p5['id']}",
        json={"properties": {"flow": "sideways"}},
        headers={"If-Match": '"2"'},
    )
    assert r.status_code == 422 and "forward" in r.json()["message"]


def test_new_node_and_pipe_join_the_network(client):
    lon, lat = ll(450, 0)
    r = client.post(
        "/collections/tiny_nodes/items",
        json={
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"node_id": "M3", "kind": "meter"},
        },
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/collections/tiny_pipes/items",
        json={
            "type": "Feature",
            "geometry": None,
            "properties": {"pipe_id": "p13", "from_node": "J4", "to_node": "M3", "diameter_mm": 50},
        },
    )
    assert r.status_code == 201, r.text
    body = client.post(
        "/pipelines/isolate", json={"start": {"segment": "p13"}, "network": "tiny"}
    ).json()
    assert "p13" in body["isolated"]["pipe_ids"] and "M3" in body["service_points"]["node_ids"]
    dup = client.post(
        "/collections/tiny_pipes/items",
        json={
            "type": "Feature",
            "geometry": None,
            "properties": {"pipe_id": "p13", "from_node": "J4", "to_node": "M3"},
        },
    )
    assert dup.status_code == 409


def test_isolation_touches_components_and_grids_of_the_sample_city(client):
    found = False
    for pid in ("JSL000100", "JSL000500", "JSL001000", "JSL001500"):
        body = client.post("/pipelines/isolate", json={"start": {"segment": pid}}).json()
        assert body["unit_grids"] and all(len(c) in (14, 15) for c in body["unit_grids"])
        found = found or bool(body["components"])
    assert found, "hydrants and valve covers on the affected nodes are components"


def test_networks_are_listed(client):
    nets = {n["name"]: n for n in client.get("/pipelines").json()["networks"]}
    assert nets["sewer"]["kind"] == "gravity" and nets["water"]["kind"] == "pressure"
    assert nets["tiny"]["segments"] >= 12
    assert json.dumps(nets)  # plain JSON


# --- networks imported from EPANET files, survey tables and GIS lines ------------------------
CONTROL_TYPES = ("PRV", "TCV", "FCV", "PSV", "PBV", "GPV")


def lattice_inp(
    path: Path, n: int = 18, seed: int = 5, controls: int = 0
) -> tuple[list, list, list]:
    """An n×n looped lattice fed by a reservoir, with vertices on some pipes; returns the
    pipes (id, node1, node2), a random valve layer (link, node) on them, and the ``controls``
    links (id, node1, node2) that are control valves (PRV, TCV, ...) in [VALVES] instead."""
    rng = random.Random(seed)
    junctions = [f"J{i}_{j}" for i in range(n) for j in range(n)]
    links = []
    for i in range(n):
        for j in range(n):
            if i + 1 < n:
                links.append((f"P{i}_{j}v", f"J{i}_{j}", f"J{i + 1}_{j}"))
            if j + 1 < n:
                links.append((f"P{i}_{j}h", f"J{i}_{j}", f"J{i}_{j + 1}"))
    # drawn apart from the valve layer's draws, so controls=0 gives the same layer as before
    chosen = set(random.Random(seed + 1).sample(range(len(links)), controls))
    control_links = [link for k, link in enumerate(links) if k in chosen]
    pipes = [link for k, link in enumerate(links) if k not in chosen]
    pipes.append(("PR", "R1", "J0_0"))
    lines = ["[TITLE]", "lattice", "", "[JUNCTIONS]"]
    lines += [f" {j}\t30\t1.5" for j in junctions]
    lines += ["", "[RESERVOIRS]", " R1\t60", "", "[PIPES]"]
    lines += [f" {p}\t{a}\t{b}\t100\t200\t100\t0\tOpen" for p, a, b in pipes]
    lines += ["", "[VALVES]"]
    for k, (v, a, b) in enumerate(control_links):
        kind = CONTROL_TYPES[k % len(CONTROL_TYPES)]
        lines.append(f" {v}\t{a}\t{b}\t200\t{kind}\t{'C1' if kind == 'GPV' else 30}")
    lines += ["", "[OPTIONS]", " Units\tLPS", "", "[COORDINATES]"]
    lines += [f" J{i}_{j}\t{j * 100}\t{i * 100}" for i in range(n) for j in range(n)]
    lines += [" R1\t-100\t-100", "", "[VERTICES]", " P0_0h\t50\t10", "", "[END]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    valves = set()
    for p, a, b in pipes[:-1]:
        roll = rng.random()
        if roll < 0.5:
            valves.add((p, rng.choice([a, b])))
        elif roll < 0.7:
            valves |= {(p, a), (p, b)}
    return pipes, sorted(valves), control_links


def wntr_style_segments(pipes, valves) -> dict[str, frozenset[str]]:
    """WNTR's notion: a valve (link, node) cuts that link from that node; pipes sharing any
    uncut node are in one segment."""
    cut = set(valves)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p, a, b in pipes:
        for end in (a, b):
            if (p, end) not in cut:
                parent[find("p:" + p)] = find("n:" + end)
    groups: dict[str, set[str]] = {}
    for p, _, _ in pipes:
        groups.setdefault(find("p:" + p), set()).add(p)
    return {p: frozenset(groups[find("p:" + p)]) for p, _, _ in pipes}


def test_isolation_on_an_imported_epanet_network_equals_the_oracle(loaded, tmp_path):
    from pipelines.importers.epanet import read_inp

    pipes, valves, _ = lattice_inp(tmp_path / "lattice.inp")
    data = read_inp(
        tmp_path / "lattice.inp",
        crs="EPSG:4548",
        affine=(1, 0, 500_000, 0, 1, 3_515_000),
        isolation_valves=valves,
    )
    with psycopg.connect(loaded) as conn:
        save_network(conn, "lattice", data)
        conn.commit()
        g = graphs.load(conn, "lattice")
    expected = wntr_style_segments(pipes, valves)
    assert 50 < len(set(expected.values())) < len(pipes)
    for p, want in expected.items():
        iso = g.isolate(g.seg_index[p])
        got = {g.seg_name[s] for s in iso.isolated if "@" not in g.seg_name[s]}
        assert got == want, p


def test_cli_imports_an_epanet_file_with_valves_and_reports_a_broken_section(
    loaded, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("TWIN_DATABASE_URL", loaded)
    _, valves, _ = lattice_inp(tmp_path / "net.inp", n=6)
    (tmp_path / "valves.csv").write_text(
        "link,node\n" + "".join(f"{a},{b}\n" for a, b in valves), encoding="utf-8"
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "pipelines",
            "import-inp",
            "inpnet",
            str(tmp_path / "net.inp"),
            "--crs",
            "EPSG:4548",
            "--affine",
            "1,0,500000,0,1,3515000",
            "--valves",
            str(tmp_path / "valves.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    with psycopg.connect(loaded) as conn:
        n_valves = conn.execute(
            "SELECT count(*) FROM twin.pipe_nodes WHERE network = 'inpnet' AND kind = 'valve'"
        ).fetchone()[0]
        sources = conn.execute(
            "SELECT count(*) FROM twin.pipe_nodes WHERE network = 'inpnet' AND kind = 'reservoir'"
        ).fetchone()[0]
    assert n_valves == len(valves) and sources == 1
    broken = (tmp_path / "net.inp").read_text().replace(" P0_0h\tJ0_0\tJ0_1\t100", " P0_0h\tJ0_0")
    (tmp_path / "broken.inp").write_text(broken)
    line = broken.splitlines().index(" P0_0h\tJ0_0\t200\t100\t0\tOpen") + 1
    result = runner.invoke(app, ["pipelines", "import-inp", "inpnet", str(tmp_path / "broken.inp")])
    assert result.exit_code == 2
    assert f"line {line}" in result.output.replace("\n", " ")


# --- control valves: passed as WNTR passes any link, or closable on request -------------------
EPANET = Path(__file__).resolve().parent / "data" / "pipelines" / "epanet"
PLACE = ("--crs", "EPSG:4548", "--affine", "1,0,500000,0,1,3515000")


def originals(ids) -> set[str]:
    """The file's own pipes: no valve stubs (P@J) and no halves of split links (V-1)."""
    return {i for i in ids if "@" not in i and "-" not in i}


def test_control_valves_are_passed_as_in_wntr_and_bound_segments_when_closable(loaded, tmp_path):
    from pipelines.importers.epanet import read_inp, read_valve_layer

    pipes, valves, controls = lattice_inp(tmp_path / "ctl.inp", n=14, seed=8, controls=40)
    (tmp_path / "valves.csv").write_text(
        "link,node\n" + "".join(f"{a},{b}\n" for a, b in valves), encoding="utf-8"
    )
    data = read_inp(
        tmp_path / "ctl.inp",
        crs="EPSG:4548",
        affine=(1, 0, 500_000, 0, 1, 3_515_000),
        isolation_valves=read_valve_layer(tmp_path / "valves.csv"),
    )
    assert sum(n.kind == "control_valve" for n in data.nodes) == len(controls) == 40
    with psycopg.connect(loaded) as conn:
        save_network(conn, "controlled", data)
        conn.commit()
        g = graphs.load(conn, "controlled")
    names = {p for p, _, _ in pipes}
    links = pipes + controls  # in WNTR a control valve is a link like a pipe
    passable = wntr_style_segments(links, valves)
    both_ends = [(c, end) for c, a, b in controls for end in (a, b)]
    closable = wntr_style_segments(links, valves + both_ends)
    differ = [p for p in names if passable[p] & names != closable[p] & names]
    assert len(differ) > 50  # the control valves change many answers here
    for rule, expected in (("passable", passable), ("closable", closable)):
        for p in sorted(names):
            iso = g.isolate(g.seg_index[p], control_valves=rule)
            assert iso.control_valves == rule
            assert {g.seg_name[s] for s in iso.isolated} & names == expected[p] & names, (rule, p)
    assert g.n_labels == g.segmentation("passable").n_labels < g.segmentation("closable").n_labels


@pytest.fixture(scope="module")
def controls_network(loaded) -> str:
    """controls.inp with its isolation valves: R1 -P1- J1 -P2- J2 =PRV1= J3 -P3- J4 -P4- J5,
    J4 -P5- J6 =FCV1 (closed)= J7 -P6- J8 =TCV1= J5; isolation valves on P2 at J1, P4 at J5."""
    from pipelines.importers.epanet import read_inp, read_valve_layer

    data = read_inp(
        EPANET / "controls.inp",
        crs="EPSG:4548",
        affine=(1, 0, 500_000, 0, 1, 3_515_000),
        isolation_valves=read_valve_layer(EPANET / "controls_valves.csv"),
    )
    with psycopg.connect(loaded) as conn:
        save_network(conn, "controls", data)
        conn.commit()
    return "controls"


def _isolate_p3(client, **extra) -> dict:
    r = client.post(
        "/pipelines/isolate", json={"network": "controls", "start": {"segment": "P3"}, **extra}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_a_burst_beyond_a_prv_is_isolated_across_it_unless_control_valves_are_closable(
    client, controls_network
):
    body = _isolate_p3(client)
    assert body["control_valves"] == "passable"
    assert originals(body["isolated"]["pipe_ids"]) == {"P2", "P3", "P4", "P5"}
    assert {v["node_id"]: v["kind"] for v in body["valves_to_close"]} == {
        "P2@J1": "valve",
        "P4@J5": "valve",
    }
    # the FCV is shut in the model: it bounds the outage under either rule, already closed
    assert [v["node_id"] for v in body["valves_already_closed"]] == ["FCV1"]
    assert originals(body["cut_off"]["pipe_ids"]) == {"P6"}
    assert body["valves_inoperable"] == []  # a passed control valve is not an inoperable one
    assert any("PRV1" in w and '"closable"' in w for w in body["warnings"])
    closable = _isolate_p3(client, control_valves="closable")
    assert closable["control_valves"] == "closable"
    assert originals(closable["isolated"]["pipe_ids"]) == {"P3", "P4", "P5"}
    assert {v["node_id"]: v["kind"] for v in closable["valves_to_close"]} == {
        "PRV1": "control_valve",
        "P4@J5": "valve",
    }
    assert originals(closable["cut_off"]["pipe_ids"]) == {"P6"}
    assert not any("PRV1" in w for w in closable["warnings"])
    roles = {f["properties"].get("node_id"): f["properties"]["role"] for f in closable["features"]}
    assert roles["PRV1"] == "valve_to_close"


def test_traces_pass_open_control_valves_and_stop_at_closed_ones(client, controls_network):
    body, pipes = _traced(client, {"segment": "P1"}, "connected", "controls")
    assert originals(pipes) == {"P1", "P2", "P3", "P4", "P5", "P6"}
    assert body["stopped_at_closed_valves"] == ["FCV1"]
    assert body["totals"]["nodes_by_kind"]["control_valve"] == 3


def test_the_server_setting_makes_control_valves_closable_by_default(loaded, controls_network):
    cfg = settings_for(loaded)
    cfg.pipelines.isolation_control_valves_closable = True
    with app_client(cfg) as c:
        body = _isolate_p3(c)
        assert body["control_valves"] == "closable"
        assert originals(body["isolated"]["pipe_ids"]) == {"P3", "P4", "P5"}
        assert _isolate_p3(c, control_valves="passable")["control_valves"] == "passable"
        r = c.post(
            "/pipelines/isolate",
            json={"network": "controls", "start": {"segment": "P3"}, "control_valves": "open"},
        )
        assert r.status_code in (400, 422) and "control_valves" in r.text


def test_the_migration_turns_earlier_imported_control_valves_into_their_kind(loaded):
    from importlib import resources

    migration = resources.files("twin.migrations").joinpath("0010_control_valves.sql")
    text = migration.read_text("utf-8")
    update = text[text.index("UPDATE twin.pipe_nodes") :]  # the data part, run again here
    data = tiny()
    for n in data.nodes:  # as the EPANET reader stored a PRV and an isolation valve before
        if n.node_id == "V1":
            n.attrs = {"valve_type": "PRV", "setting": 30.0}
        elif n.node_id == "V2":
            n.attrs = {"valve_type": "isolation"}
    with psycopg.connect(loaded) as conn:
        save_network(conn, "oldprv", data)
        conn.execute(update)
        rows = dict(
            conn.execute(
                "SELECT node_id, kind || ' ' || valve_state || ' ' || feature_code "
                "FROM twin.pipe_nodes WHERE network = 'oldprv' AND node_id IN ('V1', 'V2')"
            ).fetchall()
        )
        versions = conn.execute(
            "SELECT count(*) FROM twin.pipe_nodes_history h JOIN twin.pipe_nodes n USING (id) "
            "WHERE n.network = 'oldprv'"
        ).fetchone()[0]
        conn.rollback()
    assert rows == {"V1": "control_valve open 51002215", "V2": "valve open 51002201"}
    assert versions == 1  # the valve it was is kept in the history


@pytest.mark.parametrize(
    ("files", "name"),
    [
        (["Net6.inp"], "net6"),
        (["water_pipes.gpkg", "water_nodes.gpkg"], "water"),
        (["JS-points.csv", "js_lines.csv"], "js"),
        (["points.csv", "lines.csv"], "points"),
        (["2024 给水.inp"], "net_2024"),
        (["给水.inp"], None),
    ],
)
def test_a_network_name_is_made_from_the_file_names(files, name):
    from cli.pipelines import _name_from_files

    assert _name_from_files([Path(f) for f in files]) == name


def test_cli_names_a_network_from_its_file_or_says_what_to_fix(loaded, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("TWIN_DATABASE_URL", loaded)
    monkeypatch.setenv("COLUMNS", "200")
    net6 = tmp_path / "Net6.inp"
    net6.write_bytes((EPANET / "controls.inp").read_bytes())
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["pipelines", "import-inp", *args])
        return result.exit_code, " ".join(result.output.split())

    code, text = run(str(net6), *PLACE)
    assert code == 0, text
    assert "network name 'net6' taken from the file name Net6.inp" in text
    assert "loaded network net6:" in text
    code, text = run("Net6", str(net6), *PLACE)  # valid but for the capital: lowercased, said
    assert code == 0, text
    assert "network name 'net6' used for 'Net6': network names are lowercase" in text
    code, text = run("--name", "net6b", str(net6), *PLACE)
    assert code == 0 and "loaded network net6b:" in text, text
    code, text = run("my-net", str(net6), *PLACE)
    assert code == 2 and "network name 'my-net' is not allowed: use 'my_net'" in text
    code, text = run("a", str(net6), "--name", "b")
    assert code == 2 and "the network name is given twice ('a' and --name 'b')" in text
    chinese = tmp_path / "给水.inp"
    chinese.write_bytes(net6.read_bytes())
    code, text = run(str(chinese), *PLACE)
    assert code == 2 and "no network name can be made from the file name 给水.inp" in text
    assert "--name water" in text
    code, text = run("a", "b", "c")
    assert code == 2 and "import-inp takes 1 file(s) (FILE) after an optional network" in text
    with psycopg.connect(loaded) as conn:
        kinds = conn.execute(
            "SELECT count(*) FROM twin.pipe_nodes WHERE network = 'net6' AND kind = 'control_valve'"
        ).fetchone()[0]
    assert kinds == 3
    result = runner.invoke(app, ["pipelines", "drop", "Net6B"])
    assert result.exit_code == 0 and "dropped network net6b" in result.output


def test_cli_imports_survey_tables_with_checks(loaded, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("TWIN_DATABASE_URL", loaded)
    (tmp_path / "points.csv").write_text(
        "物探点号,X,Y,地面高程,特征,附属物\n"
        "JS1,3515000.0,500000.0,40.0,三通,\n"
        "JS2,3515000.0,500050.0,40.2,,阀门\n"
        "JS3,3515000.0,500100.0,40.1,弯头,\n"
        "JS4,3515050.0,500100.0,40.3,,水表\n",
        encoding="utf-8",
    )
    (tmp_path / "lines.csv").write_text(
        "起点点号,终点点号,管径,材质,起点埋深,终点埋深,埋设年代,权属单位,管线类别\n"
        "JS1,JS2,300,球墨铸铁,1.2,1.2,2008,水务集团,JS\n"
        "JS2,JS3,300,QM,1.2,1.3,2008,水务集团,JS\n"
        "JS3,JS4,100,PE,1.3,1.0,2015,水务集团,JS\n"
        "JS2,JS1,300,QM,1.2,1.2,2008,水务集团,JS\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    args = [
        "pipelines",
        "import-survey",
        "survey",
        str(tmp_path / "points.csv"),
        str(tmp_path / "lines.csv"),
        "--crs",
        "EPSG:4548",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "row 5" in text and "JS1" in text  # the reversed duplicate line, by its row
    assert (tmp_path / "survey.import-report.csv").exists()
    result = runner.invoke(app, [*args, "--skip-invalid"])
    assert result.exit_code == 0, result.output
    with psycopg.connect(loaded) as conn:
        rows = conn.execute(
            "SELECT pipe_id, material, diameter_mm, round(ST_X(ST_StartPoint(geom))::numeric, 3),"
            " round(ST_Y(ST_StartPoint(geom))::numeric, 3) FROM twin.pipe_segments "
            "WHERE network = 'survey' ORDER BY pipe_id"
        ).fetchall()
        kinds = dict(
            conn.execute(
                "SELECT node_id, kind FROM twin.pipe_nodes WHERE network = 'survey'"
            ).fetchall()
        )
    assert len(rows) == 3 and rows[0][1] == "QM" and rows[0][2] == 300
    assert (float(rows[0][3]), float(rows[0][4])) == (117.0, pytest.approx(31.757, abs=0.01))
    assert kinds == {"JS1": "junction", "JS2": "valve", "JS3": "junction", "JS4": "meter"}


def test_cli_builds_topology_from_plain_lines(loaded, tmp_path, monkeypatch):
    import geopandas as gpd
    from shapely.geometry import LineString, Point
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("TWIN_DATABASE_URL", loaded)
    x0, y0 = 500_000.0, 3_515_000.0
    lines = gpd.GeoDataFrame(
        {"管径": [300, 300, 100], "材质": ["QM", "QM", "PE"]},
        geometry=[
            LineString([(x0, y0), (x0 + 100, y0)]),
            LineString([(x0 + 100.3, y0), (x0 + 200, y0)]),  # 0.3 m gap: snapped
            LineString([(x0 + 50, y0 + 40), (x0 + 50, y0 + 0.2)]),
        ],  # a tee onto line 1
        crs="EPSG:4548",
    )
    lines.to_file(tmp_path / "lines.gpkg")
    nodes = gpd.GeoDataFrame(
        {"id": ["SRC", "V1"], "kind": ["plant", "valve"]},
        geometry=[Point(x0, y0), Point(x0 + 150, y0)],
        crs="EPSG:4548",
    )
    nodes.to_file(tmp_path / "nodes.gpkg")
    result = CliRunner().invoke(
        app,
        [
            "pipelines",
            "import-lines",
            "plain",
            str(tmp_path / "lines.gpkg"),
            "--nodes",
            str(tmp_path / "nodes.gpkg"),
            "--utility",
            "JS",
            "--tolerance",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    with psycopg.connect(loaded) as conn:
        g = graphs.load(conn, "plain")
    assert g.n_segs == 5  # line 1 split by the tee, line 2 split by the valve
    assert sorted(g.node_kind[g.sources]) == ["plant"]
    assert g.n_labels == 2  # the valve cuts the network in two


# --- review findings: staleness, restores, ties, unsupplied starts ---------------------------
def test_a_dropped_and_reimported_network_is_not_served_from_the_old_graph(client, loaded):
    from pipelines.store import drop_network

    data = tiny()
    with psycopg.connect(loaded) as conn:
        save_network(conn, "again", data)
        conn.commit()
    assert _traced(client, {"segment": "p4"}, "connected", "again")[1]
    renamed = tiny()
    for s in renamed.segments:
        s.pipe_id = "q" + s.pipe_id[1:]
    with psycopg.connect(loaded) as conn:
        drop_network(conn, "again")
        save_network(conn, "again", renamed)
        conn.commit()
    _, pipes = _traced(client, {"segment": "q4"}, "connected", "again")
    assert "q4" in pipes and "p4" not in pipes


def test_restoring_a_renamed_node_brings_its_pipes_back(client, loaded):
    with psycopg.connect(loaded) as conn:
        save_network(conn, "restore", tiny())
        conn.commit()
    client.app.state.catalog._loaded_at = 0  # see the new collections now
    fid = client.get("/collections/restore_nodes/items", params={"node_id": "J2"}).json()[
        "features"
    ][0]["id"]
    r = client.patch(
        f"/collections/restore_nodes/items/{fid}",
        json={
            "properties": {"node_id": "J2X"},
            "geometry": {"type": "Point", "coordinates": list(ll(200, 5))},
        },
        headers={"If-Match": '"1"'},
    )
    assert r.status_code == 204, r.text
    p4 = client.get("/collections/restore_pipes/items", params={"pipe_id": "p4"}).json()
    assert p4["features"][0]["properties"]["from_node"] == "J2X"
    r = client.post(f"/collections/restore_nodes/items/{fid}/restore", params={"version": 1})
    assert r.status_code == 200, r.text
    counts = client.get("/pipelines/restore/topology").json()["counts"]
    assert "unknown_node" not in counts and "end_off_node" not in counts, counts
    p4 = client.get("/collections/restore_pipes/items", params={"pipe_id": "p4"}).json()
    assert p4["features"][0]["properties"]["from_node"] == "J2"


def test_undeleting_a_pipe_whose_node_is_gone_is_refused(client, loaded):
    with psycopg.connect(loaded) as conn:
        save_network(conn, "undel", tiny())
        conn.commit()
    client.app.state.catalog._loaded_at = 0  # see the new collections now
    pipe_fid = client.get("/collections/undel_pipes/items", params={"pipe_id": "p9"}).json()[
        "features"
    ][0]["id"]
    node_fid = client.get("/collections/undel_nodes/items", params={"node_id": "M2"}).json()[
        "features"
    ][0]["id"]
    assert (
        client.delete(
            f"/collections/undel_pipes/items/{pipe_fid}", headers={"If-Match": '"1"'}
        ).status_code
        == 204
    )
    assert (
        client.delete(
            f"/collections/undel_nodes/items/{node_fid}", headers={"If-Match": '"1"'}
        ).status_code
        == 204
    )
    r = client.post(f"/collections/undel_pipes/items/{pipe_fid}/restore")
    assert r.status_code == 422 and "M2" in r.json()["message"]


def test_a_closed_valve_named_inoperable_still_blocks(client):
    # V4 is closed: naming it inoperable must not merge the loop into the outage
    plain = client.post(
        "/pipelines/isolate", json={"start": {"segment": "p12"}, "network": "tiny"}
    ).json()
    named = client.post(
        "/pipelines/isolate",
        json={"start": {"segment": "p12"}, "network": "tiny", "inoperable": ["V4"]},
    ).json()
    assert set(named["isolated"]["pipe_ids"]) == set(plain["isolated"]["pipe_ids"])


def test_pipes_fed_from_both_ends_are_reached_by_directed_traces(client, loaded):
    s, j = node("S", "plant", 0, 0), node("J", "junction", 100, 0)
    a, b = node("A", "junction", 150, 50), node("B", "junction", 150, -50)
    data = NetworkData(
        [s, j, a, b],
        [pipe("s", s, j), pipe("ja", j, a), pipe("jb", j, b), pipe("ab", a, b)],
        "EPSG:4326",
        source="tie",
    )
    with psycopg.connect(loaded) as conn:
        save_network(conn, "tie", data)
        conn.commit()
    _, down = _traced(client, {"segment": "s"}, "downstream", "tie")
    assert down == {"s", "ja", "jb", "ab"}


def test_a_start_behind_a_closed_valve_is_said_to_get_no_water(client):
    body, _ = _traced(client, {"segment": "p11"}, "upstream", "tiny")
    assert body["warnings"] == []
    with_closed = client.post(
        "/pipelines/isolate",
        json={"start": {"segment": "p4"}, "network": "tiny2"},
    ).json()  # tiny2 has V2 and V4 closed: p5 beyond V2 is fed by nothing
    assert with_closed["warnings"] == []
    body = client.post(
        "/pipelines/isolate", json={"start": {"segment": "p6"}, "network": "tiny2"}
    ).json()
    assert any("gets no water now" in w for w in body["warnings"])


@pytest.mark.parametrize(
    ("props", "words"),
    [
        ({"diameter_mm": 1e300}, "out of range"),
        ({"material": {"x": 1}}, "is text"),
        ({"to_node": "J1", "from_node": "J1"}, "starts and ends at node J1"),
        ({"colour": "red"}, "unknown property colour"),
    ],
)
def test_bad_pipe_edits_are_refused_with_a_reason(client, props, words):
    feature = client.get("/collections/tiny_pipes/items", params={"pipe_id": "p1"}).json()[
        "features"
    ][0]
    r = client.patch(
        f"/collections/tiny_pipes/items/{feature['id']}",
        json={"properties": props},
        headers={"If-Match": f'"{feature["properties"]["version"]}"'},
    )
    assert r.status_code == 422, r.text
    assert words in r.json()["message"]


def test_a_plain_layer_of_the_same_name_is_not_dropped(loaded, tmp_path):
    from layers.importer import import_file
    from twin.errors import Conflict

    path = tmp_path / "roads_pipes.csv"
    path.write_text("lon,lat,name\n116.53,31.75,a\n", encoding="utf-8")
    with psycopg.connect(loaded) as conn:
        import_file(conn, path, layer_name="roads_pipes")
        conn.commit()
        with pytest.raises(Conflict, match="twin layers drop roads_pipes"):
            save_network(conn, "roads", tiny())
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM published.roads_pipes").fetchone()[0] == 1


def test_conflicts_refuse_unknown_networks(client):
    line = {"type": "LineString", "coordinates": [ll(120, -20), ll(120, 5)]}
    r = client.post(
        "/pipelines/conflicts",
        json={"geometry": line, "dig_depth_m": 1, "networks": ["nowhere"]},
    )
    assert r.status_code == 404 and "nowhere" in r.json()["message"]
