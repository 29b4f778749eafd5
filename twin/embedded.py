"""The embedded PostgreSQL + PostGIS cluster used when no TWIN_DATABASE_URL is set.

The cluster lives in ``DATA_DIR/pg``; its port and password are kept in ``DATA_DIR/pg.json``
(readable by the invoking user only). PostgreSQL refuses to run as root, so when run as root
the server runs as the unprivileged ``postgres`` system user (created by Debian's package), or
as a ``twin-pg`` system user created on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from twin.errors import SetupError

POSTGIS_PACKAGE = "postgresql-{major}-postgis-3"
SERVER_PACKAGE = "postgresql-{major}"
DB_NAME = "twin"
DB_USER = "twin"

# Settings appended to postgresql.conf on creation: loopback only, no unix socket (its default
# directory needs root to create), and room for bulk imports without constant checkpoints.
_CONF = """
# --- citytwin embedded cluster ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 100
shared_buffers = 256MB
work_mem = 16MB
maintenance_work_mem = 256MB
max_wal_size = 2GB
logging_collector = off
"""


@dataclass(frozen=True)
class PgBinaries:
    bindir: Path
    major: int

    def __getitem__(self, name: str) -> str:
        return str(self.bindir / name)


def find_binaries(
    lib_root: Path = Path("/usr/lib/postgresql"),
    share_root: Path = Path("/usr/share/postgresql"),
    search_path: bool = True,
) -> PgBinaries:
    """Find the newest PostgreSQL server binaries, and check that PostGIS is installed for it."""
    candidates = sorted(
        lib_root.glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    bins = [c.parent for c in candidates]
    if not bins and search_path and shutil.which("initdb"):
        bins = [Path(shutil.which("initdb") or "").resolve().parent]
    if not bins:
        raise SetupError(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found: install them with "
            "'apt-get install postgresql-15 postgresql-15-postgis-3', or set TWIN_DATABASE_URL "
            "to an existing PostGIS database"
        )
    for bindir in bins:
        if _has_postgis(bindir, share_root):
            return PgBinaries(bindir, _major_version(bindir))
    major = _major_version(bins[0])
    raise SetupError(
        f"PostGIS is not installed for PostgreSQL {major}: install it with "
        f"'apt-get install {POSTGIS_PACKAGE.format(major=major)}' (as root), or set "
        "TWIN_DATABASE_URL to an existing PostGIS database"
    )


def _major_version(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


def _has_postgis(bindir: Path, share_root: Path) -> bool:
    """PostGIS's control file in the server's share folder (pg_config --sharedir on Debian)."""
    sharedir = share_root / str(_major_version(bindir))
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if out:
            sharedir = Path(out)
    return (sharedir / "extension" / "postgis.control").exists()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As PostgreSQL binds: a port whose closed client connections linger in TIME_WAIT after
        # a stop is free, so a restarted cluster keeps its port and its clients reconnect.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """A private cluster under ``root/pg``."""

    def __init__(self, root: Path, preferred_port: int = 5433) -> None:
        self.root = Path(root).absolute()
        self.state_file = self.root / "pg.json"
        # The cluster normally lives beside its state; see init() for when it cannot.
        self.data = Path(self._state().get("data_dir") or self.root / "pg")
        self.preferred_port = preferred_port
        self._bins: PgBinaries | None = None

    @property
    def logfile(self) -> Path:
        return self.data / "server.log"

    # --- identity -------------------------------------------------------------------------
    @property
    def bins(self) -> PgBinaries:
        if self._bins is None:
            self._bins = find_binaries()
        return self._bins

    def _run_as(self) -> pwd.struct_passwd | None:
        """The user the server runs as: None for the current user, a system user for root."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "twin-pg"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "twin-pg"],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam("twin-pg")

    def _cmd(self, args: list[str], *, input_text: str | None = None, check: bool = True):
        user = self._run_as()
        kwargs: dict = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        result = subprocess.run(
            args,
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            cwd=str(self.root),
            **kwargs,
        )
        if check and result.returncode != 0:
            raise SetupError(
                f"{Path(args[0]).name} failed: {(result.stderr or result.stdout).strip()[-800:]}"
            )
        return result

    # --- state ----------------------------------------------------------------------------
    def _state(self) -> dict:
        if not self.state_file.exists():
            return {}
        return json.loads(self.state_file.read_text())

    def _save_state(self, state: dict) -> None:
        self.state_file.write_text(json.dumps(state, indent=2))
        self.state_file.chmod(0o600)

    @property
    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists() and self.state_file.exists()

    def url(self) -> str:
        state = self._state()
        if not state:
            raise SetupError(f"no embedded cluster in {self.data}: run 'twin db start' first")
        return (
            f"postgresql://{DB_USER}:{quote(state['password'], safe='')}@127.0.0.1:"
            f"{state['port']}/{DB_NAME}"
        )

    # --- lifecycle ------------------------------------------------------------------------
    def init(self) -> None:
        """Create the cluster (initdb) with a random password for the superuser 'twin'."""
        self.root.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is not None and not self._reachable(user):
            self.data = self._system_location()
        self.data.mkdir(mode=0o700, exist_ok=True)
        if any(self.data.iterdir()):
            raise SetupError(
                f"{self.data} is not empty but holds no cluster of ours: remove it, or set "
                "TWIN_DATA_DIR to another folder"
            )
        if user is not None:
            os.chown(self.data, user.pw_uid, user.pw_gid)
        password = secrets.token_urlsafe(24)
        # The password goes through a private file the server's user can read (initdb has no
        # other non-interactive way; a pipe on stdin is not readable after the user switch).
        with tempfile.TemporaryDirectory(prefix="twin-initdb-") as tmp:
            pwfile = Path(tmp) / "pw"
            pwfile.write_text(password + "\n")
            if user is not None:
                os.chown(tmp, user.pw_uid, user.pw_gid)
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            self._initdb(str(pwfile))
        conf = self.data / "postgresql.conf"
        self._cmd(["sh", "-c", f"cat >> '{conf}'"], input_text=_CONF)
        self._save_state(
            {"port": self.preferred_port, "password": password, "data_dir": str(self.data)}
        )

    def _initdb(self, pwfile: str) -> None:
        self._cmd(
            [
                self.bins["initdb"],
                "-D",
                str(self.data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )

    def _reachable(self, user: pwd.struct_passwd) -> bool:
        """Whether the server's user can walk down to ``root/pg`` (every parent searchable)."""
        for parent in reversed((self.root / "pg").parents):
            st = parent.stat()
            if not (st.st_mode & 0o001 or st.st_uid == user.pw_uid):
                return False
        return True

    def _system_location(self) -> Path:
        """Where the cluster goes when root's checkout is private (under /root, say).

        PostgreSQL runs as an unprivileged user that cannot enter such a folder, so the data
        moves to /var/lib/citytwin/<hash of the project folder>/pg; the state file in the
        project folder records where it went.
        """
        base = Path("/var/lib/citytwin")
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        home = base / digest
        home.mkdir(parents=True, exist_ok=True)
        for folder in (base, home):
            folder.chmod(0o755)
        return home / "pg"

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        result = self._cmd([self.bins["pg_ctl"], "status", "-D", str(self.data)], check=False)
        return result.returncode == 0

    def start(self) -> str:
        """Start (initialising on first use) and return the database URL."""
        if not self.initialised:
            self.init()
        if not self.running():
            state = self._state()
            port = int(state.get("port", self.preferred_port))
            if not _port_free(port):
                port = self.preferred_port if _port_free(self.preferred_port) else _any_free_port()
            state["port"] = port
            self._save_state(state)
            self._cmd(
                [
                    self.bins["pg_ctl"],
                    "start",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.logfile),
                    "-w",
                    "-t",
                    "120",
                    "-o",
                    f"-p {port}",
                ]
            )
        self._ensure_database()
        return self.url()

    def _ensure_database(self) -> None:
        import psycopg

        admin = self.url().rsplit("/", 1)[0] + "/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self) -> bool:
        if not self.running():
            return False
        self._cmd([self.bins["pg_ctl"], "stop", "-D", str(self.data), "-m", "fast", "-w"])
        return True

    def status(self) -> dict:
        state = self._state()
        return {
            "data_dir": str(self.data),
            "initialised": self.initialised,
            "running": self.running() if self.initialised else False,
            "port": state.get("port"),
        }
