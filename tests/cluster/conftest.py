"""The local cluster (``make cluster``: 3 RabbitMQ nodes, PostgreSQL primary + synchronous
standby under Patroni) and a throwaway hub on it, one per test."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.hub import Hub, create_template, drop_database, throwaway_hub

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "cluster.sh"


@dataclass(frozen=True)
class Cluster:
    amqp_hosts: str  # host:port,host:port,host:port
    mgmt_url: str
    pg_url: str  # postgresql://user@h1:p1,h2:p2 (no database)
    pg_query: str

    def run(self, *args: str, timeout: float = 240) -> str:
        """``cluster.sh ARGS`` (kill, stop, start a node...); its output."""
        done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise AssertionError(f"cluster.sh {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout.strip()


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """Starts the cluster when it is not up (idempotent; a failure to start fails the
    tests, it never skips them)."""
    up = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True,
                        timeout=600, check=False)
    if up.returncode != 0:
        pytest.fail(f"`make cluster` failed:\n{up.stderr[-3000:]}")
    env = dict(line.split("=", 1) for line in
               subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True,
                              check=True).stdout.split())
    amqp = urlsplit(env["LIENTHONG_AMQP_URL"])
    pg = urlsplit(env["LIENTHONG_DATABASE_URL"])
    return Cluster(
        amqp_hosts=amqp.netloc.rpartition("@")[2],
        mgmt_url=env["LIENTHONG_MANAGEMENT_URL"],
        pg_url=f"{pg.scheme}://{pg.netloc}",
        pg_query=pg.query,
    )


@pytest.fixture(scope="session")
async def cluster_template(cluster: Cluster) -> AsyncIterator[str]:
    name = await create_template(cluster.pg_url, cluster.pg_query)
    yield name
    await drop_database(name, cluster.pg_url, cluster.pg_query)


@pytest.fixture
async def cluster_hub(cluster: Cluster, cluster_template: str) -> AsyncIterator[Hub]:
    async with throwaway_hub(cluster_template, amqp_hosts=cluster.amqp_hosts,
                             pg_url=cluster.pg_url, pg_query=cluster.pg_query,
                             mgmt_url=cluster.mgmt_url) as hub:
        yield hub
