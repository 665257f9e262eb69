"""Cognito's user import jobs for the local front, over moto, which has none.

The front answers GetCSVHeader and Create/Start/Describe/Stop/ListUserImportJobs, serves the
presigned upload on a port of its own (as S3 would, apart from Cognito), and runs each started
job in a thread: every row is checked (:mod:`worker.local.import_job_rules`), a new user is
created in moto and left RESET_REQUIRED (AdminCreateUser with messages suppressed, a random
permanent password, AdminResetUserPassword: the state AWS's guide gives imported users), an
existing one is skipped, and one line per row goes to the job's log stream in moto's CloudWatch
Logs, in the group and stream AWS's guide names.

What it follows from the documentation: the operations' shapes and statuses, the presigned URL's
15 minutes, the upload's ``x-amz-server-side-encryption: aws:kms`` header, "no csv file was
uploaded" on a start without one, one active job per account, the CloudWatch Logs role trusted by
``cognito-idp.amazonaws.com``, a stopped job that cannot be started again. What it cannot know:
Cognito's pace, its threshold for "Too many users have failed or been skipped" (not emulated),
the exact texts of most failures, and the error code for a second active job (this front answers
LimitExceededException). The role's permissions are not evaluated (moto's IAM does not).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import string
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from worker.local.import_job_rules import (
    EXISTS,
    MFA_ENABLED,
    STANDARD_COLUMNS,
    SUCCEEDED,
    USERNAME,
    JobRow,
    PoolRules,
    UnreadableJobFile,
    job_rows,
)

OPERATIONS = frozenset(
    {"GetCSVHeader", "CreateUserImportJob", "StartUserImportJob", "DescribeUserImportJob"}
    | {"StopUserImportJob", "ListUserImportJobs"}
)
URL_LIFETIME_S = 15 * 60
MAX_UPLOAD_BYTES = 100 * 1000 * 1000
SIGNED_HEADERS = ("host", "x-amz-server-side-encryption")
# Headers any HTTP client sends that a presigned URL's signature does not need to cover.
_TRANSPORT_HEADERS = frozenset(
    {"host", "content-length", "expect", "user-agent", "accept", "accept-encoding", "connection"}
)
_ACTIVE = frozenset({"Pending", "InProgress", "Stopping"})
_ROW_WORKERS = 4  # rows created in moto at once: moto serves requests in threads
_LOG_BATCH = 500


class ImportJobError(Exception):
    """An error answer of the Cognito API: its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Job:
    job_id: str
    job_name: str
    pool_id: str
    role_arn: str
    created: float
    status: str = "Created"
    started: float | None = None
    completed: float | None = None
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    message: str = ""
    upload: bytes | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class ImportJobs:
    """The jobs of every pool the front knows, and their runs."""

    def __init__(self, client: Callable[[str, str], Any]) -> None:
        """``client(service, region)`` gives a boto3 client of moto's."""
        self._client = client
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self.upload_base = ""  # set once the upload site listens

    # -- the API ------------------------------------------------------------------------------

    def handle(self, operation: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Answer one operation (blocking: call it in a thread)."""
        if operation == "GetCSVHeader":
            pool_id = str(parameters.get("UserPoolId", ""))
            return {"UserPoolId": pool_id, "CSVHeader": self._rules(pool_id).header}
        if operation == "CreateUserImportJob":
            return {"UserImportJob": self._describe(self._create(parameters))}
        if operation == "ListUserImportJobs":
            return self._list(parameters)
        job = self._job(parameters)
        if operation == "StartUserImportJob":
            self._start(job)
        elif operation == "StopUserImportJob":
            self._stop(job)
        return {"UserImportJob": self._describe(job)}

    def _pool(self, pool_id: str) -> dict[str, Any]:
        idp = self._client("cognito-idp", pool_id.split("_", 1)[0] or "us-east-1")
        try:
            pool: dict[str, Any] = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
        except idp.exceptions.ResourceNotFoundException:
            raise ImportJobError(
                "ResourceNotFoundException", f"User pool {pool_id} does not exist."
            ) from None
        return pool

    def _rules(self, pool_id: str) -> PoolRules:
        pool = self._pool(pool_id)
        schema = pool.get("SchemaAttributes", [])
        custom = [a["Name"] for a in schema if str(a["Name"]).startswith("custom:")]
        required = {a["Name"] for a in schema if a.get("Required")} - {"sub"}
        return PoolRules(
            header=[*STANDARD_COLUMNS, *custom, MFA_ENABLED, USERNAME],
            auto_verified=list(pool.get("AutoVerifiedAttributes", [])),
            mfa=str(pool.get("MfaConfiguration", "OFF")),
            required=frozenset(required),
        )

    def _create(self, parameters: dict[str, Any]) -> _Job:
        pool_id = str(parameters.get("UserPoolId", ""))
        name = str(parameters.get("JobName", ""))
        role = str(parameters.get("CloudWatchLogsRoleArn", ""))
        if not 1 <= len(name) <= 128 or not all(c.isalnum() or c in "_ +=,.@-" for c in name):
            raise ImportJobError("InvalidParameterException", "JobName: 1-128 of [\\w\\s+=,.@-]")
        if not role.startswith("arn:") or len(role) < 20:
            raise ImportJobError("InvalidParameterException", "CloudWatchLogsRoleArn: an ARN")
        self._pool(pool_id)
        alphabet = string.ascii_letters + string.digits
        job_id = "import-" + "".join(secrets.choice(alphabet) for _ in range(10))
        job = _Job(job_id, name, pool_id, role, time.time())
        with self._lock:
            self._jobs[job_id] = job
        return job

    def _job(self, parameters: dict[str, Any]) -> _Job:
        job_id = str(parameters.get("JobId", ""))
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.pool_id != parameters.get("UserPoolId"):
            raise ImportJobError("ResourceNotFoundException", f"Import job {job_id} not found.")
        return job

    def _start(self, job: _Job) -> None:
        rules = self._rules(job.pool_id)
        with self._lock:
            if job.status != "Created":
                raise ImportJobError(
                    "InvalidParameterException", f"Import job {job.job_id} is {job.status}."
                )
            if job.upload is None:
                raise ImportJobError(
                    "PreconditionNotMetException", f"No csv file was uploaded for {job.job_id}"
                )
            if any(other.status in _ACTIVE for other in self._jobs.values()):
                raise ImportJobError(
                    "LimitExceededException", "Only one import job can be active at a time."
                )
            if not rules.auto_verified:
                raise ImportJobError(
                    "InvalidParameterException",
                    "The user pool has no auto-verified attribute: an import cannot start.",
                )
            job.status, job.started = "Pending", time.time()
        threading.Thread(target=self._run, args=(job, rules), daemon=True).start()

    def _stop(self, job: _Job) -> None:
        with self._lock:
            if job.status not in ("Pending", "InProgress"):
                raise ImportJobError(
                    "InvalidParameterException", f"Import job {job.job_id} is {job.status}."
                )
            job.status = "Stopping"
        job.stop.set()

    def _list(self, parameters: dict[str, Any]) -> dict[str, Any]:
        pool_id = str(parameters.get("UserPoolId", ""))
        size = int(parameters.get("MaxResults", 0))
        if not 1 <= size <= 60:
            raise ImportJobError("InvalidParameterException", "MaxResults: 1 to 60")
        start = int(parameters.get("PaginationToken") or 0)
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.pool_id == pool_id]
        jobs.sort(key=lambda j: j.created, reverse=True)  # newest first, as the guide says
        page = jobs[start : start + size]
        answer: dict[str, Any] = {"UserImportJobs": [self._describe(j) for j in page]}
        if start + size < len(jobs):
            answer["PaginationToken"] = str(start + size)
        return answer

    def _describe(self, job: _Job) -> dict[str, Any]:
        with self._lock:
            document: dict[str, Any] = {
                "JobName": job.job_name,
                "JobId": job.job_id,
                "UserPoolId": job.pool_id,
                "PreSignedUrl": self._presigned_url(job),
                "CreationDate": job.created,
                "Status": job.status,
                "CloudWatchLogsRoleArn": job.role_arn,
                "ImportedUsers": job.imported,
                "SkippedUsers": job.skipped,
                "FailedUsers": job.failed,
            }
            if job.started is not None:
                document["StartDate"] = job.started
            if job.completed is not None:
                document["CompletionDate"] = job.completed
            if job.message:
                document["CompletionMessage"] = job.message
        return document

    # -- the presigned upload -----------------------------------------------------------------

    def _signature(self, job_id: str, created: float) -> str:
        text = f"{job_id}:{created:.3f}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()

    def _presigned_url(self, job: _Job) -> str:
        signed = "%3B".join(SIGNED_HEADERS)
        return (
            f"{self.upload_base}/{job.job_id}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Expires={URL_LIFETIME_S}&X-Amz-SignedHeaders={signed}"
            f"&X-Amz-Signature={self._signature(job.job_id, job.created)}"
        )

    def upload_app(self) -> web.Application:
        """The site the presigned URLs point to: ``PUT /JOB_ID?...``."""
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1)
        app.router.add_route("*", "/{job_id}", self._upload)
        return app

    async def _upload(self, request: web.Request) -> web.Response:
        with self._lock:
            job = self._jobs.get(request.match_info["job_id"])
        if request.method != "PUT" or job is None:
            return _s3_error(403, "AccessDenied", "Access Denied")
        signature = request.query.get("X-Amz-Signature", "")
        if not hmac.compare_digest(signature, self._signature(job.job_id, job.created)):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature does not match.")
        if time.time() > job.created + URL_LIFETIME_S:
            return _s3_error(403, "AccessDenied", "Request has expired")
        # The signature covers the headers it names: without one of them, or with another that
        # S3 would count in (Content-Type, as clients add it unasked), S3 answers 403.
        if request.headers.get("x-amz-server-side-encryption") != "aws:kms":
            return _s3_error(403, "SignatureDoesNotMatch", "x-amz-server-side-encryption")
        extra = sorted(
            name.lower()
            for name in request.headers
            if name.lower() not in _TRANSPORT_HEADERS and name.lower() not in SIGNED_HEADERS
        )
        if extra:
            return _s3_error(403, "SignatureDoesNotMatch", f"unsigned header(s) {extra}")
        body = await request.read()
        with self._lock:
            if job.status != "Created":
                return _s3_error(403, "AccessDenied", "Access Denied")
            job.upload = body
        return web.Response(status=200)

    # -- a run --------------------------------------------------------------------------------

    def _run(self, job: _Job, rules: PoolRules) -> None:
        region = job.pool_id.split("_", 1)[0]
        logs = self._client("logs", region)
        try:
            self._assume_role(job)
            pool_name = str(self._pool(job.pool_id).get("Name", ""))
            group = f"/aws/cognito/userpools/{job.pool_id}/{pool_name}"
            stream = f"{job.job_id}/{job.job_name}"
            _ensure_stream(logs, group, stream)
            rows = job_rows(job.upload or b"", rules)
            with self._lock:
                if job.status == "Pending":
                    job.status = "InProgress"
            self._import(job, rows, region, lambda lines: _put(logs, group, stream, lines))
        except UnreadableJobFile as error:
            self._end(job, "Failed", f"Amazon Cognito is unable to parse the .csv file: {error}")
        except ImportJobError as error:
            self._end(job, "Failed", error.message)
        else:
            if job.stop.is_set():
                self._end(job, "Stopped", "The Import Job was stopped by the developer.")
            else:
                self._end(job, "Succeeded", "Import Job Completed Successfully.")

    def _assume_role(self, job: _Job) -> None:
        """The job fails when its role cannot be assumed by Cognito (the guide's first case)."""
        iam = self._client("iam", "us-east-1")
        name = job.role_arn.rsplit("/", 1)[-1]
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            raise ImportJobError("", "The CloudWatch Logs role cannot be assumed.") from None
        trust = role.get("AssumeRolePolicyDocument", {})
        if isinstance(trust, str):
            trust = json.loads(trust)
        principals = json.dumps([s.get("Principal") for s in trust.get("Statement", [])])
        if "cognito-idp.amazonaws.com" not in principals:
            raise ImportJobError("", "The CloudWatch Logs role does not trust cognito-idp.")

    def _import(
        self,
        job: _Job,
        rows: Any,
        region: str,
        log: Callable[[list[str]], None],
    ) -> None:
        idp = self._client("cognito-idp", region)
        pending: list[str] = []
        with ThreadPoolExecutor(_ROW_WORKERS) as pool:
            batch: list[JobRow] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= _LOG_BATCH:
                    pending += self._batch(job, idp, pool, batch)
                    batch = []
                    log(pending)
                    pending = []
                if job.stop.is_set():
                    return
            pending += self._batch(job, idp, pool, batch)
        log(pending)

    def _batch(
        self, job: _Job, idp: Any, pool: ThreadPoolExecutor, rows: list[JobRow]
    ) -> list[str]:
        lines = []
        for row, (outcome, message) in zip(
            rows, pool.map(lambda r: _import_row(idp, job.pool_id, r), rows), strict=True
        ):
            lines.append(f"[{outcome}] Line Number {row.line} - {message}")
            with self._lock:
                if outcome == "SUCCEEDED":
                    job.imported += 1
                elif outcome == "SKIPPED":
                    job.skipped += 1
                else:
                    job.failed += 1
        return lines

    def _end(self, job: _Job, status: str, message: str) -> None:
        with self._lock:
            job.status, job.message, job.completed = status, message, time.time()


def _import_row(idp: Any, pool_id: str, row: JobRow) -> tuple[str, str]:
    if row.failure is not None:
        return "FAILED", row.failure
    attributes = [{"Name": k, "Value": v} for k, v in row.attributes.items()]
    try:
        idp.admin_create_user(
            UserPoolId=pool_id,
            Username=row.username,
            UserAttributes=attributes,
            MessageAction="SUPPRESS",
        )
    except idp.exceptions.UsernameExistsException:
        return "SKIPPED", EXISTS
    except idp.exceptions.InvalidParameterException as error:
        return "FAILED", f"The user data does not match the schema: {_text(error)}"
    # moto leaves an administrator's new user FORCE_CHANGE_PASSWORD; an imported user is
    # RESET_REQUIRED, which moto reaches from CONFIRMED only.
    password = "Aa1!" + secrets.token_urlsafe(24)
    idp.admin_set_user_password(
        UserPoolId=pool_id, Username=row.username, Password=password, Permanent=True
    )
    idp.admin_reset_user_password(UserPoolId=pool_id, Username=row.username)
    return "SUCCEEDED", SUCCEEDED


def _text(error: Exception) -> str:
    response = getattr(error, "response", {})
    return str(response.get("Error", {}).get("Message", error))[:200]


def _ensure_stream(logs: Any, group: str, stream: str) -> None:
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)


def _put(logs: Any, group: str, stream: str, lines: list[str]) -> None:
    if not lines:
        return
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": line} for line in lines]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return web.Response(status=status, text=body, content_type="application/xml")
