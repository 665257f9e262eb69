"""An embedded local AWS for the demo and the tests: moto server, plus a Cognito front.

moto does not check the SecretHash on SignUp, ConfirmSignUp, ResendConfirmationCode, ForgotPassword
or ConfirmForgotPassword, and has no ResendConfirmationCode at all. The front sits before moto's
Cognito API and closes those two gaps the way Cognito behaves: it refuses a missing or wrong
SecretHash with Cognito's own error, and answers ResendConfirmationCode from the user's state in
moto. It refuses an email attribute that is not an address, as Cognito does. It also answers
Cognito's user import jobs, which moto lacks, and serves their presigned uploads on a port of its
own (:mod:`worker.local.import_jobs`). Everything else passes through to
moto unchanged.

Run it as ``python -m worker.local.aws`` (or ``cognito-worker local``): it provisions a pool, the
queues and the topic, prints the environment to export, and serves until Ctrl-C (``--help``).
With ``--endpoints-only`` it provisions nothing and prints one JSON line with its endpoints, as the
tests and the demo read it. Loopback only; needs the ``local`` extra (moto).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import json
import os
import re
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
from aiohttp import web

from worker.local.import_jobs import OPERATIONS as IMPORT_JOB_OPERATIONS
from worker.local.import_jobs import ImportJobError, ImportJobs
from worker.local.provisioned_limits import OPERATIONS as LIMIT_OPERATIONS
from worker.local.provisioned_limits import ProvisionedLimitError, ProvisionedLimits

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
# The jobs queue's maxReceiveCount, as in the deploy stack: high enough that no hand-back of the
# worker's own (a breaker cycle, a stop, a job owned elsewhere) can exhaust it. The worker counts
# a job's own failures and deferrals itself and moves it to the DLQ when they run out.
MAX_RECEIVE_COUNT = 1000
# Both lanes' jobs queues hide a received message as long as the worker asks on each receive
# (VISIBILITY_TIMEOUT_S's default), as the deploy stack's do: other consumers, and
# `cognito-worker check`, see the queue's own value.
VISIBILITY_TIMEOUT_S = 60
# The budgets `cognito-worker local` prints for the worker: the deploy stack's defaults, below
# the quotas the local Cognito front enforces (its free rates, 50, 30 and 50) by the headroom a
# deployment leaves its application's own calls. The worker's own defaults equal the quotas,
# which `check` warns of.
DEVELOPER_RATES_RPS = {
    "RATE_USER_CREATION_RPS": "40",
    "RATE_USER_ACCOUNT_RECOVERY_RPS": "20",
    "RATE_USER_RESOURCE_READ_RPS": "40",
}
_TARGET_PREFIX = "AWSCognitoIdentityProviderService."
_HASHED_OPERATIONS = {
    "SignUp",
    "ConfirmSignUp",
    "ResendConfirmationCode",
    "ForgotPassword",
    "ConfirmForgotPassword",
}
# The operations whose email attribute Cognito checks and moto does not: moto stores any text,
# or answers HTTP 500 after creating the user for some (``ann@example.com@example.com``).
_EMAIL_CHECKED_OPERATIONS = {"SignUp", "AdminCreateUser", "AdminUpdateUserAttributes"}
# An address as Cognito takes one: a local part, one "@", a dotted domain, no white space.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
# The Regions whose user pools the front knows. The five hashed operations are unsigned, so a
# request names no Region (Cognito takes it from the endpoint's host name, which is local here):
# like moto, the front finds a client in whichever of these Regions holds it.
FRONT_REGIONS = (REGION, "eu-west-1")
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the local AWS answers."""

    moto: str  # every service, as moto implements it
    cognito: str  # Cognito through the front (hash checks, ResendConfirmationCode)
    sqs_sns: str | None = None  # SQS and SNS when another emulator serves them (else moto)
    dynamodb: str | None = None  # DynamoDB when another emulator serves it (else moto)

    @property
    def queues_and_topics(self) -> str:
        """Where SQS and SNS answer."""
        return self.sqs_sns or self.moto

    @property
    def tables(self) -> str:
        """Where DynamoDB answers."""
        return self.dynamodb or self.moto


def _hash(username: str, client_id: str, secret: str) -> str:
    message = (username + client_id).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class _CognitoError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Client:
    user_pool_id: str
    secret: str | None


