"""``cognito-worker import FILE``: validate every row, send them as jobs, follow their results,
write the report.

The file is read in passes, each streamed: its digest (the import id and the checkpoint's
guard), its usernames (rows repeated or in conflict), validation (nothing is sent while any row
is invalid, unless told), sending, and the report. Ctrl-C stops after the batch in flight, saves
the checkpoint and prints how to resume. A resumed run looks up, in the worker's idempotency
table, what became of each row an earlier run sent, and reports it; a row whose outcome cannot
be found out is ``unknown``, and the exit code says so.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from worker.contract.jobs import Job
from worker.importer.checkpoint import Checkpoint
from worker.importer.duplicates import DuplicateIndex, InLineOrder
from worker.importer.formats import import_job_row_problem
from worker.importer.job_checkpoint import JobCheckpoint
from worker.importer.job_csv import MAX_ROWS_PER_JOB
from worker.importer.job_phase import JobPhase, PreparedPart
from worker.importer.mapping import JobMapper
from worker.importer.plan import PlanCounts, plan_lines
from worker.importer.progress import ProgressFactory
from worker.importer.reading import FileFormat, Row, file_digest, read_header, read_rows
from worker.importer.report import (
    INVALID_JOB_CODE,
    Outcome,
    OutcomeLedger,
    ReportRow,
    RowStatus,
    Summary,
    one_line,
    outcome_of,
    print_summary,
    write_report,
)
from worker.importer.routes import JobRows, Route, SendPath, route_of
from worker.importer.sending import (
    JobLookup,
    JobSender,
    LookedUp,
    ResultFollower,
    ResultStream,
    SendFailure,
)
from worker.importer.user_import import UserImportJobs
from worker.producer.lookup import JobStatus

EXIT_OK = 0
EXIT_ROWS_NOT_DONE = 1  # a row invalid, not sent, failed, rejected, or without a result
EXIT_INTERRUPTED = 130  # the shell's code for a stop by SIGINT
EXIT_NOT_CONFIRMED = 2  # a usage error: a non-interactive run that sends needs --yes
EXIT_OUTCOMES_UNKNOWN = 3  # every row ended well but for some whose outcome is unknown
_SHOWN_INVALID_ROWS = 20
_RESULT_POLL_S = 1.0


@dataclass(frozen=True)
class ImportOptions:
    """What the operator asked for."""

    file: Path
    job_type: str
    file_format: FileFormat
    import_id: str | None = None
    client_id: str | None = None
    skip_invalid: bool = False
    resume: bool = False
    validate_only: bool = False
    wait: bool = False
    wait_timeout_s: float = 300.0
    report: Path | None = None
    checkpoint: Path | None = None
    path: SendPath = SendPath.AUTO
    yes: bool = False
    job_rows: int = MAX_ROWS_PER_JOB
    job_poll_s: float = 2.0
    case_sensitive_usernames: bool = False


class SendingUnavailable(Exception):
    """Raised when rows need a path whose settings are missing; the message says which."""


def derived_import_id(file: Path, sha256: str) -> str:
    """``<file name>-<12 hex digits of the content's SHA-256>``: the same file, the same id."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", file.stem).strip("-_")[:40] or "import"
    return f"{stem}-{sha256[:12]}"


class StopRequest:
    """Ctrl-C once: finish the batch in flight and stop. Twice: stop at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Catch SIGINT for the duration of the block."""
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


