"""Planners' reports over HTTP: one management area as HTML, PDF, CSV or XLSX."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import connection, query_scope, settings
from query.plan import run_async
from reports import MEDIA_TYPES, check_format, check_level, file_name
from reports.data import collect
from reports.render import render
from twin.settings import Settings

router = APIRouter(prefix="/reports", tags=["Reports"])
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]
Cfg = Annotated[Settings, Depends(settings)]


@router.get(
    "/{level}/{code}",
    summary="Report of a unit grid, community, street or district",
    response_class=Response,
    responses={200: {"content": {m.split(";")[0]: {} for m in MEDIA_TYPES.values()}}},
)
async def report(
    level: str,
    code: str,
    request: Request,
    conn: Conn,
    cfg: Cfg,
    format: Annotated[str, Query(description="html, pdf, csv or xlsx")] = "html",
) -> Response:
    grid_level = check_level(level)
    fmt = check_format(format)
    scope = await query_scope(request, conn)
    data = await run_async(conn, collect(grid_level, code, cfg.query, scope))
    body = await run_in_threadpool(render, data, fmt)
    name = file_name(grid_level, data.cell["code"], fmt)
    disposition = "inline" if fmt == "html" else "attachment"
    return Response(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'{disposition}; filename="{name}"'},
    )
