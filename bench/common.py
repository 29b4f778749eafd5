"""What the benchmarks share: paths, the console, the database (a scratch embedded PostGIS or the
checkout's own), a server subprocess waited for on /healthz, the sample city at a scale, tile
samples, medians and p95s, and the way results are written (JSON, a matplotlib chart, versions)."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from rich.console import Console

T = TypeVar("T")
Tile = tuple[int, int, int]

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
TWIN = str(Path(sys.executable).with_name("twin"))

# Wide enough for the summary tables when the output is a pipe or a log (rich says 80 there).
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 132)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ScratchDatabase:
    """An embedded PostGIS of one benchmark's own, in a folder under bench/out."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if k != "TWIN_DATABASE_URL"}
        self.env["TWIN_DATA_DIR"] = str(folder)
        self.env["TWIN_PG_PORT"] = str(free_port())
        self.url = ""
        self.pid: int | None = None
        self.started = False

    def twin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # cwd bench/out: no .env of the checkout is read, and import reports land there
        done = subprocess.run(
            [TWIN, *args], cwd=OUT, env=self.env, capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            console.print(done.stdout[-3000:], done.stderr[-3000:], markup=False)
            raise RuntimeError(f"`twin {' '.join(args[:3])}` failed (exit {done.returncode})")
        return done

    def start(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.started = True
        self.twin("db", "start")
        self.url = self.twin("db", "url").stdout.strip().splitlines()[-1]
        state = json.loads((self.folder / "pg.json").read_text())
        pidfile = Path(state.get("data_dir") or self.folder / "pg") / "postmaster.pid"
        if pidfile.exists():
            self.pid = int(pidfile.read_text().split()[0])
        return self.url

    def stop(self) -> None:
        """pg_ctl stop on this scratch cluster only (`twin db stop` with its data dir)."""
        if self.started:
            self.twin("db", "stop", check=False)


def start_scratch(db: ScratchDatabase) -> str:
    """Start a benchmark's scratch PostGIS under a spinner, say where it is, return its URL."""
    with console.status("starting the scratch PostGIS..."):
        url = db.start()
    console.print(f"scratch PostGIS in {db.folder.relative_to(REPO)} (pid {db.pid})")
    return url


class ServerProcess:
    """A server subprocess on a loopback port, up once GET /healthz answers 200."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, wait_s: float = 60
    ) -> None:
        self.name = name
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            argv, cwd=OUT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode} on start")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{name} did not answer /healthz within {wait_s:g} s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def twin_serve(url: str, env: dict[str, str]) -> ServerProcess:
    """`twin serve` on a free loopback port, against the database at ``url``."""
    port = free_port()
    return ServerProcess(
        "twin serve",
        [TWIN, "serve", "--host", "127.0.0.1", "--port", str(port)],
        {**env, "TWIN_DATABASE_URL": url},
        port,
    )


def ensure_city(scale: float, seed: int, needs: tuple[str, ...] = ()) -> Path:
    """The sample city at this scale in bench/out/city-scale<K>, generated when absent."""
    from sample_data import generate

    folder = OUT / f"city-scale{scale:g}"
    if all((folder / name).exists() for name in ("manifest.json", *needs)):
        console.print(f"sample city: {folder.relative_to(REPO)} (cached)")
        return folder
    started = time.perf_counter()
    with console.status(f"generating the sample city at scale {scale:g}...") as status:
        generate(folder, seed=seed, scale=scale, progress=lambda m: status.update(m))
    console.print(
        f"sample city: generated {folder.relative_to(REPO)} (scale {scale:g}, seed {seed}) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return folder


def load_demo_city(db: ScratchDatabase, folder: Path) -> None:
    """The sample city as `twin demo` loads it into the scratch database; what is loaded stays."""
    started = time.perf_counter()
    with console.status("loading the sample city (twin demo --no-serve)..."):
        db.twin("demo", "--data", str(folder), "--no-serve")
    console.print(
        f"  sample city loaded (twin demo --no-serve): {time.perf_counter() - started:.1f} s"
    )


def database_url(twin: str = TWIN) -> str:
    """TWIN_DATABASE_URL, else the checkout's embedded cluster (`twin db url` starts it)."""
    if os.environ.get("TWIN_DATABASE_URL"):
        return os.environ["TWIN_DATABASE_URL"]
    done = subprocess.run(
        [twin, "db", "url"], cwd=REPO, capture_output=True, text=True, check=False
    )
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        sys.exit(f"`twin db url` failed:\n{done.stderr or done.stdout}")
    return lines[-1]


# --- the runs ------------------------------------------------------------------------------------
def alternate(tools: Sequence[T], round_no: int) -> list[T]:
    """The tools in order on even rounds and reversed on odd ones, so neither always goes first."""
    return list(tools) if round_no % 2 == 0 else list(reversed(tools))


def parse_zooms(text: str) -> list[int]:
    """Zoom levels as a range `14-17` or a list `15,16`."""
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def tile_list(
    bbox: Sequence[float], zooms: list[int], per_zoom: int, seed: int
) -> dict[int, list[Tile]]:
    """Every WebMercatorQuad tile over the bbox per zoom, or a fixed-seed sample of `per_zoom`."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    rng = np.random.default_rng(seed)
    out: dict[int, list[Tile]] = {}
    west, south, east, north = bbox
    for z in zooms:
        every = sorted((t.z, t.x, t.y) for t in tms.tiles(west, south, east, north, zooms=[z]))
        if len(every) > per_zoom:
            picked = sorted(rng.choice(len(every), size=per_zoom, replace=False))
            every = [every[i] for i in picked]
        out[z] = every
    return out


def median_or_nan(values: Sequence[float]) -> float:
    """The median, NaN for no values (a run whose every request failed)."""
    return statistics.median(values) if values else float("nan")


def p95(values: Iterable[float]) -> float:
    """The 95th percentile (numpy's linear interpolation)."""
    return float(np.percentile(list(values), 95))


# --- what a run leaves ---------------------------------------------------------------------------
def package_versions(dists: Iterable[str]) -> dict[str, str]:
    """Python's version and each installed distribution's; one not installed is not listed."""
    out = {"python": sys.version.split()[0]}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cpu"


def write_json(name: str, doc: Any) -> Path:
    """bench/out/<name>, indented, with anything JSON does not know written as its str()."""
    path = OUT / name
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
    return path


def pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, or None (and a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("matplotlib is not installed: no chart (pip install matplotlib for one)")
        return None
    return plt


def save_figure(plt: Any, fig: Any, name: str, dpi: float | None = None) -> Path:
    """Lay the figure out, write it to bench/out/<name> and free it."""
    fig.tight_layout()
    path = OUT / name
    fig.savefig(path, **({"dpi": dpi} if dpi else {}))
    plt.close(fig)
    return path


def print_written(results: Path, chart: Path | None) -> None:
    console.print(f"results: {results.relative_to(REPO)}")
    if chart:
        console.print(f"chart: {chart.relative_to(REPO)}")