class CognitoFront:
    """The aiohttp app in front of moto's Cognito API."""

    def __init__(self, moto_endpoint: str, imports: ImportJobs | None = None) -> None:
        self._moto = moto_endpoint
        self._imports = imports
        self._limits = ProvisionedLimits()
        self._clients: dict[str, _Client] = {}
        self._idp_by_region: dict[str, Any] = {}
        self._refreshing = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        """The web application: every path, every method."""
        app = web.Application(client_max_size=2**22)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(_TARGET_PREFIX) if target.startswith(_TARGET_PREFIX) else ""
        if operation in IMPORT_JOB_OPERATIONS and self._imports is not None:
            try:
                parameters = json.loads(body or b"{}")
                answer = await asyncio.to_thread(self._imports.handle, operation, parameters)
            except ImportJobError as error:
                return _error_response(error.code, error.message)
            return web.json_response(answer, content_type="application/x-amz-json-1.1")
        if operation in LIMIT_OPERATIONS:
            try:
                answer = self._limits.handle(operation, json.loads(body or b"{}"))
            except ProvisionedLimitError as error:
                return _error_response(error.code, error.message)
            return web.json_response(answer, content_type="application/x-amz-json-1.1")
        if operation in _HASHED_OPERATIONS or operation in _EMAIL_CHECKED_OPERATIONS:
            try:
                parameters = json.loads(body or b"{}")
                if operation in _HASHED_OPERATIONS:
                    client = await self._check_secret_hash(parameters)
                _check_email(parameters)
                if operation == "ResendConfirmationCode":
                    answer = await asyncio.to_thread(self._resend, client, parameters)
                    return web.json_response(answer, content_type="application/x-amz-json-1.1")
            except _CognitoError as error:
                return _error_response(error.code, error.message)
        return await self._forward(request, body)

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._session.request(
            request.method, self._moto + request.path_qs, headers=headers, data=body
        ) as answer:
            payload = await answer.read()
            reply_headers = {
                k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS
            }
            return web.Response(status=answer.status, body=payload, headers=reply_headers)

    def _idp(self, region: str) -> Any:
        if region not in self._idp_by_region:
            self._idp_by_region[region] = aws_client("cognito-idp", self._moto, region)
        return self._idp_by_region[region]

    async def _check_secret_hash(self, parameters: dict[str, Any]) -> _Client:
        client_id = str(parameters.get("ClientId", ""))
        client = self._clients.get(client_id)
        if client is None:
            # One refresh at a time: the first burst of calls of a new client would otherwise
            # each list every pool through moto, one after another, and wait seconds for it.
            async with self._refreshing:
                client = self._clients.get(client_id)
                if client is None:
                    await asyncio.to_thread(self._refresh_clients)
                    client = self._clients.get(client_id)
        if client is None:
            raise _CognitoError(
                "ResourceNotFoundException", f"User pool client {client_id} does not exist."
            )
        sent = parameters.get("SecretHash")
        if client.secret is None:
            if sent is not None:
                raise _CognitoError(
                    "NotAuthorizedException", f"Client {client_id} is not configured for secret"
                )
            return client
        if sent is None:
            raise _CognitoError(
                "NotAuthorizedException",
                f"Client {client_id} is configured for secret but secret was not received",
            )
        # Cognito's formula, written out here on purpose rather than imported from the worker.
        expected = _hash(str(parameters.get("Username", "")), client_id, client.secret)
        if not hmac.compare_digest(expected, str(sent)):
            raise _CognitoError(
                "NotAuthorizedException", f"SecretHash does not match for the client: {client_id}"
            )
        return client

    def _refresh_clients(self) -> None:
        for region in FRONT_REGIONS:
            self._refresh_region(region)

    def _refresh_region(self, region: str) -> None:
        """Learn the clients of every pool of the Region (all pages), describing only new ones."""
        idp = self._idp(region)
        for pools in idp.get_paginator("list_user_pools").paginate(MaxResults=60):
            for pool in pools["UserPools"]:
                pages = idp.get_paginator("list_user_pool_clients").paginate(
                    UserPoolId=pool["Id"], MaxResults=60
                )
                for listed in pages:
                    for summary in listed["UserPoolClients"]:
                        if summary["ClientId"] in self._clients:
                            continue
                        described = idp.describe_user_pool_client(
                            UserPoolId=pool["Id"], ClientId=summary["ClientId"]
                        )["UserPoolClient"]
                        self._clients[summary["ClientId"]] = _Client(
                            pool["Id"], described.get("ClientSecret")
                        )

    def _resend(self, client: _Client, parameters: dict[str, Any]) -> dict[str, Any]:
        idp = self._idp(client.user_pool_id.split("_", 1)[0])
        try:
            user = idp.admin_get_user(
                UserPoolId=client.user_pool_id, Username=str(parameters.get("Username", ""))
            )
        except idp.exceptions.UserNotFoundException:
            raise _CognitoError(
                "UserNotFoundException", "Username/client id combination not found."
            ) from None
        if user["UserStatus"] != "UNCONFIRMED":
            raise _CognitoError("InvalidParameterException", "User is already confirmed.")
        attributes = {a["Name"]: a["Value"] for a in user.get("UserAttributes", [])}
        if "email" in attributes:
            local, _, domain = attributes["email"].partition("@")
            destination = f"{local[:1]}***@{domain[:1]}***"
            medium, attribute = "EMAIL", "email"
        elif "phone_number" in attributes:
            destination = "+*******" + attributes["phone_number"][-4:]
            medium, attribute = "SMS", "phone_number"
        else:
            raise _CognitoError(
                "InvalidParameterException", "Cannot resend codes. Auto verification not turned on."
            )
        return {
            "CodeDeliveryDetails": {
                "Destination": destination,
                "DeliveryMedium": medium,
                "AttributeName": attribute,
            }
        }


