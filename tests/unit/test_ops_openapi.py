"""The OpenAPI document describes exactly the routes the ops application serves."""

from __future__ import annotations

import re

from router.ops.auth import TokenStore
from router.ops.openapi import openapi_document
from router.ops.server import STATIC_DIR, create_app
from router.settings import Settings


def test_every_route_is_documented_and_nothing_else() -> None:
    app = create_app(Settings(), tokens=TokenStore.parse(""), refresh_interval=None)
    served: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if not path or path == "/" or route.method == "HEAD" or "prefix" in info:
            continue
        served.add((re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path), route.method.lower()))
    doc = openapi_document()
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert doc["openapi"].startswith("3.")


def test_dashboard_files_ship_with_the_package() -> None:
    names = {p.name for p in STATIC_DIR.iterdir()}
    assert {"index.html", "app.js", "app.css"} <= names
    html = (STATIC_DIR / "index.html").read_text("utf-8")
    assert "Hệ thống kết nối" in html
    assert "Gateways" in html
    assert "http://" not in html
    assert "https://" not in html
