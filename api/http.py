"""HEAD and byte ranges for every GET route, so GIS clients can read over HTTP as from a file.

GDAL's ``/vsicurl/`` (and COG readers in browsers) ask ``HEAD`` for the size, then
``Range: bytes=a-b`` for the parts they need. Both are handled here once, as ASGI middleware,
instead of in each route:

- ``HeadAsGet`` serves a HEAD as the GET of the same URL and sends only its status and
  headers, so the two can never disagree (ETag, Content-Length, cache headers, 304s).
- ``ByteRanges`` answers one byte range of a 200 response with 206 and ``Content-Range``, or
  416 when it starts past the end. Responses that handle ranges themselves (starlette's
  ``FileResponse``, used for the COGs, reads only the asked part of the file) are left to do
  so; their 416 gets the house error body. Several ranges are answered whole (200), which
  RFC 9110 allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

# Bodies up to this size are sliced in memory; a larger one (a stream that states its length)
# is answered whole rather than buffered.
BUFFER_MAX = 32 << 20
RANGE_SYNTAX = "bytes=first-last, bytes=first- or bytes=-length"
_ONE_RANGE = re.compile(r"(\d{0,18})-(\d{0,18})")


class InvalidRange(ValueError):
    """A Range header that cannot be read."""


@dataclass(frozen=True)
class ByteRange:
    """One range as asked: ``first``-``last`` (inclusive), ``first``- to the end, or the last
    ``last`` bytes when ``first`` is None."""

    first: int | None
    last: int | None

    def span(self, size: int) -> tuple[int, int] | None:
        """First and last byte (inclusive) within a body of ``size`` bytes; None when the range
        holds none of them (a 416)."""
        if self.first is None:
            if not self.last or not size:  # bytes=-0 asks for nothing
                return None
            return max(size - self.last, 0), size - 1
        if self.first >= size:
            return None
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last


def parse_range(header: str) -> ByteRange | None:
    """The one byte range a Range header asks for; None when the body is to be sent whole
    (another unit, which RFC 9110 says to ignore, or several ranges)."""
    unit, equals, spec = header.partition("=")
    if not equals:
        raise InvalidRange(f"Range {header[:60]!r}: expected {RANGE_SYNTAX}")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = _ONE_RANGE.fullmatch(spec.strip())
    if match is None or not (match[1] or match[2]):
        raise InvalidRange(f"Range {header[:60]!r}: expected {RANGE_SYNTAX}")
    first = int(match[1]) if match[1] else None
    last = int(match[2]) if match[2] else None
    if first is not None and last is not None and first > last:
        raise InvalidRange(f"Range {header[:60]!r}: the first byte is after the last")
    return ByteRange(first, last)


def _unsatisfiable(size: int) -> JSONResponse:
    response = error_response(
        416,
        "range-not-satisfiable",
        f"the range holds none of the body's {size} bytes: ask for one that starts before the end",
    )
    response.headers["Content-Range"] = f"bytes */{size}"
    return response


def _without(scope: Scope, name: bytes) -> Scope:
    """A copy of the request with one header removed."""
    return {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != name]}


class HeadAsGet:
    """HEAD served as GET with the body dropped, for every GET route (HEAD stays out of the
    OpenAPI document: the routes themselves are GET only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        done = False

        async def headers_only(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.start":
                await send(message)
            elif not done and message["type"].startswith("http.response."):
                # The first piece of body ends the answer. The server then reports the
                # request as finished, which stops a file being streamed for nothing.
                done = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        # A copy: the server's own scope keeps HEAD, so it sends no body either.
        await self.app({**scope, "method": "GET"}, receive, headers_only)


class ByteRanges:
    """Single byte ranges of GET responses (206, 416), in the identity encoding."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("range")
        if header is None:
            await self.app(scope, receive, _Advertised(send))
            return
        try:
            wanted = parse_range(header)
        except InvalidRange as exc:
            await error_response(400, "invalid-parameter", str(exc))(scope, receive, send)
            return
        if wanted is None:  # answered whole, by the app too (no multipart from FileResponse)
            await self.app(_without(scope, b"range"), receive, _Advertised(send))
            return
        # A range counts bytes of the identity body: no gzip for it, here or in the tile cache.
        sliced = _Sliced(scope, receive, send, wanted)
        await self.app(_without(scope, b"accept-encoding"), receive, sliced)


def _sliceable(status: int, headers: Headers) -> bool:
    """A complete 200 body of known, modest length that the app did not range itself."""
    length = headers.get("content-length", "")
    return (
        status == 200
        and length.isdigit()
        and int(length) <= BUFFER_MAX
        and "accept-ranges" not in headers
        and "content-encoding" not in headers
    )


class _Advertised:
    """Says ``Accept-Ranges: bytes`` on the responses a Range request would be sliced from."""

    def __init__(self, send: Send) -> None:
        self.send = send

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(raw=list(message.get("headers", [])))
            if _sliceable(message["status"], headers):
                headers["Accept-Ranges"] = "bytes"
                message = {**message, "headers": headers.raw}
        await self.send(message)


class _Sliced:
    """One response to a single-range request: the whole 200 body is held, then its slice sent."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, wanted: ByteRange) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.wanted = wanted
        self.if_range = Headers(scope=scope).get("if-range")
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.replaced = False  # the app's answer was swapped for ours; its body is dropped

    async def __call__(self, message: Message) -> None:
        if self.replaced:
            return
        if message["type"] == "http.response.start":
            headers = Headers(raw=message.get("headers", []))
            if message["status"] == 416:  # the app's own (FileResponse): our JSON body
                size = headers.get("content-range", "").rpartition("/")[2]
                await self._refuse(int(size) if size.isdigit() else 0)
            elif _sliceable(message["status"], headers) and self._current(headers):
                self.start = message
            else:
                await self.send(message)
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            await self._answer(b"".join(self.chunks))

    def _current(self, headers: Headers) -> bool:
        """If-Range: the range only of the version the client has (a strong ETag); otherwise
        the whole body."""
        if self.if_range is None:
            return True
        return not self.if_range.startswith("W/") and self.if_range == headers.get("etag")

    async def _refuse(self, size: int) -> None:
        self.replaced = True
        await _unsatisfiable(size)(self.scope, self.receive, self.send)

    async def _answer(self, body: bytes) -> None:
        assert self.start is not None
        span = self.wanted.span(len(body))
        if span is None:
            await self._refuse(len(body))
            return
        first, last = span
        headers = MutableHeaders(raw=list(self.start.get("headers", [])))
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
        headers["Content-Length"] = str(last - first + 1)
        await self.send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        await self.send({"type": "http.response.body", "body": body[first : last + 1]})
