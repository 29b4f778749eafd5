"""Cases (城市管理案件) over HTTP: report, list, read, move through the lifecycle, count.

Reading follows the ``cases`` collection's read role (viewer unless changed with `twin layers
access cases`); writing needs an editor, and 处置 the department the case went to.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Catalog, catalog, connection, needs, principal
from cases import TARGET, lifecycle, reference
from cases import stats as case_stats
from cases.listing import case_json, list_cases, make_filter, step_json
from cases.store import NewCase, create_case, read_case, read_steps, transition
from layers.access import can_read, check_edit, require_role
from query.plan import run_async
from twin.auth import Principal
from twin.errors import Forbidden, NotFound

router = APIRouter(prefix="/cases", tags=["Cases (城市管理案件)"])
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]
CaseCode = Annotated[str, Path(description="The case code, e.g. 3415022024061200001")]

ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
TRANSITION_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Out of order (nothing changed), or no department to dispatch to",
        "content": ERROR,
    },
    412: {"description": "If-Match is not the case's current version", "content": ERROR},
    428: {"description": "If-Match missing", "content": ERROR},
}
MAX_LIMIT = 1000


async def reader(request: Request) -> Principal:
    """Who may read cases: the ``cases`` collection's read role and layer grants decide
    (401 without credentials, 403 without the grant)."""
    who = principal(request)
    cat: Catalog = await catalog(request)
    layer = cat.layers.get(TARGET)
    if layer is None:
        require_role(who, "viewer")
    elif not can_read(who, layer):
        require_role(who, layer.read_role)  # 401/403 for the role; else the layer grants
        raise Forbidden("your credentials do not grant reading cases (the cases collection)")
    return who


async def writer(request: Request) -> tuple[Principal, Catalog]:
    who = principal(request)  # an editor at least: the route's dependency checked it
    cat: Catalog = await catalog(request)
    layer = cat.layers.get(TARGET)
    if layer is not None:
        check_edit(who, layer)
    return who, cat


def _answer(case: dict[str, Any], status: int = 200, **extra: Any) -> JSONResponse:
    headers = {"ETag": f'"{case["version"]}"', "Location": f"/cases/{case['code']}"}
    body = case_json(case) | {"next": lifecycle.allowed_from(case["state"])} | extra
    return JSONResponse(body, status_code=status, headers=headers)


async def _redraw(cat: Catalog, case: dict[str, Any]) -> None:
    """Drop the cached tiles of the case's point here and now (other processes hear of it
    from the notice the change sent on commit)."""
    box = (case["lon"], case["lat"], case["lon"], case["lat"])
    await cat.invalidate_edit({}, {TARGET: box})


class NewCaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200, description="What is wrong, e.g. 井盖缺失")
    kind: Literal["部件", "事件"] | None = Field(
        None, description="部件 (a component's problem) or 事件; default 部件 with a component"
    )
    class_code: str | None = Field(
        None, pattern=r"^[0-9]{4,5}$", description="Class code (see /cases/classes)"
    )
    description: str = Field("", max_length=4000)
    point: list[float] | None = Field(
        None, min_length=2, max_length=2, description="[x, y]: lon, lat unless crs says"
    )
    crs: str | None = Field(None, max_length=100, description="CRS of point, e.g. EPSG:4548")
    component: str | None = Field(
        None, pattern=r"^[0-9]{16,17}$", description="Code of the component concerned"
    )
    source: str = Field(
        "api", pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="api, alarm, inspector, ..."
    )
    source_ref: str | None = Field(None, max_length=200, description="e.g. the alarm id")


class TransitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=8, description="The next state, e.g. 立案")
    note: str = Field("", max_length=2000)
    department: str | None = Field(
        None, min_length=1, max_length=64, description="At 派遣: a department code to send to"
    )


@router.get("/classes", summary="The classes a case may have, with their deadlines")
async def classes(
    conn: Conn,
    who: Annotated[Principal, Depends(reader)],
    kind: Annotated[Literal["部件", "事件"] | None, Query()] = None,
) -> dict:
    rows = await reference.classes(conn, kind)
    return {"classes": rows}


@router.get("/rules", summary="The dispatch rules, in the order they are tried")
async def rules(conn: Conn, who: Annotated[Principal, Depends(reader)]) -> dict:
    return {"rules": await reference.rules(conn)}


@router.get(
    "/stats",
    summary="Cases per unit grid, community, street, district or department",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
async def stats(
    conn: Conn,
    who: Annotated[Principal, Depends(reader)],
    by: Annotated[str, Query(description="grid, community, street, district or department")],
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    grid: Annotated[str | None, Query(description="Only cases in this grid code prefix")] = None,
    since: Annotated[str | None, Query(description="Created at or after (YYYY-MM-DD)")] = None,
    until: Annotated[str | None, Query(description="Created before (YYYY-MM-DD)")] = None,
) -> Response:
    data = await run_async(conn, case_stats.case_stats(by, grid=grid, since=since, until=until))
    if format == "csv":
        name = f"cases-by-{data['by']}.csv"
        return Response(
            case_stats.to_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return JSONResponse(data)


@router.post(
    "",
    status_code=201,
    summary="Report (上报) a case at a point or at a component",
    dependencies=[Depends(needs("editor"))],
)
async def report(
    request: Request, conn: Conn, body: Annotated[NewCaseBody, Body()]
) -> JSONResponse:
    who, cat = await writer(request)
    new = NewCase(**body.model_dump(exclude={"point"}), point=_pair(body.point))
    code = await create_case(conn, who, new)
    case = await read_case(conn, code)
    await _redraw(cat, case)
    return _answer(case, 201, steps=[step_json(s) for s in await read_steps(conn, case["id"])])


def _pair(point: list[float] | None) -> tuple[float, float] | None:
    return (point[0], point[1]) if point is not None else None


@router.get("", summary="Cases, newest first, filtered and paged")
async def cases(
    request: Request,
    conn: Conn,
    who: Annotated[Principal, Depends(reader)],
    state: Annotated[str | None, Query(description="States, comma-separated")] = None,
    department: Annotated[str | None, Query(description="Department code")] = None,
    grid: Annotated[str | None, Query(description="Grid code prefix (any level)")] = None,
    overdue: Annotated[bool | None, Query(description="Only overdue (or not) cases")] = None,
    bbox: Annotated[str | None, Query(description="west,south,east,north in lon/lat")] = None,
    kind: Annotated[Literal["部件", "事件"] | None, Query()] = None,
    class_: Annotated[str | None, Query(alias="class", description="Class prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict:
    f = make_filter(
        state=state,
        department=department,
        grid=grid,
        overdue=overdue,
        bbox=bbox,
        kind=kind,
        class_prefix=class_,
    )
    rows, matched = await list_cases(conn, f, limit, offset)
    links = []
    if offset + len(rows) < matched:
        query = {k: v for k, v in request.query_params.items() if k not in ("offset", "limit")}
        query |= {"limit": str(limit), "offset": str(offset + limit)}
        links.append({"rel": "next", "href": f"/cases?{urlencode(query)}"})
    return {
        "cases": [case_json(r) for r in rows],
        "numberMatched": matched,
        "numberReturned": len(rows),
        "links": links,
    }


def _code(code: str) -> str:
    if not (code.isascii() and code.isdigit() and len(code) <= 30):
        raise NotFound(f"no case {code!r}: case codes are digits, e.g. 3415022024061200001")
    return code


@router.get("/{code}", summary="One case with every step it went through, and its ETag")
async def one_case(
    code: CaseCode, conn: Conn, who: Annotated[Principal, Depends(reader)]
) -> JSONResponse:
    case = await read_case(conn, _code(code))
    return _answer(case, steps=[step_json(s) for s in await read_steps(conn, case["id"])])


@router.post(
    "/{code}/transitions",
    summary="Move a case one step: 立案, 派遣, 处置, 核查, 结案, 作废, or 返工 (rework)",
    dependencies=[Depends(needs("editor"))],
    responses=TRANSITION_ERRORS,
)
async def move(
    request: Request,
    code: CaseCode,
    conn: Conn,
    body: Annotated[TransitionBody, Body()],
    if_match: Annotated[
        str | None, Header(alias="If-Match", description="ETag read with GET /cases/{code}")
    ] = None,
) -> JSONResponse:
    who, cat = await writer(request)
    version = lifecycle.parse_version(if_match)
    await transition(
        conn, who, _code(code), body.to, version, note=body.note, department=body.department
    )
    case = await read_case(conn, code)
    await _redraw(cat, case)
    steps = [step_json(s) for s in await read_steps(conn, case["id"])]
    return _answer(case, steps=steps)