def _check_email(parameters: dict[str, Any]) -> None:
    """Refuse an email attribute that is not an address, with Cognito's error and message."""
    attributes = parameters.get("UserAttributes")
    if not isinstance(attributes, list):
        return
    for attribute in attributes:
        if not isinstance(attribute, dict) or attribute.get("Name") != "email":
            continue
        if not _EMAIL.fullmatch(str(attribute.get("Value", ""))):
            raise _CognitoError("InvalidParameterException", "Invalid email address format.")


def _error_response(code: str, message: str) -> web.Response:
    return web.json_response(
        {"__type": code, "message": message},
        status=400,
        headers={"x-amzn-ErrorType": code},
        content_type="application/x-amz-json-1.1",
    )


@functools.cache
def aws_client(service: str, endpoint: str, region: str = REGION) -> Any:
    """A boto3 client for the local AWS (any credentials do); one per service and endpoint."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto accepts any credentials
    )


@dataclass(frozen=True, slots=True)
class Stack:
    """What :func:`provision` created: one deployment's queues, topic and Cognito app client."""

    endpoints: Endpoints
    user_pool_id: str
    client_id: str
    client_secret: str
    jobs_queue_url: str
    dead_letter_queue_url: str
    results_topic_arn: str
    results_queue_url: str
    import_logs_role_arn: str = ""  # the role Cognito assumes to log an import job
    bulk_jobs_queue_url: str | None = None  # the bulk lane, with a DLQ of its own
    bulk_dead_letter_queue_url: str | None = None

    def create_confirmed_user(self, username: str, password: str) -> None:
        """A CONFIRMED user with a verified email, created by an administrator."""
        idp = aws_client("cognito-idp", self.endpoints.moto)
        idp.admin_create_user(
            UserPoolId=self.user_pool_id,
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": f"{username}@example.com"},
                {"Name": "email_verified", "Value": "true"},
            ],
        )
        idp.admin_set_user_password(
            UserPoolId=self.user_pool_id, Username=username, Password=password, Permanent=True
        )

    def create_unconfirmed_user(self, username: str, password: str) -> None:
        """An UNCONFIRMED user, signed up through the Cognito front like any client."""
        aws_client("cognito-idp", self.endpoints.cognito).sign_up(
            ClientId=self.client_id,
            Username=username,
            Password=password,
            SecretHash=_hash(username, self.client_id, self.client_secret),
            UserAttributes=[{"Name": "email", "Value": f"{username}@example.com"}],
        )

    def _bulk_lane(self) -> dict[str, str]:
        if self.bulk_jobs_queue_url is None or self.bulk_dead_letter_queue_url is None:
            return {}
        return {
            "BULK_JOBS_QUEUE_URL": self.bulk_jobs_queue_url,
            "BULK_DEAD_LETTER_QUEUE_URL": self.bulk_dead_letter_queue_url,
        }

    def queue_depth(self, queue_url: str) -> int:
        """Messages on a queue, visible, in flight or delayed."""
        attributes = aws_client("sqs", self.endpoints.queues_and_topics).get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(count) for count in attributes.values())

    def worker_env(self, **overrides: str) -> dict[str, str]:
        """The environment a worker needs to serve this stack.

        The endpoints are the SDK's own variables: ``AWS_ENDPOINT_URL`` for every service, and
        ``AWS_ENDPOINT_URL_<SERVICE>`` for one service served elsewhere.
        """
        elsewhere = {}
        if self.endpoints.sqs_sns:
            elsewhere = {
                "AWS_ENDPOINT_URL_SQS": self.endpoints.sqs_sns,
                "AWS_ENDPOINT_URL_SNS": self.endpoints.sqs_sns,
            }
        if self.endpoints.dynamodb:
            elsewhere["AWS_ENDPOINT_URL_DYNAMODB"] = self.endpoints.dynamodb
        return {
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_ENDPOINT_URL": self.endpoints.moto,
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": self.endpoints.cognito,
            **elsewhere,
            "JOBS_QUEUE_URL": self.jobs_queue_url,
            "DEAD_LETTER_QUEUE_URL": self.dead_letter_queue_url,
            **self._bulk_lane(),
            "RESULTS_TOPIC_ARN": self.results_topic_arn,
            "COGNITO_USER_POOL_ID": self.user_pool_id,
            "COGNITO_CLIENT_ID": self.client_id,
            "COGNITO_CLIENT_SECRET": self.client_secret,
            "IMPORT_LOGS_ROLE_ARN": self.import_logs_role_arn,
            # The local stack tries every job type, imports included; a deployment enables
            # import_user only where it means to (docs/settings.md).
            "ACCEPTED_JOB_TYPES": "all",
            **overrides,
        }


