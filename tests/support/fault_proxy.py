"""A fault-injecting HTTP proxy for the tests, between the worker and the local AWS.

The proxy runs as its own process (``python -m tests.support.fault_proxy --upstream URL
[--upstream-cognito URL] [--upstream-dynamodb URL] [--seed N]``). It binds a free port on
127.0.0.1, prints one JSON line ``{"url": "http://127.0.0.1:PORT"}`` once it is ready, and serves
until SIGTERM or SIGINT.

Every request is identified (service from the SigV4 credential scope or the ``X-Amz-Target``
prefix, operation from ``X-Amz-Target`` or the query protocol's ``Action``, and, for Cognito, the
``Username``), counted, checked against the fault rules and quotas, and otherwise forwarded
unchanged: Cognito requests to ``--upstream-cognito`` and DynamoDB requests to
``--upstream-dynamodb`` when given, everything else to ``--upstream``.

Fault rules and quotas are switched at runtime through a control API on the same port, under
``/__proxy/``; :class:`FaultProxy` is its synchronous client (stdlib only) and
:func:`running_proxy` starts and stops the process for a test::

    with running_proxy(endpoints.moto, endpoints.cognito, seed=1) as proxy:
        with proxy.fault("throttle", operation="SignUp", probability=0.5):
            ...  # run the worker against proxy.url
        print(proxy.stats()["faults"])

A rule's ``when`` says where the fault happens: ``"before"`` answers (or drops) the request without
forwarding it, so upstream never acts; ``"after"`` forwards it, lets upstream act, and then
replaces or drops the answer -- "Cognito did it, but the reply was lost".

The ``fail_entries`` kind fails single entries of a JSON-protocol batch call (SendMessageBatch):
the first ``entries`` entries of a matching request are not forwarded, and the answer lists them
under ``Failed`` with ``sender_fault`` as asked, next to what upstream did with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from worker.local.aws import announced_child

LOOPBACK = "127.0.0.1"
CONTROL_PREFIX = "/__proxy/"
COGNITO = "cognito-idp"
COGNITO_TARGET_PREFIX = "AWSCognitoIdentityProviderService."

# Hop-by-hop headers, and those aiohttp recomputes for the body it actually sends.
_REQUEST_DROP = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "content-encoding",  # aiohttp's server has already decoded the request body
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    }
)
# Content-Encoding is kept on answers: the client session does not decompress (auto_decompress
# is off), so the body goes back exactly as upstream encoded it.
_RESPONSE_DROP = (_REQUEST_DROP - {"content-encoding"}) | {"proxy-authenticate"}

# The X-Amz-Target prefix of JSON-protocol services, for requests that are not signed (Cognito's
# SignUp, ConfirmSignUp, ForgotPassword ... carry no Authorization header).
_TARGET_SERVICES = {
    "AWSCognitoIdentityProviderService": COGNITO,
    "AmazonSQS": "sqs",
    "DynamoDB_20120810": "dynamodb",
}
_SERVICE_ALIASES = {"cognito": COGNITO}
_CREDENTIAL = re.compile(r"(?:^|Credential=)[^/\s,]+/\d{8}/[^/\s,]+/([^/\s,]+)/aws4_request")

#: kind -> (HTTP status, AWS error code, message) for the faults that answer with an AWS error.
AWS_ERRORS: dict[str, tuple[int, str, str]] = {
    "throttle": (400, "TooManyRequestsException", "Rate exceeded"),
    "internal_error": (500, "InternalErrorException", "Internal server error."),
    "limit_exceeded": (
        400,
        "LimitExceededException",
        "Attempt limit exceeded, please try after some time.",
    ),
    # What Cognito answers once the client secret the worker holds is no longer the client's
    # (a rotated secret): the tests use it to break the configuration mid-run.
    "not_authorized": (
        400,
        "NotAuthorizedException",
        "SecretHash does not match for the client",
    ),
    # What KMS answers a caller whose IAM policy or the key's policy does not allow the call
    # (moto enforces neither on Decrypt): the tests use it to refuse the field key mid-run.
    "access_denied": (
        400,
        "AccessDeniedException",
        "User: arn:aws:sts::111122223333:assumed-role/cognito-worker-task/0a1b2c3d is not "
        "authorized to perform: kms:Decrypt on this resource because no identity-based policy "
        "allows the kms:Decrypt action",
    ),
}
#: kind -> HTTP status for the faults that answer with a bare status.
HTTP_ERRORS: dict[str, int] = {"http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504}
#: the faults that close the connection without an answer.
CONNECTION_FAULTS = frozenset({"reset", "unreachable", "timeout"})
#: the faults that fail single entries of a batch call.
ENTRY_FAULTS = frozenset({"fail_entries"})
KINDS = frozenset({"latency", *AWS_ERRORS, *HTTP_ERRORS, *CONNECTION_FAULTS, *ENTRY_FAULTS})
WHEN = frozenset({"before", "after"})


# --------------------------------------------------------------------------- identification


@dataclass(frozen=True, slots=True)
class Call:
    """What a request is: which service and operation, for which Cognito user."""

    service: str
    operation: str
    username: str | None = None
    json_protocol: bool = False  # answered in JSON (X-Amz-Target) rather than query-protocol XML


def identify(headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> Call:
    """Identify a request from its (case-insensitive) headers, query string and body."""
    target = headers.get("X-Amz-Target", "")
    prefix, _, operation = target.rpartition(".")
    scope = _CREDENTIAL.search(
        headers.get("Authorization", "") or query.get("X-Amz-Credential", "")
    )
    if scope is not None:
        service = scope.group(1)
    else:
        service = _TARGET_SERVICES.get(prefix, prefix.lower() or "unknown")
    username: str | None = None
    if target:
        if service == COGNITO:
            username = _json_field(body, "Username")
    else:
        operation = query.get("Action", "")
        if not operation and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            operation = form.get("Action", [""])[0]
    return Call(service, operation or "unknown", username, json_protocol=bool(target))


def _json_field(body: bytes, name: str) -> str | None:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return None
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- rules and quotas


@dataclass(slots=True)
class Rule:
    """One fault rule. ``None`` in ``service``, ``operation`` or ``username`` matches anything."""

    kind: str
    service: str | None = None
    operation: str | None = None
    probability: float = 1.0
    latency_s: float | None = None
    when: str = "before"
    username: str | None = None
    times: int | None = None  # apply at most this many times, then let calls through
    entries: int = 1  # fail_entries: how many entries of the request fail (the first ones)
    sender_fault: bool = False  # fail_entries: SQS's verdict on whose fault it is
    id: int = 0
    hits: int = 0

    @classmethod
    def from_json(cls, document: Any, rule_id: int) -> Rule:
        """Validate a rule as posted to the control API; raise ValueError when it is wrong."""
        if not isinstance(document, dict):
            raise ValueError("a rule is a JSON object")
        known = {
            "kind", "service", "operation", "probability", "latency_s", "when", "username", "times",
            "entries", "sender_fault",
        }  # fmt: skip
        unknown = set(document) - known
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        kind = document.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        when = document.get("when") or "before"
        if when not in WHEN:
            raise ValueError(f"when must be 'before' or 'after', not {when!r}")
        probability = float(document.get("probability", 1.0))
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within 0..1")
        latency = document.get("latency_s")
        latency_s = None if latency is None else float(latency)
        if latency_s is not None and latency_s < 0:
            raise ValueError("latency_s must not be negative")
        if kind in {"latency", "timeout"} and latency_s is None:
            raise ValueError(f"a {kind} rule needs latency_s")
        service = _optional_str(document, "service")
        times = document.get("times")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("times must be a positive whole number")
        entries = document.get("entries", 1)
        if not isinstance(entries, int) or entries < 1:
            raise ValueError("entries must be a positive whole number")
        sender_fault = document.get("sender_fault", False)
        if not isinstance(sender_fault, bool):
            raise ValueError("sender_fault must be true or false")
        return cls(
            entries=entries,
            sender_fault=sender_fault,
            times=times,
            kind=kind,
            service=_SERVICE_ALIASES.get(service, service) if service else None,
            operation=_optional_str(document, "operation"),
            probability=probability,
            latency_s=latency_s,
            when=when,
            username=_optional_str(document, "username"),
            id=rule_id,
        )

    def matches(self, call: Call) -> bool:
        """Whether the rule applies to the call (before its random draw)."""
        return (
            (self.times is None or self.hits < self.times)
            and (self.service is None or self.service == call.service)
            and (self.operation is None or self.operation == call.operation)
            and (self.username is None or self.username == call.username)
        )

    def as_json(self) -> dict[str, Any]:
        """The rule as the control API shows it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "service": self.service,
            "operation": self.operation,
            "probability": self.probability,
            "latency_s": self.latency_s,
            "when": self.when,
            "username": self.username,
            "times": self.times,
            "entries": self.entries,
            "sender_fault": self.sender_fault,
            "hits": self.hits,
        }