class ImportRun:
    """One run of the command."""

    def __init__(
        self,
        options: ImportOptions,
        *,
        sender: JobSender | None,
        follower: ResultFollower | None,
        progress: ProgressFactory,
        output: TextIO,
        user_import: Callable[[], UserImportJobs] | None = None,
        confirm: Callable[[], bool] | None = None,
        lookup: JobLookup | None = None,
        lookup_unavailable: str = "the worker's idempotency table is not set (IDEMPOTENCY_TABLE)",
        lane_line: str = "",
    ) -> None:
        self.options = options
        self._sender = sender
        self._lane_line = lane_line  # which lane the worker's rows go to, said when they do
        self._follower = follower
        self._user_import_factory = user_import
        self._user_import: UserImportJobs | None = None
        self._confirm = confirm
        self._lookup = lookup
        self._lookup_unavailable = lookup_unavailable
        self._index: DuplicateIndex | None = None
        self._duplicates = 0
        self._job_rows: JobRows | None = None
        self._job_phase: JobPhase | None = None
        self._worker_rows = 0
        self._progress = progress
        self._out = output
        self._stop = StopRequest()
        self.sha256 = ""
        self.import_id = ""
        self._invalid = 0
        self._sendable = 0
        self._sent_now = 0
        self._not_sent = 0
        self._interrupted = False

    def _say(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)

    def execute(self) -> int:
        """Run the import; return the process exit code."""
        options = self.options
        self.sha256 = file_digest(options.file)
        self.import_id = options.import_id or derived_import_id(options.file, self.sha256)
        mapper = JobMapper(options.job_type, self.import_id, options.client_id)
        header = read_header(options.file, options.file_format)
        if header is not None:
            mapper.check_columns(header, password_required=self._route_fixed() is Route.WORKER)
        name = f"{self.import_id}.{options.job_type}"
        # A check's report is named apart, so the run that follows does not overwrite it.
        kind = "validation" if options.validate_only else "report"
        report_path = options.report or Path(f"{name}.{kind}.csv")
        self._run_report_path = options.report or Path(f"{name}.report.csv")
        checkpoint_path = options.checkpoint or Path(f"{name}.checkpoint.json")
        if options.resume:
            checkpoint = Checkpoint.load(
                checkpoint_path, self.import_id, options.job_type, self.sha256
            )
        else:
            checkpoint = Checkpoint(checkpoint_path, self.import_id, options.job_type, self.sha256)
        earlier = Checkpoint(
            checkpoint_path,
            self.import_id,
            options.job_type,
            self.sha256,
            [list(r) for r in checkpoint.ranges],
        )
        self._say(
            f"import {self.import_id}: {options.file.name} ({options.file_format.value}) "
            f"as {options.job_type} jobs"
        )
        with (
            tempfile.TemporaryDirectory(prefix="cognito-import-") as scratch,
            self._stop.installed(),
        ):
            ledger = OutcomeLedger(Path(scratch))
            self._index = DuplicateIndex(
                Path(scratch), case_sensitive=options.case_sensitive_usernames
            )
            self._job_rows = JobRows(
                self._pool_header,
                Path(scratch),
                file_columns=header,
                max_rows=options.job_rows,
            )
            try:
                return self._phases(mapper, checkpoint, earlier, ledger, report_path)
            finally:
                ledger.close()
                self._index.close()

    def _phases(
        self,
        mapper: JobMapper,
        checkpoint: Checkpoint,
        earlier: Checkpoint,
        ledger: OutcomeLedger,
        report_path: Path,
    ) -> int:
        options = self.options
        self._index_usernames()
        self._validate(mapper, earlier, ledger)
        parts = self._job_rows.finish() if self._job_rows else []
        self._note_ignored(mapper)
        if self._stop.requested:
            self._say("interrupted while validating: nothing was sent")
            return EXIT_INTERRUPTED
        self._print_plan(earlier, parts)
        if options.validate_only:
            self._say(
                f"valid rows: {self._sendable}; invalid rows: {self._invalid}; exact repeats "
                f"(duplicate, not sent): {self._duplicates}"
            )
            return self._finish(mapper, earlier, checkpoint, ledger, report_path, checked=True)
        if self._invalid and not options.skip_invalid:
            self._say(
                f"{self._invalid} invalid row(s): nothing was sent. Fix them, or pass "
                "--skip-invalid to send the valid rows only."
            )
            return self._finish(mapper, earlier, checkpoint, ledger, report_path, checked=True)
        if parts and not self._confirmed():
            self._finish(mapper, earlier, checkpoint, ledger, report_path, checked=True)
            return EXIT_NOT_CONFIRMED
        if earlier.ranges:
            self._say(f"resuming: {earlier.sent_count} row(s) were sent by an earlier run")
        with ExitStack() as stack:
            stream: ResultStream | None = None
            if options.wait and self._sendable:
                if self._follower is None or mapper.batch_label is None:
                    raise RuntimeError("--wait needs the results topic and the batch field")
                stream = stack.enter_context(self._follower(mapper.batch_label))
            if self._sendable:
                self._send(mapper, checkpoint, earlier, ledger)
            if self._interrupted:
                self._say_how_to_resume()
            elif parts:
                self._run_jobs(parts, checkpoint.path, ledger)
            if stream is not None and not self._interrupted:
                self._follow(stream, mapper, earlier, ledger)
        if earlier.ranges and not self._interrupted and not self._stop.requested:
            self._look_up_earlier(mapper, earlier, ledger)
        code = self._finish(mapper, earlier, checkpoint, ledger, report_path, checked=False)
        if self._interrupted:
            return EXIT_INTERRUPTED
        return code

    # -- validation ---------------------------------------------------------------------------

    def _index_usernames(self) -> None:
        assert self._index is not None
        progress = self._progress("usernames", None)

        def rows() -> Iterator[Row]:
            for row in read_rows(self.options.file, self.options.file_format):
                if self._stop.requested:
                    return
                progress.advance(1)
                yield row

        self._index.index(rows())
        progress.close()

    def _verdicts(self) -> InLineOrder:
        """The duplicate index's verdicts, to read alongside the file."""
        assert self._index is not None
        return InLineOrder(self._index.verdicts())

    def _validate(self, mapper: JobMapper, earlier: Checkpoint, ledger: OutcomeLedger) -> None:
        progress = self._progress("validating", None)
        shown = 0
        pending: list[tuple[int, Outcome]] = []
        verdicts = self._verdicts()
        for row in read_rows(self.options.file, self.options.file_format):
            if self._stop.requested:
                break
            route = self._route(row)
            problem = row.problem
            verdict = verdicts.at(row.line) if problem is None else None
            if verdict is not None:
                # A repeat is not checked again (its first row is); a conflict is invalid as a
                # whole, whatever each row holds.
                if verdict.status is RowStatus.INVALID:
                    problem = verdict.message
            elif problem is None and route is Route.IMPORT_JOB:
                assert self._job_rows is not None
                problem = import_job_row_problem(row.fields) or self._job_rows.add(
                    row.line, row.fields
                )
            elif problem is None:
                problem = mapper.map(row.line, row.fields).problem
                if problem is None:
                    self._worker_rows += 1
            if problem is not None:
                self._invalid += 1
                pending.append((row.line, Outcome(RowStatus.INVALID, INVALID_JOB_CODE, problem)))
                if shown < _SHOWN_INVALID_ROWS:
                    shown += 1
                    self._say(f"line {row.line}: {one_line(problem)}")
            elif verdict is not None:
                self._duplicates += 1
                pending.append((row.line, verdict))
                if shown < _SHOWN_INVALID_ROWS:
                    shown += 1
                    self._say(f"line {row.line}: duplicate: {verdict.message}")
            elif route is Route.WORKER and not earlier.was_sent(row.line):
                self._sendable += 1
            if len(pending) >= 1000:
                ledger.record(pending)
                pending.clear()
            progress.advance(1)
        ledger.record(pending)
        progress.close()
        if self._invalid + self._duplicates > shown:
            more = self._invalid + self._duplicates - shown
            self._say(f"... and {more} more invalid or repeated row(s): see the report")

    # -- sending ------------------------------------------------------------------------------

    def _jobs(self, mapper: JobMapper, earlier: Checkpoint) -> Iterator[Job]:
        verdicts = self._verdicts()
        for row in read_rows(self.options.file, self.options.file_format):
            if self._stop.requested:
                self._interrupted = True
                return
            if row.problem is not None or earlier.was_sent(row.line):
                continue
            if verdicts.at(row.line) is not None:
                continue  # a repeat (its first row is sent) or a conflict
            if self._route(row) is Route.IMPORT_JOB:
                continue
            mapped = mapper.map(row.line, row.fields)
            if mapped.job is not None:
                yield mapped.job

    def _send(
        self,
        mapper: JobMapper,
        checkpoint: Checkpoint,
        earlier: Checkpoint,
        ledger: OutcomeLedger,
    ) -> None:
        if self._sender is None:
            raise SendingUnavailable(
                f"JOBS_QUEUE_URL is required: {self._sendable} row(s) go through the worker"
            )
        if self._lane_line:
            self._say(self._lane_line)
        progress = self._progress("sending", self._sendable)

        def on_batch(sent: list[str], failed: list[SendFailure]) -> None:
            checkpoint.mark_sent([line_of(job_id) for job_id in sent])
            checkpoint.save()
            self._sent_now += len(sent)
            if failed:
                self._not_sent += len(failed)
                ledger.record(
                    (line_of(f.job_id), Outcome(RowStatus.NOT_SENT, f.code, f.message))
                    for f in failed
                )
            counts = {"sent": self._sent_now, "not sent": self._not_sent}
            progress.advance(len(sent) + len(failed), counts if self._not_sent else None)

        self._sender.send_many(self._jobs(mapper, earlier), on_batch)
        checkpoint.save()
        progress.close()

    def _say_how_to_resume(self) -> None:
        options = self.options
        command = [
            "cognito-worker import",
            _quote(str(options.file)),
            f"--type {options.job_type}",
            f"--import-id {self.import_id}",
            "--resume",
        ]
        if options.checkpoint is not None:
            command.append(f"--checkpoint {_quote(str(options.checkpoint))}")
        if options.skip_invalid:
            command.append("--skip-invalid")
        if options.wait:
            command.append("--wait")
        self._say(
            f"interrupted: {self._sent_now} row(s) sent by this run, the checkpoint is saved. "
            "To go on where it stopped:"
        )
        self._say("  " + " ".join(command))

    # -- results ------------------------------------------------------------------------------

    def _follow(
        self,
        stream: ResultStream,
        mapper: JobMapper,
        earlier: Checkpoint,
        ledger: OutcomeLedger,
    ) -> None:
        expected = self._sent_now
        counts: Counter[str] = Counter()
        progress = self._progress("results", expected)
        prefix = mapper.job_id(0)[:-1]
        idle_since = time.monotonic()
        received = 0
        while received < expected and not self._stop.requested:
            if time.monotonic() - idle_since > self.options.wait_timeout_s:
                self._say(
                    f"no result for {self.options.wait_timeout_s:g} s: "
                    f"{expected - received} row(s) have none (status no_result in the report)"
                )
                break
            progress.advance(0)  # a line every interval, results or not
            for result in stream.poll(_RESULT_POLL_S):
                job_id = result.job_id or ""
                if not job_id.startswith(prefix):
                    continue  # another import under the same label
                line = line_of(job_id)
                first = not ledger.has(line)
                outcome = outcome_of(result)
                ledger.record([(line, outcome)])
                if first and not earlier.was_sent(line):
                    received += 1
                    counts[outcome.status.value] += 1
                    progress.advance(1, counts)
                    idle_since = time.monotonic()
        progress.close()
        if self._stop.requested:
            self._say(
                f"interrupted while following results: {expected - received} row(s) have none "
                "yet; their jobs are queued and will be done. The worker's idempotency store "
                "answers them again if the import is run again."
            )

    # -- rows an earlier run sent ---------------------------------------------------------------

    def _look_up_earlier(
        self, mapper: JobMapper, earlier: Checkpoint, ledger: OutcomeLedger
    ) -> None:
        """Find out what became of each row an earlier run sent whose result this run has not
        seen: its record in the worker's idempotency table, as ``cognito-worker job`` reads it."""
        lines = array(
            "q",
            (
                line
                for first, last in earlier.ranges
                for line in range(first, last + 1)
                if not ledger.has(line)
            ),
        )
        if not lines:
            return
        if self._lookup is None:
            message = (
                "sent by an earlier run; its outcome cannot be looked up: "
                f"{self._lookup_unavailable}"
            )
            ledger.record((line, Outcome(RowStatus.UNKNOWN, "", message)) for line in lines)
            self._say(
                f"{len(lines)} row(s) sent by an earlier run: outcome unknown, "
                f"{self._lookup_unavailable}"
            )
            return
        progress = self._progress("looking up", len(lines))
        counts: Counter[str] = Counter()
        pending: list[tuple[int, Outcome]] = []
        job_ids = (mapper.job_id(line) for line in lines)
        for answer in self._lookup.look_up_many(job_ids):
            outcome = _looked_up_outcome(answer)
            pending.append((line_of(answer.job_id), outcome))
            counts[outcome.status.value] += 1
            if len(pending) >= 500:
                ledger.record(pending)
                pending.clear()
            progress.advance(1, counts)
        ledger.record(pending)
        progress.close()

    # -- report -------------------------------------------------------------------------------

    def _finish(
        self,
        mapper: JobMapper,
        earlier: Checkpoint,
        checkpoint: Checkpoint,
        ledger: OutcomeLedger,
        report_path: Path,
        *,
        checked: bool,
    ) -> int:
        rows = self._report_rows(mapper, earlier, checkpoint, ledger, checked=checked)
        summary = write_report(rows, report_path)
        self._say()
        print_summary(summary, self._out)
        if self.options.validate_only and report_path != self._run_report_path:
            self._say(
                f"\nreport: {report_path} (this check's; a run that sends writes "
                f"{self._run_report_path})"
            )
        else:
            self._say(f"\nreport: {report_path}")
        code = self._exit_code(summary, checked=checked)
        if code == EXIT_OUTCOMES_UNKNOWN:
            self._say(
                f"{summary.by_status[RowStatus.UNKNOWN.value]} row(s) sent by an earlier run "
                "have no known outcome (status unknown): run the same command again later to "
                "look them up again"
            )
        return code

    def _exit_code(self, summary: Summary, *, checked: bool) -> int:
        if checked:
            clean = not self._invalid and not self._duplicates
            return EXIT_OK if self.options.validate_only and clean else EXIT_ROWS_NOT_DONE
        if summary.all_good:
            return EXIT_OK
        return EXIT_OUTCOMES_UNKNOWN if summary.only_unknown_left else EXIT_ROWS_NOT_DONE

    def _report_rows(
        self,
        mapper: JobMapper,
        earlier: Checkpoint,
        checkpoint: Checkpoint,
        ledger: OutcomeLedger,
        *,
        checked: bool,
    ) -> Iterator[ReportRow]:
        outcomes = ledger.in_line_order()
        next_outcome = next(outcomes, None)
        for row in read_rows(self.options.file, self.options.file_format):
            while next_outcome is not None and next_outcome[0] < row.line:
                next_outcome = next(outcomes, None)
            by_job = row.problem is None and self._route(row) is Route.IMPORT_JOB
            if next_outcome is not None and next_outcome[0] == row.line:
                outcome = next_outcome[1]
            elif by_job:
                outcome = self._job_default_outcome(row.line, checked=checked)
            else:
                outcome = self._default_outcome(row, earlier, checkpoint, checked=checked)
            username = "" if outcome.status is RowStatus.INVALID else _username(row)
            job_id = mapper.job_id(row.line)
            if by_job and outcome.status is not RowStatus.INVALID:
                job_id = self._job_phase.job_id_of(row.line) if self._job_phase else ""
            yield ReportRow(row.line, username, job_id, outcome)

    def _default_outcome(
        self, row: Row, earlier: Checkpoint, checkpoint: Checkpoint, *, checked: bool
    ) -> Outcome:
        if checked:
            if self.options.validate_only:
                return Outcome(RowStatus.VALID)
            return Outcome(RowStatus.NOT_SENT, "", "not sent: the file has invalid rows")
        if earlier.was_sent(row.line):
            return Outcome(
                RowStatus.SENT_EARLIER,
                "",
                "sent by an earlier run of this import; not looked up (the run was stopped)",
            )
        if checkpoint.was_sent(row.line):
            if self.options.wait:
                return Outcome(RowStatus.NO_RESULT, "", "sent; no result arrived in time")
            return Outcome(RowStatus.SENT)
        return Outcome(RowStatus.NOT_SENT, "", "interrupted before this row was sent: --resume")

    # -- the import-job path -----------------------------------------------------------------

    def _route_fixed(self) -> Route | None:
        """The one path every row takes, when the data does not choose."""
        options = self.options
        if options.job_type != "import_user" or options.path is SendPath.WORKER:
            return Route.WORKER
        if options.path is SendPath.IMPORT_JOB:
            return Route.IMPORT_JOB
        return None

    def _route(self, row: Row) -> Route:
        return route_of(self.options.job_type, self.options.path, row.fields)

    def _jobs_client(self) -> UserImportJobs:
        if self._user_import is None:
            if self._user_import_factory is None:
                raise SendingUnavailable(
                    "rows without a password go through Cognito's user import job, which needs "
                    "COGNITO_USER_POOL_ID (or --user-pool-id); or pass --path worker"
                )
            self._user_import = self._user_import_factory()
        return self._user_import

    def _pool_header(self) -> list[str]:
        return self._jobs_client().csv_header()

    def _note_ignored(self, mapper: JobMapper) -> None:
        options = self.options
        if mapper.ignored_columns:
            ignored = ", ".join(sorted(mapper.ignored_columns))
            self._say(f"note: {options.job_type} jobs do not use column(s) {ignored}: ignored")
        job_ignored = self._job_rows.ignored_columns if self._job_rows else set()
        if job_ignored:
            ignored = ", ".join(sorted(job_ignored))
            self._say(f"note: Cognito's import job does not take column(s) {ignored}: ignored")

    def _print_plan(self, earlier: Checkpoint, parts: list[PreparedPart]) -> None:
        fixed = self._route_fixed()
        counts = PlanCounts(
            job_type=self.options.job_type,
            worker_rows=self._sendable,
            job_rows=sum(p.file.rows for p in parts),
            job_parts=len(parts),
            invalid=self._invalid,
            sent_earlier=earlier.sent_count,
            worker_reason="a password in the file" if fixed is None else "",
            job_reason="no password in the file" if fixed is None else "--path import-job",
        )
        for line in plan_lines(counts, os.environ):
            self._say(line)

    def _confirmed(self) -> bool:
        if self.options.yes:
            return True
        if self._confirm is not None:
            return self._confirm()
        self._say(
            "nothing was sent: an import job cannot be taken back, so a run that is not "
            "interactive confirms the plan with --yes"
        )
        return False

    def _run_jobs(
        self, parts: list[PreparedPart], checkpoint_path: Path, ledger: OutcomeLedger
    ) -> None:
        path = checkpoint_path.with_name(
            checkpoint_path.name.removesuffix(".json").removesuffix(".checkpoint")
            + ".import-job.checkpoint.json"
        )
        checkpoint = JobCheckpoint.load(path, self.import_id, self.sha256)
        phase = JobPhase(
            self._jobs_client(),
            checkpoint,
            progress=self._progress,
            say=self._say,
            stop=self._stop,
            poll_s=self.options.job_poll_s,
        )
        self._job_phase = phase
        phase.run(parts, ledger.record)
        if phase.interrupted:
            self._interrupted = True

    def _job_default_outcome(self, line: int, *, checked: bool) -> Outcome:
        if checked:
            if self.options.validate_only:
                return Outcome(RowStatus.VALID)
            return Outcome(RowStatus.NOT_SENT, "", "not sent: invalid rows, or no confirmation")
        if self._job_phase is not None and self._job_phase.was_started(line):
            return Outcome(
                RowStatus.SENT, "", "in an import job not followed to its end: run the import again"
            )
        return Outcome(RowStatus.NOT_SENT, "", "interrupted before its import job started")


