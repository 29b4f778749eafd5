"""Who is calling: API keys (stored hashed) and bearer JWTs, resolved to a ``Principal``.

Roles are ordered public < viewer < editor < admin. Anonymous callers are ``public``. A key or a
token may also carry a department (an editor of department D edits only D's components) and a
list of layers (the only layers it may read or edit, besides public ones).

Keys look like ``ct_<id>_<secret>``: the id is stored in the clear and shown in lists, the
secret only as its SHA-256 (a 256-bit random secret needs no slow hash; a stolen table does not
give the keys back). Every failure answers the same 401 message: which check failed is logged,
not told.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from twin.errors import InvalidParameter, NotFound, Unauthorized
from twin.settings import AuthSettings

log = logging.getLogger(__name__)

ROLES = ("public", "viewer", "editor", "admin")
KEY_ROLES = ROLES[1:]
RANK = {role: i for i, role in enumerate(ROLES)}
KEY_PREFIX = "ct_"
BAD_CREDENTIALS = (
    "the credentials were not accepted: send a valid API key (Authorization: Bearer ct_..., or "
    "X-API-Key) or a valid token from the configured issuer"
)


@dataclass(frozen=True)
class Principal:
    """A caller: who, with which role, department and layer grants."""

    subject: str  # anonymous, key:<id>, jwt:<iss>:<sub>
    role: str = "public"
    department: str | None = None
    layers: frozenset[str] | None = None  # None: every layer the role may read

    @property
    def anonymous(self) -> bool:
        return self.subject == "anonymous"

    def at_least(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    @property
    def access_key(self) -> str:
        """What decides which layers this caller may read: the first part of cache keys.
        Callers with equal keys see exactly the same data."""
        if self.layers is None:
            return self.role
        grants = ",".join(sorted(self.layers))
        return f"{self.role}:{hashlib.blake2b(grants.encode(), digest_size=8).hexdigest()}"


ANONYMOUS = Principal("anonymous")


def check_role(role: str, allowed: tuple[str, ...] = KEY_ROLES) -> str:
    if role not in allowed:
        raise InvalidParameter(f"role {role!r} is not one of {', '.join(allowed)}")
    return role


# --- API keys -----------------------------------------------------------------------------
def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(token: str) -> tuple[str, str]:
    """The id and the secret of ``ct_<id>_<secret>``; anything else is a 401."""
    body = token.removeprefix(KEY_PREFIX)
    key_id, sep, secret = body.partition("_")
    if not token.startswith(KEY_PREFIX) or not sep or not key_id or not secret:
        raise Unauthorized(BAD_CREDENTIALS)
    if len(key_id) > 16 or not all(c in "0123456789abcdef" for c in key_id):
        raise Unauthorized(BAD_CREDENTIALS)
    return key_id, secret


@dataclass(frozen=True)
class NewKey:
    id: str
    token: str  # shown once


def create_key(
    conn: psycopg.Connection,
    role: str,
    *,
    name: str = "",
    department: str | None = None,
    layers: list[str] | None = None,
    expires_at: datetime | None = None,
) -> NewKey:
    key, digest = new_key()
    conn.execute(
        INSERT_KEY, [key.id, digest, name, check_role(role), department, layers, expires_at]
    )
    return key


INSERT_KEY = (
    "INSERT INTO twin.api_keys (id, secret_hash, name, role, department, layers, expires_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def new_key() -> tuple[NewKey, str]:
    """A fresh key and the hash of its secret, the only part stored."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, f"{KEY_PREFIX}{key_id}_{secret}"), _hash(secret)


KEY_COLUMNS = "id, name, role, department, layers, created_at, expires_at, revoked_at, last_used_at"


def list_keys(conn: psycopg.Connection) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {KEY_COLUMNS} FROM twin.api_keys ORDER BY created_at")  # noqa: S608
        return cur.fetchall()


def revoke_key(conn: psycopg.Connection, key_id: str) -> None:
    row = conn.execute(REVOKE_KEY_SQL, [key_id]).fetchone()
    if row is None:
        raise NotFound(f"no API key with id {key_id!r}; see 'twin keys list'")


REVOKE_KEY_SQL = (
    "UPDATE twin.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s RETURNING id"
)

_CHECK_KEY = """
    UPDATE twin.api_keys SET last_used_at = now()
    WHERE id = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
    RETURNING secret_hash, role, department, layers
"""


async def principal_of_key(conn: psycopg.AsyncConnection, token: str) -> Principal:
    key_id, secret = split_key(token)
    cur = await conn.execute(_CHECK_KEY, [key_id])
    row = await cur.fetchone()
    if row is None or not hmac.compare_digest(row[0], _hash(secret)):
        log.info("API key %s refused: unknown, revoked, expired or wrong secret", key_id)
        raise Unauthorized(BAD_CREDENTIALS)
    layers = frozenset(row[3]) if row[3] is not None else None
    return Principal(f"key:{key_id}", row[1], row[2], layers)


# --- JWT ----------------------------------------------------------------------------------
class JwtVerifier:
    """Bearer JWTs signed by the configured issuer's keys (a JWKS file, or a URL fetched and
    cached by PyJWT), with claims mapped to a role, a department and layer grants."""

    ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]

    def __init__(self, settings: AuthSettings) -> None:
        import jwt

        self.settings = settings
        source = settings.auth_jwks or ""
        self._client: jwt.PyJWKClient | None = None
        self._keys: dict[str, Any] = {}
        if source.startswith(("http://", "https://")):
            self._client = jwt.PyJWKClient(source, cache_keys=True, lifespan=300)
        elif source:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
            for jwk in jwt.PyJWKSet.from_dict(data).keys:
                self._keys[jwk.key_id or ""] = jwk

    def _signing_key(self, token: str) -> Any:
        import jwt

        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid") or ""
        if kid in self._keys:
            return self._keys[kid].key
        if len(self._keys) == 1 and not kid:
            return next(iter(self._keys.values())).key
        raise Unauthorized(BAD_CREDENTIALS)

    def verify(self, token: str) -> Principal:
        import jwt

        s = self.settings
        try:
            claims = jwt.decode(
                token,
                self._signing_key(token),
                algorithms=self.ALGORITHMS,
                issuer=s.auth_issuer,
                audience=s.auth_audience,
                options={"require": ["exp", "sub"], "verify_aud": s.auth_audience is not None},
            )
        except (jwt.PyJWTError, ValueError) as exc:
            log.info("bearer token refused: %s", exc)
            raise Unauthorized(BAD_CREDENTIALS) from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        s = self.settings
        raw = claims.get(s.auth_role_claim)
        values = raw if isinstance(raw, list) else [raw]
        roles = [s.auth_role_map.get(str(v), str(v)) for v in values if v is not None]
        known = [r for r in roles if r in KEY_ROLES]
        role = max(known, key=RANK.__getitem__) if known else "public"
        department = claims.get(s.auth_department_claim)
        layers = claims.get(s.auth_layers_claim)
        return Principal(
            f"jwt:{claims.get('iss', '')}:{claims['sub']}",
            role,
            str(department) if department else None,
            frozenset(str(x) for x in layers) if isinstance(layers, list) else None,
        )