def _optional_str(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


@dataclass(slots=True)
class Quota:
    """At most ``rps`` admitted calls of ``operations`` in any sliding one-second window."""

    name: str
    operations: frozenset[str]
    rps: float
    service: str = COGNITO
    admitted: deque[float] = field(default_factory=deque)
    throttled: int = 0

    def covers(self, call: Call) -> bool:
        """Whether the call counts against this quota."""
        return call.service == self.service and call.operation in self.operations

    def admit(self, now: float) -> bool:
        """Admit a call at monotonic time ``now``, or count it throttled and refuse it."""
        while self.admitted and now - self.admitted[0] >= 1.0:
            self.admitted.popleft()
        if len(self.admitted) >= self.rps:
            self.throttled += 1
            return False
        self.admitted.append(now)
        return True

    def as_json(self) -> dict[str, Any]:
        """The quota as the control API shows it."""
        return {
            "name": self.name,
            "service": self.service,
            "operations": sorted(self.operations),
            "rps": self.rps,
            "throttled": self.throttled,
        }


@dataclass(slots=True)
class Stats:
    """The proxy's counters; faulted calls are counted too (they reached the proxy)."""

    requests: Counter[str] = field(default_factory=Counter)  # service -> requests
    calls: dict[str, Counter[str]] = field(default_factory=dict)  # service -> operation -> n
    users: dict[str, Counter[str]] = field(default_factory=dict)  # operation -> username -> n
    faults: Counter[str] = field(default_factory=Counter)  # kind (or quota_throttle) -> n
    # operation -> username -> upstream answers in 2xx: the times Cognito really acted.
    effects: dict[str, Counter[str]] = field(default_factory=dict)
    # The Cognito calls a quota admitted, as (wall-clock second, operation, username, seconds
    # upstream took to answer): when the quota counted each call, and how long Cognito's emulator
    # kept it. Served apart from the counters (``/timeline``): the bench reads it, tests need not.
    admitted: list[tuple[float, str, str | None, float]] = field(default_factory=list)

    def record(self, call: Call) -> None:
        """Count one incoming request."""
        self.requests[call.service] += 1
        self.calls.setdefault(call.service, Counter())[call.operation] += 1
        if call.username is not None:
            self.users.setdefault(call.operation, Counter())[call.username] += 1

    def as_json(self) -> dict[str, Any]:
        """The counters as plain JSON objects."""
        return {
            "requests": dict(self.requests),
            "calls": {service: dict(ops) for service, ops in self.calls.items()},
            "users": {operation: dict(users) for operation, users in self.users.items()},
            "faults": dict(self.faults),
            "effects": {operation: dict(users) for operation, users in self.effects.items()},
        }


# --------------------------------------------------------------------------- the server


class FaultProxyServer:
    """The aiohttp application: the control API under ``/__proxy/`` and the proxy elsewhere."""

    def __init__(
        self,
        upstream: str,
        upstream_cognito: str | None = None,
        seed: int = 0,
        upstream_dynamodb: str | None = None,
    ) -> None:
        self._upstream = upstream.rstrip("/")
        self._upstream_cognito = upstream_cognito.rstrip("/") if upstream_cognito else None
        self._upstream_dynamodb = upstream_dynamodb.rstrip("/") if upstream_dynamodb else None
        self._random = random.Random(seed)
        self._rules: list[Rule] = []
        self._next_rule_id = 1
        self._quotas: dict[str, Quota] = {}
        self.stats = Stats()
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        """The web application."""
        app = web.Application(client_max_size=2**24)
        control = CONTROL_PREFIX.rstrip("/")
        app.router.add_get(f"{control}/stats", self._get_stats)
        app.router.add_post(f"{control}/reset-stats", self._reset_stats)
        app.router.add_get(f"{control}/timeline", self._get_timeline)
        app.router.add_get(f"{control}/rules", self._get_rules)
        app.router.add_post(f"{control}/rules", self._add_rule)
        app.router.add_delete(f"{control}/rules", self._clear_rules)
        app.router.add_delete(f"{control}/rules/{{id:\\d+}}", self._remove_rule)
        app.router.add_post(f"{control}/quota", self._set_quota)
        app.router.add_delete(f"{control}/quota", self._clear_quota)
        app.router.add_post(f"{control}/seed", self._set_seed)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200),
            timeout=aiohttp.ClientTimeout(total=120, sock_connect=10),
            auto_decompress=False,
            # Send the client's own headers only: no Accept-Encoding or User-Agent of ours.
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type", "Accept"),
        )

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    # ----------------------------------------------------------------------- control API

    async def _get_stats(self, _request: web.Request) -> web.Response:
        document = self.stats.as_json()
        document["rules"] = [rule.as_json() for rule in self._rules]
        document["quotas"] = [quota.as_json() for quota in self._quotas.values()]
        return web.json_response(document)

    async def _get_timeline(self, _request: web.Request) -> web.Response:
        # Recorded as each answer came back; listed in the order the quota admitted them.
        return web.json_response(sorted(self.stats.admitted, key=lambda entry: entry[0]))

    async def _reset_stats(self, _request: web.Request) -> web.Response:
        self.stats = Stats()
        for rule in self._rules:
            rule.hits = 0
        for quota in self._quotas.values():
            quota.throttled = 0
        return web.json_response({})

    async def _get_rules(self, _request: web.Request) -> web.Response:
        return web.json_response([rule.as_json() for rule in self._rules])

    async def _add_rule(self, request: web.Request) -> web.Response:
        try:
            rule = Rule.from_json(await request.json(), self._next_rule_id)
        except ValueError as error:  # json.JSONDecodeError is a ValueError too
            return web.json_response({"error": str(error)}, status=400)
        self._next_rule_id += 1
        self._rules.append(rule)
        return web.json_response({"id": rule.id})

    async def _clear_rules(self, _request: web.Request) -> web.Response:
        removed = len(self._rules)
        self._rules.clear()
        return web.json_response({"removed": removed})

    async def _remove_rule(self, request: web.Request) -> web.Response:
        rule_id = int(request.match_info["id"])
        kept = [rule for rule in self._rules if rule.id != rule_id]
        if len(kept) == len(self._rules):
            return web.json_response({"error": f"no rule {rule_id}"}, status=404)
        self._rules = kept
        return web.json_response({"removed": 1})

    async def _set_quota(self, request: web.Request) -> web.Response:
        try:
            document = await request.json()
            if not isinstance(document, dict):
                raise ValueError("a quota is a JSON object")
            name = document["name"]
            operations = document["operations"]
            rps = float(document["rps"])
            service = document.get("service") or COGNITO
            if not isinstance(name, str) or not isinstance(service, str):
                raise ValueError("name and service must be strings")
            if not isinstance(operations, list) or not all(
                isinstance(op, str) for op in operations
            ):
                raise ValueError("operations must be a list of strings")
            if rps < 0:
                raise ValueError("rps must not be negative")
        except (KeyError, TypeError, ValueError) as error:
            return web.json_response({"error": f"bad quota: {error}"}, status=400)
        self._quotas[name] = Quota(
            name, frozenset(operations), rps, _SERVICE_ALIASES.get(service, service)
        )
        return web.json_response({"name": name})

    async def _clear_quota(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        if name is None:
            self._quotas.clear()
        else:
            self._quotas.pop(name, None)
        return web.json_response({})

    async def _set_seed(self, request: web.Request) -> web.Response:
        try:
            seed = int((await request.json())["seed"])
        except (KeyError, TypeError, ValueError) as error:
            return web.json_response({"error": f"bad seed: {error}"}, status=400)
        self._random.seed(seed)
        return web.json_response({"seed": seed})

    # ----------------------------------------------------------------------- the proxy

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return web.json_response({"error": "no such control endpoint"}, status=404)
        body = await request.read()
        call = identify(request.headers, request.query, body)
        self.stats.record(call)
        rule = self._pick(call)
        if rule is not None and rule.kind in ENTRY_FAULTS:
            return await self._fail_entries(rule, call, request, body)
        if rule is not None and rule.when == "before":
            if rule.kind != "latency":
                return await self._inject(rule, call, request)
            self._count(rule)
            await asyncio.sleep(rule.latency_s or 0.0)
        if not self._admit(call):
            self.stats.faults["quota_throttle"] += 1
            return aws_error(*AWS_ERRORS["throttle"], json_protocol=call.json_protocol)
        admitted_at, started = time.time(), time.monotonic()
        answer = await self._forward(request, body, call)
        if call.service == COGNITO:
            took = time.monotonic() - started
            self.stats.admitted.append((admitted_at, call.operation, call.username, took))
        if call.username is not None and 200 <= answer.status < 300:
            self.stats.effects.setdefault(call.operation, Counter())[call.username] += 1
        if rule is not None and rule.when == "after":
            if rule.kind != "latency":
                return await self._inject(rule, call, request)
            self._count(rule)
            await asyncio.sleep(rule.latency_s or 0.0)
        return answer

    def _pick(self, call: Call) -> Rule | None:
        """The first matching rule whose draw hits (a draw is made only when probability < 1)."""
        for rule in self._rules:
            if rule.matches(call) and (
                rule.probability >= 1.0 or self._random.random() < rule.probability
            ):
                return rule
        return None

    def _admit(self, call: Call) -> bool:
        now = time.monotonic()
        return all(quota.admit(now) for quota in self._quotas.values() if quota.covers(call))

    def _count(self, rule: Rule) -> None:
        rule.hits += 1
        self.stats.faults[rule.kind] += 1

    async def _inject(self, rule: Rule, call: Call, request: web.Request) -> web.StreamResponse:
        self._count(rule)
        if rule.kind in AWS_ERRORS:
            return aws_error(*AWS_ERRORS[rule.kind], json_protocol=call.json_protocol)
        if rule.kind in HTTP_ERRORS:
            return generic_error(HTTP_ERRORS[rule.kind])
        if rule.kind == "timeout":
            await asyncio.sleep(rule.latency_s or 0.0)
        return _abort(request)

    async def _fail_entries(
        self, rule: Rule, call: Call, request: web.Request, body: bytes
    ) -> web.Response:
        """Forward the batch without its first ``rule.entries`` entries; list those as Failed."""
        try:
            document = json.loads(body)
            entries = document["Entries"]
            if not call.json_protocol or not isinstance(entries, list):
                raise ValueError("not a JSON-protocol batch call")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "fail_entries needs a JSON batch call"}, status=400)
        self._count(rule)
        failing, kept = entries[: rule.entries], entries[rule.entries :]
        code = "InvalidMessageContents" if rule.sender_fault else "InternalError"
        failed = [
            {"Id": entry["Id"], "SenderFault": rule.sender_fault, "Code": code,
             "Message": "injected by the fault proxy"}
            for entry in failing
        ]  # fmt: skip
        answer: dict[str, Any] = {"Successful": [], "Failed": []}
        if kept:
            forwarded = await self._forward(
                request, json.dumps({**document, "Entries": kept}).encode(), call
            )
            if not 200 <= forwarded.status < 300:
                return forwarded
            answer = json.loads(forwarded.body)
        answer["Failed"] = [*answer.get("Failed", []), *failed]
        return web.Response(
            body=json.dumps(answer).encode(),
            headers={"Content-Type": "application/x-amz-json-1.0"},
        )

    async def _forward(self, request: web.Request, body: bytes, call: Call) -> web.Response:
        assert self._session is not None, "the session opens on startup"
        base = self._upstream
        if self._upstream_cognito and (
            call.service == COGNITO
            or request.headers.get("X-Amz-Target", "").startswith(COGNITO_TARGET_PREFIX)
        ):
            base = self._upstream_cognito
        elif self._upstream_dynamodb and call.service == "dynamodb":
            base = self._upstream_dynamodb
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _REQUEST_DROP
        )
        try:
            async with self._session.request(
                request.method, base + request.path_qs, headers=headers, data=body
            ) as answer:
                payload = await answer.read()
                reply_headers = CIMultiDict(
                    (k, v) for k, v in answer.headers.items() if k.lower() not in _RESPONSE_DROP
                )
                return web.Response(
                    status=answer.status, reason=answer.reason, body=payload, headers=reply_headers
                )
        except (aiohttp.ClientError, TimeoutError) as error:
            return web.Response(status=502, text=f"fault proxy: upstream failed: {error!r}\n")


