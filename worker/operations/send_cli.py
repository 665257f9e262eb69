"""``cognito-worker send`` and ``cognito-worker results``: one job onto the queue, and the results
off the results queue, from a shell.

``send`` builds a job from flags (or reads one JSON job from a file or stdin), checks it with the
worker's own decoder (the producer library) and sends it to the lane asked for; with ``--wait``
it also waits for that job's result. Passwords and codes come from a prompt or stdin, never from
a flag (a command line shows in ``ps`` and lands in the shell's history), and are never printed:
what is printed is the job's id and SQS message id, and results, which hold no secret.

``results`` prints results as JSON lines, filtered by job id, batch, client or status; results it
prints are taken off the queue, the others handed back for their owners. ``--follow`` keeps
reading until Ctrl-C, which ends it quietly with exit code 130.

Exit codes: 0 sent (``send --wait``: succeeded), 1 not sent (the worker would reject the job, or
AWS refused it) or, with ``--wait``, failed or rejected, 2 bad usage or setting, 3 no result in
time, 130 stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from worker.contract.jobs import JobType, Lane

# Standard library only at module level (see worker.__main__).
if TYPE_CHECKING:
    from worker.contract.jobs import JobResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_RESULT = 3
EXIT_INTERRUPTED = 130

JOB_TYPES = tuple(job_type.value for job_type in JobType)
_NEEDS_PASSWORD = {"sign_up", "confirm_forgot_password", "import_user"}
_NEEDS_CODE = {"confirm_sign_up", "confirm_forgot_password"}
_SECRETS_HELP = (
    "Passwords and confirmation codes are never taken from a flag: a command line shows in `ps` "
    "and stays in the shell's history. They are asked for at a prompt that does not echo, or "
    "read from stdin with --secrets-stdin (one a line: the confirmation code first, then the "
    "password), and never printed."
)


class _UsageError(Exception):
    """Raised for a command line or an environment that cannot make a job."""


def add_send_parsers(commands: Any) -> None:
    """Add ``send`` and ``results`` to the CLI's subcommands."""
    send = commands.add_parser(
        "send",
        help="send one job (from flags, or a JSON file or stdin); --wait for its result",
        description="Send one job to JOBS_QUEUE_URL (the interactive lane) or, with --lane bulk, "
        "to BULK_JOBS_QUEUE_URL. The job comes from flags (--type, --username, ...) or, with "
        "--file, from one JSON object in a file ('-': stdin). It is checked as the worker checks "
        "it before anything is sent. Prints the job id and SQS message id as JSON; with --wait, "
        "then the job's result from RESULTS_QUEUE_URL. " + _SECRETS_HELP + " Exit 0 sent (with "
        "--wait: succeeded), 1 not sent, or failed or rejected, 2 bad usage, 3 no result in time.",
    )
    send.add_argument("--file", help="a JSON job to send, '-' for stdin (instead of the flags)")
    send.add_argument("--type", choices=JOB_TYPES, help="the job type")
    send.add_argument("--username", help="exactly as sent to Cognito")
    send.add_argument("--job-id", help="your id for the job (default: a random UUID)")
    send.add_argument("--client-id", help="the app client (default: the worker's first)")
    send.add_argument("--batch", help="a label copied into the result, to filter on")
    send.add_argument("--email", help="the user's email attribute (sign_up, import, invite)")
    send.add_argument(
        "--attribute", action="append", default=[], metavar="NAME=VALUE",
        help="another user attribute (repeatable), e.g. given_name=Ann",
    )  # fmt: skip
    send.add_argument(
        "--secrets-stdin", action="store_true",
        help="read the code and/or password from stdin, one a line, instead of a prompt",
    )  # fmt: skip
    send.add_argument(
        "--lane", choices=("interactive", "bulk"), default="interactive",
        help="interactive (JOBS_QUEUE_URL, the default) or bulk (BULK_JOBS_QUEUE_URL)",
    )  # fmt: skip
    send.add_argument(
        "--wait", type=float, metavar="SECONDS",
        help="then wait up to SECONDS for the job's result on RESULTS_QUEUE_URL and print it",
    )  # fmt: skip
    send.set_defaults(handler=_send)

    results = commands.add_parser(
        "results",
        help="print results from RESULTS_QUEUE_URL as JSON lines, filtered; --follow until Ctrl-C",
        description="Print results from RESULTS_QUEUE_URL (or --queue-url), one JSON object a "
        "line. The results printed are taken off the queue; those the filters leave out are "
        "handed back, visible again within 2 s for whoever waits for them. Without --follow it "
        "stops once the queue has nothing more; with --follow it keeps reading until Ctrl-C "
        "(exit 130), --timeout, or, given job ids, until each of them has its result. Results "
        "hold no password, code or secret.",
    )
    results.add_argument("--follow", action="store_true", help="keep reading until Ctrl-C")
    results.add_argument(
        "--job-id", action="append", default=[], metavar="ID",
        help="only this job's result, by job id or SQS message id (repeatable)",
    )  # fmt: skip
    results.add_argument("--batch", action="append", default=[], help="only this batch's")
    results.add_argument("--client-id", action="append", default=[], help="only this client's")
    results.add_argument(
        "--status", action="append", default=[], choices=("succeeded", "failed", "rejected"),
        help="only results of this status (repeatable)",
    )  # fmt: skip
    results.add_argument(
        "--lane", action="append", default=[], choices=[lane.value for lane in Lane],
        help="only results of jobs from this lane (repeatable)",
    )  # fmt: skip
    results.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after SECONDS")
    results.add_argument("--queue-url", help="default: RESULTS_QUEUE_URL")
    results.set_defaults(handler=_results)


