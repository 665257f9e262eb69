"""Delivery guarantees under faults, injected by tests/support/fault_proxy.py.

The worker talks to every service through the proxy (SQS and SNS to moto, Cognito to the Cognito
front), which injects the faults and counts, per operation and username, the calls that reached
Cognito and the ones Cognito carried out (its 2xx answers: "effects").
"""

import signal
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.harness import (
    ResultCollector,
    Traffic,
    create_confirmed_user,
    create_unconfirmed_user,
    enqueue,
    finish,
    job,
    probe_http,
    queue_depth,
    read_results,
    run_worker,
    start_worker,
    through,
    user_status,
    wait_for,
)
from worker.local.aws import Endpoints, Stack, aws_client, create_idempotency_table, free_port

PASSWORD = "Valid-Passw0rd!"


def add_mixed_faults(proxy: FaultProxy) -> None:
    """20 % throttling and 3 % internal errors from Cognito; 2 % 503s and 2 % resets anywhere."""
    proxy.add_rule("throttle", service="cognito", probability=0.20)
    proxy.add_rule("internal_error", service="cognito", probability=0.03)
    proxy.add_rule("http_503", probability=0.02)
    proxy.add_rule("reset", probability=0.02)


def results_per_job(results: list[Any]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        grouped[result.body["job_id"]].append(result.body)
    return grouped


def test_500_jobs_under_throttling_5xx_and_resets_end_once_each(
    stack: Stack, proxy: FaultProxy
) -> None:
    confirmed = [f"fp-{i}" for i in range(100)]
    unconfirmed = [f"cs-{i}" for i in range(50)]
    for username in confirmed:
        create_confirmed_user(stack, username)
    for username in unconfirmed:
        create_unconfirmed_user(stack, username)
    bodies = [
        *(job("sign_up", job_id=f"su-{i}", username=f"su-{i}", password=PASSWORD)
          for i in range(350)),
        *(job("forgot_password", job_id=f"fp-{u}", username=u) for u in confirmed),
        *(job("confirm_sign_up", job_id=f"cs-{u}", username=u, confirmation_code="123456")
          for u in unconfirmed),
    ]  # fmt: skip
    add_mixed_faults(proxy)

    with Traffic(stack, bodies) as traffic:
        worker = start_worker(stack, **through(proxy.url, RETRY_BACKOFF_CAP_S="1"))
        traffic.wait_for_results(500)
        worker.send_signal(signal.SIGTERM)
        run = finish(worker)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    stats = proxy.stats()
    per_job = results_per_job(traffic.results)
    assert len(per_job) == 500
    assert all(len(results) == 1 for results in per_job.values())
    assert {results[0]["status"] for results in per_job.values()} == {"succeeded"}
    # No Cognito operation was carried out twice for one job.
    effects = stats["effects"]
    assert sorted(effects["SignUp"].values()) == [1] * 350
    assert sorted(effects["ForgotPassword"].values()) == [1] * 100
    assert sorted(effects["ConfirmSignUp"].values()) == [1] * 50
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    assert queue_depth(stack, stack.dead_letter_queue_url) == 0
    faults = stats["faults"]
    assert faults["throttle"] > 50
    assert faults["internal_error"] > 5
    assert faults["http_503"] > 5
    assert faults["reset"] > 5
    print(f"\n500 jobs, faults injected: {faults}, jobs with one result: {len(per_job)}")


def test_sqs_then_sns_unreachable_for_10_s_each_loses_nothing(
    stack: Stack, proxy: FaultProxy
) -> None:
    bodies = [job("sign_up", job_id=f"o-{i}", username=f"o-{i}", password=PASSWORD)
              for i in range(150)]  # fmt: skip
    proxy.add_rule("latency", service="cognito", latency_s=0.1)
    with Traffic(stack, bodies) as traffic:
        worker = start_worker(stack, **through(proxy.url, MAX_JOBS_IN_FLIGHT="2"))
        traffic.wait_for_results(10)
        with proxy.fault("unreachable", service="sqs"):
            time.sleep(10)
        sqs_faults = proxy.stats()["faults"]["unreachable"]
        with proxy.fault("unreachable", service="sns"):
            time.sleep(10)
        sns_faults = proxy.stats()["faults"]["unreachable"] - sqs_faults
        traffic.wait_for_results(150)
        worker.send_signal(signal.SIGTERM)
        run = finish(worker)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    per_job = results_per_job(traffic.results)
    assert set(per_job) == {f"o-{i}" for i in range(150)}
    assert all(len(results) == 1 for results in per_job.values())
    assert sorted(proxy.stats()["effects"]["SignUp"].values()) == [1] * 150
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    # Both outages hit the worker's calls (deletes and receives, then publishes).
    assert sqs_faults > 0
    assert sns_faults > 0
    print(f"\noutage: SQS calls refused {sqs_faults}, SNS calls refused {sns_faults}")


def test_a_worker_killed_mid_batch_and_a_second_one_finish_every_job_once(
    stack: Stack, proxy: FaultProxy, endpoints: Endpoints
) -> None:
    table = create_idempotency_table(endpoints)
    bodies = [job("sign_up", job_id=f"k-{i}", username=f"k-{i}", password=PASSWORD)
              for i in range(80)]  # fmt: skip
    enqueue(stack, *bodies)
    # Cognito acts at once but answers late: a kill lands between the act and the result.
    proxy.add_rule("latency", service="cognito", operation="SignUp", latency_s=0.4, when="after")
    settings = through(
        proxy.url,
        IDEMPOTENCY_STORE="dynamodb",
        IDEMPOTENCY_TABLE=table,
        IDEMPOTENCY_LEASE_S="5",
        VISIBILITY_TIMEOUT_S="15",
        JOB_TIMEOUT_S="5",
        MAX_JOBS_IN_FLIGHT="10",
    )
    collector = ResultCollector(stack)
    first = start_worker(stack, **settings)

    def mid_call() -> bool:
        # SignUps Cognito carried out whose answers the proxy still holds: kill now.
        carried_out = sum(proxy.stats()["effects"].get("SignUp", {}).values())
        return len(collector.poll()) >= 10 and carried_out >= len(collector.results) + 5

    wait_for(mid_call, interval_s=0.02)
    first.send_signal(signal.SIGKILL)
    finish(first)
    killed_with = len(collector.results)

    second = run_worker(stack, timeout_s=120, **settings)

    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    collector.poll()
    per_job = results_per_job(collector.results)
    assert set(per_job) == {f"k-{i}" for i in range(80)}
    for results in per_job.values():
        # A result published by the dead worker and republished by the second is the same.
        assert all(result == results[0] for result in results)
        assert results[0]["status"] == "succeeded"
    # Each user was created exactly once, though some SignUps were cut off mid-way.
    assert sorted(proxy.stats()["effects"]["SignUp"].values()) == [1] * 80
    taken_over = [
        r[0] for r in per_job.values() if r[0]["detail"] == "created_by_an_earlier_attempt"
    ]
    duplicates = sum(len(r) - 1 for r in per_job.values())
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    print(
        f"\nkilled after {killed_with} results; taken over mid-call: {len(taken_over)}; "
        f"results republished: {duplicates}"
    )
    assert taken_over  # the kill did land mid-call: the takeover path ran


def test_sigterm_with_jobs_in_flight_drains_within_the_grace_period(
    stack: Stack, proxy: FaultProxy
) -> None:
    enqueue(*[stack], *[job("sign_up", job_id=f"t-{i}", username=f"t-{i}", password=PASSWORD)
                        for i in range(10)])  # fmt: skip
    proxy.add_rule("latency", service="cognito", operation="SignUp", latency_s=1.5)
    worker = start_worker(stack, **through(proxy.url, SHUTDOWN_GRACE_S="10"))
    wait_for(lambda: proxy.stats()["calls"].get("cognito-idp", {}).get("SignUp", 0) >= 10)
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    run = finish(worker, timeout_s=30)
    took = time.monotonic() - signalled

    assert run.returncode == 0
    assert took < 10
    per_job = results_per_job(read_results(stack))
    assert set(per_job) == {f"t-{i}" for i in range(10)}
    assert queue_depth(stack, stack.jobs_queue_url) == 0
    (stopped,) = run.events("worker stopped")
    assert stopped["succeeded"] == 10


def test_jobs_past_the_grace_period_go_back_and_finish_once_later(
    stack: Stack, proxy: FaultProxy, endpoints: Endpoints
) -> None:
    """Across processes the claims live in DynamoDB: the second worker learns that the first
    one's SignUps may have reached Cognito, so UsernameExistsException is its own success."""
    settings = {
        "IDEMPOTENCY_STORE": "dynamodb",
        "IDEMPOTENCY_TABLE": create_idempotency_table(endpoints),
    }
    enqueue(stack, *[job("sign_up", job_id=f"g-{i}", username=f"g-{i}", password=PASSWORD)
                     for i in range(4)])  # fmt: skip
    rule = proxy.add_rule("latency", service="cognito", operation="SignUp", latency_s=4)
    worker = start_worker(stack, **through(proxy.url, SHUTDOWN_GRACE_S="1", **settings))
    wait_for(lambda: proxy.stats()["calls"].get("cognito-idp", {}).get("SignUp", 0) >= 4)
    worker.send_signal(signal.SIGTERM)
    run = finish(worker, timeout_s=15)
    assert run.returncode == 0
    assert read_results(stack) == []
    assert run.events("grace period over: handing back unfinished jobs")

    proxy.remove_rule(rule)
    time.sleep(4)  # the cut-off SignUps still reach Cognito through the slow proxy
    again = run_worker(stack, **through(proxy.url, **settings))
    assert again.returncode == 0
    per_job = results_per_job(read_results(stack))
    assert set(per_job) == {f"g-{i}" for i in range(4)}
    assert {r[0]["status"] for r in per_job.values()} == {"succeeded"}
    assert sorted(proxy.stats()["effects"]["SignUp"].values()) == [1] * 4


def test_a_secret_rotated_mid_run_fails_no_job(stack: Stack, proxy: FaultProxy) -> None:
    """The proxy answers what Cognito answers once the worker's secret is stale
    (NotAuthorizedException "SecretHash does not match"), from mid-run on."""
    bodies = [job("sign_up", job_id=f"c-{i}", username=f"c-{i}", password=PASSWORD)
              for i in range(40)]  # fmt: skip
    enqueue(stack, *bodies)
    port = free_port()
    slow = proxy.add_rule("latency", service="cognito", latency_s=0.05)
    collector = ResultCollector(stack)
    settings = through(
        proxy.url,
        MAX_JOBS_IN_FLIGHT="2",
        HEALTH_PORT=str(port),
        BREAKER_COOLDOWN_S="1",
        BREAKER_MAX_COOLDOWN_S="2",
    )
    worker = start_worker(stack, **settings)
    wait_for(lambda: len(collector.poll()) >= 5)
    proxy.remove_rule(slow)  # the first matching rule applies: the stale secret's must
    stale = proxy.add_rule("not_authorized", service="cognito")

    def not_ready() -> tuple[int, dict[str, Any]] | None:
        answer = probe_http(port, "/readyz")
        return answer if answer[0] == 503 else None

    readiness = wait_for(not_ready)
    assert readiness[1]["status"] == "configuration error"
    (reason,) = readiness[1]["clients"].values()
    # The code and the hint: no SDK message, which can carry a role ARN or an account id.
    assert (
        reason == "NotAuthorizedException (check the client secret configured for this app client)"
    )
    assert probe_http(port, "/healthz")[0] == 200  # alive: restarting would not help
    worker.send_signal(signal.SIGTERM)
    run = finish(worker)
    assert run.returncode == 0
    assert run.events("configuration error: this client takes no work until a probe passes")

    proxy.remove_rule(stale)  # the right secret again
    again = run_worker(stack, **through(proxy.url))
    assert again.returncode == 0
    collector.poll()
    per_job = results_per_job(collector.results)
    assert set(per_job) == {f"c-{i}" for i in range(40)}
    statuses = Counter(r[0]["status"] for r in per_job.values())
    assert statuses == {"succeeded": 40}
    assert queue_depth(stack, stack.dead_letter_queue_url) == 0


def test_the_breaker_closes_by_itself_once_a_probe_passes(stack: Stack, proxy: FaultProxy) -> None:
    enqueue(stack, *[job("sign_up", job_id=f"p-{i}", username=f"p-{i}", password=PASSWORD)
                     for i in range(5)])  # fmt: skip
    collector = ResultCollector(stack)
    with proxy.fault("not_authorized", service="cognito", times=3):
        worker = start_worker(stack, **through(proxy.url, BREAKER_COOLDOWN_S="1"))
        wait_for(lambda: len(collector.poll()) == 5, timeout_s=30)
    worker.send_signal(signal.SIGTERM)
    run = finish(worker)
    assert run.returncode == 0
    assert run.events("configuration error: this client takes no work until a probe passes")
    assert run.events("configuration probe passed: taking work again")
    per_job = results_per_job(collector.results)
    assert {r[0]["status"] for r in per_job.values()} == {"succeeded"}
    assert len(per_job) == 5


def test_a_lost_sign_up_answer_is_our_own_success(stack: Stack, proxy: FaultProxy) -> None:
    enqueue(stack, job("sign_up", job_id="lost", username="lost-answer", password=PASSWORD))
    proxy.add_rule("reset", service="cognito", operation="SignUp", when="after", times=1)
    run = run_worker(stack, **through(proxy.url))
    assert run.returncode == 0
    (result,) = read_results(stack)
    assert result.body["status"] == "succeeded"
    assert result.body["detail"] == "created_by_an_earlier_attempt"
    # The answer that carried it was lost: read back from the user (AdminGetUser).
    user = aws_client("cognito-idp", stack.endpoints.moto).admin_get_user(
        UserPoolId=stack.user_pool_id, Username="lost-answer"
    )
    sub = {a["Name"]: a["Value"] for a in user["UserAttributes"]}["sub"]
    assert result.body["user_sub"] == sub
    assert result.body["attempts"] == 2
    assert proxy.stats()["effects"]["SignUp"] == {"lost-answer": 1}


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        # The server answered that it failed: an error page (an emulator that crashed after
        # creating the user) or an AWS error. The user that exists on the retry is not taken
        # for the job's own.
        ("http_500", "failed", "UsernameExistsException"),
        ("internal_error", "failed", "UsernameExistsException"),
        # A gateway lost Cognito's answer: as for a reset, the user is the job's own.
        ("http_504", "succeeded", None),
    ],
)
def test_an_answer_after_sign_up_acted_is_taken_at_its_word_unless_a_gateway_lost_it(
    stack: Stack, proxy: FaultProxy, kind: str, status: str, code: str | None
) -> None:
    username = f"answered-{kind}"
    enqueue(stack, job("sign_up", job_id=kind, username=username, password=PASSWORD))
    proxy.add_rule(kind, service="cognito", operation="SignUp", when="after", times=1)
    run = run_worker(stack, **through(proxy.url, RETRY_BACKOFF_CAP_S="1"))
    assert run.returncode == 0, run.stdout[-3000:]
    (result,) = read_results(stack)
    assert result.body["status"] == status, result.body
    assert (result.body["error"] or {}).get("code") == code
    assert result.body["detail"] == (None if code else "created_by_an_earlier_attempt")
    assert (result.body["user_sub"] is None) == (code is not None)
    assert result.body["attempts"] == 2
    assert proxy.stats()["effects"]["SignUp"] == {username: 1}


