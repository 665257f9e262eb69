"""The health endpoints, served by aiohttp next to the worker in the same event loop.

``/healthz`` (liveness) answers 503 when the receive loop is dead or has not run recently, so ECS
replaces the task; ``/readyz`` (readiness) answers 503 until the clients are up and while draining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from worker.telemetry.metrics import CONTENT_TYPE, Metrics


@dataclass(frozen=True, slots=True)
class Check:
    """One probe's answer: whether it passes, and a small JSON-able body saying why."""

    ok: bool
    body: dict[str, Any]


class Probed(Protocol):
    """What the health app asks of the worker."""

    def liveness(self) -> Check:
        """Whether the receive loop is alive and ran recently."""
        ...

    def readiness(self) -> Check:
        """Whether the worker is taking new work."""
        ...


def health_app(worker: Probed, metrics: Metrics | None = None) -> web.Application:
    """The aiohttp application serving ``/healthz``, ``/readyz`` and ``/metrics``."""

    async def healthz(_request: web.Request) -> web.Response:
        return _answer(worker.liveness())

    async def readyz(_request: web.Request) -> web.Response:
        return _answer(worker.readiness())

    async def metrics_page(_request: web.Request) -> web.Response:
        assert metrics is not None
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_page)
    return app


def _answer(check: Check) -> web.Response:
    return web.json_response(check.body, status=200 if check.ok else 503)
