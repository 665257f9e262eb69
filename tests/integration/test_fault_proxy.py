"""The fault proxy itself: it forwards, counts, and injects each kind of fault as a client sees it.

The session's local AWS and one proxy serve the whole module; every test starts with no rules, no
quota and zeroed counters.
"""

import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from tests.support.fault_proxy import (
    FaultProxy,
    FaultProxyError,
    running_proxy,
)
from worker.cognito.secret_hash import secret_hash
from worker.local.aws import Endpoints, Stack, aws_client, create_idempotency_table, provision

PASSWORD = "Start-Passw0rd!"


@pytest.fixture(scope="module")
def stack(local_endpoints: Endpoints) -> Stack:
    return provision(local_endpoints, f"fault-proxy-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def running(local_endpoints: Endpoints) -> Iterator[FaultProxy]:
    with running_proxy(
        local_endpoints.moto,
        local_endpoints.cognito,
        seed=7,
        upstream_dynamodb=local_endpoints.tables,
    ) as started:
        yield started


@pytest.fixture
def proxy(running: FaultProxy) -> FaultProxy:
    running.clear_rules()
    running.clear_quota()
    running.reset_stats()
    running.set_seed(7)
    return running


def client(service: str, proxy: FaultProxy, **config: Any) -> Any:
    """A boto3 client through the proxy, without botocore retries so every fault shows."""
    return boto3.client(
        service,
        endpoint_url=proxy.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def sign_up(idp: Any, stack: Stack, username: str) -> None:
    idp.sign_up(
        ClientId=stack.client_id,
        Username=username,
        Password=PASSWORD,
        SecretHash=secret_hash(username, stack.client_id, stack.client_secret),
        UserAttributes=[{"Name": "email", "Value": f"{username}@example.com"}],
    )


def user_exists(stack: Stack, username: str) -> bool:
    idp = aws_client("cognito-idp", stack.endpoints.moto)
    try:
        idp.admin_get_user(UserPoolId=stack.user_pool_id, Username=username)
    except idp.exceptions.UserNotFoundException:
        return False
    return True


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- forwarding


def test_forwards_and_counts_sqs_sns_and_cognito(proxy: FaultProxy, stack: Stack) -> None:
    sqs, sns, idp = (client(s, proxy) for s in ("sqs", "sns", "cognito-idp"))
    body = unique("body")
    sqs.send_message(QueueUrl=stack.jobs_queue_url, MessageBody=body)
    received = sqs.receive_message(QueueUrl=stack.jobs_queue_url, WaitTimeSeconds=1)
    assert [m["Body"] for m in received["Messages"]] == [body]
    sqs.delete_message(
        QueueUrl=stack.jobs_queue_url, ReceiptHandle=received["Messages"][0]["ReceiptHandle"]
    )
    sns.publish(TopicArn=stack.results_topic_arn, Message="{}")
    username = unique("alice")
    sign_up(idp, stack, username)
    sign_up_again = pytest.raises(ClientError, match="UsernameExistsException")
    with sign_up_again:
        sign_up(idp, stack, username)

    assert user_exists(stack, username)
    stats = proxy.stats()
    assert stats["calls"]["sqs"] == {"SendMessage": 1, "ReceiveMessage": 1, "DeleteMessage": 1}
    assert stats["calls"]["sns"] == {"Publish": 1}
    assert stats["calls"]["cognito-idp"] == {"SignUp": 2}
    assert stats["users"] == {"SignUp": {username: 2}}
    assert stats["requests"] == {"sqs": 3, "sns": 1, "cognito-idp": 2}
    assert stats["faults"] == {}


def test_dynamodb_calls_go_to_their_own_upstream(
    proxy: FaultProxy, local_endpoints: Endpoints
) -> None:
    # The table lives in dynalite only: moto, the other upstream, does not know it.
    table = create_idempotency_table(local_endpoints)
    dynamodb = client("dynamodb", proxy)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "through-the-proxy"}})
    item = aws_client("dynamodb", local_endpoints.tables).get_item(
        TableName=table, Key={"pk": {"S": "through-the-proxy"}}, ConsistentRead=True
    )
    assert item["Item"] == {"pk": {"S": "through-the-proxy"}}
    assert table not in aws_client("dynamodb", local_endpoints.moto).list_tables()["TableNames"]
    assert proxy.stats()["calls"]["dynamodb"] == {"PutItem": 1}


