"""Bearer tokens for the ops API, with two roles: ``read`` (look) and ``operator`` (also
re-deliver and drop parked messages).

Tokens come from the environment, one entry per token, ``name:role:token``:

* ``LIENTHONG_OPS_TOKENS="alice:operator:<token>,grafana:read:<token>"``
* ``LIENTHONG_OPS_TOKENS_FILE=/run/secrets/ops-tokens`` (same entries, one per line or
  comma-separated; ``#`` starts a comment) — for secrets mounted as files.

``token`` is either the secret itself (at least 16 characters) or ``sha256:<hex>`` of it,
so the configuration need not hold the secret. ``name`` is the actor written to the audit
trail and the re-delivery job. Tokens are compared in constant time.

``/healthz``, ``/readyz``, ``/metrics``, ``/api/openapi.json`` and the dashboard's static
files need no token; every other ``/api/`` path does.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from router.ops.errors import error_response
from router.settings import Settings
from schemas.reasons import Reason

__all__ = [
    "OPERATOR",
    "PRINCIPAL",
    "READ",
    "Principal",
    "TokenConfigError",
    "TokenStore",
    "auth_middleware",
    "require_operator",
]

READ = "read"
OPERATOR = "operator"
_ROLE_ALIASES = {
    "read": READ,
    "read-only": READ,
    "readonly": READ,
    "viewer": READ,
    "operator": OPERATOR,
    "op": OPERATOR,
}
MIN_TOKEN_LENGTH = 16
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/openapi.json"})


class TokenConfigError(ValueError):
    """The token configuration cannot be used (bad entry, unknown role, weak token)."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR


PRINCIPAL = web.RequestKey("lienthong_principal", Principal)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class TokenStore:
    """Known tokens, kept as SHA-256 digests."""

    def __init__(self, entries: Mapping[bytes, Principal]) -> None:
        self._entries = dict(entries)

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def parse(cls, text: str) -> TokenStore:
        entries: dict[bytes, Principal] = {}
        names: set[str] = set()
        for raw_line in text.splitlines():
            line = raw_line.split("#", 1)[0]
            for item in line.split(","):
                item = item.strip()
                if not item:
                    continue
                name, sep1, rest = item.partition(":")
                role_text, sep2, token = rest.partition(":")
                if not (sep1 and sep2 and name and token):
                    raise TokenConfigError(
                        f"ops token entry {name or item[:8]!r}... must be name:role:token"
                    )
                role = _ROLE_ALIASES.get(role_text.strip().lower())
                if role is None:
                    raise TokenConfigError(
                        f"ops token {name!r}: unknown role {role_text!r} (read or operator)"
                    )
                if name in names:
                    raise TokenConfigError(f"ops token name {name!r} appears twice")
                names.add(name)
                if token.startswith("sha256:"):
                    try:
                        digest = bytes.fromhex(token.removeprefix("sha256:"))
                    except ValueError as exc:
                        raise TokenConfigError(f"ops token {name!r}: bad sha256 hex") from exc
                    if len(digest) != 32:
                        raise TokenConfigError(f"ops token {name!r}: sha256 needs 64 hex digits")
                else:
                    if len(token) < MIN_TOKEN_LENGTH:
                        raise TokenConfigError(
                            f"ops token {name!r} is shorter than {MIN_TOKEN_LENGTH} characters"
                        )
                    digest = _digest(token)
                entries[digest] = Principal(name.strip(), role)
        return cls(entries)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TokenStore:
        settings = Settings.from_env(env)
        parts = [settings.ops_tokens]
        path = settings.ops_tokens_file
        if path:
            parts.append(Path(path).read_text("utf-8"))
        return cls.parse("\n".join(parts))

    def digests(self) -> list[tuple[bytes, Principal]]:
        """(SHA-256 of the token, its principal) for each token: for the audit log."""
        return list(self._entries.items())

    def authenticate(self, token: str) -> Principal | None:
        digest = _digest(token)
        found: Principal | None = None
        for known, principal in self._entries.items():
            # compare against every entry: the time taken does not depend on which matched
            if hmac.compare_digest(known, digest):
                found = principal
        return found


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(store: TokenStore) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not path.startswith("/api/") or path in PUBLIC_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        principal = (
            store.authenticate(token.strip()) if scheme.lower() == "bearer" and token else None
        )
        if principal is None:
            resp = error_response(Reason.OPS_UNAUTHORIZED)
            resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware


def require_operator(handler: Handler) -> Handler:
    """Only ``operator`` tokens may call ``handler``."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        principal = request.get(PRINCIPAL)
        if principal is None or not principal.is_operator:
            return error_response(Reason.OPS_FORBIDDEN)
        return await handler(request)

    wrapped.__name__ = getattr(handler, "__name__", "handler")
    wrapped.__doc__ = handler.__doc__
    return wrapped
