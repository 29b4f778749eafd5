"""The viewer in a real headless Chromium: it draws the layers and identifies a clicked feature.

The server runs in a thread on a free loopback port against the test database; the page is
driven by tests/e2e/screenshot.sh (Chromium over the DevTools protocol, software WebGL).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import uvicorn
from PIL import Image
from shapely.geometry import Point, Polygon

from layers.importer import import_file

SCRIPT = Path(__file__).resolve().parent / "e2e" / "screenshot.sh"
LON, LAT = 116.53, 31.77


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(settings, pg_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    parks = gpd.GeoDataFrame(
        {"name": ["梅山公园"], "kind": ["park"]},
        geometry=[
            Polygon(
                [(LON, LAT), (LON + 0.004, LAT), (LON + 0.004, LAT + 0.003), (LON, LAT + 0.003)]
            )
        ],
        crs=4326,
    )
    hydrants = gpd.GeoDataFrame(
        {"code": [f"H{i}" for i in range(6)]},
        geometry=[Point(LON + 0.0006 * i, LAT - 0.0005) for i in range(6)],
        crs=4326,
    )
    with psycopg.connect(pg_url) as conn:
        for name, frame in (("web_parks", parks), ("web_hydrants", hydrants)):
            path = folder / f"{name}.gpkg"
            frame.to_file(path, engine="pyogrio")
            import_file(conn, path, layer_name=name, mode="replace")
    from api.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def drive(url: str, out: Path, click: str | None = None) -> dict:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "TIMEOUT_S": "40", "HOME": str(out.parent)}
    if click:
        env["CLICK"] = click
    result = subprocess.run(
        ["bash", str(SCRIPT), url, str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="make test installs chromium")
def test_viewer_draws_layers_and_identifies_a_park(server, tmp_path):
    view = f"{server}/viewer#16/{LAT + 0.0015}/{LON + 0.002}"
    report = drive(view, tmp_path / "park.png", click=f"{LON + 0.002},{LAT + 0.0015}")
    assert report["state"] == "ready"
    assert {"web_parks", "web_hydrants"} <= set(report["layers"])
    assert report["rendered"] > 0
    assert "web_parks" in report["popup"] and "梅山公园" in report["popup"]
    image = np.asarray(Image.open(tmp_path / "park.png").convert("RGB"))
    map_part = image[:, 300:]  # right of the side panel
    colours = np.unique(map_part.reshape(-1, 3), axis=0)
    assert len(colours) > 20  # not a blank canvas: fills, outlines and points are drawn