def _fail(command: str, problem: str, code: int = EXIT_USAGE) -> int:
    print(f"cognito-worker {command}: {problem}", file=sys.stderr)
    return code


def _read_secret(prompt: str, stdin: TextIO | None) -> str:
    """A secret from stdin's next line, or from a prompt that does not echo."""
    if stdin is not None:
        line = stdin.readline()
        if not line:
            raise _UsageError(f"--secrets-stdin: stdin ended before the {prompt.lower()}")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise _UsageError(
            f"the {prompt.lower()} is read at a prompt, and stdin is not a terminal: "
            "give it on stdin with --secrets-stdin"
        )
    return getpass.getpass(f"{prompt}: ")


def job_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The job the flags describe, its secrets read from stdin or a prompt."""
    if args.type is None or args.username is None:
        raise _UsageError("give --type and --username, or --file")
    job: dict[str, Any] = {"version": 1, "type": args.type, "username": args.username}
    for field, value in (("job_id", args.job_id), ("client_id", args.client_id),
                         ("batch", args.batch)):  # fmt: skip
        if value is not None:
            job[field] = value
    attributes: dict[str, str] = {}
    if args.email is not None:
        attributes["email"] = args.email
    for pair in args.attribute:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise _UsageError(f"--attribute takes NAME=VALUE, not {name or pair!r}")
        attributes[name] = value
    if args.type in {"sign_up", "import_user", "invite_user"}:
        job["user_attributes"] = attributes
    elif attributes:
        raise _UsageError(f"{args.type} takes no user attributes")
    stdin = sys.stdin if args.secrets_stdin else None
    if args.type in _NEEDS_CODE:
        job["confirmation_code"] = _read_secret("Confirmation code", stdin)
    if args.type in _NEEDS_PASSWORD:
        job["password"] = _read_secret("Password", stdin)
    return job


def job_from_file(name: str) -> dict[str, Any]:
    """One JSON job from a file, or stdin for '-'."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as error:
        raise _UsageError(f"cannot read {name}: {error.strerror}") from None
    try:
        job = json.loads(text)
    except json.JSONDecodeError as error:
        # The position only: the text may hold a password.
        where = f"line {error.lineno}, column {error.colno}"
        raise _UsageError(f"{name} is not JSON ({where})") from None
    if not isinstance(job, dict):
        raise _UsageError(f"{name} holds no JSON object: one job is one object")
    return job


