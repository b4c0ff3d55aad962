"""``make bench`` (``python -m bench``): router throughput, latency and memory next to the
raw relay limit."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiormq
import click

from router.cli._services import fail


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _routers(value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        counts = ()
    if not counts or any(not 1 <= c <= 16 for c in counts):
        raise click.BadParameter("a comma-separated list of router counts, e.g. 1,2")
    return counts


@click.command("bench")
@click.option("--packages", "-N", type=click.IntRange(10, 1_000_000), default=None,
              help="Documents pre-filled per drain (each answered by one status per copy). "
                   "[default: 5000; 300 with --quick]")
@click.option("--rate", type=click.FloatRange(1, 100_000), default=300.0, show_default=True,
              help="Offered packages/s in the latency phase (documents and answers).")
@click.option("--duration", type=click.FloatRange(1, 3600), default=None,
              help="Seconds of offered load in the latency phase. [default: 10; 3 with --quick]")
@click.option("--latency-runs", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Consecutive latency runs per router count (each reported; a target is "
                   "met only if every run meets it).")
@click.option("--routers", "routers", default=None,
              help="Router process counts to measure, comma-separated. "
                   "[default: 1,2; 1 with --quick]")
@click.option("--gateways", type=click.IntRange(2, 95), default=95, show_default=True,
              help="Simulated gateways, one agency each.")
@click.option("--quick", is_flag=True, help="A small run (CI smoke): 300 packages, 1 router.")
@click.option("--cleanup", is_flag=True,
              help="Only remove lt_bench_* vhosts, users and databases left by runs that a "
                   "broker or database restart cut short (not while a bench is running).")
@click.option("--profile/--no-profile", default=False, show_default=True,
              help="Also drain once with py-spy attached to the router; show top functions.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("bench-results.json"), show_default=True,
              help="Where to write the results.")
@click.option("--logs", "log_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".bench"), show_default=True,
              help="Router/relay logs and profiles go here.")
def bench(
    packages: int | None,
    rate: float,
    duration: float | None,
    latency_runs: int,
    routers: str | None,
    gateways: int,
    quick: bool,
    cleanup: bool,
    profile: bool,
    json_path: Path,
    log_dir: Path,
) -> None:
    """Measure the router against the raw relay limit of this machine.

    Creates a throwaway vhost and database (lt_bench_<id>) on the services named by
    LIENTHONG_AMQP_URL, LIENTHONG_DATABASE_URL and LIENTHONG_MANAGEMENT_URL, runs the
    phases, prints a table, writes JSON, and removes everything, also on Ctrl-C.
    """
    from rich.console import Console

    from bench.report import render
    from bench.run import BenchConfig, BenchError, remove_leftovers, run_bench
    from router.broker_admin import BrokerAdminError

    if cleanup:
        from router.settings import Settings

        removed = asyncio.run(remove_leftovers(Settings.from_env()))
        click.echo("removed: " + (", ".join(removed) if removed else "nothing"))
        return
    changes: dict[str, object] = {"rate": rate, "gateways": gateways, "profile": profile,
                                  "log_dir": log_dir, "latency_runs": latency_runs}
    if packages is not None:
        changes["packages"] = packages
    if duration is not None:
        changes["duration"] = duration
    if routers is not None:
        changes["routers"] = _routers(routers)
    config = BenchConfig.quick(**changes) if quick else BenchConfig(**changes)  # type: ignore[arg-type]
    console = Console(stderr=True)
    # the bench's own log lines (provisioning 95 gateways, their intake queues) at the
    # level of the routers it starts: the progress lines say what it is doing
    from router.logs import configure_logging
    from router.settings import Settings

    configure_logging(Settings.from_env().bench_log_level, json=False, stream=sys.stderr)

    def progress(message: str) -> None:
        console.log(message)

    done: list[dict[str, object]] = []

    def keep(run: dict[str, object]) -> None:
        # what is measured is kept at once: a broker restart later does not lose it
        done.append(run)
        _write(json_path, {"partial": True, "config": config.as_dict(), "runs": done})

    try:
        result = asyncio.run(run_bench(config, progress=progress, on_run=keep))
    except (BenchError, BrokerAdminError, OSError, aiormq.exceptions.AMQPError) as exc:
        if done:
            click.echo(f"partial results ({len(done)} run(s)) written to {json_path}", err=True)
        fail(f"bench: {str(exc) or repr(exc)}")
        return
    _write(json_path, result)
    render(result, Console())
    click.echo(f"results written to {json_path}")


if __name__ == "__main__":
    bench()
