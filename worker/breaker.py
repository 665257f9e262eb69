"""The circuit breaker for our own misconfiguration: stop taking work rather than fail jobs.

A configuration error (wrong secret, unknown pool or client, missing permission, broken trigger)
blames no job. The breaker of that app client opens: its jobs go back to the queue untouched, the
worker stops receiving once every client's breaker is open, readiness says why, and after a
cool-down (doubling while the problem lasts) a side-effect-free probe call decides whether to close.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker.outcomes import ConfigurationError

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
}


def hint(error: ConfigurationError) -> str:
    """What an operator should look at for this configuration error."""
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
        reason = f"{error.code}: {error.message} ({hint(error)})"
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