@pytest.mark.parametrize("store", ["memory", "dynamodb"])
def test_a_sign_up_cut_off_by_the_job_timeout_counts_as_done_on_redelivery(
    stack: Stack, proxy: FaultProxy, endpoints: Endpoints, store: str
) -> None:
    # Cognito creates the user at once but its answer is held past JOB_TIMEOUT_S (and within
    # the SDK's read timeout), so it is our own timeout that cuts the call off mid-way.
    enqueue(stack, job("sign_up", job_id="cut", username="cut-off", password=PASSWORD))
    proxy.add_rule(
        "latency", service="cognito", operation="SignUp", latency_s=5, when="after", times=1
    )
    stores = {"IDEMPOTENCY_STORE": store}
    if store == "dynamodb":
        stores["IDEMPOTENCY_TABLE"] = create_idempotency_table(endpoints)
    run = run_worker(
        stack,
        **through(
            proxy.url,
            JOB_TIMEOUT_S="3",
            COGNITO_READ_TIMEOUT_S="20",
            RETRY_BACKOFF_CAP_S="1",
            **stores,
        ),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    (result,) = read_results(stack)
    assert result.body["status"] == "succeeded", result.body
    assert result.body["detail"] == "created_by_an_earlier_attempt"
    assert proxy.stats()["effects"]["SignUp"] == {"cut-off": 1}
    (handed_back,) = run.events("job handed back to the queue")
    assert handed_back["error_code"] == "JobTimeout"


def test_a_duplicate_delivery_republishes_without_calling_cognito(
    stack: Stack, proxy: FaultProxy
) -> None:
    body = job("forgot_password", job_id="dup-1", username="dup-user")
    create_confirmed_user(stack, "dup-user")
    enqueue(stack, body, body)
    run = run_worker(stack, **through(proxy.url, MAX_JOBS_IN_FLIGHT="1"))
    assert run.returncode == 0
    first, second = read_results(stack)
    assert first.raw == second.raw
    assert proxy.stats()["users"]["ForgotPassword"] == {"dup-user": 1}
    assert run.events("duplicate delivery: republishing the stored result")


def test_copies_delivered_side_by_side_reach_cognito_once_with_the_dynamodb_store(
    stack: Stack, proxy: FaultProxy, endpoints: Endpoints
) -> None:
    """Each job sent twice in one SendMessageBatch, so that both copies usually come in one
    receive and are claimed at the same moment from two of the worker's tasks. Exactly one claim
    may win: a second ForgotPassword would mail the user a second code. (With moto serving the
    table this went wrong for 3 pairs in 550 in one run; the tests' DynamoDB is dynalite, whose
    conditional writes are atomic as DynamoDB's are.)"""
    usernames = [f"twin-{i}" for i in range(120)]
    for username in usernames:
        create_confirmed_user(stack, username)
    bodies = [job("forgot_password", job_id=f"twin-job-{i}", username=name)
              for i, name in enumerate(usernames)]  # fmt: skip
    enqueue(stack, *(body for body in bodies for _copy in range(2)))
    table = create_idempotency_table(endpoints)
    settings = through(
        proxy.url, IDEMPOTENCY_STORE="dynamodb", IDEMPOTENCY_TABLE=table, IDEMPOTENCY_LEASE_S="5"
    )
    run = run_worker(stack, **settings)
    assert run.returncode == 0, run.stderr[-2000:]
    # The premise: copies met while the other copy held the job, not only one after the other.
    handed_back = run.events("job handed back to the queue")
    met = [event for event in handed_back if event["reason"] == "owned_elsewhere"]
    assert met, "no two copies were claimed at once: the race was not run"
    assert proxy.stats()["users"]["ForgotPassword"] == dict.fromkeys(usernames, 1)
    results = results_per_job(read_results(stack))
    assert sorted(results) == sorted(f"twin-job-{i}" for i in range(120))
    for copies in results.values():
        # The second copy answers with the first one's stored result, unchanged.
        assert [copy["status"] for copy in copies] == ["succeeded", "succeeded"]
        assert copies[0] == copies[1]


def test_a_per_user_limit_is_deferred_then_failed(stack: Stack, proxy: FaultProxy) -> None:
    create_confirmed_user(stack, "limited")
    enqueue(stack, job("forgot_password", job_id="lim", username="limited"))
    proxy.add_rule("limit_exceeded", service="cognito", operation="ForgotPassword")
    run = run_worker(stack, **through(proxy.url, DEFERRED_DELAY_S="1", DEFERRED_MAX_RECEIVES="3"))
    assert run.returncode == 0
    results = read_results(stack)
    # Burst mode ends only once the job is done: the deferred message is on the queue all along.
    assert len(results) == 1, (stack.queue_depth(stack.jobs_queue_url), run.stdout[-6000:])
    (result,) = results
    assert result.body["status"] == "failed"
    assert result.body["error"]["code"] == "LimitExceededException"
    # One call a delivery, no in-process retry: each retry would burn one of the user's attempts.
    assert proxy.stats()["users"]["ForgotPassword"] == {"limited": 3}
    assert [e["visible_again_in_s"] for e in run.events("job handed back to the queue")] == [1, 1]


def test_two_deferrals_survive_an_interleaved_shutdown(
    stack: Stack, proxy: FaultProxy, endpoints: Endpoints
) -> None:
    # Three deliveries meet the per-user limit; between the first and the second, a stop cuts a
    # delivery off mid-call. The stop is not the job's fault: the job fails after its third
    # deferral, at the fourth delivery, not at the third. The counts live in the shared store
    # (the memory store is one process's: a restart forgets them).
    create_confirmed_user(stack, "limited")
    enqueue(stack, job("forgot_password", job_id="lim", username="limited"))
    proxy.add_rule("limit_exceeded", service="cognito", operation="ForgotPassword", times=1)
    proxy.add_rule("timeout", service="cognito", operation="ForgotPassword", times=1, latency_s=30)
    proxy.add_rule("limit_exceeded", service="cognito", operation="ForgotPassword")
    settings = through(
        proxy.url,
        DEFERRED_DELAY_S="1",
        DEFERRED_MAX_RECEIVES="3",
        SHUTDOWN_GRACE_S="1",
        IDEMPOTENCY_STORE="dynamodb",
        IDEMPOTENCY_TABLE=create_idempotency_table(endpoints),
    )

    first = start_worker(stack, **settings)
    wait_for(lambda: proxy.stats()["users"].get("ForgotPassword", {}).get("limited") == 2)
    first.send_signal(signal.SIGTERM)  # the second delivery is held mid-call
    stopped = finish(first)
    second = run_worker(stack, **settings)

    assert stopped.returncode == 0, stopped.stdout[-3000:]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    (result,) = read_results(stack)
    assert result.body["status"] == "failed"
    assert result.body["error"]["code"] == "LimitExceededException"
    assert proxy.stats()["users"]["ForgotPassword"] == {"limited": 4}
    deferred = [
        event
        for run in (stopped, second)
        for event in run.events("job handed back to the queue")
        if event["error_code"] == "LimitExceededException"
    ]
    assert len(deferred) == 2


def test_breaker_cycles_never_count_against_a_job(stack: Stack, proxy: FaultProxy) -> None:
    # The configuration breaks for a while: the job goes back untouched many times over (more
    # often than RETRY_MAX_DELIVERIES and the deferral limit). Once the configuration is sound
    # again, the job still has all its own deliveries: two transient failures do not end it.
    enqueue(stack, job("sign_up", job_id="cyc", username="cycled", password=PASSWORD))
    # The job's own calls meet the configuration error; the probe's (another username) pass, so
    # the breaker closes, the job comes back, and trips it again: a breaker cycle per delivery.
    broken = proxy.add_rule("not_authorized", service="cognito", username="cycled")
    settings = through(
        proxy.url,
        BREAKER_COOLDOWN_S="0.2",
        BREAKER_MAX_COOLDOWN_S="0.2",
        RETRY_MAX_DELIVERIES="3",
        RETRY_MAX_ATTEMPTS="1",
        RETRY_BACKOFF_CAP_S="1",
    )
    worker = start_worker(stack, **settings)
    wait_for(lambda: proxy.stats()["faults"].get("not_authorized", 0) >= 6, timeout_s=60)
    proxy.remove_rule(broken)
    proxy.add_rule("internal_error", service="cognito", operation="SignUp", times=2)
    collector = ResultCollector(stack)
    wait_for(lambda: collector.poll(), timeout_s=60)
    worker.send_signal(signal.SIGTERM)
    run = finish(worker)

    assert run.returncode == 0, run.stdout[-3000:]
    (result,) = collector.results
    assert result.body["status"] == "succeeded", result.body
    handed_back = run.events("job handed back to the queue")
    assert max(event["receive_count"] for event in handed_back) > 3
    assert queue_depth(stack, stack.dead_letter_queue_url) == 0
    assert proxy.stats()["effects"]["SignUp"] == {"cycled": 1}


@pytest.mark.parametrize("store", ["memory", "dynamodb"])
def test_a_job_id_reused_for_another_payload_is_refused(
    stack: Stack, endpoints: Endpoints, store: str
) -> None:
    stores = {"IDEMPOTENCY_STORE": store}
    if store == "dynamodb":
        stores["IDEMPOTENCY_TABLE"] = create_idempotency_table(endpoints)
    first = job("sign_up", job_id="same-id", username="first-user", password=PASSWORD)
    collector = ResultCollector(stack)
    worker = start_worker(stack, **stores)
    enqueue(stack, first)
    (original,) = (r.body for r in wait_for(collector.poll))
    # The same id again: once for the same job (a duplicate), once for another user.
    enqueue(stack, first)
    enqueue(stack, job("sign_up", job_id="same-id", username="other-user", password=PASSWORD))
    wait_for(lambda: len(collector.poll()) == 3)
    worker.send_signal(signal.SIGTERM)
    run = finish(worker)

    assert run.returncode == 0
    later = sorted((r.body for r in collector.results[1:]), key=lambda body: body["status"])
    assert [r["status"] for r in later] == ["failed", "succeeded"]
    assert later[1] == original  # the duplicate republished the stored result
    assert later[0]["error"]["code"] == "JobIdReused"
    assert later[0]["error"]["retryable"] is False
    assert original["status"] == "succeeded"
    assert user_status(stack, "first-user") == "UNCONFIRMED"
    assert user_status(stack, "other-user") is None  # never run
    assert run.events("job id reused for a different job: refused")
