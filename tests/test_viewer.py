"""The viewer page and its assets are served locally, with no outside references."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VIEWER = REPO / "api" / "static" / "viewer"


def test_browsers_get_the_viewer_at_the_root(client):
    r = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/viewer/vendor/maplibre-gl.js" in r.text
    assert client.get("/viewer").text == r.text


def test_viewer_references_nothing_outside_the_server(client):
    page = client.get("/viewer").text
    texts = [page]
    for path in sorted(VIEWER.iterdir()):
        if path.suffix in (".js", ".css"):
            r = client.get(f"/viewer/static/{path.name}")
            assert r.status_code == 200, path.name
            texts.append(r.text)
    assert len(texts) > 3  # the page, its modules and its style sheet
    for text in texts:
        assert not re.search(r"https?://(?!127\.0\.0\.1|localhost)", text)
        assert "@import" not in text and "url(" not in text.replace("data:", "")


def test_viewer_modules_import_only_files_beside_them(client):
    """The page's modules load each other by plain name from the viewer folder."""
    for path in sorted(VIEWER.glob("*.js")):
        for target in re.findall(r"^import .* from '([^']+)';", path.read_text(), re.M):
            assert re.fullmatch(r"\./[a-z]+\.js", target), (path.name, target)
            assert client.get(f"/viewer/static/{target[2:]}").status_code == 200


def test_maplibre_is_served_from_the_npm_package(client):
    r = client.get("/viewer/vendor/maplibre-gl.js")
    assert r.status_code == 200 and len(r.content) > 100_000
    assert client.get("/viewer/vendor/maplibre-gl.css").status_code == 200


def test_viewer_files_cannot_be_escaped(client):
    assert client.get("/viewer/static/..%2Fapp.py").status_code == 404
    assert client.get("/viewer/static/%2E%2E%2F%2E%2E%2Fapp.py").status_code == 404
    assert client.get("/viewer/vendor/package.json").status_code == 404


def test_api_docs_page_loads_swagger_from_this_server(client):
    page = client.get("/api.html").text
    assert "/viewer/vendor/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/viewer/vendor/swagger-ui-bundle.js").status_code == 200
    assert client.get("/viewer/vendor/swagger-ui.css").status_code == 200


@pytest.mark.skipif(shutil.which("npm") is None, reason="make test installs node and npm")
def test_viewer_javascript_passes_eslint():
    """`npm run lint`: the pinned ESLint on the viewer's modules and the end-to-end driver."""
    done = subprocess.run(
        ["npm", "run", "--silent", "lint"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
