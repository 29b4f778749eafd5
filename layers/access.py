"""Who may read and edit a layer, and which components an editor may touch.

Reading: a public layer is open to every caller. Any other layer needs the role it names
(viewer, editor or admin) and, for a caller whose key or token lists layers, that the layer is
listed; admins read everything. Editing needs at least the layer's edit role (editor by
default), the layer in the caller's list when there is one, and, for a layer owned by a
department, the same department. An editor of department D edits only the components whose
主管部门 (dept) or 养护单位 (maintainer), by code or by name, is D.
"""

from __future__ import annotations

from typing import Any

from layers.registry import Layer
from twin.auth import Principal
from twin.errors import Forbidden, NotFound, Unauthorized

NEEDS_CREDENTIALS = (
    "this needs credentials: send an API key (Authorization: Bearer ct_..., or X-API-Key) or a "
    "bearer token with the {role} role or higher"
)


def can_read(who: Principal, layer: Layer) -> bool:
    return read_allowed(who, layer.read_role, layer.name)


def read_allowed(who: Principal, read_role: str, name: str) -> bool:
    if read_role == "public" or who.role == "admin":
        return True
    if not who.at_least(read_role):
        return False
    return who.layers is None or name in who.layers


def raster_readable(who: Principal, read_role: str, collection: str) -> bool:
    """Raster collections are granted to keys as ``raster:<collection id>``."""
    return read_allowed(who, read_role, f"raster:{collection}")


def require_role(who: Principal, role: str) -> None:
    if who.at_least(role):
        return
    if who.anonymous:
        raise Unauthorized(NEEDS_CREDENTIALS.format(role=role))
    raise Forbidden(f"this needs the {role} role or higher; your credentials carry {who.role}")


def check_edit(who: Principal, layer: Layer) -> None:
    """Refuse an edit of ``layer``: 404 when the caller may not even see it (its existence
    does not leak), 401 for anonymous callers, 403 for a missing grant."""
    if not can_read(who, layer):
        raise NotFound(f"no collection named {layer.name!r}; see /collections")
    require_role(who, layer.edit_role)
    if who.role == "admin":
        return
    if who.layers is not None and layer.name not in who.layers:
        raise Forbidden(f"your credentials do not grant edits of {layer.name!r}")
    if layer.department and who.department != layer.department:
        raise Forbidden(
            f"{layer.name!r} is edited by department {layer.department!r} only; your "
            f"credentials are for {who.department or 'no department'}"
        )


COMPONENT_DEPARTMENT_FIELDS = ("dept_code", "dept_name", "maint_code", "maint_name")


def check_component_rows(who: Principal, *states: dict[str, Any] | None) -> None:
    """An editor with a department edits a component only if it is, before and after the edit,
    under that department as 主管部门 or 养护单位 (so no one hands a component away)."""
    if who.role == "admin" or who.department is None:
        return
    for state in states:
        if state is None:
            continue
        values = {str(state.get(f)) for f in COMPONENT_DEPARTMENT_FIELDS if state.get(f)}
        if who.department not in values:
            raise Forbidden(
                f"component {state.get('code') or state.get('id')} is not under department "
                f"{who.department!r} (主管部门 or 养护单位): editors of "
                f"{who.department!r} edit only their own components"
            )
