"""The circuit breaker for our own misconfiguration: stop taking work rather than fail jobs.

A configuration error (wrong secret, unknown pool or client, missing permission, broken trigger,
a KMS key that will not decrypt the jobs' fields) blames no job. The breaker of that app client
opens: its jobs go back to the queue untouched, the worker stops receiving once every client's
breaker is open, readiness says why, and after a cool-down (doubling while the problem lasts) a
side-effect-free probe call decides whether to close.

The probe is Cognito's (the gateway's ConfirmSignUp, then AdminGetUser, for a user that cannot
exist: the client, its secret and its user pool): it sees what
Cognito checks, not what KMS does. So a trip may bring its own *recheck*, an async callable that
repeats what actually failed without side effects (for a KMS refusal: decrypt the same job's
ciphertext again, and drop the plaintext). It is kept while the breaker is open and runs after the
Cognito probe passes: a :class:`ConfigurationError` from it keeps the breaker open (a failed probe,
the cool-down doubles); any other exception, or no answer within ``RECHECK_TIMEOUT_S``, proves
nothing (stay open and still due, as after an inconclusive Cognito probe); success closes the
breaker and drops the recheck. Without one, the Cognito probe
alone decides, and a problem it cannot see (a broken trigger, the daily email limit) shows up as a
job tripping the breaker again, each time with a longer cool-down.

:class:`ConfigurationGuard` is the one owner of all this: it probes every client once at start,
the processor trips it, the receive loop asks it to probe, readiness reads it, and it alone logs
breaker changes and sets the gauge.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.cognito.outcomes import ConfigurationError, UserPoolError
from worker.settings import AppClient
from worker.telemetry.logs import get_logger
from worker.telemetry.metrics import Metrics

log = get_logger("breaker")

#: A check that repeats, without side effects, what tripped a breaker; see the module docstring.
Recheck = Callable[[], Awaitable[None]]
# A recheck runs in the receive loop: one that hangs is cut off (and proves nothing) well before
# the loop would look stalled to the liveness probe.
RECHECK_TIMEOUT_S = 20.0

_HINTS = {
    "NotAuthorizedException": "check the client secret configured for this app client",
    "InvalidParameterException": "check whether this app client has a secret configured",
    "ResourceNotFoundException": "check the user pool id and app client id",
    "AccessDeniedException": "check the task role's Cognito permissions",
    "UnrecognizedClientException": "check the AWS credentials of the task",
    "InvalidLambdaResponseException": "check the user pool's Lambda triggers",
    "InvalidEmailRoleAccessPolicyException": "check the user pool's email role",
    "InvalidSmsRoleAccessPolicyException": "check the user pool's SMS role",
    "InvalidSmsRoleTrustRelationshipException": "check the user pool's SMS role trust policy",
    "LimitExceededException": "the account's daily email quota is spent; configure SES",
    "FieldDecryptionRefused": (
        "check FIELD_ENCRYPTION_KEY_ARNS, the KMS key's state and the task role's kms:Decrypt"
    ),
}


def hint(error: ConfigurationError) -> str:
    """What an operator should look at for this configuration error."""
    if isinstance(error, UserPoolError):
        return "check the user pool id configured for this app client"
    return _HINTS.get(error.code, "check the worker's Cognito configuration")


@dataclass
class _Open:
    reason: str
    until: float


class CircuitBreakers:
    """One breaker per app client."""

    def __init__(self, cooldown_s: float, max_cooldown_s: float) -> None:
        self._cooldown_s = cooldown_s
        self._max_cooldown_s = max_cooldown_s
        self._open: dict[str, _Open] = {}
        # Trips since the client's last real success. A probe cannot see every problem (a broken
        # trigger, the daily email limit): after it passes, a job that trips the breaker again
        # waits longer than the last one did.
        self._trips: dict[str, int] = {}

    def trip(self, client_id: str, error: ConfigurationError) -> float:
        """Open (or keep open) the client's breaker; return the cool-down in seconds."""
        trips = self._trips.get(client_id, 0) + 1
        self._trips[client_id] = trips
        cooldown = min(self._max_cooldown_s, self._cooldown_s * float(2 ** (trips - 1)))
        # Codes and hints only: an SDK message can carry a role ARN or an account id.
        reason = f"{error.code} ({hint(error)})"
        self._open[client_id] = _Open(reason, time.monotonic() + cooldown)
        return cooldown

    def close(self, client_id: str) -> None:
        """The probe passed: take work for this client again."""
        self._open.pop(client_id, None)

    def succeeded(self, client_id: str) -> None:
        """A real job of this client went through: its configuration is sound."""
        self._trips.pop(client_id, None)

    def is_open(self, client_id: str) -> bool:
        """Whether jobs of this client must go back to the queue untouched."""
        return client_id in self._open

    def seconds_left(self, client_id: str) -> float:
        """Until the next probe of an open breaker (0 when due or closed)."""
        state = self._open.get(client_id)
        return max(0.0, state.until - time.monotonic()) if state else 0.0

    def due_for_probe(self) -> list[str]:
        """Open breakers whose cool-down is over."""
        now = time.monotonic()
        return [client_id for client_id, state in self._open.items() if state.until <= now]

    def reasons(self) -> dict[str, str]:
        """Why each open breaker is open, by client id."""
        return {client_id: state.reason for client_id, state in self._open.items()}

    def all_open(self, client_ids: list[str]) -> bool:
        """Whether no configured client can take work."""
        return all(client_id in self._open for client_id in client_ids)


class ConfigurationProbe(Protocol):
    """A call that checks an app client's configuration and changes nothing."""

    async def probe(self, app_client: AppClient) -> None:
        """Return if the configuration is sound; raise :class:`ConfigurationError` if not."""
        ...


