"""``twin keys``: API keys, created and revoked by the operator (and audited as ``cli:<user>``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from cli.common import connection, console, out, rows_table
from twin import audit, auth

keys_app = typer.Typer(help="API keys: create, list, revoke")


@keys_app.command("create")
def create(
    ctx: typer.Context,
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
    with connection(ctx, migrated=True) as conn:
        key = auth.create_key(
            conn, role, name=name, department=department, layers=granted, expires_at=expires
        )
        detail = {"role": role, "department": department, "layers": granted}
        audit.record_sync(conn, audit.cli_principal(), "key.create", key.id, detail=detail)
        conn.commit()
    console.print(f"created key {key.id} ({role}); its token, shown only now:")
    out.print(key.token, highlight=False)


@keys_app.command("list")
def list_(ctx: typer.Context) -> None:
    """The keys, with role, department, layers and use (never the secrets)."""
    with connection(ctx, migrated=True) as conn:
        keys = auth.list_keys(conn)
    now = datetime.now(UTC)
    rows = []
    for r in keys:
        state = "revoked" if r["revoked_at"] else "active"
        if not r["revoked_at"] and r["expires_at"] and r["expires_at"] <= now:
            state = "expired"
        rows.append(
            (
                r["id"],
                r["name"],
                r["role"],
                r["department"],
                ", ".join(r["layers"]) if r["layers"] is not None else "all",
                f"{r['created_at']:%Y-%m-%d %H:%M}",
                f"{r['last_used_at']:%Y-%m-%d %H:%M}" if r["last_used_at"] else "never",
                state,
            )
        )
    columns = ("id", "name", "role", "department", "layers", "created", "last used", "state")
    rows_table("API keys", columns, rows)


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (see twin keys list)")],
) -> None:
    """Revoke a key: servers refuse it within TWIN_AUTH_KEY_CACHE_SECONDS (at once when revoked
    through DELETE /admin/keys/{id})."""
    with connection(ctx, migrated=True) as conn:
        auth.revoke_key(conn, key_id)
        audit.record_sync(conn, audit.cli_principal(), "key.revoke", key_id)
        conn.commit()
    console.print(f"revoked key {key_id}")
