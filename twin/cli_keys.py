"""``twin keys``: API keys, created and revoked by the operator (and audited as ``cli:<user>``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin import audit, auth, db, migrate
from twin.errors import TwinError
from twin.settings import Settings

keys_app = typer.Typer(help="API keys: create, list, revoke")
console = Console(stderr=True)
out = Console()


def _fail(exc: TwinError) -> None:
    console.print(f"[bold red]error:[/] {exc.message}")
    raise typer.Exit(2)


def _connect():  # noqa: ANN202 - a psycopg connection
    conn = db.connect(db.database_url(Settings().db, start=True))
    migrate.migrate(conn)
    conn.commit()
    return conn


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="viewer, editor or admin")],
    department: Annotated[
        str | None, typer.Option(help="Editors edit only components of this 主管/养护 unit")
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(help="Comma-separated layers the key may use (raster:<id> for imagery)"),
    ] = None,
    name: Annotated[str, typer.Option(help="Who or what the key is for")] = "",
    days: Annotated[int | None, typer.Option(help="Expires after this many days")] = None,
) -> None:
    """Create a key and print its token once (only a hash of it is kept)."""
    granted = [x.strip() for x in layers.split(",") if x.strip()] if layers else None
    expires = datetime.now(UTC) + timedelta(days=days) if days else None
    try:
        with _connect() as conn:
            key = auth.create_key(
                conn, role, name=name, department=department, layers=granted, expires_at=expires
            )
            detail = {"role": role, "department": department, "layers": granted}
            audit.record_sync(conn, audit.cli_principal(), "key.create", key.id, detail=detail)
            conn.commit()
    except TwinError as exc:
        _fail(exc)
    console.print(f"created key {key.id} ({role}); its token, shown only now:")
    out.print(key.token, highlight=False)


@keys_app.command("list")
def list_() -> None:
    """The keys, with role, department, layers and use (never the secrets)."""
    try:
        with _connect() as conn:
            rows = auth.list_keys(conn)
    except TwinError as exc:
        _fail(exc)
    table = Table(title="API keys", title_justify="left")
    for col in ("id", "name", "role", "department", "layers", "created", "last used", "state"):
        table.add_column(col)
    now = datetime.now(UTC)
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        if not r["revoked_at"] and r["expires_at"] and r["expires_at"] <= now:
            state = "expired"
        table.add_row(
            r["id"],
            r["name"],
            r["role"],
            r["department"] or "",
            ", ".join(r["layers"]) if r["layers"] is not None else "all",
            f"{r['created_at']:%Y-%m-%d %H:%M}",
            f"{r['last_used_at']:%Y-%m-%d %H:%M}" if r["last_used_at"] else "never",
            state,
        )
    out.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see twin keys list)")],
) -> None:
    """Revoke a key: servers refuse it within TWIN_AUTH_KEY_CACHE_SECONDS (at once when revoked
    through DELETE /admin/keys/{id})."""
    try:
        with _connect() as conn:
            auth.revoke_key(conn, key_id)
            audit.record_sync(conn, audit.cli_principal(), "key.revoke", key_id)
            conn.commit()
    except TwinError as exc:
        _fail(exc)
    console.print(f"revoked key {key_id}")
