"""The web viewer: a static MapLibre page; MapLibre itself comes from the npm package."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from api.deps import settings
from twin.errors import NotFound, SetupError
from twin.settings import Settings

router = APIRouter(tags=["Viewer"], include_in_schema=False)

# name → (npm package, file in it, media type): the only third-party files served.
_VENDOR = {
    "maplibre-gl.js": ("maplibre-gl", "dist/maplibre-gl.js", "application/javascript"),
    "maplibre-gl.css": ("maplibre-gl", "dist/maplibre-gl.css", "text/css"),
    "swagger-ui-bundle.js": ("swagger-ui-dist", "swagger-ui-bundle.js", "application/javascript"),
    "swagger-ui.css": ("swagger-ui-dist", "swagger-ui.css", "text/css"),
}
_STATIC = {".js": "application/javascript", ".css": "text/css", ".html": "text/html"}


def _static_dir() -> Path:
    return Path(str(resources.files("api") / "static" / "viewer"))


@lru_cache(maxsize=1)
def viewer_page() -> str:
    return (_static_dir() / "index.html").read_text(encoding="utf-8")


def node_modules(cfg: Settings) -> Path:
    """The npm packages the set-up installed: beside the project, or TWIN_VIEWER_ASSETS."""
    if cfg.api.viewer_assets:
        return cfg.api.viewer_assets
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "node_modules"
        if (candidate / "maplibre-gl").is_dir():
            return candidate
    raise SetupError(
        "the viewer's npm packages are not installed: run 'npm ci' in the project folder "
        "(make demo does it) or set TWIN_VIEWER_ASSETS to a node_modules folder"
    )


@router.get("/viewer")
async def viewer() -> HTMLResponse:
    return HTMLResponse(viewer_page())


@router.get("/viewer/vendor/{name}")
async def vendor(
    name: Annotated[str, PathParam()], cfg: Annotated[Settings, Depends(settings)]
) -> FileResponse:
    if name not in _VENDOR:
        raise NotFound(f"no viewer asset {name!r}")
    package, file, media = _VENDOR[name]
    return FileResponse(node_modules(cfg) / package / file, media_type=media)


@router.get("/api.html")
async def api_docs() -> HTMLResponse:
    """Swagger UI for /api, served from our own npm install (no CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(
        openapi_url="/api",
        title="citytwin API",
        swagger_js_url="/viewer/vendor/swagger-ui-bundle.js",
        swagger_css_url="/viewer/vendor/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


@router.get("/viewer/static/{name}")
async def static(name: Annotated[str, PathParam()]) -> FileResponse:
    # Only plain file names inside the viewer folder: no path separators, no traversal.
    path = _static_dir() / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC or not path.is_file():
        raise NotFound(f"no viewer file {name!r}")
    return FileResponse(path, media_type=_STATIC[path.suffix])
