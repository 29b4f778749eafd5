"""The embedded PostGIS manager and migrations."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest

from twin import migrate
from twin.embedded import EmbeddedPostgres, find_binaries
from twin.errors import SetupError


def test_migrations_are_recorded_and_a_second_run_is_a_no_op(pg_url):
    with psycopg.connect(pg_url) as conn:
        assert migrate.migrate(conn) == []
        level = migrate.level(conn)
        assert level == migrate.available()[-1].version
        rows = conn.execute("SELECT version, name FROM twin.schema_migrations").fetchall()
        assert rows[0] == (1, "core")
        assert conn.execute("SELECT to_regclass('twin.layers')").fetchone()[0] is not None


def test_edited_migration_is_refused(pg_url):
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE twin.schema_migrations SET checksum = 'x' WHERE version = 1")
        try:
            with pytest.raises(SetupError, match="changed after it was applied"):
                migrate.migrate(conn)
        finally:
            conn.rollback()


def test_cluster_picks_a_free_port_when_the_preferred_one_is_taken(server_url):
    """A second embedded cluster whose preferred port is busy starts on another port."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        root = Path(tempfile.mkdtemp(prefix="citytwin-port-"))
        root.chmod(0o755)
        cluster = EmbeddedPostgres(root, preferred_port=taken)
        try:
            url = cluster.start()
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert port != taken
            with psycopg.connect(url) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
                version = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
            assert version.startswith("3.")
            status = cluster.status()
            assert status["running"] and status["port"] == port
            # credentials are private to the invoking user
            mode = stat.S_IMODE(os.stat(root / "pg.json").st_mode)
            assert mode == 0o600
            # starting again is idempotent
            assert cluster.start() == url
        finally:
            cluster.stop()
        assert not cluster.running()


def test_missing_postgis_names_the_apt_package(tmp_path):
    fake = tmp_path / "lib" / "15" / "bin"
    fake.mkdir(parents=True)
    for tool in ("initdb", "postgres"):
        script = fake / tool
        script.write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 15.9'\n")
        script.chmod(0o755)
    with pytest.raises(SetupError, match="apt-get install postgresql-15-postgis-3"):
        find_binaries(lib_root=tmp_path / "lib", share_root=tmp_path / "share")


def test_missing_server_names_the_packages(tmp_path):
    with pytest.raises(SetupError, match="postgresql-15-postgis-3"):
        find_binaries(lib_root=tmp_path / "nothing", share_root=tmp_path, search_path=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs the unprivileged server user")
def test_private_checkout_of_root_moves_the_cluster_where_postgres_can_reach(tmp_path):
    """tmp_path's parents are private to root, like /root: the data goes to /var/lib/citytwin."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    cluster = EmbeddedPostgres(private / "twin", preferred_port=55499)
    try:
        url = cluster.start()
        assert str(cluster.data).startswith("/var/lib/citytwin/")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        again = EmbeddedPostgres(private / "twin")  # a later command finds it from the state
        assert again.data == cluster.data and again.running()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.data.parent, ignore_errors=True)
