"""``cognito-worker job JOB_ID [--client-id ID]``: what became of a job, from the idempotency table.

Reads ``IDEMPOTENCY_STORE`` and ``IDEMPOTENCY_TABLE`` as the worker does, and the client from
``--client-id``, else ``COGNITO_CLIENT_ID``, else the first of ``COGNITO_CLIENTS`` (the default a
job without ``client_id`` goes to). One ``dynamodb:GetItem``; nothing printed is a secret (the
table holds none). Exit codes: 0 found, 1 an AWS error, 2 a bad setting (the memory store among
them: its records live in the worker's process), 3 no record of the job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

# Standard library only at module level (see worker.__main__).
if TYPE_CHECKING:
    from worker.producer.lookup import JobState

EXIT_FOUND = 0
EXIT_FAILED = 1
EXIT_SETTING = 2
EXIT_NOT_FOUND = 3


def add_job_parser(commands: Any) -> None:
    """Add ``job`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "job",
        help="look a job up in the idempotency table: pending, running or finished, its result",
        description="Print a job's stored state: pending (waiting for its next delivery, with "
        "its failed and deferred deliveries so far), running (a worker holds it), or finished "
        "with the result the worker published. Reads IDEMPOTENCY_STORE and IDEMPOTENCY_TABLE; "
        "needs dynamodb:GetItem on the table only. Exit 0 found, 1 AWS error, 2 bad setting "
        "(the memory store keeps nothing to look up), 3 no record.",
    )
    parser.add_argument("job_id", metavar="JOB_ID", help="the job's id (or its SQS message id)")
    parser.add_argument(
        "--client-id",
        help="the app client (default: COGNITO_CLIENT_ID, else the first of COGNITO_CLIENTS)",
    )
    parser.add_argument("--json", action="store_true", help="the state as one JSON object")
    parser.set_defaults(handler=_job)


def _setting(problem: str) -> int:
    print(f"cognito-worker job: {problem}", file=sys.stderr)
    return EXIT_SETTING


def _job(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    store = environ.get("IDEMPOTENCY_STORE", "memory").strip().lower()
    if store != "dynamodb":
        return _setting(
            f"IDEMPOTENCY_STORE is {store}: the worker keeps its records in its own process, "
            "so there is nothing to look up (the lookup needs IDEMPOTENCY_STORE=dynamodb)"
        )
    table = environ.get("IDEMPOTENCY_TABLE", "")
    if not table:
        return _setting("IDEMPOTENCY_TABLE is required (the worker's idempotency table)")
    from worker.producer.lookup import default_client_id

    client_id = args.client_id or default_client_id(environ)
    if not client_id:
        return _setting("no client: give --client-id, or set COGNITO_CLIENT_ID")

    from botocore.exceptions import BotoCoreError, ClientError

    from worker.operations.check import describe_error
    from worker.producer.lookup import look_up_job

    try:
        state = look_up_job(table, args.job_id, client_id=client_id)
    except (BotoCoreError, ClientError) as error:
        print(f"cognito-worker job: {describe_error(error)}", file=sys.stderr)
        return EXIT_FAILED
    if state is None:
        if args.json:
            print(json.dumps({"job_id": args.job_id, "client_id": client_id, "status": None}))
        else:
            print(
                f"job {args.job_id} (client {client_id}): no record in {table}. Not received "
                "yet; or rejected before it was claimed (its result says why, and "
                "`cognito-worker dlq show --job-id` finds its copy); or finished longer ago "
                "than IDEMPOTENCY_TTL_S"
            )
        return EXIT_NOT_FOUND
    print(json.dumps(as_json(state)) if args.json else describe(state))
    return EXIT_FOUND


def as_json(state: JobState) -> dict[str, Any]:
    """The state as ``job --json`` prints it."""
    return {
        "job_id": state.job_id,
        "client_id": state.client_id,
        "status": state.status.value,
        "failed_deliveries": state.failed_deliveries,
        "deferred_deliveries": state.deferred_deliveries,
        "may_have_acted": state.may_have_acted,
        "done": list(state.done),
        "lease_left_s": round(state.lease_left_s, 1),
        "expires_at": state.expires_at.isoformat() if state.expires_at else None,
        "result": json.loads(state.result.model_dump_json()) if state.result else None,
    }


def describe(state: JobState) -> str:
    """The state in a few lines, for a person."""
    head = f"job {state.job_id} (client {state.client_id}): {state.status.value}"
    expires = state.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if state.expires_at else "-"
    if state.result is not None:
        result = state.result
        outcome = result.status.value + (f" {result.error.code}" if result.error else "")
        return (
            f"{head}, {outcome} at {result.finished_at.isoformat()} (record kept until "
            f"{expires})\nresult: {result.model_dump_json()}"
        )
    lines = [
        head
        + (
            f", a worker holds it ({state.lease_left_s:.0f} s of lease left)"
            if state.lease_left_s
            else ", waiting for its next delivery"
        ),
        f"deliveries so far that failed: {state.failed_deliveries}, deferred on a per-user "
        f"limit: {state.deferred_deliveries}",
    ]
    if state.may_have_acted:
        lines.append("an earlier attempt may have reached Cognito without an answer")
    if state.done:
        lines.append(f"calls done: {', '.join(state.done)}")
    lines.append(f"record kept until {expires}")
    return "\n".join(lines)
