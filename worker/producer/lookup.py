"""Looking a job up: its stored state and result, read from the worker's idempotency table.

    from worker.producer.lookup import look_up_job

    state = look_up_job("cognito-worker-idempotency", "signup-42", client_id="abc123")
    if state is None:
        ...  # not received yet, rejected before it was claimed, or its record expired
    elif state.status is JobStatus.FINISHED:
        print(state.result.status)

The worker keeps one item per (app client, job id) in the table it uses with
``IDEMPOTENCY_STORE=dynamodb``: while the job is worked on or waits for its next delivery, its
history (deliveries that failed or were deferred, whether a request may have reached Cognito
without an answer); once finished, the result it published, for ``IDEMPOTENCY_TTL_S``. No item
holds a secret. A lookup is one ``dynamodb:GetItem``, and needs no other permission;
:func:`look_up_jobs` reads up to 100 jobs with one ``dynamodb:BatchGetItem``. A worker with the
memory store keeps its records in its own process: there is nothing to look up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import boto3

from worker.contract.jobs import JobResult
from worker.contract.records import job_key
from worker.producer.region import sdk_region

BATCH_GET_MAX = 100  # the most keys one BatchGetItem takes
# UnprocessedKeys (the table's read capacity, or the answer's 16 MB) are asked for again after
# 50 ms, doubling up to 1.6 s: about 3 s in all before the lookup gives them up.
_UNPROCESSED_ATTEMPTS = 7
_UNPROCESSED_FIRST_WAIT_S = 0.05


class JobStatus(StrEnum):
    """Where a job stands, as its record says."""

    PENDING = "pending"  # received before, waiting for its next delivery (handed back)
    RUNNING = "running"  # a worker holds it under a live lease right now
    FINISHED = "finished"  # its result was published; ``result`` is it


@dataclass(frozen=True, slots=True)
class JobState:
    """A job's record in the idempotency table."""

    client_id: str
    job_id: str
    status: JobStatus
    failed_deliveries: int = 0  # deliveries that ended in transient errors, so far
    deferred_deliveries: int = 0  # deliveries that ended on a per-user limit, so far
    may_have_acted: bool = False  # an attempt may have reached Cognito without an answer
    done: tuple[str, ...] = ()  # calls of a two-call job carried out so far
    lease_left_s: float = 0.0  # RUNNING: how long the worker's lease still runs
    expires_at: datetime | None = None  # when the record is dropped
    result: JobResult | None = None  # FINISHED: the published result

    @property
    def attempts(self) -> int:
        """Deliveries that ended without an outcome so far (failed or deferred)."""
        return self.failed_deliveries + self.deferred_deliveries


def default_client_id(environ: Mapping[str, str]) -> str | None:
    """The app client a job without ``client_id`` goes to, as the worker's environment names it:
    ``COGNITO_CLIENT_ID``, else the first of ``COGNITO_CLIENTS``; None when neither says."""
    if environ.get("COGNITO_CLIENT_ID"):
        return environ["COGNITO_CLIENT_ID"]
    try:
        clients = json.loads(environ.get("COGNITO_CLIENTS", ""))
    except ValueError:
        return None  # never echoed: the variable holds client secrets
    return next(iter(clients), None) if isinstance(clients, dict) else None


def read_job_state(
    item: dict[str, Any], client_id: str, job_id: str, now: float | None = None
) -> JobState | None:
    """The state an item of the table holds; None when it has expired (DynamoDB deletes expired
    items only some time later, and the worker takes them for new keys meanwhile)."""
    now = time.time() if now is None else now
    expires = item.get("expires_at", {}).get("N")
    if expires is not None and int(expires) < int(now):
        return None
    common: dict[str, Any] = {
        "client_id": client_id,
        "job_id": job_id,
        "expires_at": datetime.fromtimestamp(int(expires), UTC) if expires else None,
    }
    if item.get("state", {}).get("S") == "completed":
        result = JobResult.model_validate_json(item["result"]["S"])
        return JobState(status=JobStatus.FINISHED, result=result, **common)
    lease_left_s = float(item.get("lease_until", {}).get("N", "0")) - now
    return JobState(
        status=JobStatus.RUNNING if lease_left_s > 0 else JobStatus.PENDING,
        failed_deliveries=int(item.get("failures", {}).get("N", "0")),
        deferred_deliveries=int(item.get("deferrals", {}).get("N", "0")),
        may_have_acted=bool(item.get("ambiguous", {}).get("BOOL", False)),
        done=tuple(entry["S"] for entry in item.get("done", {}).get("L", [])),
        lease_left_s=max(0.0, lease_left_s),
        **common,
    )


