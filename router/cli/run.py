"""``lienthong router``: run routing workers (one, or a supervisor of several)."""

from __future__ import annotations

import asyncio
import sys

import click
import structlog

from router.logs import configure_logging
from router.processes import RestartPolicy, Supervisor
from router.settings import Settings, unknown_variables


@click.command("router")
@click.option("--processes", "-n", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (competing consumers); >1 runs a supervisor that "
                   "restarts a worker that dies, with backoff.")
@click.option("--max-crashes", default=5, show_default=True, type=click.IntRange(1),
              help="The supervisor gives up (exit status 3) after this many worker crashes "
                   "within --crash-window.")
@click.option("--crash-window", default=60.0, show_default=True,
              type=click.FloatRange(1, 86_400), help="Seconds (see --max-crashes).")
@click.option("--worker-index", type=click.IntRange(0, 63), default=None, hidden=True,
              help="Set by the supervisor: this worker's place (its metrics port offset).")
def router_cmd(processes: int, max_crashes: int, crash_window: float,
               worker_index: int | None) -> None:
    """Route packages: consume lt.router.in, validate, record, fan out, send receipts.

    With LIENTHONG_METRICS_PORT=P, worker i of -n N serves Prometheus metrics on port P+i.
    """
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    unknown = unknown_variables()
    if unknown and worker_index is None:  # said once, by the supervisor or the lone worker
        structlog.get_logger().warning("settings.unknown_variables", names=unknown,
                                       hint="not read by lienthong: a typo?")
    if processes > 1:
        settings.metrics_port_of(processes - 1, processes)  # every worker's port exists
        policy = RestartPolicy(max_crashes=max_crashes, window=crash_window)
        sys.exit(Supervisor(processes, policy).run())
    from router import metrics
    from router.routing.intake import run_router

    port = settings.metrics_port_of(worker_index or 0, (worker_index or 0) + 1)
    if port is not None:
        try:
            metrics.serve_metrics(port)
        except OSError as exc:
            raise click.ClickException(
                f"LIENTHONG_METRICS_PORT: cannot serve metrics on port {port} ({exc})"
            ) from exc
    if settings.health_port is not None:  # worker i of -n N answers probes on port + i
        settings = settings.with_(health_port=settings.health_port + (worker_index or 0))
    asyncio.run(run_router(settings))
