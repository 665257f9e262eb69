"""What a producer sends: jobs checked by the worker's own decoder, and the outcomes of sending."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from worker.contract.fields import FieldEncryptor, encrypt_job
from worker.contract.jobs import Job, JobType, MalformedJob, decode_job, encode_job

#: A job as a producer gives it: one of the contract's models, or a plain dict of its JSON form.
JobInput = Job | Mapping[str, Any]

#: SQS's limit on one message and on a whole SendMessageBatch request, in bytes. SQS raised both
#: to 1 MiB in 2025; 256 KiB is the limit every queue, emulator and older SDK accepts.
DEFAULT_MAX_BYTES = 262_144
MAX_BATCH_ENTRIES = 10

# MessageGroupId and MessageDeduplicationId: 1-128 ASCII letters, digits and punctuation marks.
_SQS_ID = re.compile(r"[A-Za-z0-9!-/:-@\[-`{-~]{1,128}")


class InvalidJob(ValueError):
    """Raised when a job would be rejected by the worker; nothing was sent for it.

    ``reason`` is the very reason the worker would publish in its ``rejected`` result (field paths
    and rules, never the values sent). ``index`` is the job's position in ``send_many``'s input.
    """

    def __init__(
        self,
        reason: str,
        *,
        job_id: str | None,
        job_type: JobType | None,
        index: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id
        self.job_type = job_type
        self.index = index


@dataclass(frozen=True, slots=True)
class SentJob:
    """A job SQS accepted."""

    job_id: str
    message_id: str
    index: int = 0  # position in the input of send_many (0 for send)
    sequence_number: str | None = None  # FIFO queues only


@dataclass(frozen=True, slots=True)
class FailedJob:
    """A job that is not on the queue, and why.

    ``code`` is SQS's error code for a ``Failed`` batch entry, or ``InvalidJob`` for a job refused
    before sending (``send_many(..., skip_invalid=True)``). ``sender_fault`` is SQS's verdict: a job
    with ``sender_fault=False`` was retried ``max_attempts`` times before it was reported.
    """

    job_id: str | None
    code: str
    message: str
    sender_fault: bool
    index: int = 0


@dataclass(slots=True)
class SendReport:
    """What ``send_many`` did: every job of the input is counted as sent or listed as failed.

    ``sent`` lists the :class:`SentJob` only when ``keep_sent=True`` was asked (an import of a
    million rows need not hold a million of them); ``sent_count`` always counts them.
    """

    sent_count: int = 0
    failed: list[FailedJob] = field(default_factory=list)
    sent: list[SentJob] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every job was sent."""
        return not self.failed

    def add(self, sent: list[SentJob], failed: list[FailedJob], *, keep_sent: bool) -> None:
        """Count one batch's outcome."""
        self.sent_count += len(sent)
        self.failed.extend(failed)
        if keep_sent:
            self.sent.extend(sent)


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A job checked by the worker's decoder, with its id and the exact body to send."""

    job: Job
    job_id: str  # the job's own, or generated when the producer gave none
    body: str
    index: int

    @property
    def size(self) -> int:
        """The body's size in bytes, as SQS counts it."""
        return len(self.body.encode("utf-8", "surrogatepass"))


#: The Unicode normal forms :func:`prepare_job` can put a username in.
UnicodeForm = Literal["NFC", "NFD", "NFKC", "NFKD"]


def prepare_job(
    job: JobInput,
    *,
    index: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    encryptor: FieldEncryptor | None = None,
    normalize_username: UnicodeForm | None = None,
) -> PreparedJob:
    """Check ``job`` the way the worker will, give it an id if it has none, and encode it.

    With ``normalize_username`` (``"NFC"`` or ``"NFD"``...), the username is put in that Unicode
    form first: the worker sends it exactly as received, and Cognito holds ``zoë`` in NFC and in
    NFD as two users.

    With an ``encryptor``, its plaintext ``password`` and ``confirmation_code`` are encrypted
    (bound to the job's id, client and field); fields already encrypted are kept.
    Raise :class:`InvalidJob`, with the worker's own reason, if the worker would reject it.
    """
    if isinstance(job, BaseModel):
        if job.job_id is None:
            job = job.model_copy(update={"job_id": new_job_id()})
        body = encode_job(job)
    elif isinstance(job, Mapping):
        document = dict(job)
        if document.get("job_id") is None:
            document["job_id"] = new_job_id()
        try:
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            raise InvalidJob(
                f"body is not JSON: {type(error).__name__}",
                job_id=_str_or_none(document.get("job_id")),
                job_type=None,
                index=index,
            ) from None
    else:
        raise TypeError(f"a job is a worker.jobs model or a mapping, not {type(job).__name__}")
    if normalize_username is not None:
        body = _with_username_in(normalize_username, body)
    try:
        # The worker's own decoder, on the exact text it will receive: the same verdict, the same
        # reason, and a model whose wire form carries the secrets themselves.
        decoded = decode_job(body)
    except MalformedJob as malformed:
        raise InvalidJob(
            malformed.reason, job_id=malformed.job_id, job_type=malformed.job_type, index=index
        ) from None
    if encryptor is not None:
        decoded = encrypt_job(decoded, encryptor)
    job_id = decoded.job_id or ""  # never empty: set above, and a job id has at least one character
    prepared = PreparedJob(decoded, job_id, encode_job(decoded), index)
    if prepared.size > max_bytes:
        raise InvalidJob(
            f"body: {prepared.size} bytes, over the queue's limit of {max_bytes} bytes",
            job_id=prepared.job_id,
            job_type=JobType(decoded.type),
            index=index,
        )
    return prepared


def _with_username_in(form: UnicodeForm, body: str) -> str:
    """``body`` with its username (if it has one) in Unicode form ``form``; checked after, as
    any body is, so a form that breaks a limit is refused like any other."""
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("username"), str):
        return body
    document["username"] = unicodedata.normalize(form, document["username"])
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def new_job_id() -> str:
    """A fresh job id (a random UUID), so that a result can be matched to its job."""
    return str(uuid.uuid4())


def sqs_id(value: str) -> str:
    """``value`` as a MessageGroupId or MessageDeduplicationId: as is when SQS allows it,
    else its SHA-256 (SQS allows ASCII letters, digits and punctuation only, up to 128)."""
    if _SQS_ID.fullmatch(value):
        return value
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
