"""Subscriptions to the results topic with a filter policy receive exactly what the documented
filters select (docs/contract.md, docs/producers.md, docs/imports.md, deploy/README.md).

The real worker publishes the results of jobs that end succeeded, failed and rejected, of several
types, app clients and batches; each filtered queue must then hold exactly the results its policy
selects, and the unfiltered queue all of them.

Both emulators evaluate filter policies, on the message attributes and, with
``FilterPolicyScope=MessageBody``, on the result's JSON, nested keys included: moto in
``moto.sns.utils.FilterPolicyMatcher``, fauxqs in ``dist/sns/filter.js``. Neither validates a
policy at Subscribe the way SNS does, and fauxqs delivers everything to a subscription whose
policy is not JSON. So every policy here selects some results and leaves out others: a filter
that was not applied, or that dropped everything, fails the test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support.harness import create_confirmed_user, enqueue, job, read_results, run_worker
from worker.local.aws import Stack, aws_client

from .conftest import BOTH_EMULATORS

pytestmark = BOTH_EMULATORS
PASSWORD = "Valid-Passw0rd!"
BATCH = "import-2026-11-26"
OTHER_BATCH = "import-2026-11-27"
UNCONFIGURED_CLIENT = "7notconfigured"


@dataclass(frozen=True)
class Filter:
    """A subscription's filter policy and the jobs whose results it should let in."""

    policy: dict[str, Any]
    selects: frozenset[str]
    scope: str = "MessageAttributes"


def filters(default_client: str, public_client: str) -> dict[str, Filter]:
    """The filters the docs show, and a few more on each documented attribute value."""
    return {
        # docs/contract.md, "Results"
        "failed": Filter(
            {"status": ["failed"]},
            frozenset({"exists-default", "exists-public", "confirm-nobody"}),
        ),
        # docs/contract.md, docs/producers.md, docs/imports.md (`--wait`)
        "one batch": Filter(
            {"batch": [BATCH]},
            frozenset({"ok-default", "exists-default", "confirm-nobody", "bad-username"}),
        ),
        # deploy/README.md, the `aws sns subscribe` example
        "failed or rejected sign-ups": Filter(
            {"status": ["failed", "rejected"], "job_type": ["sign_up"]},
            frozenset({"exists-default", "exists-public", "bad-username"}),
        ),
        # deploy/README.md, the CloudFormation example: bad-username names this client, but a
        # body that is not a valid job has no trusted client, so its attribute is `unknown`.
        "failed or rejected sign-ups of one client": Filter(
            {
                "status": ["failed", "rejected"],
                "job_type": ["sign_up"],
                "client_id": [default_client],
            },
            frozenset({"exists-default"}),
        ),
        # docs/producers.md, "Many producers, one topic": one batch's failures and rejections
        "one batch's failures": Filter(
            {"batch": [BATCH], "status": ["failed", "rejected"]},
            frozenset({"exists-default", "confirm-nobody", "bad-username"}),
        ),
        # deploy/README.md, the attribute table; docs/producers.md, one app client's results
        "another client": Filter(
            {"client_id": [public_client]}, frozenset({"ok-public", "exists-public"})
        ),
        "no readable client": Filter(
            {"client_id": ["unknown"]}, frozenset({"bad-username", "not-json", "bulk-not-json"})
        ),
        "a client not configured": Filter(
            {"client_id": [UNCONFIGURED_CLIENT]}, frozenset({"bad-client"})
        ),
        "no readable type": Filter(
            {"job_type": ["unknown"]}, frozenset({"not-json", "bulk-not-json"})
        ),
        # docs/contract.md, "Results": the lane a job came in on
        "the bulk lane": Filter({"lane": ["bulk"]}, frozenset({"bulk-forgot", "bulk-not-json"})),
        "live failures": Filter(
            {"lane": ["interactive"], "status": ["failed"]},
            frozenset({"exists-default", "exists-public", "confirm-nobody"}),
        ),
        "confirmations": Filter({"job_type": ["confirm_sign_up"]}, frozenset({"confirm-nobody"})),
        # deploy/README.md, on the body: what only the result's JSON holds, such as the error code
        "error code, in the body": Filter(
            {"error": {"code": ["UsernameExistsException"]}},
            frozenset({"exists-default", "exists-public"}),
            scope="MessageBody",
        ),
        "rejections of one batch, in the body": Filter(
            {"status": ["rejected"], "batch": [OTHER_BATCH]},
            frozenset({"bad-client"}),
            scope="MessageBody",
        ),
    }


def the_jobs(default_client: str, public_client: str) -> dict[str, str]:
    """Jobs by label, sent to the interactive lane: carl and erin exist before the worker starts."""
    return {
        "ok-default": job("sign_up", job_id="ok-default", username="ann", password=PASSWORD,
                          batch=BATCH),
        "ok-public": job("sign_up", job_id="ok-public", client_id=public_client, username="bea",
                         password=PASSWORD, batch=OTHER_BATCH),
        "ok-forgot": job("forgot_password", job_id="ok-forgot", username="erin"),
        "exists-default": job("sign_up", job_id="exists-default", username="carl",
                              password=PASSWORD, batch=BATCH),
        "exists-public": job("sign_up", job_id="exists-public", client_id=public_client,
                             username="carl", password=PASSWORD),
        "confirm-nobody": job("confirm_sign_up", job_id="confirm-nobody", username="nobody",
                              confirmation_code="123456", batch=BATCH),
        "bad-username": job("sign_up", job_id="bad-username", client_id=default_client,
                            username="has space", password=PASSWORD, batch=BATCH),
        "bad-client": job("forgot_password", job_id="bad-client", client_id=UNCONFIGURED_CLIENT,
                          username="erin", batch=OTHER_BATCH),
        "not-json": "{not json",
    }  # fmt: skip