def test_the_front_still_checks_the_secret_hash(proxy: FaultProxy, stack: Stack) -> None:
    idp = client("cognito-idp", proxy)
    with pytest.raises(ClientError, match="NotAuthorizedException"):
        idp.sign_up(
            ClientId=stack.client_id, Username=unique("eve"), Password=PASSWORD, SecretHash="bad"
        )


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("throttle", "TooManyRequestsException", 400),
        ("internal_error", "InternalErrorException", 500),
        ("limit_exceeded", "LimitExceededException", 400),
        ("http_500", "500", 500),
        ("http_503", "503", 503),
    ],
)
def test_error_faults_before_never_reach_cognito(
    proxy: FaultProxy, stack: Stack, kind: str, code: str, status: int
) -> None:
    idp = client("cognito-idp", proxy)
    username = unique("bob")
    proxy.add_rule(kind, operation="SignUp")
    with pytest.raises(ClientError) as raised:
        sign_up(idp, stack, username)
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert not user_exists(stack, username)
    assert proxy.stats()["faults"] == {kind: 1}


def test_throttle_answers_as_cognito_does(proxy: FaultProxy, stack: Stack) -> None:
    idp = client("cognito-idp", proxy)
    proxy.add_rule("throttle", service="cognito-idp")
    with pytest.raises(ClientError) as raised:
        sign_up(idp, stack, unique("carol"))
    response = raised.value.response
    assert response["Error"] == {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"] == "TooManyRequestsException"
    assert headers["content-type"] == "application/x-amz-json-1.1"


def test_errors_for_query_protocol_services_parse_too(proxy: FaultProxy) -> None:
    sns = client("sns", proxy)
    for kind, code in (("throttle", "TooManyRequestsException"), ("http_503", "503")):
        with proxy.fault(kind, service="sns"), pytest.raises(ClientError) as raised:
            sns.list_topics()
        assert raised.value.response["Error"]["Code"] == code


def test_reset_is_a_closed_connection(proxy: FaultProxy, stack: Stack) -> None:
    idp = client("cognito-idp", proxy)
    username = unique("dave")
    proxy.add_rule("reset", operation="SignUp")
    with pytest.raises(ConnectionClosedError):
        sign_up(idp, stack, username)
    assert not user_exists(stack, username)


def test_timeout_holds_past_the_read_timeout(proxy: FaultProxy) -> None:
    sqs = client("sqs", proxy, read_timeout=0.3)
    proxy.add_rule("timeout", service="sqs", latency_s=1.0)
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        sqs.list_queues()
    assert time.monotonic() - started < 0.9


def test_latency_delays_then_forwards(proxy: FaultProxy) -> None:
    sqs = client("sqs", proxy)
    proxy.add_rule("latency", operation="ListQueues", latency_s=0.3)
    started = time.monotonic()
    sqs.list_queues()
    assert time.monotonic() - started >= 0.3
    assert proxy.stats()["faults"] == {"latency": 1}


def test_unreachable_sqs_leaves_the_other_services_up(proxy: FaultProxy, stack: Stack) -> None:
    sqs, sns = client("sqs", proxy), client("sns", proxy)
    proxy.add_rule("unreachable", service="sqs")
    with pytest.raises(ConnectionClosedError):
        sqs.get_queue_attributes(QueueUrl=stack.jobs_queue_url, AttributeNames=["All"])
    sns.list_topics()
    assert proxy.stats()["faults"] == {"unreachable": 1}


@pytest.mark.parametrize("kind", ["internal_error", "reset"])
def test_after_faults_let_cognito_act_but_lose_the_reply(
    proxy: FaultProxy, stack: Stack, kind: str
) -> None:
    idp = client("cognito-idp", proxy)
    username = unique("erin")
    proxy.add_rule(kind, operation="SignUp", when="after")
    with pytest.raises((ClientError, ConnectionClosedError)):
        sign_up(idp, stack, username)
    assert user_exists(stack, username)


def test_username_filter(proxy: FaultProxy, stack: Stack) -> None:
    idp = client("cognito-idp", proxy)
    target, bystander = unique("frank"), unique("grace")
    proxy.add_rule("throttle", operation="SignUp", username=target)
    with pytest.raises(ClientError, match="TooManyRequestsException"):
        sign_up(idp, stack, target)
    sign_up(idp, stack, bystander)
    assert proxy.stats()["users"]["SignUp"] == {target: 1, bystander: 1}


def test_half_probability_injects_about_half(proxy: FaultProxy) -> None:
    sqs = client("sqs", proxy)
    proxy.add_rule("throttle", operation="ListQueues", probability=0.5)
    failed = 0
    for _ in range(200):
        try:
            sqs.list_queues()
        except ClientError:
            failed += 1
    assert 60 <= failed <= 140
    assert proxy.stats()["faults"] == {"throttle": failed}


def test_the_same_seed_draws_the_same_faults(proxy: FaultProxy) -> None:
    sqs = client("sqs", proxy)
    proxy.add_rule("throttle", operation="ListQueues", probability=0.5)

    def pattern() -> list[bool]:
        outcomes = []
        for _ in range(20):
            try:
                sqs.list_queues()
                outcomes.append(False)
            except ClientError:
                outcomes.append(True)
        return outcomes

    proxy.set_seed(3)
    first = pattern()
    proxy.set_seed(3)
    assert pattern() == first


def test_quota_throttles_a_burst(proxy: FaultProxy, stack: Stack) -> None:
    idp = client("cognito-idp", proxy)
    proxy.set_quota("sign-up", ["SignUp"], rps=5)

    def attempt(username: str) -> str:
        try:
            sign_up(idp, stack, username)
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "ok"

    usernames = [unique("burst") for _ in range(20)]
    started_at, started = time.time(), time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(attempt, usernames))
    elapsed = time.monotonic() - started

    admitted = outcomes.count("ok")
    assert set(outcomes) <= {"ok", "TooManyRequestsException"}

    stats = proxy.stats()
    assert stats["faults"] == {"quota_throttle": 20 - admitted}
    assert stats["quotas"][0]["throttled"] == 20 - admitted
    assert admitted == 5 if elapsed < 1.0 else admitted <= 10
    # The timeline lists the admitted calls alone, when the quota counted each, in order.
    timeline = proxy.timeline()
    assert sorted(user for _, _, user, _ in timeline) == sorted(
        user for user, outcome in zip(usernames, outcomes, strict=True) if outcome == "ok"
    )
    assert {operation for _, operation, _, _ in timeline} == {"SignUp"}
    moments = [at for at, _, _, _ in timeline]
    assert moments == sorted(moments)
    assert started_at <= moments[0]
    assert moments[-1] <= started_at + elapsed
    assert all(0 < took < elapsed for _, _, _, took in timeline)
    proxy.clear_quota()
    sign_up(idp, stack, unique("after-quota"))


