"""The rows without a password, through Cognito's user import jobs: create, upload, start,
follow, and read each row's fate from the job's log.

Jobs run one after another: AWS's guide says one import job may be active at a time per account.
Every job id is in the checkpoint before its upload, and the job is marked started once it is:
a later run of the same import follows (or only reports) a started job and never starts one
again. Ctrl-C while a job runs leaves it running (Cognito goes on without the command) and prints
how to follow it or stop it.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from worker.importer.checkpoint import CheckpointMismatch
from worker.importer.job_checkpoint import JobCheckpoint, JobPart
from worker.importer.job_csv import JobFile
from worker.importer.progress import ProgressFactory
from worker.importer.report import Outcome, RowStatus
from worker.importer.user_import import (
    FINISHED,
    FIRST_USER_LINE,
    STARTED,
    JobState,
    RowLog,
    UserImportJobs,
)

#: A presigned URL lasts 15 minutes (AWS's guide); an unstarted job older than this gets a new one.
_UPLOAD_URL_LIFETIME_S = 14 * 60
FAILED_ROW_CODE = "ImportJobRowFailed"  # a row the job's log says failed
_RECORD_BATCH = 1000

Recorder = Callable[[Iterable[tuple[int, Outcome]]], None]


class StopFlag(Protocol):
    """Set by Ctrl-C."""

    requested: bool


@dataclass(frozen=True, slots=True)
class PreparedPart:
    """A job file written, with the file line of each of its rows, in the job file's order."""

    file: JobFile
    lines: array[int]