def _queue_with_dlq(sqs: Any, name: str, max_receive_count: int) -> tuple[str, str]:
    """A queue and its DLQ, the queue's redrive policy pointing at it; return both URLs."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    attributes = {
        "RedrivePolicy": json.dumps(redrive),
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
    }
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, dlq_url


def provision(
    endpoints: Endpoints,
    name: str,
    *,
    max_receive_count: int = MAX_RECEIVE_COUNT,
    bulk_lane: bool = True,
) -> Stack:
    """Create a user pool with a secret-bearing client, the jobs queue with its DLQ (and the bulk
    lane's, unless ``bulk_lane`` is false), and the results topic with a queue subscribed to it
    (raw delivery), all named after ``name``."""
    idp = aws_client("cognito-idp", endpoints.moto)
    sqs = aws_client("sqs", endpoints.queues_and_topics)
    sns = aws_client("sns", endpoints.queues_and_topics)
    pool_id = idp.create_user_pool(
        PoolName=name,
        AutoVerifiedAttributes=["email"],
        AccountRecoverySetting={"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
        # The demo's and the examples' custom attribute, which a real pool must declare.
        Schema=[{"Name": "plan", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName=f"{name}-client", GenerateSecret=True
    )["UserPoolClient"]
    jobs_url, dlq_url = _queue_with_dlq(sqs, f"{name}-jobs", max_receive_count)
    bulk_url, bulk_dlq_url = (
        _queue_with_dlq(sqs, f"{name}-bulk-jobs", max_receive_count) if bulk_lane else (None, None)
    )
    topic_arn = sns.create_topic(Name=f"{name}-results")["TopicArn"]
    results_url = sqs.create_queue(QueueName=f"{name}-results")["QueueUrl"]
    results_arn = sqs.get_queue_attributes(QueueUrl=results_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=results_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    role_arn = create_import_logs_role(endpoints, f"{name}-cognito-import-logs")
    return Stack(
        endpoints=endpoints,
        user_pool_id=pool_id,
        client_id=client["ClientId"],
        client_secret=client["ClientSecret"],
        jobs_queue_url=jobs_url,
        dead_letter_queue_url=dlq_url,
        results_topic_arn=topic_arn,
        results_queue_url=results_url,
        import_logs_role_arn=role_arn,
        bulk_jobs_queue_url=bulk_url,
        bulk_dead_letter_queue_url=bulk_dlq_url,
    )


def create_import_logs_role(endpoints: Endpoints, name: str) -> str:
    """The role Cognito assumes to write import jobs' logs, as AWS's guide gives it (trusted by
    ``cognito-idp.amazonaws.com``; the four logs actions on ``/aws/cognito/*``); its ARN."""
    iam = aws_client("iam", endpoints.moto)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "cognito-idp.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    arn: str = iam.create_role(RoleName=name[:64], AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]["Arn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                "Resource": f"arn:aws:logs:{REGION}:*:log-group:/aws/cognito/*",
            }
        ],
    }
    iam.put_role_policy(RoleName=name[:64], PolicyName="logs", PolicyDocument=json.dumps(policy))
    return arn


def create_idempotency_table(endpoints: Endpoints) -> str:
    """A DynamoDB table for ``IDEMPOTENCY_STORE=dynamodb``; return its name."""
    name = f"idempotency-{uuid.uuid4().hex[:8]}"
    dynamodb = aws_client("dynamodb", endpoints.tables)
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
    except dynamodb.exceptions.ClientError as error:
        # dynalite (the tests' DynamoDB) has no TTL at all. Nothing rests on TTL deletion, which
        # DynamoDB does not make timely either: an expired record is a fresh key to the store.
        if error.response.get("Error", {}).get("Code") != "UnknownOperationException":
            raise
    return name


@contextmanager
def moto_server(port: int | None = None, *, start_timeout_s: float = 300) -> Iterator[str]:
    """A bare moto server on a loopback port (``port``, or a free one), for the block; yield its
    URL once it accepts connections.

    The local AWS serves everything from one.
    """
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(url, timeout_s=start_timeout_s)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    host, port = url.removeprefix("http://").split(":")
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered at {url} within {timeout_s:g} s")


async def _serve_front(
    moto_endpoint: str, front_socket: socket.socket, on_ready: Callable[[Endpoints], None]
) -> None:
    imports = ImportJobs(lambda service, region: aws_client(service, moto_endpoint, region))
    uploads = web.AppRunner(imports.upload_app(), access_log=None)
    await uploads.setup()
    upload_site = web.TCPSite(uploads, LOOPBACK, 0)
    await upload_site.start()
    upload_port = upload_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    imports.upload_base = f"http://{LOOPBACK}:{upload_port}"
    runner = web.AppRunner(CognitoFront(moto_endpoint, imports).app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, front_socket).start()
    front_port = front_socket.getsockname()[1]
    endpoints = Endpoints(moto=moto_endpoint, cognito=f"http://{LOOPBACK}:{front_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await asyncio.to_thread(on_ready, endpoints)
        await stop.wait()
    finally:
        await runner.cleanup()
        await uploads.cleanup()


def _print_endpoints(endpoints: Endpoints) -> None:
    print(json.dumps({"moto": endpoints.moto, "cognito": endpoints.cognito}), flush=True)


def developer_env(stack: Stack) -> dict[str, dict[str, str]]:
    """The environment to export, by audience: a producer, and ``cognito-worker run``."""
    worker = stack.worker_env(**DEVELOPER_RATES_RPS)
    shared = ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
    # AWS_DEFAULT_REGION too: plain boto3 and the AWS CLI read it, not AWS_REGION.
    common = {name: worker[name] for name in shared} | {"AWS_DEFAULT_REGION": worker["AWS_REGION"]}
    producer = {
        **common,
        "JOBS_QUEUE_URL": stack.jobs_queue_url,
        **({"BULK_JOBS_QUEUE_URL": stack.bulk_jobs_queue_url} if stack.bulk_jobs_queue_url else {}),
        "RESULTS_TOPIC_ARN": stack.results_topic_arn,
        "RESULTS_QUEUE_URL": stack.results_queue_url,
    }
    return {"producer": producer, "worker": worker}


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600): it holds the client secret.

    A file that exists is made private before it is written over, so the secret is never in a
    file others can read, not even for a moment.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)


def _exports(variables: dict[str, str]) -> str:
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in variables.items())


def _announce(stack: Stack, env_file: Path | None) -> None:
    env = developer_env(stack)
    worker_only = {k: v for k, v in env["worker"].items() if k not in env["producer"]}
    text = (
        "# For a producer (worker.producer, examples/node):\n"
        f"{_exports(env['producer'])}\n"
        "# For the worker (`cognito-worker run`), in addition:\n"
        f"{_exports(worker_only)}\n"
    )
    if env_file is not None:
        write_private(env_file, text)
    print(
        f"Local AWS is up: {stack.endpoints.moto} (SQS, SNS, DynamoDB, Cognito admin), "
        f"{stack.endpoints.cognito} (Cognito with SecretHash checks).\n"
        f"Provisioned user pool {stack.user_pool_id}, its client with a secret, the jobs queue "
        "(the interactive lane) and the bulk jobs queue (the bulk lane), each with its "
        "dead-letter queue, the results topic and a queue subscribed to it.\n"
        + (f"The environment below is also in {env_file} (source it).\n" if env_file else "")
        + "\n"
        + text
        + "\nServing until Ctrl-C.",
        flush=True,
    )


def _arguments(argv: Sequence[str] | None, prog: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run an embedded local AWS (moto server and a Cognito front that checks "
        "SecretHash) on 127.0.0.1, provision a user pool with a secret-bearing client, the jobs "
        "queue and the bulk jobs queue (the two lanes) each with its dead-letter queue, the "
        "results topic and a results queue subscribed to it, "
        "print the environment to export, and serve until Ctrl-C. Needs the 'local' extra.",
    )
    parser.add_argument(
        "--port", type=int, default=0,
        help="port of moto (SQS, SNS, DynamoDB, Cognito admin); the Cognito front takes the next "
        "one. Default: free ports chosen at random.",
    )  # fmt: skip
    parser.add_argument("--name", default="local", help="name prefix of what is provisioned")
    parser.add_argument("--env-file", type=Path, help="also write the exports to this file")
    parser.add_argument(
        "--endpoints-only", action="store_true",
        help="provision nothing; print one JSON line with the endpoints once ready (for tests)",
    )  # fmt: skip
    arguments = parser.parse_args(argv)
    if not 0 <= arguments.port <= 65534:
        parser.error("--port must be within 0..65534 (the front takes the next port)")
    return arguments


def main(argv: Sequence[str] | None = None, prog: str = "python -m worker.local.aws") -> int:
    """Run moto server and the Cognito front until SIGTERM or Ctrl-C."""
    arguments = _arguments(argv, prog)
    moto_port = arguments.port or free_port()
    if not _port_free(moto_port):
        print(f"local_aws: port {moto_port} is in use; choose another --port", file=sys.stderr)
        return 1
    # The front's port is taken at once, before moto starts (which takes a while), so nothing
    # else can take it meanwhile.
    front_socket = socket.socket()
    try:
        front_socket.bind((LOOPBACK, moto_port + 1 if arguments.port else 0))
    except OSError:
        front_socket.close()
        print(f"local_aws: port {moto_port + 1} is in use; choose another --port", file=sys.stderr)
        return 1

    def ready(endpoints: Endpoints) -> None:
        if arguments.endpoints_only:
            _print_endpoints(endpoints)
        else:
            _announce(provision(endpoints, arguments.name), arguments.env_file)

    # A second Ctrl-C while stopping ends it quietly; moto is stopped on the way out either way.
    with contextlib.suppress(KeyboardInterrupt), moto_server(moto_port, start_timeout_s=30) as url:
        asyncio.run(_serve_front(url, front_socket, ready))
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


@contextmanager
def announced_child(
    command: Sequence[str],
    what: str,
    *,
    cwd: Path | None = None,
    start_timeout_s: float = 30.0,
    stop_timeout_s: float = 10.0,
) -> Iterator[tuple[dict[str, Any], int]]:
    """Run ``command`` for the duration of the block; yield its first stdout line (JSON) and pid.

    For local servers that announce where they listen on their first line (this module with
    ``--endpoints-only``, and the tests' fault proxy and fauxqs). Raise if it says nothing within
    ``start_timeout_s``; stop it with SIGTERM (SIGKILL after ``stop_timeout_s``) on the way out.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=cwd)  # noqa: S603
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=start_timeout_s)
        line = process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"{what} did not start (see its output above)")
        yield json.loads(line), process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def local_aws() -> Iterator[Endpoints]:
    """Start the local AWS in a child process for the duration of the block."""
    command = [sys.executable, "-m", "worker.local.aws", "--endpoints-only"]
    # moto's first start imports much of botocore: minutes on a loaded machine are not unheard of.
    with announced_child(command, "the local AWS", start_timeout_s=300, stop_timeout_s=15) as (
        document,
        _pid,
    ):
        yield Endpoints(moto=document["moto"], cognito=document["cognito"])


if __name__ == "__main__":
    sys.exit(main())
