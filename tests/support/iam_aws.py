"""A moto server that enforces IAM, the principals of the tests, and a Cognito front before it.

moto enforces IAM once ``INITIAL_NO_AUTH_ACTION_COUNT`` requests have gone by unchecked, for the
whole server process: this one is a server of its own, apart from the session's local AWS. The
first three requests create an administrator (a user allowed ``*`` on ``*``); every request after
them must be signed by a known user's key and allowed by that user's policies.

What moto 5.2.5 checks, read in moto/core/authorization.py and moto/iam/access_control.py and
measured here:

- Only identity policies: a user's (or an assumed role's) inline and attached policies. Resource
  policies are never read: not the queues' (``QueuePolicies``), not the topic's, not the KMS key's.
- The action, as ``<signing name>:<API operation>``. So the batch APIs are asked for under their
  own names (``sqs:DeleteMessageBatch``, ``sns:PublishBatch``), which AWS authorises by the
  single-message action and IAM does not even define.
- The resource for SQS (and IAM, STS) only: moto works out the queue's ARN. Every other service
  (SNS, KMS, DynamoDB, Cognito) is checked against the resource ``*``, which a statement naming an
  ARN never matches: there moto checks the action alone.
- No condition of an identity policy (moto has no request context to evaluate one against).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import boto3
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from worker.local.aws import LOOPBACK, REGION, CognitoFront, free_port

#: The services whose requests moto checks against the resource they name.
RESOURCE_CHECKED = {"sqs"}
#: The batch operations moto authorises under their own names, by the action AWS uses for them.
BATCH_ACTIONS = {
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "sns:Publish": "sns:PublishBatch",
}
ADMINISTRATOR = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class Keys:
    """An IAM user's access key."""

    user: str
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class IamAws:
    """The enforcing moto server and its administrator."""

    url: str
    admin: Keys

    def client(self, service: str, keys: Keys | None = None) -> Any:
        """A boto3 client signing with ``keys`` (the administrator's by default)."""
        keys = keys or self.admin
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
        )

    def principal(self, user: str, policy: dict[str, Any] | None) -> Keys:
        """A new IAM user holding exactly ``policy`` (or no policy at all), and its key."""
        return _create_user(self.client("iam"), user, policy)


def _create_user(iam: Any, user: str, policy: dict[str, Any] | None) -> Keys:
    iam.create_user(UserName=user)
    if policy is not None:
        iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return Keys(user, key["AccessKeyId"], key["SecretAccessKey"])


@contextmanager
def enforcing_moto(start_timeout_s: float = 300) -> Iterator[IamAws]:
    """A moto server on a free loopback port that enforces IAM after creating its administrator."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    bootstrap = 3  # CreateUser, PutUserPolicy, CreateAccessKey: the administrator
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(bootstrap)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"moto did not start at {url}") from None
                time.sleep(0.05)
        anonymous = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        yield IamAws(url, _create_user(anonymous, "administrator", ADMINISTRATOR))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def as_moto_evaluates(policy: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``policy`` in the form moto can evaluate, and each change made, with its reason.

    Two changes, both forced by how moto evaluates (see the module's docstring), neither granting
    a call AWS would refuse the template's policy: a statement of a service moto checks by action
    alone gets the resource ``*`` (its ARN would never match, and the call would be refused), and
    the batch action moto asks for is added beside the single-message action AWS authorises it by.
    The resources stay exact for SQS, where moto compares them.
    """
    adapted = copy.deepcopy(policy)
    changes = []
    for statement in adapted["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else list(actions)
        services = {action.split(":", 1)[0] for action in actions}
        if not services <= RESOURCE_CHECKED and statement["Resource"] != "*":
            changes.append(
                f"{statement['Sid']}: resource {statement['Resource']} -> * "
                f"(moto checks {', '.join(sorted(services))} by action only)"
            )
            statement["Resource"] = "*"
        batch = [BATCH_ACTIONS[action] for action in actions if action in BATCH_ACTIONS]
        if batch:
            changes.append(f"{statement['Sid']}: + {', '.join(batch)} (moto's names for batches)")
            statement["Action"] = actions + batch
    return adapted, changes


class SigningCognitoFront(CognitoFront):
    """The local AWS's Cognito front, before the enforcing moto.

    A signed request (the Admin* calls of import_user) is passed on with its own Host header, so
    that moto verifies the caller's signature and policies. An unsigned one (the five public,
    SecretHash operations, which IAM does not govern) is signed with the administrator's key:
    moto would answer ConfirmForgotPassword unsigned with a 500 (it lists only some public
    operations as such). The front's own look-ups are the administrator's.
    """

    def __init__(self, moto_endpoint: str, admin: Keys) -> None:
        super().__init__(moto_endpoint)
        self._admin = admin
        self._credentials = Credentials(admin.access_key_id, admin.secret_access_key)

    def _idp(self, region: str) -> Any:
        if region not in self._idp_by_region:
            self._idp_by_region[region] = IamAws(self._moto, self._admin).client("cognito-idp")
        return self._idp_by_region[region]

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False
            )
        url = self._moto + request.path_qs
        passed = {"host", "content-length", "transfer-encoding", "connection"}
        if "Authorization" in request.headers:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        else:
            unsigned = {k: v for k, v in request.headers.items() if k.lower() not in passed}
            signed = AWSRequest(method=request.method, url=url, data=body, headers=unsigned)
            SigV4Auth(self._credentials, "cognito-idp", REGION).add_auth(signed)
            headers = dict(signed.headers.items())
        async with self._session.request(request.method, url, headers=headers, data=body) as answer:
            payload = await answer.read()
            reply = {k: v for k, v in answer.headers.items() if k.lower() not in passed}
            return web.Response(status=answer.status, body=payload, headers=reply)


@contextmanager
def cognito_front(aws: IamAws) -> Iterator[str]:
    """Serve a :class:`SigningCognitoFront` on a free loopback port, in a thread; yield its URL."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    listening = socket.socket()
    listening.bind((LOOPBACK, 0))
    runner = web.AppRunner(SigningCognitoFront(aws.url, aws.admin).app(), access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, listening).start()
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30), "the Cognito front did not start"
    try:
        yield f"http://{LOOPBACK}:{listening.getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