def aws_error(status: int, code: str, message: str, *, json_protocol: bool) -> web.Response:
    """An AWS error answer: JSON-protocol (as Cognito and SQS send it) or query-protocol XML."""
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id}
    if json_protocol:
        # Bytes with an explicit Content-Type: aiohttp would append "; charset=utf-8" to text.
        headers["Content-Type"] = "application/x-amz-json-1.1"
        document = {"__type": code, "message": message}
        return web.Response(status=status, body=json.dumps(document).encode(), headers=headers)
    fault = "Sender" if status < 500 else "Receiver"
    xml = (
        f"<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return web.Response(status=status, text=xml, headers=headers, content_type="text/xml")


def generic_error(status: int) -> web.Response:
    """A bare HTTP error as a load balancer sends it: a small HTML page.

    botocore recognises an HTML (or empty) 5xx body as a generic error for every protocol and raises
    ClientError with the status as its code; a plain-text body would make the query-protocol
    parser (SNS) raise ResponseParserError instead.
    """
    reason = HTTPStatus(status).phrase
    page = f"<html><body><h1>{status} {reason}</h1>injected by the fault proxy</body></html>\n"
    return web.Response(status=status, text=page, content_type="text/html")


def _abort(request: web.Request) -> web.Response:
    """Drop the connection with a TCP reset and no answer.

    SO_LINGER 0 makes the close send RST rather than FIN, so the client sees a reset even on a
    kept-alive connection. The response returned is never written: aiohttp finds the transport
    closing and treats it as a premature client disconnection.
    """
    transport = request.transport
    if transport is not None and not transport.is_closing():
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=499, text="connection dropped by the fault proxy")


