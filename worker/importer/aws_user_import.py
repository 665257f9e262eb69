"""Cognito's user import jobs through boto3, and their logs through CloudWatch Logs.

The calls are few (one job per 500,000 rows, one describe per poll), so the synchronous SDK with
its standard retries is enough. The upload is a plain HTTP PUT of the file to the presigned URL
with the one header AWS's guide gives (``x-amz-server-side-encryption: aws:kms``) and no other
that the URL's signature could cover: a client that adds a ``Content-Type`` of its own is refused
by S3 with ``SignatureDoesNotMatch``.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from worker.importer.user_import import JobState, RowLog, parse_log_line

UPLOAD_HEADERS = {"x-amz-server-side-encryption": "aws:kms"}
_UPLOAD_TIMEOUT_S = 300
_LOG_GROUP_PREFIX = "/aws/cognito/userpools/"


class UploadFailed(Exception):
    """Raised when the presigned URL refuses the file; the message has the HTTP status."""


def _state(document: Mapping[str, Any]) -> JobState:
    created = document.get("CreationDate")
    return JobState(
        job_id=str(document["JobId"]),
        job_name=str(document.get("JobName", "")),
        status=str(document.get("Status", "")),
        imported=int(document.get("ImportedUsers", 0)),
        skipped=int(document.get("SkippedUsers", 0)),
        failed=int(document.get("FailedUsers", 0)),
        completion_message=str(document.get("CompletionMessage", "")),
        presigned_url=str(document.get("PreSignedUrl", "")),
        created_at=_seconds(created),
    )


def _seconds(moment: Any) -> float:
    """A date of the SDK's (a datetime) as seconds since the epoch."""
    if isinstance(moment, datetime):
        return moment.timestamp()
    return float(moment or 0)


class CognitoUserImportJobs:
    """:class:`~worker.importer.user_import.UserImportJobs` for one pool, with boto3."""

    def __init__(self, user_pool_id: str, logs_role_arn: str | None, region: str | None) -> None:
        self.user_pool_id = user_pool_id
        self._role = logs_role_arn
        config = Config(retries={"mode": "standard", "total_max_attempts": 3})
        self._idp: Any = boto3.client("cognito-idp", region_name=region, config=config)
        self._logs: Any = boto3.client("logs", region_name=region, config=config)

    def csv_header(self) -> list[str]:
        answer = self._idp.get_csv_header(UserPoolId=self.user_pool_id)
        return [str(name) for name in answer["CSVHeader"]]

    def create(self, job_name: str) -> JobState:
        if not self._role:
            raise ValueError("an import job needs the CloudWatch Logs role (IMPORT_LOGS_ROLE_ARN)")
        answer = self._idp.create_user_import_job(
            JobName=job_name, UserPoolId=self.user_pool_id, CloudWatchLogsRoleArn=self._role
        )
        return _state(answer["UserImportJob"])

    def upload(self, job: JobState, path: Path) -> None:
        url = urlsplit(job.presigned_url)
        connection_type = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_type(url.netloc, timeout=_UPLOAD_TIMEOUT_S)
        target = url.path + (f"?{url.query}" if url.query else "")
        size = path.stat().st_size
        try:
            with path.open("rb") as body:
                headers = {**UPLOAD_HEADERS, "Content-Length": str(size)}
                connection.request("PUT", target, body=body, headers=headers)
                answer = connection.getresponse()
                detail = answer.read(2000).decode("utf-8", errors="replace")
        finally:
            connection.close()
        if answer.status != 200:
            raise UploadFailed(f"the presigned URL answered HTTP {answer.status}: {detail[:300]}")

    def start(self, job_id: str) -> JobState:
        answer = self._idp.start_user_import_job(UserPoolId=self.user_pool_id, JobId=job_id)
        return _state(answer["UserImportJob"])

    def describe(self, job_id: str) -> JobState:
        answer = self._idp.describe_user_import_job(UserPoolId=self.user_pool_id, JobId=job_id)
        return _state(answer["UserImportJob"])

    def find(self, job_name: str) -> JobState | None:
        token: str | None = None
        while True:
            page = self._idp.list_user_import_jobs(
                UserPoolId=self.user_pool_id,
                MaxResults=60,
                **({"PaginationToken": token} if token else {}),
            )
            for job in page.get("UserImportJobs", []):  # newest first
                if job.get("JobName") == job_name:
                    return _state(job)
            token = page.get("PaginationToken")
            if not token:
                return None

    def row_logs(self, job: JobState) -> Iterator[RowLog]:
        group = self._log_group()
        if group is None:
            return
        stream = f"{job.job_id}/{job.job_name}"
        token: str | None = None
        while True:
            try:
                page = self._logs.get_log_events(
                    logGroupName=group,
                    logStreamName=stream,
                    startFromHead=True,
                    **({"nextToken": token} if token else {}),
                )
            except self._logs.exceptions.ResourceNotFoundException:
                return
            for event in page.get("events", []):
                parsed = parse_log_line(str(event.get("message", "")))
                if parsed is not None:
                    yield parsed
            following = page.get("nextForwardToken")
            if not following or following == token:
                return  # the same token again: the end of the stream
            token = following

    def _log_group(self) -> str | None:
        """``/aws/cognito/userpools/POOL_ID/POOL_NAME``, found by its prefix (no pool read)."""
        prefix = f"{_LOG_GROUP_PREFIX}{self.user_pool_id}/"
        for page in self._logs.get_paginator("describe_log_groups").paginate(
            logGroupNamePrefix=prefix
        ):
            for group in page.get("logGroups", []):
                return str(group["logGroupName"])
        return None
