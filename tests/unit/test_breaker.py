"""The configuration guard: one owner for the breakers, their probe, their gauge and their logs."""

import asyncio
import json
import time
from typing import cast

import pytest
from structlog.testing import capture_logs

from worker.cognito import breaker
from worker.cognito.breaker import CircuitBreakers, ConfigurationGuard, Recheck
from worker.cognito.outcomes import ConfigurationError
from worker.contract.fields import (
    FieldDecryptor,
    FieldKeyRefused,
    FieldKeyUnreachable,
    FieldUnreadable,
)
from worker.contract.jobs import decode_job
from worker.pipeline.processor import decryption_recheck
from worker.settings import AppClient
from worker.telemetry.metrics import Metrics

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


class SlowProbe(ScriptedProbe):
    """Passes after a pause, long enough for a second caller to ask meanwhile."""

    async def probe(self, app_client: AppClient) -> None:
        self.probed.append(app_client.client_id)
        await asyncio.sleep(0.05)


async def test_lanes_probing_at_once_probe_a_client_once_and_close_it_once() -> None:
    """Each lane's receive loop asks for due probes; two asking together make one probe."""
    probe = SlowProbe()
    guard = ConfigurationGuard(CLIENTS[:1], CircuitBreakers(0.01, 1), probe, Metrics())
    guard.trip("first", WRONG_SECRET)
    await asyncio.sleep(0.02)
    with capture_logs() as logs:
        await asyncio.gather(guard.probe_due(), guard.probe_due())
    assert probe.probed == ["first"]
    assert not guard.is_open("first")
    assert [line["event"] for line in logs] == ["configuration probe passed: taking work again"]


REFUSED = ConfigurationError("FieldDecryptionRefused", "KMS refused to decrypt the data key")


class ScriptedRecheck:
    """A trip's recheck: raises ``outcome`` when it is an exception, passes when it is None."""

    def __init__(self, outcome: BaseException | None, calls: list[str]) -> None:
        self.outcome = outcome
        self.calls = calls

    async def __call__(self) -> None:
        self.calls.append("recheck")
        if self.outcome is not None:
            raise self.outcome


