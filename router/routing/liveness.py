"""A router worker's own health endpoint (``LIENTHONG_HEALTH_PORT``, off by default), for
systemd watchdogs, load balancers and Kubernetes probes.

``GET /healthz``  200 while the worker's event loop answers (the server runs on that
                  loop, so a stuck loop stops answering; it closes when the worker ends).
``GET /readyz``   200 while the worker is connected to a RabbitMQ node and consuming;
                  503 while it fails over to another node or waits for one.

Both answer JSON ``{"status": ..., "amqp": ..., "endpoint": ..., "batches": ...}``.
Run one worker per container (``lienthong router -n 1``) when probes target the port:
several workers of one host share it (SO_REUSEPORT) and a probe reaches any one of them.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

__all__ = ["WorkerState", "serve_liveness"]


class WorkerState(Protocol):
    def health(self) -> dict[str, object]:
        """``alive`` and ``ready`` (bools) and details to show."""
        ...


async def serve_liveness(worker: WorkerState, port: int,
                         host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104 - probed remotely
    """Start the endpoint on the running loop; the caller cleans the runner up."""

    async def healthz(request: web.Request) -> web.Response:
        state = worker.health()
        alive = bool(state.get("alive"))
        return web.json_response({"status": "ok" if alive else "dead", **state},
                                 status=200 if alive else 503)

    async def readyz(request: web.Request) -> web.Response:
        state = worker.health()
        ready = bool(state.get("ready"))
        return web.json_response({"status": "ready" if ready else "not ready", **state},
                                 status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=True).start()
    return runner