async def serve(
    upstream: str,
    upstream_cognito: str | None = None,
    seed: int = 0,
    upstream_dynamodb: str | None = None,
) -> None:
    """Serve on a free loopback port until SIGTERM/SIGINT; print the URL as JSON once ready."""
    server = FaultProxyServer(upstream, upstream_cognito, seed, upstream_dynamodb)
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    port = runner.addresses[0][1]
    print(json.dumps({"url": f"http://{LOOPBACK}:{port}"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """The command line: ``python -m tests.support.fault_proxy --upstream URL ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream", required=True, help="where requests go (e.g. moto)")
    parser.add_argument("--upstream-cognito", help="where Cognito requests go, if elsewhere")
    parser.add_argument("--upstream-dynamodb", help="where DynamoDB requests go, if elsewhere")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    arguments = parser.parse_args(argv)
    asyncio.run(
        serve(
            arguments.upstream,
            arguments.upstream_cognito,
            arguments.seed,
            arguments.upstream_dynamodb,
        )
    )


# --------------------------------------------------------------------------- the client


class FaultProxyError(RuntimeError):
    """The control API refused a request."""


class FaultProxy:
    """A synchronous client of a running proxy's control API (stdlib only)."""

    def __init__(self, url: str, pid: int | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an HTTP URL: {url!r}")
        self.url = url.rstrip("/")
        self.pid = pid
        # No environment proxies: the control API is on loopback.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def add_rule(
        self,
        kind: str,
        *,
        service: str | None = None,
        operation: str | None = None,
        probability: float = 1.0,
        latency_s: float | None = None,
        when: str = "before",
        username: str | None = None,
        times: int | None = None,
        entries: int = 1,
        sender_fault: bool = False,
    ) -> int:
        """Add a fault rule (after the existing ones); return its id."""
        rule = {
            "kind": kind,
            "service": service,
            "operation": operation,
            "probability": probability,
            "latency_s": latency_s,
            "when": when,
            "username": username,
            "times": times,
            "entries": entries,
            "sender_fault": sender_fault,
        }
        return int(self._call("POST", "rules", rule)["id"])

    def remove_rule(self, rule_id: int) -> None:
        """Remove one rule."""
        self._call("DELETE", f"rules/{rule_id}")

    def clear_rules(self) -> None:
        """Remove every rule."""
        self._call("DELETE", "rules")

    def rules(self) -> list[dict[str, Any]]:
        """The rules in order, with how often each was applied."""
        rules: list[dict[str, Any]] = self._call("GET", "rules")
        return rules

    @contextmanager
    def fault(self, kind: str, **fields: Any) -> Iterator[int]:
        """Apply a rule (see :meth:`add_rule`) for the duration of the block; yield its id."""
        rule_id = self.add_rule(kind, **fields)
        try:
            yield rule_id
        finally:
            self.remove_rule(rule_id)

    def set_quota(
        self, name: str, operations: Iterable[str], rps: float, *, service: str = COGNITO
    ) -> None:
        """Throttle calls of ``operations`` beyond ``rps`` in any sliding one-second window."""
        self._call(
            "POST",
            "quota",
            {"name": name, "operations": list(operations), "rps": rps, "service": service},
        )

    def clear_quota(self, name: str | None = None) -> None:
        """Remove one quota, or all of them."""
        suffix = "" if name is None else "?" + urllib.parse.urlencode({"name": name})
        self._call("DELETE", "quota" + suffix)

    def stats(self) -> dict[str, Any]:
        """All counters: ``requests`` (per service), ``calls`` (service -> operation -> n),
        ``users`` (Cognito operation -> username -> n), ``faults`` (kind -> n, with
        ``quota_throttle``), and the current ``rules`` and ``quotas``."""
        stats: dict[str, Any] = self._call("GET", "stats")
        return stats

    def timeline(self) -> list[tuple[float, str, str | None, float]]:
        """The Cognito calls a quota admitted since the last reset, in order: (wall-clock
        second, operation, username, seconds upstream took to answer)."""
        entries = self._call("GET", "timeline")
        return [
            (float(at), str(operation), user, float(took)) for at, operation, user, took in entries
        ]

    def reset_stats(self) -> None:
        """Zero every counter (rules and quotas stay)."""
        self._call("POST", "reset-stats")

    def set_seed(self, seed: int) -> None:
        """Re-seed the random draws of probabilistic rules."""
        self._call("POST", "seed", {"seed": seed})

    def _call(self, method: str, path: str, document: Any = None) -> Any:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            f"{self.url}{CONTROL_PREFIX}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=30) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            raise FaultProxyError(f"{method} {path}: HTTP {error.code}: {detail}") from None


_REPO_ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_proxy(
    upstream: str,
    upstream_cognito: str | None = None,
    seed: int = 0,
    *,
    upstream_dynamodb: str | None = None,
    start_timeout_s: float = 30.0,
) -> Iterator[FaultProxy]:
    """Run the proxy in a child process for the duration of the block."""
    command = [sys.executable, "-m", "tests.support.fault_proxy", "--upstream", upstream]
    if upstream_cognito:
        command += ["--upstream-cognito", upstream_cognito]
    if upstream_dynamodb:
        command += ["--upstream-dynamodb", upstream_dynamodb]
    command += ["--seed", str(seed)]
    with announced_child(
        command, "the fault proxy", cwd=_REPO_ROOT, start_timeout_s=start_timeout_s
    ) as started:
        announced, pid = started
        yield FaultProxy(announced["url"], pid=pid)


if __name__ == "__main__":
    main()
