"""Pipe networks over HTTP: networks, topology report, traces, burst isolation, conflicts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import READ_ONLY, Catalog, catalog, connection, needs, principal
from layers.access import can_read
from pipelines import analysis, topology
from pipelines.graph import GraphCache
from pipelines.networks import list_networks
from pipelines.store import check_network_name
from query.scope import Scope
from twin import audit
from twin.auth import Principal
from twin.errors import InvalidParameter, NotFound

router = APIRouter(prefix="/pipelines", tags=["Pipe networks"])
Conn = Annotated[psycopg.AsyncConnection, Depends(connection)]


class StartModel(BaseModel):
    """Where a trace or an isolation starts: one of segment, node or point."""

    model_config = ConfigDict(extra="forbid")
    segment: str | None = Field(None, description="A pipe id, e.g. JSL000123")
    node: str | None = Field(None, description="A node id (traces only)")
    point: list[float] | None = Field(
        None,
        description="Snapped to the nearest pipe. [lon, lat] by default and for EPSG:4326/4490 "
        "(as /grid/locate takes them); [northing, easting], the CRS's own order, for the "
        "CGCS2000 Gauss-Krüger CRSs (EPSG:4526-4528, 4547-4549)",
        min_length=2,
        max_length=2,
    )
    crs: str | None = Field(None, description="CRS of the point (default CRS84 lon/lat)")
    max_distance_m: float = Field(50.0, gt=0, le=5000, description="Snapping limit")


class TraceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str | None = Field(None, description="Network name; found from the start if absent")
    start: StartModel
    direction: str = Field(description="upstream, downstream or connected")


class IsolateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str | None = None
    start: StartModel
    inoperable: list[str] = Field(
        default_factory=list, max_length=1000, description="Valve ids that cannot be closed"
    )
    second_pass: bool = Field(
        False, description="Also answer for when every valve of the first answer fails"
    )
    control_valves: Literal["passable", "closable"] | None = Field(
        None,
        description="Control valves (PRV, PSV, FCV, TCV, ...): 'passable' lets water through "
        "them and they bound no segment (WNTR's valve_segments); 'closable' counts them as "
        "valves to close. Default: the server's TWIN_ISOLATION_CONTROL_VALVES_CLOSABLE "
        "(passable unless set); the answer's control_valves says which was used",
    )


class ConflictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or LineString")
    crs: str | None = Field(None, description="CRS of the geometry (default CRS84)")
    width_m: float = Field(1.0, ge=0, le=100, description="Trench width for a line")
    dig_depth_m: float = Field(gt=0, le=100, description="How deep the excavation goes")
    clearance_m: float = Field(0.5, ge=0, le=10, description="Safety margin below the dig")
    networks: list[str] | None = Field(None, description="Limit to these networks")


def graphs(request: Request) -> GraphCache:
    """The pipe graphs the lifespan keeps, one per network, rebuilt when it changes."""
    cache: GraphCache = request.app.state.pipe_graphs
    return cache


Graphs = Annotated[GraphCache, Depends(graphs)]
Cat = Annotated[Catalog, Depends(catalog)]


def _check_network(cat: Catalog, who: Principal, network: str | None) -> None:
    every, readable = cat.networks(who)
    if network in every and network not in readable:
        raise NotFound(f"no pipe network {network!r}; see /pipelines")


def _every_network_readable(cat: Catalog, who: Principal) -> bool:
    every, readable = cat.networks(who)
    return every == readable


def _scope(cat: Catalog, who: Principal) -> Scope:
    """What an analysis may draw on for the caller: the networks and components they may read
    (a network they may not is as unknown as a missing one)."""
    every, readable = cat.networks(who)
    components = cat.layers.get("components")
    return Scope(
        components=components is None or can_read(who, components),
        networks=None if every == readable else tuple(readable),
    )


def _start_allowed(cat: Catalog, who: Principal, start: StartModel, network: str | None) -> None:
    _check_network(cat, who, network)
    if start.point is not None and network is None and not _every_network_readable(cat, who):
        raise InvalidParameter(
            "name the network: a point is snapped to the nearest pipe of any network, and your "
            "credentials do not cover every network"
        )


@router.get("", summary="The pipe networks")
async def networks(request: Request, conn: Conn, cat: Cat) -> dict:
    every, readable = cat.networks(principal(request))
    return {"networks": await list_networks(conn, set(every) - set(readable))}


@router.get("/{network}/topology", summary="Topology report of a network (checked now)")
async def topology_report(
    network: str, request: Request, conn: Conn, cache: Graphs, cat: Cat
) -> dict:
    check_network_name(network)
    _check_network(cat, principal(request), network)
    g = await cache.get(conn, network)
    found = await topology.check_async(conn, network, g)
    return {
        "network": network,
        "segments": g.n_segs,
        "nodes": g.n_nodes,
        "valve_segments": g.n_labels,
        "counts": topology.summary(found),
        "findings": found,
        "layer": "pipe_findings",
    }


@router.post(
    "/{network}/topology",
    summary="Check a network again and refresh its rows in the pipe_findings layer",
    dependencies=[Depends(needs("editor"))],
)
async def refresh_topology(
    network: str, request: Request, conn: Conn, cache: Graphs, cat: Cat
) -> dict:
    who = principal(request)  # an editor at least: the route's dependency checked it
    check_network_name(network)
    _check_network(cat, who, network)
    g = await cache.get(conn, network)
    found = await topology.check_async(conn, network, g)
    async with conn.transaction():
        await topology.replace_findings(conn, network, found)
        await audit.record(conn, who, "topology.refresh", network, detail={"findings": len(found)})
    await cat.invalidate("pipe_findings")
    return {"network": network, "counts": topology.summary(found), "stored": len(found)}


@router.post(
    "/trace",
    summary="Trace upstream, downstream or everything connected",
    openapi_extra=READ_ONLY,
)
async def trace(body: TraceRequest, request: Request, conn: Conn, cache: Graphs, cat: Cat) -> dict:
    who = principal(request)
    _start_allowed(cat, who, body.start, body.network)
    return await analysis.trace(
        conn,
        cache,
        body.start.model_dump(),
        body.direction.strip().lower(),
        body.network,
        _scope(cat, who),
    )


@router.post(
    "/isolate",
    summary="Burst isolation: the valves to close and who loses supply",
    openapi_extra=READ_ONLY,
)
async def isolate(
    body: IsolateRequest, request: Request, conn: Conn, cache: Graphs, cat: Cat
) -> dict:
    who = principal(request)
    _start_allowed(cat, who, body.start, body.network)
    return await analysis.isolate(
        conn,
        cache,
        body.start.model_dump(),
        body.network,
        body.inoperable,
        body.second_pass,
        body.control_valves or _control_valve_rule(request),
        _scope(cat, who),
    )


def _control_valve_rule(request: Request) -> str:
    closable = request.app.state.settings.pipelines.isolation_control_valves_closable
    return "closable" if closable else "passable"


@router.post(
    "/conflicts",
    summary="Excavation check: pipes within a dig footprint and depth",
    openapi_extra=READ_ONLY,
)
async def conflicts(body: ConflictRequest, request: Request, conn: Conn, cat: Cat) -> dict:
    who = principal(request)
    networks = body.networks
    for name in networks or []:
        _check_network(cat, who, name)
    every, readable = cat.networks(who)
    if networks is None and every != readable:
        networks = readable
        if not networks:
            raise NotFound("no pipe network you may read; see /pipelines")
    return await analysis.conflicts(
        conn,
        body.geometry,
        body.crs,
        body.width_m,
        body.dig_depth_m,
        body.clearance_m,
        networks,
    )
