"""The CloudWatch EMF lines the real worker writes add up to the results it published."""

import json
from collections import Counter
from typing import Any

from tests.support.harness import create_confirmed_user, enqueue, job, read_results, run_worker
from worker.local.aws import Stack


def _emf_documents(stdout: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def test_emf_job_counts_match_the_published_results(stack: Stack) -> None:
    create_confirmed_user(stack, "bob")
    enqueue(
        stack,
        job("sign_up", job_id="ok-1", username="ann", password="Passw0rd-Emf-1!"),
        job("sign_up", job_id="ok-2", username="cleo", password="Passw0rd-Emf-2!"),
        job("sign_up", job_id="exists", username="bob", password="Passw0rd-Emf-3!"),
        job("forgot_password", job_id="fp", username="bob"),
        '{"version": 1, "type": "sign_up"',  # malformed: rejected
    )
    run = run_worker(stack)
    assert run.returncode == 0, run.stderr
    published = Counter(
        (r.attributes["status"], r.attributes["job_type"]) for r in read_results(stack)
    )
    assert sum(published.values()) == 5

    documents = _emf_documents(run.stdout)
    for document in documents:  # each line is one EMF document CloudWatch would accept
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "CognitoWorker"
        for name in (m["Name"] for m in directive["Metrics"]):
            assert isinstance(document[name], int | float)
        for dimension_set in directive["Dimensions"]:
            assert all(isinstance(document[d], str) for d in dimension_set)
    emitted: Counter[tuple[str, str]] = Counter()
    for document in documents:
        if "Jobs" in document:
            emitted[(document["Status"], document["JobType"])] += int(document["Jobs"])
    assert emitted == published
    service = [d for d in documents if "JobsInFlight" in d]
    assert service, "no service-level line"
    assert service[-1]["JobsInFlight"] == 0  # the line written at stop, after the drain
    assert all(d["BreakerOpen"] == 0 for d in service)
    categories = {d["Category"]: d for d in documents if "Category" in d}
    assert categories["UserCreation"]["LimiterRate"] > 0
    assert sum(d["CognitoThrottles"] for d in service) == 0
