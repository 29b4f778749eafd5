"""Limits on what one request may send.

The body size is checked before anything is read when the request declares its length
(``Content-Length``), and counted while it is read when it does not (chunked transfer): either
way a body over the limit gets a 413 naming the limit, and the route never sees the rest of it.
The bulk routes (a points file for ``POST /grid/locate``) have a limit of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import twin_response
from twin.errors import LimitExceeded, PayloadTooLarge
from twin.settings import LimitSettings

MIB = 1 << 20

# Routes that take files rather than documents: (method, path).
BULK_ROUTES = frozenset({("POST", "/grid/locate"), ("POST", "/sensors/readings")})


@dataclass(frozen=True)
class BodyLimit:
    max_mb: float
    setting: str

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * MIB)

    def refusal(self, declared: int | None = None) -> PayloadTooLarge:
        size = f"{self.max_mb:g} MiB ({self.max_bytes:,} bytes, {self.setting})"
        sent = f"; this one declares {declared:,} bytes" if declared is not None else ""
        return PayloadTooLarge(
            f"the request body is larger than the limit of {size}{sent}: send less per request"
        )


class BodySizeLimit:
    """ASGI middleware refusing request bodies over the limit with 413."""

    def __init__(self, app: ASGIApp, *, general: BodyLimit, bulk: BodyLimit) -> None:
        self.app = app
        self.general = general
        self.bulk = bulk

    def limit_for(self, scope: Scope) -> BodyLimit:
        return self.bulk if (scope["method"], scope["path"]) in BULK_ROUTES else self.general

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit.max_bytes:
            await twin_response(limit.refusal(declared))(scope, receive, send)
            return
        await _Counted(self.app, limit)(scope, receive, send)


class _Counted:
    """One request whose body is counted as it arrives; over the limit, whatever the app
    makes of the failed read (FastAPI turns it into a 400 'error parsing the body') is
    replaced by the 413."""

    def __init__(self, app: ASGIApp, limit: BodyLimit) -> None:
        self.app = app
        self.limit = limit
        self.received = 0
        self.over = False
        self.started = False  # a response has begun (the app's, or the 413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit.max_bytes:
                    self.over = True
                    raise self.limit.refusal()
            return message

        async def guarded_send(message: Message) -> None:
            if self.over and not self.started:
                self.started = True
                await twin_response(self.limit.refusal())(scope, receive, send)
            if self.over:
                return  # the app's own answer to the failed read is dropped
            self.started = self.started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except PayloadTooLarge:
            if self.started:
                raise
            self.started = True
            await twin_response(self.limit.refusal())(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def check_batch(count: int, limit: int, what: str, setting: str) -> None:
    """Refuse a batch of more items than one request may hold (422, naming the limit)."""
    if count > limit:
        raise LimitExceeded(
            f"the request holds {count:,} {what}, more than the limit of {limit:,} per request "
            f"({setting}); split it into several requests"
        )


def install(app: FastAPI, settings: LimitSettings) -> None:
    """Add the body size limits to the app."""
    app.add_middleware(
        BodySizeLimit,
        general=BodyLimit(settings.max_body_mb, "TWIN_MAX_BODY_MB"),
        bulk=BodyLimit(settings.max_bulk_body_mb, "TWIN_MAX_BULK_BODY_MB"),
    )