def _request(table: str, client_id: str, job_id: str) -> dict[str, Any]:
    return {
        "TableName": table,
        "Key": {"pk": {"S": job_key(client_id, job_id)}},
        "ConsistentRead": True,
    }


def look_up_job(
    table: str,
    job_id: str,
    *,
    client_id: str,
    client: Any = None,
    region_name: str | None = None,
    endpoint_url: str | None = None,
) -> JobState | None:
    """The job's state (boto3), or None when the table holds no live record of it.

    ``client`` is a boto3 DynamoDB client of your own; without one, a client is made from the
    default credentials, ``region_name`` (else ``AWS_REGION``) and ``endpoint_url``.
    """
    if client is None:
        client = boto3.client(
            "dynamodb", region_name=sdk_region(region_name), endpoint_url=endpoint_url
        )
    answer = client.get_item(**_request(table, client_id, job_id))
    item = answer.get("Item")
    return read_job_state(item, client_id, job_id) if item else None


async def async_look_up_job(
    client: Any, table: str, job_id: str, *, client_id: str
) -> JobState | None:
    """:func:`look_up_job` on an aioboto3 DynamoDB client you have entered."""
    answer = await client.get_item(**_request(table, client_id, job_id))
    item = answer.get("Item")
    return read_job_state(item, client_id, job_id) if item else None


class UnprocessedKeysError(Exception):
    """DynamoDB left some of a :func:`look_up_jobs` batch unread, attempt after attempt."""

    def __init__(self, job_ids: Sequence[str], read: Mapping[str, JobState | None]) -> None:
        super().__init__(
            f"DynamoDB left {len(job_ids)} job(s) unread after {_UNPROCESSED_ATTEMPTS} attempts "
            "(UnprocessedKeys: the table's read capacity); try again later"
        )
        self.job_ids = tuple(job_ids)  # the jobs not read
        self.read = dict(read)  # the others, as look_up_jobs would have answered them


def look_up_jobs(
    table: str,
    job_ids: Sequence[str],
    *,
    client_id: str,
    client: Any = None,
    region_name: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, JobState | None]:
    """The states of up to :data:`BATCH_GET_MAX` jobs of one app client, with one consistent
    ``dynamodb:BatchGetItem`` (boto3): each job id to its state, or None when the table holds
    no live record of it. Keys DynamoDB leaves unprocessed are asked for again, with a growing
    pause; those still unread after about 3 s raise :class:`UnprocessedKeysError`.
    """
    ids = list(dict.fromkeys(job_ids))  # a key twice in one request is a ValidationException
    if len(ids) > BATCH_GET_MAX:
        raise ValueError(f"at most {BATCH_GET_MAX} job ids a call, not {len(ids)}")
    if not ids:
        return {}  # (DynamoDB refuses a request without keys)
    if client is None:
        client = boto3.client(
            "dynamodb", region_name=sdk_region(region_name), endpoint_url=endpoint_url
        )
    job_of_key = {job_key(client_id, job_id): job_id for job_id in ids}
    states: dict[str, JobState | None] = dict.fromkeys(ids)
    keys = [{"pk": {"S": key}} for key in job_of_key]
    wait_s = _UNPROCESSED_FIRST_WAIT_S
    for attempt in range(_UNPROCESSED_ATTEMPTS):
        if attempt:
            time.sleep(wait_s)
            wait_s *= 2
        answer = client.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
        for item in answer.get("Responses", {}).get(table, []):
            job_id = job_of_key[item["pk"]["S"]]
            states[job_id] = read_job_state(item, client_id, job_id)
        keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        if not keys:
            return states
    unread = [job_of_key[key["pk"]["S"]] for key in keys]
    for job_id in unread:
        del states[job_id]
    raise UnprocessedKeysError(unread, states)
