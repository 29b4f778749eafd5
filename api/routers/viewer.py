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

_VENDOR = {"maplibre-gl.js": "application/javascript", "maplibre-gl.css": "text/css"}
_STATIC = {".js": "application/javascript", ".css": "text/css", ".html": "text/html"}


def _static_dir() -> Path:
    return Path(str(resources.files("api") / "static" / "viewer"))


@lru_cache(maxsize=1)
def viewer_page() -> str:
    return (_static_dir() / "index.html").read_text(encoding="utf-8")


def maplibre_dir(cfg: Settings) -> Path:
    """Where maplibre-gl's dist files are: a setting, or node_modules beside the project."""
    if cfg.api.viewer_assets:
        return cfg.api.viewer_assets
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "node_modules" / "maplibre-gl" / "dist"
        if candidate.is_dir():
            return candidate
    raise SetupError(
        "MapLibre is not installed: run 'npm ci' in the project folder (make demo does it) or "
        "set TWIN_VIEWER_ASSETS to a folder holding maplibre-gl.js and maplibre-gl.css"
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
    return FileResponse(maplibre_dir(cfg) / name, media_type=_VENDOR[name])


@router.get("/viewer/static/{name}")
async def static(name: Annotated[str, PathParam()]) -> FileResponse:
    # Only plain file names inside the viewer folder: no path separators, no traversal.
    path = _static_dir() / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC or not path.is_file():
        raise NotFound(f"no viewer file {name!r}")
    return FileResponse(path, media_type=_STATIC[path.suffix])
