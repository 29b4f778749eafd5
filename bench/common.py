"""What the benchmarks that run a server share: paths, the console, a scratch embedded
PostGIS, a server subprocess waited for on /healthz, and the sample city at a scale."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

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
