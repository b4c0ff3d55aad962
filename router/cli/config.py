"""``lienthong config show``: the effective settings, where each comes from, secrets hidden."""

from __future__ import annotations

import json

import click

from router.settings import Settings, unknown_variables


@click.group()
def config() -> None:
    """Settings (cấu hình) read from the environment."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per variable, in a list.")
def show(as_json: bool) -> None:
    """Print every variable lienthong reads: its effective value, its source (env or
    default) and its meaning. Passwords in URLs and tokens are shown as ***."""
    rows = Settings.from_env().effective()
    unknown = unknown_variables()
    if unknown:
        click.echo("lienthong: không dùng / not used by lienthong (a typo?): "
                   + ", ".join(unknown), err=True)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    width = max(len(r["variable"]) for r in rows)
    for r in rows:
        value = "(unset)" if r["value"] is None else str(r["value"])
        click.echo(f"{r['variable']:<{width}}  {r['source']:<7}  {value}")
