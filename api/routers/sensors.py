"""Sensors over HTTP: register them, ingest readings, read time series and alarms."""

from __future__ import annotations

from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Catalog, catalog, connection, needs, principal
from api.routers.pipelines import graphs
from sensors import alarm_list, registry, series
from sensors import ingest as readings_ingest
from sensors.cases import case_from_alarm
from sensors.partitions import Partitions
from twin import audit
from twin.auth import Principal
from twin.errors import InvalidParameter

router = APIRouter(tags=["Sensors and alarms"])
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]
Cat = Annotated[Catalog, Depends(catalog)]

_READINGS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "sensor,time,value\nP-001,2026-12-03T08:00:00+08:00,0.31\n",
            },
            "application/x-ndjson": {
                "schema": {"type": "string"},
                "example": '{"sensor": "P-001", "time": "2026-12-03T00:00:00Z", "value": 0.31}\n',
            },
        },
    }
}
_SENSORS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/geo+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


def _partitions(request: Request) -> Partitions:
    """The process's record of reading partitions, shared with its sweeps and MQTT feed."""
    live = getattr(request.app.state, "live", None)
    if live is not None:
        return live.partitions
    found = getattr(request.app.state, "reading_partitions", None)
    if found is None:
        found = request.app.state.reading_partitions = Partitions()
    return found


def _format(request: Request, given: str | None) -> Literal["csv", "jsonl"]:
    if given:
        return "csv" if given == "csv" else "jsonl"
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return "csv"
    if kind in ("application/x-ndjson", "application/jsonl", "application/json", "text/plain"):
        return "jsonl"
    raise InvalidParameter(
        f"readings in {kind or 'an unnamed media type'} are not understood: send text/csv "
        "(sensor,time,value) or application/x-ndjson (one JSON object a line), or say "
        "format=csv|jsonl"
    )


@router.post(
    "/sensors",
    summary="Register or update sensors (GeoJSON points, a JSON list or CSV)",
    openapi_extra=_SENSORS_BODY,
    status_code=201,
)
async def register_sensors(
    request: Request, conn: Conn, who: Annotated[Principal, Depends(needs("editor"))]
) -> dict:
    sensors = registry.parse_sensors(
        await request.body(), request.headers.get("content-type", "application/json")
    )
    async with conn.transaction():
        counts = await registry.register(conn, sensors)
        await audit.record(conn, who, "sensors.register", "sensors", detail=counts)
    return counts


@router.post(
    "/sensors/readings",
    summary="Ingest readings (CSV or JSON lines); idempotent on sensor and time",
    openapi_extra=_READINGS_BODY,
)
async def post_readings(
    request: Request,
    conn: Conn,
    _: Annotated[Principal, Depends(needs("editor"))],
    skip_invalid: Annotated[
        bool, Query(description="Store the good rows and report the bad ones")
    ] = False,
    format: Annotated[Literal["csv", "jsonl"] | None, Query()] = None,  # noqa: A002
) -> dict:
    batch = readings_ingest.parse(await request.body(), _format(request, format))
    cfg = request.app.state.settings
    report = await readings_ingest.ingest(
        conn,
        batch,
        cfg.sensors,
        _partitions(request),
        skip_invalid=skip_invalid,
        graphs=graphs(request),
    )
    return report.as_dict()


@router.get("/sensors/mqtt", summary="The MQTT consumer of this server process: its counters")
async def mqtt_status(request: Request, _: Annotated[Principal, Depends(needs("editor"))]) -> dict:
    consumer = getattr(getattr(request.app.state, "live", None), "mqtt", None)
    if consumer is None:
        return {"enabled": False, "hint": "set TWIN_MQTT_URL to read readings from a broker"}
    return {"enabled": True} | consumer.status()


@router.get("/sensors/{sensorId}/readings", summary="A sensor's time series")
async def sensor_readings(
    sensorId: str,  # noqa: N803 - the OGC style of path names
    request: Request,
    conn: Conn,
    cat: Cat,
    datetime: Annotated[
        str | None, Query(description="An interval a/b (RFC 3339; .. for open); default: a day")
    ] = None,
    resolution: Annotated[
        str | None, Query(description="Bucket width (30s, 5min, 1h, 1d): mean/min/max/count")
    ] = None,
) -> dict:
    cat.layer("sensors", principal(request))
    return await series.readings(conn, sensorId, datetime, resolution)


@router.get("/alarms", summary="Alarms, newest first")
async def list_alarms(
    request: Request,
    conn: Conn,
    cat: Cat,
    state: Annotated[Literal["open", "cleared"] | None, Query()] = None,
    sensor: Annotated[str | None, Query(description="A sensor id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    cat.layer("sensors", principal(request))
    return {"alarms": await alarm_list.list_alarms(conn, state, sensor, limit)}


@router.get("/alarms/{alarmId}", summary="One alarm with its history")
async def get_alarm(
    alarmId: int,  # noqa: N803 - the OGC style of path names
    request: Request,
    conn: Conn,
    cat: Cat,
) -> JSONResponse:
    cat.layer("sensors", principal(request))
    body = await alarm_list.alarm_with_history(conn, alarmId)
    return JSONResponse(body)


class AlarmCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    class_code: str | None = Field(
        None,
        pattern=r"^[0-9]{4,6}$",
        description="An event class (see /cases/classes); by default it follows from the "
        "sensor: a burst water main for water pressure, a flooded road for storm levels...",
    )
    title: str | None = Field(None, max_length=200)


@router.post(
    "/alarms/{alarmId}/case",
    summary="Report a city management case for an alarm (one per alarm)",
    status_code=201,
)
async def alarm_case(
    alarmId: int,  # noqa: N803 - the OGC style of path names
    request: Request,
    conn: Conn,
    cat: Cat,
    who: Annotated[Principal, Depends(needs("editor"))],
    body: AlarmCase | None = None,
) -> JSONResponse:
    cat.layer("sensors", who)
    body = body or AlarmCase.model_validate({})
    async with conn.transaction():
        code = await case_from_alarm(conn, who, alarmId, body.class_code, body.title)
    return JSONResponse(
        {"case": code, "href": f"/cases/{code}"},
        status_code=201,
        headers={"Location": f"/cases/{code}"},
    )
