"""Which DLQ messages an operator chose: by reason, job type, client, lane, batch, job id, age.

Every criterion given must hold; criteria not given match anything. A criterion given several
values (``--batch a --batch b``) holds for any of them. A reason is matched as a
piece of the message's rule (what ``dlq summary`` prints), so part of it is enough.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from worker.operations.dead_letters import NO_VALUE, DeadLetter

_DURATION = re.compile(r"^(?P<count>\d+)(?P<unit>[smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``6h`` or ``2d``; raise ValueError for anything else."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 6h or 2d")
    return timedelta(**{_UNITS[match["unit"]]: int(match["count"])})


@dataclass(frozen=True, slots=True)
class Selection:
    """The criteria of a choice of messages."""

    reason: str | None = None
    job_types: frozenset[str] = field(default_factory=frozenset)
    client_ids: frozenset[str] = field(default_factory=frozenset)
    lanes: frozenset[str] = field(default_factory=frozenset)
    batches: frozenset[str] = field(default_factory=frozenset)
    job_ids: frozenset[str] = field(default_factory=frozenset)
    older_than: timedelta | None = None
    newer_than: timedelta | None = None

    @property
    def is_everything(self) -> bool:
        """Whether no criterion was given."""
        return self == Selection()

    def matches(self, letter: DeadLetter, now: datetime | None = None) -> bool:
        """Whether ``letter`` meets every criterion given."""
        now = now or datetime.now(UTC)
        if self.reason is not None and self.reason not in letter.rule:
            return False
        wanted = (
            (self.job_types, letter.job_type),
            (self.client_ids, letter.client_id),
            (self.lanes, letter.lane),
            (self.batches, letter.batch),
        )
        # "-" chooses the messages that have no value there (a body with no batch, no lane).
        if any(want and (have or NO_VALUE) not in want for want, have in wanted):
            return False
        if self.job_ids and not ({letter.job_id, letter.original_message_id} & self.job_ids):
            return False
        if self.older_than is not None or self.newer_than is not None:
            if letter.sent_at is None:
                return False
            age = now - letter.sent_at
            if self.older_than is not None and age < self.older_than:
                return False
            if self.newer_than is not None and age > self.newer_than:
                return False
        return True
