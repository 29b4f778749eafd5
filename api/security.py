"""Resolving the caller of every request, and per-caller rate limits.

One dependency, installed on the whole application, reads the credentials (an API key in
``Authorization: Bearer ct_...`` or ``X-API-Key``, or a bearer JWT), checks them, applies the
caller's rate limit and leaves the ``Principal`` on ``request.state``. Missing credentials mean
the anonymous ``public`` caller; credentials that are present but wrong are a 401, never a
silent fall back to anonymous.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from twin.auth import (
    ANONYMOUS,
    BAD_CREDENTIALS,
    KEY_PREFIX,
    JwtVerifier,
    Principal,
    principal_of_key,
)
from twin.errors import TooManyRequests, Unauthorized
from twin.settings import AuthSettings

bearer = HTTPBearer(auto_error=False, description="An API key (ct_...) or a JWT")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


@dataclass
class RateLimiter:
    """A token bucket per caller: ``per_minute`` requests a minute, bursts of a tenth of that
    (at least 10). In this process only: each replica counts its own requests."""

    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, who: str, per_minute: int) -> None:
        if per_minute <= 0:
            return
        now = time.monotonic()
        capacity = max(10.0, per_minute / 10)
        tokens, last = self.buckets.get(who, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * per_minute / 60)
        if tokens < 1:
            wait = int((1 - tokens) * 60 / per_minute) + 1
            self.buckets[who] = (tokens, now)
            raise TooManyRequests(
                f"rate limit: {per_minute} requests per minute for {_label(who)}; "
                f"retry in {wait} s",
                retry_after=wait,
            )
        self.buckets[who] = (tokens - 1, now)
        if len(self.buckets) > 100_000:  # forget idle callers rather than grow without bound
            self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < 120}


def _label(who: str) -> str:
    return "anonymous callers from your address" if who.startswith("ip:") else "your credentials"


@dataclass
class Authenticator:
    """Checks credentials, remembering good API keys for a few seconds (a revoked key stops
    working within ``auth_key_cache_seconds``, at once when revoked through the API)."""

    settings: AuthSettings
    limiter: RateLimiter = field(default_factory=RateLimiter)
    _keys: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    _jwt: JwtVerifier | None = None

    def forget_keys(self) -> None:
        self._keys.clear()

    async def principal(self, request: Request, token: str | None) -> Principal:
        if not token:
            return ANONYMOUS
        if token.startswith(KEY_PREFIX):
            return await self._key(request, token)
        if token.count(".") == 2 and self.settings.auth_jwks:
            return await self._token(token)
        raise Unauthorized(BAD_CREDENTIALS)

    async def _key(self, request: Request, token: str) -> Principal:
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._keys.get(digest)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        async with request.app.state.pool.connection() as conn:
            who = await principal_of_key(conn, token)
        ttl = self.settings.auth_key_cache_seconds
        if ttl > 0:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[digest] = (who, time.monotonic() + ttl)
        return who

    async def _token(self, token: str) -> Principal:
        if self._jwt is None:
            self._jwt = JwtVerifier(self.settings)
        # A JWKS URL may be fetched (and cached) on the way: keep it off the event loop.
        return await run_in_threadpool(self._jwt.verify, token)


async def resolve_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> Principal:
    auth: Authenticator = request.app.state.authenticator
    header = request.headers.get("authorization")
    if header and credentials is None:
        raise Unauthorized(BAD_CREDENTIALS)  # e.g. "Basic ..." or a bare token
    token = credentials.credentials if credentials else api_key
    who = await auth.principal(request, token)
    request.state.principal = who
    if who.anonymous:
        client = request.client.host if request.client else "unknown"
        auth.limiter.take(f"ip:{client}", auth.settings.rate_limit_anonymous_per_minute)
    else:
        auth.limiter.take(who.subject, auth.settings.rate_limit_per_minute)
    return who