def _looked_up_outcome(answer: LookedUp) -> Outcome:
    """A row sent earlier, as its record in the idempotency table tells it."""
    state = answer.state
    look_again = f"look again later (cognito-worker job {answer.job_id})"
    if answer.error:
        return Outcome(
            RowStatus.UNKNOWN, "", f"sent by an earlier run; lookup failed: {answer.error}"
        )
    if state is None:
        return Outcome(
            RowStatus.UNKNOWN,
            "",
            "sent by an earlier run; no record in the idempotency table: not taken by a worker "
            f"yet, rejected before it was claimed, or expired; {look_again}",
        )
    if state.status is JobStatus.FINISHED and state.result is not None:
        return outcome_of(state.result)
    if state.status is JobStatus.RUNNING:
        return Outcome(
            RowStatus.UNKNOWN, "", f"sent by an earlier run; a worker is on it now; {look_again}"
        )
    return Outcome(
        RowStatus.UNKNOWN,
        "",
        f"sent by an earlier run; pending, {state.attempts} delivery(ies) without an outcome so "
        f"far; {look_again}",
    )


def line_of(job_id: str) -> int:
    """The file line a job id of an import names (its last ``:`` part)."""
    return int(job_id.rsplit(":", 1)[1])


def _username(row: Row) -> str:
    value = row.fields.get("username")
    return value if isinstance(value, str) else ""


def _quote(text: str) -> str:
    return shlex.quote(text)
