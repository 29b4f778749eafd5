"""``twin db``: the embedded PostGIS cluster, or the database of TWIN_DATABASE_URL."""

from __future__ import annotations

import json

import typer

from cases.classes import sync_case_classes
from cli.common import console, database_url, out, settings
from components.classes import sync_classes
from twin import db, migrate
from twin.settings import Settings

db_app = typer.Typer(help="The database: embedded PostGIS cluster or TWIN_DATABASE_URL")


@db_app.command("start")
def db_start(ctx: typer.Context) -> None:
    """Start the embedded cluster (creating it on first use) and apply migrations."""
    config = settings(ctx)
    if config.db.database_url:
        console.print("TWIN_DATABASE_URL is set: using that database, nothing to start")
        url = config.db.database_url
    else:
        cluster = db.embedded(config.db)
        with console.status("starting PostgreSQL + PostGIS..."):
            url = cluster.start()
        console.print(f"embedded PostGIS running in {cluster.data}")
    migrate_database(url, config)


@db_app.command("stop")
def db_stop(ctx: typer.Context) -> None:
    """Stop the embedded cluster."""
    config = settings(ctx)
    if config.db.database_url:
        console.print("TWIN_DATABASE_URL is set: the external database is not ours to stop")
        return
    stopped = db.embedded(config.db).stop()
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Say whether the database is up, its PostGIS version and migration level."""
    config = settings(ctx)
    info: dict = {}
    if config.db.database_url:
        info = {"mode": "external"}
        url = config.db.database_url
    else:
        info = {"mode": "embedded", **db.embedded(config.db).status()}
        if not info["running"]:
            out.print_json(json.dumps(info))
            raise typer.Exit(1)
        url = db.embedded(config.db).url()
    with db.connect(url) as conn:
        row = conn.execute("SELECT postgis_full_version() IS NOT NULL, version()").fetchone()
        info["server"] = row[1].split(",")[0] if row else None
        info["migration_level"] = migrate.level(conn)
    out.print_json(json.dumps(info))


@db_app.command("url")
def db_url(ctx: typer.Context) -> None:
    """Print the database URL (starting the embedded cluster if needed)."""
    print(database_url(ctx))


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Apply pending SQL migrations (a no-op when up to date)."""
    migrate_database(database_url(ctx), settings(ctx))


def migrate_database(url: str, config: Settings) -> None:
    """Apply the migrations, then load the classes that are data, saying what was done."""
    with db.connect(url) as conn:
        ran = migrate.migrate(conn)
        lvl = migrate.level(conn)
        # Component classes are data (the standard's and any local extension file).
        components = config.components
        sync_classes(conn, components.component_classes_file, width=components.component_code_width)
        sync_case_classes(conn)  # 事件 classes and 部件 deadlines of the cases
    for m in ran:
        console.print(f"applied migration {m.version:04d} {m.name}")
    console.print(f"schema at migration level {lvl}" + ("" if ran else " (nothing to do)"))