def test_removing_a_rule_lets_traffic_flow_again(proxy: FaultProxy) -> None:
    sqs = client("sqs", proxy)
    rule_id = proxy.add_rule("throttle", service="sqs")
    with pytest.raises(ClientError):
        sqs.list_queues()
    proxy.remove_rule(rule_id)
    sqs.list_queues()
    with proxy.fault("http_503", service="sqs") as scoped:
        assert [rule["id"] for rule in proxy.rules()] == [scoped]
        with pytest.raises(ClientError):
            sqs.list_queues()
    sqs.list_queues()
    assert proxy.rules() == []


def test_the_first_hitting_rule_wins(proxy: FaultProxy) -> None:
    sqs = client("sqs", proxy)
    proxy.add_rule("internal_error", operation="ListQueues", probability=0.0)
    proxy.add_rule("throttle", service="sqs")
    proxy.add_rule("http_503")
    with pytest.raises(ClientError, match="TooManyRequestsException"):
        sqs.list_queues()
    assert [rule["hits"] for rule in proxy.rules()] == [0, 1, 0]


def test_bad_rules_are_refused(proxy: FaultProxy) -> None:
    with pytest.raises(FaultProxyError, match="kind must be one of"):
        proxy.add_rule("explode")
    with pytest.raises(FaultProxyError, match="needs latency_s"):
        proxy.add_rule("timeout")
    with pytest.raises(FaultProxyError, match="probability"):
        proxy.add_rule("throttle", probability=2)
    with pytest.raises(FaultProxyError, match="HTTP 404"):
        proxy.remove_rule(999_999)


def test_the_proxy_runs_as_its_own_process(proxy: FaultProxy) -> None:
    assert proxy.pid is not None
    assert proxy.url.startswith("http://127.0.0.1:")