class OrderedProbe(ScriptedProbe):
    """A Cognito probe that records its turn in the same list as the recheck."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.broken = False
        self.calls = calls

    async def probe(self, app_client: AppClient) -> None:
        self.calls.append("probe")
        await super().probe(app_client)


def guard_with_recheck(
    outcome: BaseException | None,
) -> tuple[ConfigurationGuard, OrderedProbe, ScriptedRecheck, Metrics]:
    calls: list[str] = []
    probe = OrderedProbe(calls)
    recheck = ScriptedRecheck(outcome, calls)
    metrics = Metrics()
    guard = ConfigurationGuard(CLIENTS, CircuitBreakers(0.05, 1), probe, metrics)
    guard.trip("first", REFUSED, recheck)
    return guard, probe, recheck, metrics


async def test_a_failing_recheck_keeps_the_breaker_open_though_cognito_is_sound() -> None:
    guard, _probe, recheck, metrics = guard_with_recheck(REFUSED)
    await asyncio.sleep(0.06)
    with capture_logs() as logs:
        await guard.probe_due()
    assert recheck.calls == ["probe", "recheck"]  # Cognito first, then what actually failed
    assert guard.is_open("first")
    assert gauge(metrics, "first") == 1
    assert guard.reasons()["first"].startswith("FieldDecryptionRefused (check ")
    (line,) = logs
    assert line["event"] == "configuration probe failed"
    assert line["error_code"] == "FieldDecryptionRefused"
    assert line["next_probe_in_s"] == 0.1  # re-tripped: the cool-down doubled
    # Not due again before the longer cool-down: no probe, no recheck.
    await asyncio.sleep(0.06)
    await guard.probe_due()
    assert recheck.calls == ["probe", "recheck"]
    # Still refused at the next probe: still open.
    await asyncio.sleep(0.06)
    await guard.probe_due()
    assert recheck.calls == ["probe", "recheck"] * 2
    assert guard.is_open("first")


async def test_an_inconclusive_recheck_leaves_the_breaker_open_without_doubling() -> None:
    guard, _probe, recheck, metrics = guard_with_recheck(TimeoutError("KMS did not answer"))
    await asyncio.sleep(0.06)
    with capture_logs() as logs:
        await guard.probe_due()
    assert recheck.calls == ["probe", "recheck"]
    assert guard.is_open("first")
    assert gauge(metrics, "first") == 1
    (line,) = logs
    assert line["event"] == "configuration probe inconclusive"
    assert line["error"] == "TimeoutError"
    # Proved nothing: due again at once (no longer cool-down), and it closes once KMS answers.
    recheck.outcome = None
    await guard.probe_due()
    assert not guard.is_open("first")


async def test_a_recheck_that_hangs_is_cut_off_as_inconclusive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(breaker, "RECHECK_TIMEOUT_S", 0.05)
    guard, _probe, _recheck, _metrics = guard_with_recheck(None)
    guard.trip("first", REFUSED, lambda: asyncio.sleep(5))
    await asyncio.sleep(0.11)
    started = time.monotonic()
    with capture_logs() as logs:
        await guard.probe_due()
    assert time.monotonic() - started < 2  # not the 5 s the recheck would take
    assert guard.is_open("first")
    assert [line["event"] for line in logs] == ["configuration probe inconclusive"]


async def test_a_passing_recheck_closes_the_breaker_and_is_dropped() -> None:
    guard, _probe, recheck, metrics = guard_with_recheck(None)
    await asyncio.sleep(0.06)
    with capture_logs() as logs:
        await guard.probe_due()
    assert recheck.calls == ["probe", "recheck"]
    assert not guard.is_open("first")
    assert gauge(metrics, "first") == 0
    assert [line["event"] for line in logs] == ["configuration probe passed: taking work again"]
    # A later trip of another kind brings no recheck: the old one does not run again.
    recheck.outcome = REFUSED
    guard.trip("first", WRONG_SECRET)
    await asyncio.sleep(0.2)  # the second trip's cool-down is doubled: 0.1 s
    await guard.probe_due()
    assert recheck.calls == ["probe", "recheck", "probe"]
    assert not guard.is_open("first")


async def test_a_failing_cognito_probe_decides_before_the_recheck_runs() -> None:
    guard, probe, recheck, _metrics = guard_with_recheck(None)
    probe.broken = True
    await asyncio.sleep(0.06)
    with capture_logs() as logs:
        await guard.probe_due()
    assert recheck.calls == ["probe"]
    assert guard.is_open("first")
    assert logs[0]["error_code"] == "NotAuthorizedException"
    # A Cognito trip meanwhile does not forget the KMS recheck: that problem is not shown gone.
    guard.trip("first", WRONG_SECRET)
    recheck.outcome = REFUSED
    probe.broken = False
    await asyncio.sleep(0.45)  # the third trip's cool-down: 0.2 s, with margin
    await guard.probe_due()
    assert recheck.calls == ["probe", "probe", "recheck"]
    assert guard.is_open("first")


class FakeDecryptor:
    """Stands in for KMS behind the Encryption SDK: raises ``outcome`` or returns a plaintext."""

    PLAINTEXT = "Recheck-Passw0rd!"

    def __init__(self, outcome: Exception | None) -> None:
        self.outcome = outcome
        self.calls = 0

    def decrypt(self, encrypted: str, *, job_id: str, client_id: str | None, field: str) -> str:
        self.calls += 1
        if self.outcome is not None:
            raise self.outcome
        return self.PLAINTEXT


ENCRYPTED_JOB = decode_job(
    json.dumps({"version": 1, "type": "sign_up", "job_id": "j", "username": "ann",
                "password": {"encrypted": "AgV4ZXhhbXBsZQ=="}})
)  # fmt: skip


def kms_recheck(outcome: Exception | None) -> tuple[Recheck, FakeDecryptor]:
    fake = FakeDecryptor(outcome)
    return decryption_recheck(ENCRYPTED_JOB, cast(FieldDecryptor, fake)), fake


async def test_the_kms_recheck_fails_while_kms_refuses() -> None:
    recheck, fake = kms_recheck(
        FieldKeyRefused("KMS refused to decrypt the data key: AccessDenied")
    )
    with pytest.raises(ConfigurationError) as raised:
        await recheck()
    assert raised.value.code == "FieldDecryptionRefused"
    assert fake.calls == 1  # the job's own ciphertext, decrypted again


async def test_the_kms_recheck_is_inconclusive_when_kms_is_unreachable() -> None:
    recheck, _fake = kms_recheck(FieldKeyUnreachable("KMS unreachable: EndpointConnectionError"))
    with pytest.raises(FieldKeyUnreachable):  # not a ConfigurationError: proves nothing
        await recheck()


@pytest.mark.parametrize(
    "outcome",
    [None, FieldUnreadable("password: encrypted for another job")],
    ids=["decrypts", "unreadable"],
)
async def test_the_kms_recheck_passes_once_kms_decrypts(outcome: Exception | None) -> None:
    # Unreadable after KMS answered: the deployment is sound; the job is the one to blame, and is
    # rejected on its next delivery.
    recheck, fake = kms_recheck(outcome)
    with capture_logs() as logs:
        assert await recheck() is None  # the plaintext does not reach the caller
    assert fake.calls == 1
    assert FakeDecryptor.PLAINTEXT not in repr(logs)


class ProbeByClient:
    """A probe whose answer depends on the client: wrong, too slow, or sound."""

    async def probe(self, app_client: AppClient) -> None:
        if app_client.client_id == "wrong":
            raise WRONG_SECRET
        if app_client.client_id == "slow":
            await asyncio.sleep(10)


async def test_the_probe_at_start_opens_a_wrong_client_and_leaves_one_it_cannot_tell_working() -> (
    None
):
    clients = [
        AppClient(client_id=name, user_pool_id="us-east-1_a") for name in ("wrong", "slow", "ok")
    ]
    metrics = Metrics()
    guard = ConfigurationGuard(clients, CircuitBreakers(60, 600), ProbeByClient(), metrics)
    started = time.monotonic()
    await guard.probe_at_start(0.2)
    assert time.monotonic() - started < 2  # together, each within the time limit
    assert guard.reasons() == {
        "wrong": "NotAuthorizedException (check the client secret configured for this app client)"
    }
    assert gauge(metrics, "wrong") == 1
    assert not guard.is_open("slow")
    assert guard.unverified() == {"slow": "TimeoutError"}
    guard.succeeded("slow")  # a job of its own went through
    assert guard.unverified() == {}
    assert not guard.is_open("ok")
