"""The configuration guard: one owner for the breakers, their probe, their gauge and their logs."""

import asyncio

from structlog.testing import capture_logs

from worker.breaker import CircuitBreakers, ConfigurationGuard
from worker.metrics import Metrics
from worker.outcomes import ConfigurationError
from worker.settings import AppClient

CLIENTS = (
    AppClient(client_id="first", user_pool_id="us-east-1_a"),
    AppClient(client_id="second", user_pool_id="eu-west-1_b"),
)
WRONG_SECRET = ConfigurationError("NotAuthorizedException", "Unable to verify secret hash")


class ScriptedProbe:
    """Fails with a configuration error while ``broken``; records which clients it probed."""

    def __init__(self) -> None:
        self.broken = True
        self.probed: list[str] = []

    async def probe(self, app_client: AppClient) -> None:
        self.probed.append(app_client.client_id)
        if self.broken:
            raise WRONG_SECRET


def gauge(metrics: Metrics, client_id: str) -> float:
    value = metrics.registry.get_sample_value(
        "cognito_worker_breaker_open", {"client_id": client_id}
    )
    assert value is not None
    return value


def test_the_gauge_and_readiness_change_together_when_a_job_trips_the_breaker() -> None:
    metrics = Metrics()
    guard = ConfigurationGuard(CLIENTS, CircuitBreakers(60, 600), ScriptedProbe(), metrics)
    assert gauge(metrics, "first") == 0
    with capture_logs() as logs:
        delay_s = guard.trip("first", WRONG_SECRET)
    assert guard.is_open("first")
    assert gauge(metrics, "first") == 1  # at once, not at the next turn of the receive loop
    assert set(guard.reasons()) == {"first"}
    assert delay_s == 61  # just after the probe
    assert not guard.all_open()
    (line,) = logs
    assert line["log_level"] == "error"
    assert line["hint"] == "check the client secret configured for this app client"


async def test_a_probe_closes_the_breaker_only_once_the_configuration_is_sound() -> None:
    metrics = Metrics()
    probe = ScriptedProbe()
    guard = ConfigurationGuard(CLIENTS, CircuitBreakers(0.05, 1), probe, metrics)
    guard.trip("first", WRONG_SECRET)
    guard.trip("second", WRONG_SECRET)
    assert guard.all_open()
    await asyncio.sleep(0.06)
    await guard.probe_due()
    assert probe.probed == ["first", "second"]
    assert guard.all_open()  # the probe failed: still open, with a longer cool-down
    assert gauge(metrics, "second") == 1
    probe.broken = False
    await asyncio.sleep(0.11)
    await guard.probe_due()
    assert not guard.is_open("first")
    assert not guard.is_open("second")
    assert gauge(metrics, "first") == gauge(metrics, "second") == 0
    assert guard.reasons() == {}
