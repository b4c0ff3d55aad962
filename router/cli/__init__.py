"""The ``lienthong`` command line. Each command group lives in its own module and is
imported only when used, so ``lienthong package inspect`` starts fast and needs no broker.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

__all__ = ["main"]

# command name -> "module:attribute"; the module is imported on first use.
_COMMANDS: dict[str, str] = {
    "package": "router.cli.package:package",
    "db": "router.cli.db:db",
    "agencies": "router.cli.directory:agencies",
    "gateways": "router.cli.directory:gateways",
    "topology": "router.cli.topology:topology",
    "router": "router.cli.run:router_cmd",
    "send": "router.cli.gateway:send",
    "inbox": "router.cli.gateway:inbox",
    "watch": "router.cli.watch:watch",
    "track": "router.cli.tracking:track",
    "report": "router.cli.tracking:report",
    "deadlines": "router.cli.tracking:deadlines",
    "parking": "router.cli.recovery:parking",
    "redeliver": "router.cli.recovery:redeliver",
    "ops": "router.cli.ops:ops",
    "certs": "router.cli.security:certs",
    "receipt": "router.cli.security:receipt",
    "receipts": "router.cli.receipts:receipts",
    "audit": "router.cli.security:audit",
    "config": "router.cli.config:config",
    "vxp": "router.cli.vxp:vxp",
    "conformance": "router.cli.conformance:conformance",
    "sandbox": "router.cli.sandbox:sandbox",
    "backup": "router.cli.backup:backup",
    "restore": "router.cli.backup:restore",
    "archive": "router.cli.archive:archive",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *super().list_commands(ctx)})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=70)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from router.settings import SettingsError

        try:
            return super().invoke(ctx)
        except SettingsError as exc:  # one clear message at startup, never a traceback
            click.echo(exc.explain(), err=True)
            ctx.exit(2)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lienthong")
def main() -> None:
    """lienthong: the national document exchange axis (edXML, QCVN 102:2016)."""
    # a command's result is on stdout (a script reads --json there); its logs on stderr.
    # The services (router, ops, vxp serve) set their own logging, on stdout.
    from router.logs import configure_logging

    configure_logging("INFO", json=False, stream=sys.stderr)