class ConfigurationGuard:
    """The app clients' breakers, their probe, their gauge and their log lines, in one place."""

    def __init__(
        self,
        clients: Sequence[AppClient],
        breakers: CircuitBreakers,
        probe: ConfigurationProbe,
        metrics: Metrics,
    ) -> None:
        self._clients = {client.client_id: client for client in clients}
        self._breakers = breakers
        self._probe = probe
        self._rechecks: dict[str, Recheck] = {}
        # Each lane's receive loop asks for probes: a client already being probed is not probed
        # again at the same time (one probe call, one verdict, one log line).
        self._probing: set[str] = set()
        # Clients whose probe at start proved nothing (Cognito out of reach, throttled): they
        # take work, and readiness names them until a job of theirs or a probe goes through.
        self._unverified: dict[str, str] = {}
        self._gauge = metrics.breaker_open
        for client_id in self._clients:
            self._gauge.labels(client_id).set(0)

    async def probe_at_start(self, timeout_s: float) -> None:
        """Probe every client once, together, each within ``timeout_s``, before the first
        receive: a client whose configuration is wrong has its breaker open from the start
        (readiness says why; burst mode gives up before it takes a job), and one whose probe
        proves nothing either way takes work, as it would have without a probe, and stays
        unverified (:meth:`unverified`). Never raises for what a probe finds."""
        await asyncio.gather(
            *(self._probe_at_start(client, timeout_s) for client in self._clients.values())
        )

    async def _probe_at_start(self, client: AppClient, timeout_s: float) -> None:
        client_id = client.client_id
        try:
            await asyncio.wait_for(self._probe.probe(client), timeout_s)
        except ConfigurationError as error:
            self.trip(client_id, error)
            return
        except Exception as error:  # Cognito out of reach, throttled, too slow: proves nothing
            code = getattr(error, "code", None) or type(error).__name__
            self._unverified[client_id] = str(code)
            log.warning(
                "configuration not verified at start: taking work",
                client_id=client_id,
                error=str(code),
                note="a job that meets a configuration error still opens the breaker",
            )
            return
        log.info("configuration verified at start", client_id=client_id)

    def unverified(self) -> dict[str, str]:
        """Clients taking work whose configuration no probe or job has confirmed yet, with why
        the probe at start could not tell (an error code or class name)."""
        return dict(self._unverified)

    def is_open(self, client_id: str) -> bool:
        """Whether jobs of this client must go back to the queue untouched."""
        return self._breakers.is_open(client_id)

    def hand_back_delay_s(self, client_id: str) -> int:
        """How long a job of an open client should stay away: until just after the next probe."""
        return math.ceil(self._breakers.seconds_left(client_id)) + 1

    def all_open(self) -> bool:
        """Whether no configured client can take work."""
        return self._breakers.all_open(list(self._clients))

    def reasons(self) -> dict[str, str]:
        """Why each open breaker is open, by client id (for readiness)."""
        return self._breakers.reasons()

    def trip(
        self, client_id: str, error: ConfigurationError, recheck: Recheck | None = None
    ) -> int:
        """A job met a configuration error: open the breaker; return the hand-back delay.

        ``recheck``, when given, must pass too before the breaker closes: it repeats what the
        Cognito probe cannot see. A trip without one keeps the recheck of an earlier trip, whose
        problem this trip does not prove gone.
        """
        cooldown = self._breakers.trip(client_id, error)
        self._unverified.pop(client_id, None)
        if recheck is not None:
            self._rechecks[client_id] = recheck
        self._gauge.labels(client_id).set(1)
        log.error(
            "configuration error: this client takes no work until a probe passes",
            client_id=client_id,
            error_code=error.code,
            error_message=error.message,
            hint=hint(error),
            probe_in_s=round(cooldown, 1),
        )
        return math.ceil(cooldown) + 1

    def succeeded(self, client_id: str) -> None:
        """A real job of this client went through: its configuration is sound."""
        self._breakers.succeeded(client_id)
        self._unverified.pop(client_id, None)

    async def probe_due(self) -> None:
        """Probe each open breaker whose cool-down is over; close it if the probe passes, and
        the recheck its trip brought, if any, passes after it."""
        for client_id in self._breakers.due_for_probe():
            client = self._clients.get(client_id)
            if client is None:  # pragma: no cover - breakers only open for configured clients
                continue
            if client_id in self._probing:
                continue
            self._probing.add(client_id)
            try:
                await self._probe_one(client_id, client)
            finally:
                self._probing.discard(client_id)

    async def _probe_one(self, client_id: str, client: AppClient) -> None:
        """Probe one open breaker, then its recheck; close it only if both pass."""
        try:
            await self._probe.probe(client)
            recheck = self._rechecks.get(client_id)
            if recheck is not None:
                await asyncio.wait_for(recheck(), RECHECK_TIMEOUT_S)
        except ConfigurationError as error:
            cooldown = self._breakers.trip(client_id, error)
            log.error(
                "configuration probe failed",
                client_id=client_id,
                error_code=error.code,
                error_message=error.message,
                next_probe_in_s=round(cooldown, 1),
            )
            return
        except Exception as error:  # a transient failure proves nothing either way
            log.warning(
                "configuration probe inconclusive",
                client_id=client_id,
                error=type(error).__name__,
            )
            return
        self._breakers.close(client_id)
        self._rechecks.pop(client_id, None)
        self._unverified.pop(client_id, None)
        self._gauge.labels(client_id).set(0)
        log.info("configuration probe passed: taking work again", client_id=client_id)
