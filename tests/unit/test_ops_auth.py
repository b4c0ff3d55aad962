"""Ops API tokens: configuration parsing, roles, and what the middleware lets through."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from router.ops.auth import (
    OPERATOR,
    PRINCIPAL,
    READ,
    TokenConfigError,
    TokenStore,
    auth_middleware,
    require_operator,
)

READ_TOKEN = "r" * 20
OP_TOKEN = "o" * 20


def test_parse_roles_and_hashed_tokens() -> None:
    digest = hashlib.sha256(OP_TOKEN.encode()).hexdigest()
    store = TokenStore.parse(
        f"grafana:read:{READ_TOKEN}\n# comment\nalice:operator:sha256:{digest}"
    )
    assert len(store) == 2
    viewer = store.authenticate(READ_TOKEN)
    assert viewer is not None
    assert (viewer.name, viewer.role) == ("grafana", READ)
    alice = store.authenticate(OP_TOKEN)
    assert alice is not None
    assert alice.role == OPERATOR
    assert alice.is_operator
    assert store.authenticate("x" * 20) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice:admin:" + "a" * 20, "unknown role"),
        ("alice:read:short", "shorter than 16"),
        ("alice:" + "a" * 20, "name:role:token"),
        ("alice:read:sha256:zz", "bad sha256"),
        (f"a:read:{'a' * 20},a:operator:{'b' * 20}", "appears twice"),
    ],
)
def test_bad_configuration_is_refused(text: str, message: str) -> None:
    with pytest.raises(TokenConfigError, match=message):
        TokenStore.parse(text)


def test_env_and_file(tmp_path: Any) -> None:
    f = tmp_path / "tokens"
    f.write_text(f"bob:operator:{OP_TOKEN}\n")
    store = TokenStore.from_env(
        {"LIENTHONG_OPS_TOKENS": f"carol:read:{READ_TOKEN}", "LIENTHONG_OPS_TOKENS_FILE": str(f)}
    )
    assert {p.name for p in (store.authenticate(READ_TOKEN), store.authenticate(OP_TOKEN))
            if p} == {"carol", "bob"}


async def test_middleware_roles() -> None:
    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"name": request[PRINCIPAL].name})

    @require_operator
    async def act(request: web.Request) -> web.Response:
        return web.json_response({"done": True})

    async def open_(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    store = TokenStore.parse(f"viewer:read:{READ_TOKEN},alice:operator:{OP_TOKEN}")
    app = web.Application(middlewares=[auth_middleware(store)])
    app.router.add_get("/api/whoami", whoami)
    app.router.add_post("/api/act", act)
    app.router.add_get("/healthz", open_)
    app.router.add_get("/api/openapi.json", open_)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/api/openapi.json")).status == 200
        missing = await client.get("/api/whoami")
        assert missing.status == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        body = await missing.json()
        assert body["message_vi"].startswith("Thiếu")
        assert body["message_en"].startswith("Missing")
        basic = await client.get("/api/whoami", headers={"Authorization": f"Basic {READ_TOKEN}"})
        assert basic.status == 401
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        op = {"Authorization": f"Bearer {OP_TOKEN}"}
        assert (await (await client.get("/api/whoami", headers=read)).json()) == {"name": "viewer"}
        assert (await client.post("/api/act", headers=read)).status == 403
        assert (await client.post("/api/act", headers=op)).status == 200
