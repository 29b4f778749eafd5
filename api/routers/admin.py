"""Administration over HTTP (admins only): API keys, layer and imagery access, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Catalog, catalog, connection, needs, principal
from layers import keys
from layers.registry import Layer, check_access_roles, set_access_async
from rasters.catalog import set_read_role
from twin import audit
from twin.auth import KEY_ROLES, Principal, check_role
from twin.errors import InvalidParameter, NotFound

router = APIRouter(prefix="/admin", tags=["Administration"], dependencies=[Depends(needs("admin"))])
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]


# The router's dependency has refused anyone but admins; routes take the caller for the audit.
Admin = Annotated[Principal, Depends(principal)]


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(description=f"One of {', '.join(KEY_ROLES)}")
    name: str = Field("", max_length=200, description="Who or what the key is for")
    department: str | None = Field(None, max_length=200, description="Editors: 主管/养护 unit")
    layers: list[str] | None = Field(
        None, max_length=1000, description="Only these layers (raster:<id> for imagery)"
    )
    expires_at: datetime | None = None


class AccessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    read_role: str | None = Field(None, description="public, viewer, editor or admin")
    edit_role: str | None = Field(None, description="editor or admin")
    department: str | None = Field(None, description="Department that alone edits the layer")
    clear_department: bool = False


class RasterAccessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    read_role: str = Field(description="public, viewer, editor or admin")


def _key_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


@router.get("/keys", summary="API keys (never their secrets)")
async def list_keys(conn: Conn, who: Admin) -> dict:
    return {"keys": [_key_doc(r) for r in await keys.list_keys(conn)]}


@router.post("/keys", status_code=201, summary="Create an API key; its token is shown only now")
async def create_key(body: KeyRequest, conn: Conn, who: Admin) -> dict:
    check_role(body.role)
    async with conn.transaction():
        key_id, token = await keys.create_key(
            conn, body.role, body.name, body.department, body.layers, body.expires_at
        )
        detail = {"role": body.role, "department": body.department, "layers": body.layers}
        await audit.record(conn, who, "key.create", key_id, detail=detail)
    return {"id": key_id, "token": token, "role": body.role}


@router.delete("/keys/{keyId}", status_code=204, summary="Revoke an API key at once")
async def revoke_key(
    request: Request, key_id: Annotated[str, Path(alias="keyId")], conn: Conn, who: Admin
) -> None:
    async with conn.transaction():
        await keys.revoke_key(conn, key_id)
        await audit.record(conn, who, "key.revoke", key_id)
    request.app.state.authenticator.forget_keys()


async def _layer(request: Request, name: str) -> Layer:
    cat: Catalog = await catalog(request)
    if name not in cat.layers:
        raise NotFound(f"no collection named {name!r}; see /collections")
    return cat.layers[name]


@router.put("/layers/{collectionId}/access", summary="Who may read and edit a layer")
async def layer_access(
    request: Request,
    name: Annotated[str, Path(alias="collectionId")],
    body: AccessRequest,
    conn: Conn,
    who: Admin,
) -> dict:
    await _layer(request, name)
    check_access_roles(body.read_role, body.edit_role)
    async with conn.transaction():
        doc = await set_access_async(
            conn, name, body.read_role, body.edit_role, body.department, body.clear_department
        )
        await audit.record(conn, who, "layer.access", name, detail=doc)
    cat: Catalog = request.app.state.catalog
    await cat.refresh(conn, force=True)
    return {"collection": name, **doc}


@router.put("/raster/{collectionId}/access", summary="Who may read a raster collection")
async def raster_access(
    cid: Annotated[str, Path(alias="collectionId")],
    body: RasterAccessRequest,
    conn: Conn,
    who: Admin,
) -> dict:
    check_role(body.read_role, ("public", "viewer", "editor", "admin"))
    async with conn.transaction():
        await set_read_role(conn, cid, body.read_role)
        await audit.record(conn, who, "raster.access", cid, detail={"read_role": body.read_role})
    return {"collection": cid, "read_role": body.read_role}


@router.get("/audit", summary="The audit log, newest first")
async def audit_log(
    conn: Conn,
    who: Admin,
    actor: Annotated[str | None, Query(description="e.g. key:1a2b3c4d5e6f")] = None,
    target: Annotated[str | None, Query(description="A collection, key id or network")] = None,
    action: Annotated[str | None, Query(description="create, patch, delete, key.create...")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    if since is not None and since.tzinfo is None:
        raise InvalidParameter("since needs a time zone, e.g. 2026-11-22T08:00:00Z")
    rows = await audit.query(
        conn, actor=actor, target=target, action=action, since=since, limit=limit
    )
    return {"entries": [_key_doc(r) for r in rows]}
