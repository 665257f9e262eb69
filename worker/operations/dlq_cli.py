"""``cognito-worker dlq summary|show|redrive|purge``: triage of the dead-letter queue.

The queue is ``--queue-url``, else ``DEAD_LETTER_QUEUE_URL``; a redrive sends to ``--to``, else
``JOBS_QUEUE_URL``. Credentials, Region (``AWS_REGION``) and endpoints come from the SDK's usual
variables, as for every command. Nothing printed is a secret: bodies are never printed, and a
username shows masked (``a***@e***``).

Exit codes: 0 done; 1 an AWS error stopped the run (a re-run carries on); 2 a bad option or a
missing variable; 3 some chosen messages stayed on the DLQ (still invalid, in doubt, or refused
by SQS), each listed with why; 4 a purge that was not confirmed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Standard library only at module level: the CLI builds this parser for every command, and
# `--help` or `--version` should not wait for pydantic and the SDK to load.
if TYPE_CHECKING:
    from worker.operations.dead_letters import DeadLetter

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_KEPT = 3
EXIT_DECLINED = 4
NO_VALUE = "-"  # as worker.operations.dead_letters prints a missing value

#: The dimensions ``dlq summary`` groups by, and how each is read off a message.
DIMENSIONS: dict[str, Callable[[DeadLetter], str | None]] = {
    "reason": lambda letter: letter.rule,
    "type": lambda letter: letter.job_type,
    "client": lambda letter: letter.client_id,
    "lane": lambda letter: letter.lane,
    "batch": lambda letter: letter.batch,
}


def add_dlq_parser(commands: Any) -> None:
    """Add ``dlq`` and its subcommands to the CLI's subparsers."""
    dlq = commands.add_parser(
        "dlq",
        help="triage the dead-letter queue: summary, show, redrive, purge",
        description="Read the dead-letter queue (--queue-url, else DEAD_LETTER_QUEUE_URL) and "
        "group, list, send back or delete a chosen part of it. Reading hides each message for "
        "--hold-s and hands it back at the end (SQS has no peek: each read counts one receive). "
        "Exit codes: 0 done, 1 an AWS error (re-run to carry on), 2 bad usage, 3 some chosen "
        "messages stayed on the DLQ, 4 a purge not confirmed.",
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    summary = actions.add_parser(
        "summary", help="counts by reason, job type, client, lane and batch, oldest and newest"
    )
    show = actions.add_parser("show", help="the chosen messages, one line each")
    show.add_argument("--limit", type=int, default=200, help="at most this many lines (200)")
    redrive = actions.add_parser(
        "redrive",
        help="send the chosen messages back to the jobs queue, checked first",
        description="Send the chosen messages back to the jobs queue (--to, else JOBS_QUEUE_URL). "
        "Each is validated again first: one still invalid stays, with why. A message is deleted "
        "from the DLQ only after SQS accepted its copy. The journal file records what was sent, "
        "so a re-run after a stop sends nothing twice: run it again from the same directory.",
    )
    redrive.add_argument("--to", help="the jobs queue to send to (default: $JOBS_QUEUE_URL)")
    redrive.add_argument(
        "--rate", type=float, default=10.0, help="at most this many messages a second (10)"
    )
    redrive.add_argument(
        "--dry-run", action="store_true", help="say what would be sent; send and delete nothing"
    )
    redrive.add_argument(
        "--journal",
        type=Path,
        help="the journal file (default: dlq-redrive-<queue name>.journal here)",
    )
    redrive.add_argument(
        "--resend-in-doubt",
        action="store_true",
        help="also send the messages a stopped run may or may not have sent",
    )
    purge = actions.add_parser(
        "purge",
        help="delete the chosen messages for good, after a confirmation",
        description="Delete the chosen messages from the DLQ, for jobs that must never run. "
        "Lists what it would delete and asks to type the count (or --yes).",
    )
    purge.add_argument("--yes", action="store_true", help="confirm without asking")
    for action in (summary, show, redrive, purge):
        _add_common(action)
    for action, handler in (
        (summary, _summary),
        (show, _show),
        (redrive, _redrive),
        (purge, _purge),
    ):
        action.set_defaults(handler=_guarded(handler))


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue-url", help="the DLQ (default: $DEAD_LETTER_QUEUE_URL)")
    parser.add_argument(
        "--hold-s",
        type=int,
        default=600,
        help="how long each message read stays hidden from other readers; a run that dies "
        "leaves them hidden this long (600)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines, for scripts")
    chosen = parser.add_argument_group("choosing messages (every one given must hold)")
    chosen.add_argument("--reason", help="part of the reason, as summary prints it")
    for option, help_text in (
        ("--type", "the job type"),
        ("--client-id", "the app client ('-': none named)"),
        ("--lane", "the lane attribute ('-': none)"),
        ("--batch", "the batch label ('-': none)"),
    ):
        chosen.add_argument(option, action="append", default=[], help=f"{help_text}; repeatable")
    chosen.add_argument(
        "--job-id",
        action="append",
        default=[],
        help="a job id, or the original message id; may be repeated",
    )
    chosen.add_argument("--older-than", help="put on the DLQ longer ago than this (15m, 6h, 2d)")
    chosen.add_argument("--newer-than", help="put on the DLQ within this (15m, 6h, 2d)")


class _Usage(Exception):
    """A bad option or a missing variable: exit 2 with the message."""


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        from worker.operations.check import describe_error
        from worker.operations.dlq_scan import DlqError
        from worker.operations.redrive_journal import JournalMismatch

        try:
            return handler(args)
        except (_Usage, JournalMismatch) as error:
            print(f"cognito-worker dlq: {error}", file=sys.stderr)
            return EXIT_USAGE
        except (BotoCoreError, ClientError, DlqError) as error:
            print(
                f"cognito-worker dlq: {describe_error(error)}; run the same command again to "
                "carry on (messages read are visible again within --hold-s)",
                file=sys.stderr,
            )
            return EXIT_FAILED
        except KeyboardInterrupt:
            print(
                "cognito-worker dlq: stopped; run the same command again to carry on",
                file=sys.stderr,
            )
            return 130

    return run


def _selection(args: argparse.Namespace) -> Any:
    from worker.operations.dlq_selection import Selection, duration

    try:
        older = duration(args.older_than) if args.older_than else None
        newer = duration(args.newer_than) if args.newer_than else None
    except ValueError as error:
        raise _Usage(str(error)) from None
    return Selection(
        reason=args.reason,
        job_types=frozenset(args.type),
        client_ids=frozenset(args.client_id),
        lanes=frozenset(args.lane),
        batches=frozenset(args.batch),
        job_ids=frozenset(args.job_id),
        older_than=older,
        newer_than=newer,
    )


def _queue_url(explicit: str | None, variable: str, option: str) -> str:
    url = explicit or os.environ.get(variable, "")
    if not url:
        raise _Usage(f"no queue: give {option}, or set {variable}")
    return url


def _scanner(args: argparse.Namespace) -> Any:
    import boto3

    from worker.operations.dlq_scan import DlqScanner

    if not 1 <= args.hold_s <= 43200:
        raise _Usage("--hold-s must be within 1..43200 (SQS's visibility limits)")
    region = os.environ.get("AWS_REGION") or None
    sqs = boto3.client("sqs", region_name=region)
    url = _queue_url(args.queue_url, "DEAD_LETTER_QUEUE_URL", "--queue-url")
    return DlqScanner(sqs, url, hold_s=args.hold_s)


class _Progress:
    """A line on stderr every few seconds of a long run, and only on a terminal."""

    def __init__(self, every_s: float = 2.0) -> None:
        self._every_s = every_s
        self._last = time.monotonic()
        self._on = sys.stderr.isatty()

    def __call__(self, text: str) -> None:
        if self._on and time.monotonic() - self._last >= self._every_s:
            self._last = time.monotonic()
            print(f"... {text}", file=sys.stderr, flush=True)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else NO_VALUE


def _read_all(args: argparse.Namespace) -> tuple[Any, dict[str, int], list[DeadLetter]]:
    scanner = _scanner(args)
    selection = _selection(args)
    counts = scanner.counts()
    progress = _Progress()
    letters: list[DeadLetter] = []
    read = 0
    try:
        for letter in scanner.messages():
            read += 1
            if selection.matches(letter):
                letters.append(letter)
            progress(f"{read} read")
    finally:
        scanner.release()
    counts["read"] = read
    return scanner, counts, letters


def group(letters: Iterable[DeadLetter], dimension: str) -> list[dict[str, Any]]:
    """The messages' groups along one dimension: value, count, oldest and newest, most first."""
    value_of = DIMENSIONS[dimension]
    groups: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        groups.setdefault(value_of(letter) or NO_VALUE, []).append(letter)
    rows = []
    for value, members in groups.items():
        times = [x.sent_at for x in members if x.sent_at is not None]
        rows.append(
            {
                "value": value,
                "count": len(members),
                "oldest": _when(min(times)) if times else NO_VALUE,
                "newest": _when(max(times)) if times else NO_VALUE,
            }
        )
    return sorted(rows, key=lambda row: (-row["count"], row["value"]))


def _summary(args: argparse.Namespace) -> int:
    scanner, counts, letters = _read_all(args)
    groups = {dimension: group(letters, dimension) for dimension in DIMENSIONS}
    if args.json:
        print(json.dumps({"queue_url": scanner.queue_url, **counts, "chosen": len(letters),
                          "groups": groups}))  # fmt: skip
        return EXIT_OK
    print(_heading(scanner.queue_url, counts, len(letters)))
    for dimension, rows in groups.items():
        print(f"\nby {dimension}:")
        print(f"  {'count':>6}  {'oldest':<20}  {'newest':<20}  {dimension}")
        for row in rows:
            print(f"  {row['count']:>6}  {row['oldest']:<20}  {row['newest']:<20}  {row['value']}")
    return EXIT_OK


def _heading(url: str, counts: dict[str, int], chosen: int) -> str:
    hidden = counts["hidden"]
    text = f"{url}: {counts['read']} messages read, {chosen} chosen"
    if hidden:
        text += f" ({hidden} hidden at the start, read by someone else, were not seen)"
    return text


def describe(letter: DeadLetter) -> dict[str, Any]:
    """A message as ``dlq show`` prints it: nothing secret."""
    return {
        "job_id": letter.job_id or NO_VALUE,
        "original_message_id": letter.original_message_id,
        "type": letter.job_type or NO_VALUE,
        "client_id": letter.client_id or NO_VALUE,
        "username": letter.username or NO_VALUE,
        "lane": letter.lane or NO_VALUE,
        "batch": letter.batch or NO_VALUE,
        "reason": letter.reason or letter.rule,
        "dead_lettered_at": _when(letter.sent_at),
        "first_read_at": _when(letter.first_received_at),
        "receive_count": letter.receive_count,
    }


def _line(letter: DeadLetter, note: str | None = None) -> str:
    shown = describe(letter)
    text = (
        f"{shown['job_id']}  {shown['type']}  client={shown['client_id']}  "
        f"user={shown['username']}  dead-lettered={shown['dead_lettered_at']}  "
        f"receives={shown['receive_count']}  reason: {shown['reason']}"
    )
    return f"{text}  -> {note}" if note else text


def _show(args: argparse.Namespace) -> int:
    scanner, counts, letters = _read_all(args)
    letters.sort(key=lambda x: (x.sent_at is None, x.sent_at or 0, x.message_id))
    if args.json:
        for letter in letters[: args.limit]:
            print(json.dumps(describe(letter)))
        return EXIT_OK
    print(_heading(scanner.queue_url, counts, len(letters)))
    for letter in letters[: args.limit]:
        print(_line(letter))
    if len(letters) > args.limit:
        print(f"... and {len(letters) - args.limit} more (--limit)")
    return EXIT_OK


def _redrive(args: argparse.Namespace) -> int:
    from worker.operations.redrive import Redrive, RedriveReport
    from worker.operations.redrive_journal import RedriveJournal, default_journal_path

    if args.rate <= 0:
        raise _Usage("--rate must be above 0")
    scanner = _scanner(args)
    target = _queue_url(args.to, "JOBS_QUEUE_URL", "--to")
    journal = RedriveJournal.open(
        args.journal or default_journal_path(scanner.queue_url), scanner.queue_url
    )
    tick = _Progress()

    def progress(report: RedriveReport) -> None:
        tick(f"{report.read} read, {report.chosen} chosen, {len(report.sent)} sent")

    try:
        report = Redrive(
            scanner, target, _selection(args), journal, rate=args.rate, dry_run=args.dry_run,
            resend_in_doubt=args.resend_in_doubt, progress=progress,
        ).run()  # fmt: skip
    finally:
        journal.close()
    return _report_redrive(report, args, target)


def _report_redrive(report: Any, args: argparse.Namespace, target: str) -> int:
    kept: list[tuple[DeadLetter, str, str]] = [
        *((x, "still_invalid", why) for x, why in report.still_invalid),
        *((x, "in_doubt", "a stopped run may have sent it: --resend-in-doubt sends it")
          for x in report.in_doubt),
        *((x, "refused", why) for x, why in report.refused),
    ]  # fmt: skip
    done = [(x, "would_send") for x in report.would_send] + [(x, "sent") for x in report.sent]
    done += [(x, "already_sent") for x in report.already_sent]
    if args.json:
        for letter, outcome in done:
            print(json.dumps({**describe(letter), "outcome": outcome}))
        for letter, outcome, why in kept:
            print(json.dumps({**describe(letter), "outcome": outcome, "why": why}))
    else:
        for letter, outcome in done:
            print(_line(letter, outcome.replace("_", " ")))
        for letter, outcome, why in kept:
            print(_line(letter, f"{outcome.replace('_', ' ')}: {why}"))
    verb = "would send" if args.dry_run else "sent"
    summary = (
        f"redrive to {target}: {report.read} read, {report.chosen} chosen, "
        f"{len(report.would_send) if args.dry_run else len(report.sent)} {verb}, "
        f"{len(report.already_sent)} sent by an earlier run "
        f"({'left' if args.dry_run else 'deleted now'}), "
        f"{len(report.still_invalid)} still invalid, {len(report.in_doubt)} in doubt, "
        f"{len(report.refused)} refused by SQS"
    )
    print(json.dumps({"summary": summary}) if args.json else summary)
    return EXIT_KEPT if kept else EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    from worker.operations.redrive import purge

    scanner = _scanner(args)
    selection = _selection(args)
    if selection.is_everything:
        raise _Usage("choose what to purge (--reason, --type, --job-id ...); to empty the whole "
                     "DLQ, use --reason '' deliberately")  # fmt: skip

    def confirm(chosen: list[DeadLetter]) -> bool:
        for rule, count in Counter(x.rule for x in chosen).most_common():
            print(f"  {count:>6}  {rule}")
        if args.yes:
            return True
        if not sys.stdin.isatty():
            print("not confirmed: give --yes to purge without a terminal", file=sys.stderr)
            return False
        answer = input(f"Delete these {len(chosen)} messages for good? Type {len(chosen)}: ")
        return answer.strip() == str(len(chosen))

    tick = _Progress()
    report = purge(scanner, selection, confirm, lambda read: tick(f"{read} read"))
    print(
        f"purge of {scanner.queue_url}: {report.read} read, {len(report.chosen)} chosen, "
        f"{report.deleted} deleted"
    )
    if report.chosen and not report.deleted:
        return EXIT_DECLINED
    return EXIT_OK