class JobPhase:
    """Runs an import's jobs in order and records every row's outcome."""

    def __init__(
        self,
        jobs: UserImportJobs,
        checkpoint: JobCheckpoint,
        *,
        progress: ProgressFactory,
        say: Callable[[str], None],
        stop: StopFlag,
        poll_s: float = 2.0,
        logs_timeout_s: float = 60.0,
    ) -> None:
        self._jobs = jobs
        self._checkpoint = checkpoint
        self._progress = progress
        self._say = say
        self._stop = stop
        self._poll_s = poll_s
        self._logs_timeout_s = logs_timeout_s
        self._starts: list[int] = []
        self._ids: list[str] = []
        self._started: list[bool] = []
        self.interrupted = False
        self.started_now = 0

    def job_id_of(self, line: int) -> str:
        """The Cognito job id of the part that holds the row on ``line`` ("" before it has one)."""
        index = bisect.bisect_right(self._starts, line) - 1
        return self._ids[index] if index >= 0 else ""

    def was_started(self, line: int) -> bool:
        """Whether the job of the part that holds the row on ``line`` was started (by any run)."""
        index = bisect.bisect_right(self._starts, line) - 1
        return index >= 0 and self._started[index]

    def run(self, parts: list[PreparedPart], record: Recorder) -> None:
        """Run every part's job (those not started yet) and record the outcome of its rows."""
        self._starts = [prepared.file.first_line for prepared in parts]
        self._ids = [""] * len(parts)
        self._started = [False] * len(parts)
        for index, prepared in enumerate(parts):
            entry = self._entry(prepared.file)
            self._ids[index] = entry.job_id
            if self._stopping():
                self.interrupted = True
                self._say_nothing_started(entry)
                return
            state = self._started_job(entry, prepared.file)
            self._ids[index] = entry.job_id
            self._started[index] = entry.started
            if state is None:
                self.interrupted = True
                self._say_nothing_started(entry)
                return
            state = self._follow(state, prepared.file)
            if state.status not in FINISHED:
                self.interrupted = True
                self._say_how_to_follow(state)
                return
            self._record(state, prepared, record)

    def _stopping(self) -> bool:
        return self._stop.requested  # a call: Ctrl-C sets it between any two statements

    # -- a part's job -------------------------------------------------------------------------

    def _entry(self, file: JobFile) -> JobPart:
        entry = self._checkpoint.parts.get(file.part)
        bounds = (file.first_line, file.last_line, file.rows)
        if entry is not None:
            if (entry.first_line, entry.last_line, entry.rows) != bounds:
                raise CheckpointMismatch(
                    f"{self._checkpoint.path}: part {file.part} of this import held lines "
                    f"{entry.first_line}-{entry.last_line} ({entry.rows} rows), not "
                    f"{bounds[0]}-{bounds[1]} ({bounds[2]}): run it with the --job-rows it had"
                )
            return entry
        name = f"{self._checkpoint.import_id}.part-{file.part}"
        entry = JobPart(file.part, *bounds, job_name=name)
        # A checkpoint lost (another machine, a deleted file): the job may exist under its name.
        found = self._jobs.find(entry.job_name)
        if found is not None and found.status in STARTED:
            entry.job_id, entry.started = found.job_id, True
        self._checkpoint.parts[file.part] = entry
        self._checkpoint.save()
        return entry

    def _started_job(self, entry: JobPart, file: JobFile) -> JobState | None:
        """The part's job, started: by an earlier run, or now. None if stopped before its start."""
        if entry.started:
            state = self._jobs.describe(entry.job_id)
            self._say(
                f"part {file.part}: job {entry.job_id} was started by an earlier run "
                f"({state.status}); following it, not starting it again"
            )
            return state
        earlier = self._jobs.describe(entry.job_id) if entry.job_id else None
        if earlier is not None and earlier.status in STARTED:
            entry.started = True  # started, but stopped before the checkpoint said so
            self._checkpoint.save()
            return earlier
        if (
            earlier is not None
            and earlier.status == "Created"
            and time.time() - earlier.created_at < _UPLOAD_URL_LIFETIME_S
        ):
            state = earlier  # created, never started, its upload URL still valid
        else:
            state = self._jobs.create(entry.job_name)
            entry.job_id = state.job_id
            self._checkpoint.save()
        if self._stopping():
            return None
        self._say(
            f"part {file.part}: job {state.job_id} created; uploading {file.rows} row(s) "
            f"({file.size:,} bytes)"
        )
        self._jobs.upload(state, file.path)
        if self._stopping():
            return None
        state = self._jobs.start(state.job_id)
        entry.started = True
        self._checkpoint.save()
        self.started_now += 1
        self._say(f"part {file.part}: job {state.job_id} started")
        return state

    def _follow(self, state: JobState, file: JobFile) -> JobState:
        if state.status in FINISHED:
            self._say(_summary(state))
            return state
        progress = self._progress(f"import job {file.part}", file.rows)
        shown = state.done_rows
        progress.advance(shown, _counts(state))
        while state.status not in FINISHED and not self._stopping():
            deadline = time.monotonic() + self._poll_s
            while time.monotonic() < deadline and not self._stopping():
                time.sleep(0.1)
            state = self._jobs.describe(state.job_id)
            progress.advance(max(state.done_rows - shown, 0), _counts(state))
            shown = max(shown, state.done_rows)
        progress.close()
        if state.status in FINISHED:
            self._say(_summary(state))
        return state

    # -- what became of each row --------------------------------------------------------------

    def _record(self, state: JobState, prepared: PreparedPart, record: Recorder) -> None:
        lines = prepared.lines
        logged = bytearray(len(lines))
        pending: list[tuple[int, Outcome]] = []
        found = 0
        deadline = time.monotonic() + self._logs_timeout_s
        # CloudWatch Logs may lag behind the job's counts: read again until every row the job
        # counted has its line, or the wait is over.
        while True:
            for entry in self._jobs.row_logs(state):
                index = entry.job_line - FIRST_USER_LINE
                if not 0 <= index < len(lines) or logged[index]:
                    continue
                logged[index] = 1
                found += 1
                pending.append((lines[index], _outcome(entry, state)))
                if len(pending) >= _RECORD_BATCH:
                    record(pending)
                    pending = []
            if found >= state.done_rows or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        missing = _missing_outcome(state)
        for index, seen in enumerate(logged):
            if not seen:
                pending.append((lines[index], missing))
            if len(pending) >= _RECORD_BATCH:
                record(pending)
                pending = []
        record(pending)

    # -- what the operator is told ------------------------------------------------------------

    def _say_how_to_follow(self, state: JobState) -> None:
        pool, job = self._jobs.user_pool_id, state.job_id
        self._say(
            f"interrupted: import job {job} goes on without this command ({state.status}, "
            f"{state.done_rows} row(s) done). To follow it:"
        )
        where = f"--user-pool-id {pool} --job-id {job}"
        self._say(f"  aws cognito-idp describe-user-import-job {where}")
        self._say("To stop it (a stopped job cannot be started again):")
        self._say(f"  aws cognito-idp stop-user-import-job {where}")
        self._say(
            "Run this import again to follow it to the end and write the full report: "
            "a started job is never started twice."
        )

    def _say_nothing_started(self, entry: JobPart) -> None:
        self._say(
            f"interrupted before part {entry.part}'s job was started: nothing of it was imported"
            + (f" (job {entry.job_id} was created; unstarted, it expires)" if entry.job_id else "")
            + ". Run the import again to go on."
        )


def _counts(state: JobState) -> dict[str, int]:
    return {"imported": state.imported, "skipped": state.skipped, "failed": state.failed}


def _summary(state: JobState) -> str:
    text = (
        f"job {state.job_id}: {state.status}, imported {state.imported}, skipped "
        f"{state.skipped}, failed {state.failed}"
    )
    return text + (f" ({state.completion_message})" if state.completion_message else "")


def _outcome(entry: RowLog, state: JobState) -> Outcome:
    if entry.outcome == "SUCCEEDED":
        return Outcome(RowStatus.SUCCEEDED, "", f"imported by {state.job_id}: RESET_REQUIRED")
    if entry.outcome == "SKIPPED":
        return Outcome(RowStatus.ALREADY_EXISTS, "", entry.message)
    return Outcome(RowStatus.FAILED, FAILED_ROW_CODE, entry.message)


def _missing_outcome(state: JobState) -> Outcome:
    """A row the job's log does not name."""
    if state.status == "Succeeded":
        return Outcome(RowStatus.NO_RESULT, "", f"job {state.job_id}'s log has no line for it")
    return Outcome(
        RowStatus.FAILED,
        f"ImportJob{state.status}",
        f"job {state.job_id} ended {state.status}: {state.completion_message}".rstrip(": "),
    )