def the_bulk_jobs() -> dict[str, str]:
    """Jobs by label, sent to the bulk lane."""
    return {
        "bulk-forgot": job("forgot_password", job_id="bulk-forgot", username="carl"),
        "bulk-not-json": "{not json either",
    }


def subscribe(stack: Stack, number: int, selection: Filter) -> str:
    """A new queue subscribed to the results topic with raw delivery and the filter; its URL."""
    sqs = aws_client("sqs", stack.endpoints.queues_and_topics)
    sns = aws_client("sns", stack.endpoints.queues_and_topics)
    queue_name = f"{stack.results_queue_url.rsplit('/', 1)[-1]}-filtered-{number}"
    url: str = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=stack.results_topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicyScope": selection.scope,
            "FilterPolicy": json.dumps(selection.policy),
        },
    )
    return url


def test_each_filtered_subscription_receives_exactly_the_results_it_selects(stack: Stack) -> None:
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    public = idp.create_user_pool_client(
        UserPoolId=stack.user_pool_id, ClientName="public", GenerateSecret=False
    )["UserPoolClient"]["ClientId"]
    clients = {
        stack.client_id: {"user_pool_id": stack.user_pool_id, "client_secret": stack.client_secret},
        public: {"user_pool_id": stack.user_pool_id},
    }
    selections = filters(stack.client_id, public)
    queues = {
        name: subscribe(stack, number, selection)
        for number, (name, selection) in enumerate(selections.items())
    }
    create_confirmed_user(stack, "carl")
    create_confirmed_user(stack, "erin")
    bodies = the_jobs(stack.client_id, public)
    labels = dict(zip(enqueue(stack, *bodies.values()), bodies, strict=True))
    bulk = the_bulk_jobs()
    assert stack.bulk_jobs_queue_url
    sent = enqueue(stack, *bulk.values(), queue_url=stack.bulk_jobs_queue_url)
    labels |= dict(zip(sent, bulk, strict=True))

    run = run_worker(
        stack, COGNITO_CLIENTS=json.dumps(clients), COGNITO_CLIENT_ID="",
        COGNITO_USER_POOL_ID="", COGNITO_CLIENT_SECRET="",
    )  # fmt: skip

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    everything = {labels[r.body["sqs_message_id"]]: r for r in read_results(stack)}
    # The jobs ended as meant, with the documented attributes: job_type and client_id are
    # `unknown` where the body had none readable, batch is there only when the job had a valid one,
    # lane is always there.
    d, p = stack.client_id, public
    assert {label: (r.body["status"], r.attributes) for label, r in everything.items()} == {
        "ok-default": ("succeeded", attributes("succeeded", "sign_up", d, BATCH)),
        "ok-public": ("succeeded", attributes("succeeded", "sign_up", p, OTHER_BATCH)),
        "ok-forgot": ("succeeded", attributes("succeeded", "forgot_password", d)),
        "exists-default": ("failed", attributes("failed", "sign_up", d, BATCH)),
        "exists-public": ("failed", attributes("failed", "sign_up", p)),
        "confirm-nobody": ("failed", attributes("failed", "confirm_sign_up", d, BATCH)),
        "bad-username": ("rejected", attributes("rejected", "sign_up", "unknown", BATCH)),
        "bad-client": (
            "rejected", attributes("rejected", "forgot_password", UNCONFIGURED_CLIENT, OTHER_BATCH)
        ),
        "not-json": ("rejected", attributes("rejected", "unknown", "unknown")),
        "bulk-forgot": ("succeeded", attributes("succeeded", "forgot_password", d, lane="bulk")),
        "bulk-not-json": ("rejected", attributes("rejected", "unknown", "unknown", lane="bulk")),
    }  # fmt: skip
    assert {r.body["lane"] for r in everything.values()} == {"interactive", "bulk"}
    assert everything["exists-public"].body["error"]["code"] == "UsernameExistsException"
    for name, selection in selections.items():  # no filter here can pass by letting all in
        assert selection.selects, name
        assert selection.selects < everything.keys(), name

    received = {
        name: sorted(labels[r.body["sqs_message_id"]] for r in read_results(stack, url))
        for name, url in queues.items()
    }
    assert received == {name: sorted(s.selects) for name, s in selections.items()}


def attributes(
    status: str, job_type: str, client_id: str, batch: str | None = None, lane: str = "interactive"
) -> Any:
    """The SNS message attributes of a result, as a raw-delivery subscriber reads them."""
    published = {"status": status, "job_type": job_type, "client_id": client_id, "lane": lane}
    return published | ({"batch": batch} if batch else {})
