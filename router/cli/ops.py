"""``lienthong ops``: the ops HTTP service (health, metrics, API, dashboard)."""

from __future__ import annotations

import hashlib
import secrets

import click

from router.logs import configure_logging
from router.settings import Settings


@click.group(invoke_without_command=True)
@click.option("--host", default=None,
              show_default="LIENTHONG_OPS_HOST, else 127.0.0.1", help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              show_default="LIENTHONG_OPS_PORT or 8080", help="Port to listen on.")
@click.option("--refresh", type=float, default=15.0, show_default=True,
              help="Seconds between refreshes of the ledger/broker gauges.")
@click.pass_context
def ops(ctx: click.Context, host: str | None, port: int | None, refresh: float) -> None:
    """Ops service (dịch vụ vận hành): /healthz, /readyz, /metrics, the JSON API under
    /api (OpenAPI at /api/openapi.json) and the dashboard at /.

    API tokens: LIENTHONG_OPS_TOKENS="name:role:token,..." (role read or operator) or
    LIENTHONG_OPS_TOKENS_FILE; `lienthong ops token NAME ROLE` makes one.
    """
    if ctx.invoked_subcommand is not None:
        return
    from router.ops.auth import TokenConfigError, TokenStore
    from router.ops.server import serve

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    try:
        tokens = TokenStore.from_env()
    except (TokenConfigError, OSError) as exc:
        raise click.ClickException(f"ops tokens: {exc}") from exc
    serve(settings, host=host or settings.ops_host, port=port or settings.ops_port,
          tokens=tokens, refresh_interval=refresh)


@ops.command("token")
@click.argument("name")
@click.argument("role", type=click.Choice(["read", "operator"]))
def token(name: str, role: str) -> None:
    """Make a new random token: prints the secret (give it to NAME) and the entry to put in
    LIENTHONG_OPS_TOKENS (which holds only its SHA-256)."""
    if ":" in name or "," in name:
        raise click.BadParameter("no ':' or ',' in a token name", param_hint="NAME")
    secret = secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    click.echo(f"token:  {secret}")
    click.echo(f"entry:  {name}:{role}:sha256:{digest}")
