"""The naive baseline, the seed's way: one message at a time, start to finish.

Receive one, compute the hash, call Cognito, publish the result, delete the message; repeat.
No concurrency, no batching. Measured on the same proxy, quota, latency and emulators as the worker.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
from botocore.config import Config

from worker.cognito.secret_hash import secret_hash
from worker.local.aws import REGION, Stack


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 3, "mode": "standard"}),
    )


def run_baseline(stack: Stack, cognito_url: str, jobs: int, timeout_s: float = 600) -> int:
    """Process ``jobs`` messages one by one; return how many were done."""
    sqs = _client("sqs", stack.endpoints.queues_and_topics)
    sns = _client("sns", stack.endpoints.queues_and_topics)
    idp = _client("cognito-idp", cognito_url)
    done = 0
    deadline = time.monotonic() + timeout_s
    while done < jobs and time.monotonic() < deadline:
        answer = sqs.receive_message(
            QueueUrl=stack.jobs_queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1
        )
        for message in answer.get("Messages", []):
            job = json.loads(message["Body"])
            username = job["username"]
            hashed = secret_hash(username, stack.client_id, stack.client_secret)
            try:
                if job["type"] == "sign_up":
                    idp.sign_up(
                        ClientId=stack.client_id,
                        Username=username,
                        Password=job["password"],
                        SecretHash=hashed,
                    )
                else:
                    idp.forgot_password(
                        ClientId=stack.client_id, Username=username, SecretHash=hashed
                    )
                status = "succeeded"
            except idp.exceptions.ClientError as error:
                status = f"failed: {error.response['Error']['Code']}"
            sns.publish(
                TopicArn=stack.results_topic_arn,
                Message=json.dumps({"job_id": job["job_id"], "status": status}),
            )
            sqs.delete_message(
                QueueUrl=stack.jobs_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            done += 1
    return done
