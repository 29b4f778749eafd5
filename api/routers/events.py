"""The live stream: Server-Sent Events of alarms and case changes, as the caller may see them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import Catalog, catalog, principal
from api.live import LiveHub
from layers.access import can_read
from twin.auth import Principal
from twin.errors import InvalidParameter, SetupError

router = APIRouter(tags=["Sensors and alarms"])
Cat = Annotated[Catalog, Depends(catalog)]

HEARTBEAT_S = 15.0  # a comment line now and then keeps proxies from closing a quiet stream
KINDS = ("alarm", "case", "sensor")


class EventFilter:
    """Which events a subscriber gets: the kinds asked for, in the bbox or under the grid
    code asked for, of collections the caller may read."""

    def __init__(
        self,
        cat: Catalog,
        who: Principal,
        kinds: set[str],
        bbox: tuple[float, float, float, float] | None,
        grid: str | None,
    ) -> None:
        self.cat, self.who, self.kinds, self.bbox, self.grid = cat, who, kinds, bbox, grid

    def __call__(self, event: dict[str, Any]) -> bool:
        if event["kind"] not in self.kinds:
            return False
        layer = self.cat.layers.get(event["target"])
        if layer is None or not can_read(self.who, layer):
            return False
        if self.bbox is not None:
            lon, lat = event.get("lon"), event.get("lat")
            if lon is None or lat is None:
                return False
            w, s, e, n = self.bbox
            if not (w <= lon <= e and s <= lat <= n):
                return False
        if self.grid is not None:
            # codes are hierarchical: a community's code begins every code of its unit grids
            return str(event.get("unit_grid") or "").startswith(self.grid)
        return True


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameter("bbox takes four numbers: west,south,east,north (lon/lat)") from None
    if w > e or s > n:
        raise InvalidParameter("bbox: west must not exceed east, nor south north")
    return w, s, e, n


def _frame(event: dict[str, Any]) -> str:
    data = json.dumps(event, ensure_ascii=False, default=str, separators=(",", ":"))
    return f"id: {event['id']}\nevent: {event['kind']}\ndata: {data}\n\n"


@router.get(
    "/events/stream",
    summary="Server-Sent Events of alarms and case changes (text/event-stream)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def stream(
    request: Request,
    cat: Cat,
    kinds: Annotated[str, Query(description="Comma-separated: alarm, case, sensor")] = "alarm,case",
    bbox: Annotated[str | None, Query(description="west,south,east,north in lon/lat")] = None,
    grid: Annotated[
        str | None, Query(pattern=r"^[0-9]{6,15}$", description="A grid code of any level")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    since: Annotated[int | None, Query(ge=0, description="Replay events after this id")] = None,
) -> StreamingResponse:
    asked = {k.strip() for k in kinds.split(",") if k.strip()}
    unknown = asked - set(KINDS)
    if unknown or not asked:
        raise InvalidParameter(f"kinds: use some of {', '.join(KINDS)}")
    hub: LiveHub | None = getattr(request.app.state, "live", None)
    if hub is None:
        raise SetupError("the live event stream is not running in this server")
    wanted = EventFilter(cat, principal(request), asked, _bbox(bbox), grid)
    after = since
    if last_event_id and last_event_id.isdigit():
        after = int(last_event_id)
    sub = hub.subscribe()  # before the replay: nothing falls between the two

    async def events() -> AsyncIterator[str]:
        try:
            yield ": citytwin live events\nretry: 2000\n\n"
            sent = after or 0
            if after is not None:
                for event in await hub.replay(after):
                    sent = event["id"]
                    if wanted(event):
                        yield _frame(event)
            while not sub.closed:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if event is None:
                    return
                if event["id"] <= sent:
                    continue
                sent = event["id"]
                if wanted(event):
                    yield _frame(event)
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
