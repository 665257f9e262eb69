"""One message of the dead-letter queue as an operator may see it: never a secret.

A message reaches the DLQ in one of two ways. The worker copies a job it rejected, or gave up on
after transient errors in every allowed delivery, with the attributes ``rejection_reason`` and
``original_message_id``; the queue's own redrive policy moves a message received
``maxReceiveCount`` times without an outcome, with no reason at all. Both are read here into a
:class:`DeadLetter`: the fields of the job that are not secret (id, type, client, batch), the
username masked as Cognito masks a code's destination, the reason and its *rule* (the reason
without the details that differ from message to message, so alike failures fall in one group),
and the times SQS knows. The body itself is kept for a redrive only; nothing here prints it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.contract.jobs import JobType, parse_json_object

#: The rule of a message the queue's redrive policy moved: the worker stamped no reason on it.
MOVED_BY_SQS = "no reason stamped: moved by the queue's redrive policy (maxReceiveCount)"
#: The attribute a producer may set to say which lane (queue) a job was meant for.
LANE_ATTRIBUTE = "lane"
NO_VALUE = "-"

_GAVE_UP = re.compile(r"^(?P<code>[\w.]+): transient errors in \d+ deliveries$")
# The parts of a reason that name one message's particulars, not the rule it broke.
_PARTICULARS = (
    (re.compile(r" at line \d+ column \d+"), ""),
    (
        re.compile(r"character \d+ \(U\+[0-9A-F]+[^)]*\) is not allowed"),
        "a character is not allowed",
    ),
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One received DLQ message, read for triage."""

    message_id: str  # on the DLQ
    receipt_handle: str
    body: str  # for a redrive; never printed
    attributes: dict[str, Any]  # the message attributes, as SQS returned them
    group_id: str | None  # FIFO
    reason: str | None  # as stamped by the worker, None when SQS moved it
    original_message_id: str  # the jobs-queue message id its result carries
    job_id: str | None
    job_type: str | None
    client_id: str | None
    batch: str | None
    username: str | None  # masked
    lane: str | None
    sent_at: datetime | None  # when it was put on the DLQ (SQS keeps a moved one's first send)
    first_received_at: datetime | None  # its first receive from the DLQ
    receive_count: int  # receives from the DLQ, this one included

    @property
    def rule(self) -> str:
        """The reason's rule: the group this message falls in."""
        return reason_rule(self.reason)

    @property
    def key(self) -> str:
        """The id a job is known by: its job id, else the message id the worker stands in."""
        return self.job_id or self.original_message_id


def reason_rule(reason: str | None) -> str:
    """The rule a reason names, without what is particular to one message.

    ``InternalErrorException: transient errors in 5 deliveries`` stays the code and what
    happened; ``body is not JSON: Expecting value at line 1 column 2`` loses its position.
    """
    if reason is None:
        return MOVED_BY_SQS
    gave_up = _GAVE_UP.match(reason)
    if gave_up is not None:
        return f"{gave_up['code']}: transient errors in every allowed delivery"
    for particular, replacement in _PARTICULARS:
        reason = particular.sub(replacement, reason)
    return reason


def mask_username(username: str) -> str:
    """A username masked the way Cognito masks a code's destination: ``a***@e***``, ``a***``."""
    local, at, domain = username.partition("@")
    if at:
        return f"{local[:1]}***@{domain[:1]}***"
    return f"{username[:1]}***"


def read_dead_letter(message: Mapping[str, Any]) -> DeadLetter:
    """A DLQ message as ReceiveMessage returned it (with all attributes asked for)."""
    attributes: dict[str, Any] = dict(message.get("MessageAttributes") or {})
    system: Mapping[str, str] = message.get("Attributes") or {}
    body = str(message.get("Body", ""))
    fields = _readable_fields(body)
    username = fields.get("username")
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=body,
        attributes=attributes,
        group_id=system.get("MessageGroupId"),
        reason=_string(attributes, "rejection_reason"),
        original_message_id=_string(attributes, "original_message_id") or message["MessageId"],
        job_id=fields.get("job_id"),
        job_type=fields.get("type"),
        client_id=fields.get("client_id"),
        batch=fields.get("batch"),
        username=mask_username(username) if username else None,
        lane=_string(attributes, LANE_ATTRIBUTE),
        sent_at=_time(system.get("SentTimestamp")),
        first_received_at=_time(system.get("ApproximateFirstReceiveTimestamp")),
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
    )


def _readable_fields(body: str) -> dict[str, str]:
    """The body's fields that are never secret and are text, when the body is a JSON object.

    The job id, type and batch are kept only in forms the contract allows (a type the worker
    knows); anything else, and every field that could be a secret, is left unread.
    """
    try:
        document, _duplicates = parse_json_object(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    fields = {
        name: document[name][:256]
        for name in ("job_id", "client_id", "batch", "username")
        if isinstance(document.get(name), str) and document[name].isprintable()
    }
    job_type = document.get("type")
    if isinstance(job_type, str) and job_type in {t.value for t in JobType}:
        fields["type"] = job_type
    return fields


def _string(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    if isinstance(value, Mapping) and isinstance(value.get("StringValue"), str):
        return str(value["StringValue"])
    return None


def _time(milliseconds: str | None) -> datetime | None:
    if milliseconds is None:
        return None
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC)