def _send(args: argparse.Namespace) -> int:
    environ = os.environ
    queue_url = environ.get("JOBS_QUEUE_URL", "")
    bulk_url = environ.get("BULK_JOBS_QUEUE_URL") or None
    if not queue_url:
        return _fail("send", "JOBS_QUEUE_URL is required (the worker's jobs queue)")
    if args.lane == "bulk" and bulk_url is None:
        return _fail("send", "--lane bulk needs BULK_JOBS_QUEUE_URL (the worker's bulk lane)")
    results_url = environ.get("RESULTS_QUEUE_URL", "")
    if args.wait is not None and not results_url:
        return _fail("send", "--wait needs RESULTS_QUEUE_URL (a queue subscribed to the topic)")
    try:
        if args.file is not None:
            if args.type is not None or args.username is not None:
                raise _UsageError("--file holds the whole job: give no --type or --username")
            job = job_from_file(args.file)
        else:
            job = job_from_flags(args)
    except _UsageError as error:
        return _fail("send", str(error))
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        return EXIT_INTERRUPTED

    from botocore.exceptions import BotoCoreError, ClientError

    from worker.operations.check import describe_error
    from worker.producer import InvalidJob, JobProducer, ResultFollower

    try:
        with JobProducer(queue_url, bulk_queue_url=bulk_url) as producer:
            sent = producer.send(job, lane=args.lane)
    except InvalidJob as refused:
        return _fail("send", f"not sent: {refused.reason}", EXIT_FAILED)  # names no value
    except (BotoCoreError, ClientError) as error:
        return _fail("send", f"not sent: {describe_error(error)}", EXIT_FAILED)
    print(json.dumps({"job_id": sent.job_id, "message_id": sent.message_id, "lane": args.lane}))
    sys.stdout.flush()
    if args.wait is None:
        return EXIT_OK
    try:
        outcome = ResultFollower(results_url).wait_for([sent], timeout_s=args.wait)
    except (BotoCoreError, ClientError) as error:
        return _fail("send", describe_error(error), EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    result = outcome.results.get(sent.job_id)
    if result is None:
        return _fail("send", f"no result for job {sent.job_id} within {args.wait:g} s",
                     EXIT_NO_RESULT)  # fmt: skip
    print(result.model_dump_json())
    return EXIT_OK if result.status.value == "succeeded" else EXIT_FAILED


def _matches(args: argparse.Namespace) -> Any:
    """The filter of ``results``: every condition given must hold."""

    def accepts(result: JobResult) -> bool:
        return (
            (not args.batch or result.batch in args.batch)
            and (not args.client_id or result.client_id in args.client_id)
            and (not args.status or result.status.value in args.status)
            and (not args.lane or result.lane.value in args.lane)
        )

    return accepts


def _results(args: argparse.Namespace) -> int:
    queue_url = args.queue_url or os.environ.get("RESULTS_QUEUE_URL", "")
    if not queue_url:
        return _fail("results", "RESULTS_QUEUE_URL is required (a queue subscribed to the topic)")

    from botocore.exceptions import BotoCoreError, ClientError

    from worker.operations.check import describe_error
    from worker.producer import ResultFollower

    follower = ResultFollower(queue_url)
    # A job id may be a job's id or its SQS message id (a rejection with job_id null).
    ids = args.job_id or None
    try:
        # Without --follow, one long poll that comes back empty ends it.
        for result in follower.follow(
            timeout_s=args.timeout,
            poll_s=20 if args.follow else 1,
            jobs=ids,
            message_ids=ids or (),
            where=_matches(args),
            stop_when_empty=not args.follow,
        ):
            print(result.model_dump_json(), flush=True)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (BotoCoreError, ClientError) as error:
        return _fail("results", describe_error(error), EXIT_FAILED)
    return EXIT_OK
