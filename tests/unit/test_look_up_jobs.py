"""look_up_jobs' handling of what DynamoDB leaves unread (UnprocessedKeys).

DynamoDB leaves keys of a BatchGetItem unprocessed when the table's read capacity runs short or
the answer would pass 16 MB; dynalite never does, so the integration test
(test_job_lookup.py) cannot reach this path. A client here stands in for DynamoDB: it answers
as the BatchGetItem reference documents, the unread keys under ``UnprocessedKeys``.
"""

from __future__ import annotations

from typing import Any

import pytest

from worker.contract.records import job_key
from worker.importer.aws import TableLookup
from worker.producer import UnprocessedKeysError, look_up_jobs
from worker.producer.lookup import JobStatus

TABLE = "idempotency"
CLIENT = "client-1"


def pending_item(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": job_key(CLIENT, job_id)}, "state": {"S": "pending"},
            "failures": {"N": "1"}}  # fmt: skip


class StingyTable:
    """Answers the first ``keys_per_answer`` keys asked for each time, leaves the rest."""

    def __init__(self, keys_per_answer: int, give_up_after: int | None = None) -> None:
        self.keys_per_answer = keys_per_answer
        self.give_up_after = give_up_after
        self.requests: list[list[str]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        asked = RequestItems[TABLE]
        assert asked["ConsistentRead"] is True
        keys = asked["Keys"]
        self.requests.append([key["pk"]["S"] for key in keys])
        served = 0 if (
            self.give_up_after is not None and len(self.requests) > self.give_up_after
        ) else self.keys_per_answer  # fmt: skip
        read, unread = keys[:served], keys[served:]
        # One job in three has a record; the others have none (no item in the answer).
        items = [pending_item(key["pk"]["S"].split("#", 1)[1]) for key in read
                 if int(key["pk"]["S"].rsplit("-", 1)[1]) % 3 == 0]  # fmt: skip
        answer: dict[str, Any] = {"Responses": {TABLE: items}}
        if unread:
            answer["UnprocessedKeys"] = {TABLE: {"Keys": unread}}
        return answer


@pytest.fixture(autouse=True)
def _no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("worker.producer.lookup._UNPROCESSED_FIRST_WAIT_S", 0.0)


def test_unprocessed_keys_are_asked_for_again_until_every_job_is_read() -> None:
    table = StingyTable(keys_per_answer=4)
    ids = [f"job-{i}" for i in range(10)]
    states = look_up_jobs(TABLE, ids, client_id=CLIENT, client=table)
    assert [len(asked) for asked in table.requests] == [10, 6, 2]
    assert list(states) == ids
    found = {job_id for job_id, state in states.items() if state is not None}
    assert found == {"job-0", "job-3", "job-6", "job-9"}
    assert all(s.status is JobStatus.PENDING for s in states.values() if s is not None)


def test_jobs_still_unread_are_named_and_the_ones_read_kept() -> None:
    table = StingyTable(keys_per_answer=3, give_up_after=1)
    ids = [f"job-{i}" for i in range(8)]
    with pytest.raises(UnprocessedKeysError) as raised:
        look_up_jobs(TABLE, ids, client_id=CLIENT, client=table)
    assert raised.value.job_ids == tuple(ids[3:])
    assert set(raised.value.read) == {"job-0", "job-1", "job-2"}
    assert raised.value.read["job-0"] is not None
    assert raised.value.read["job-1"] is None
    assert len(table.requests) == 7  # asked again six times before giving them up


def test_the_imports_lookup_reports_the_unread_rows_as_errors_and_the_rest_as_read() -> None:
    table = StingyTable(keys_per_answer=3, give_up_after=1)
    lookup = TableLookup(TABLE, CLIENT, region=None, client=table, concurrency=1)
    answers = list(lookup.look_up_many(f"job-{i}" for i in range(5)))
    assert [a.job_id for a in answers] == [f"job-{i}" for i in range(5)]
    assert [bool(a.error) for a in answers] == [False, False, False, True, True]
    assert answers[0].state is not None
    assert answers[1].state is None
    assert "UnprocessedKeys" in answers[3].error


def test_more_than_a_hundred_at_once_is_refused_and_a_repeat_is_asked_once() -> None:
    with pytest.raises(ValueError, match="at most 100"):
        look_up_jobs(TABLE, [f"job-{i}" for i in range(101)], client_id=CLIENT, client=None)
    table = StingyTable(keys_per_answer=100)
    states = look_up_jobs(TABLE, ["job-3", "job-3", "job-4"], client_id=CLIENT, client=table)
    assert table.requests == [[job_key(CLIENT, "job-3"), job_key(CLIENT, "job-4")]]
    assert list(states) == ["job-3", "job-4"]
    assert look_up_jobs(TABLE, [], client_id=CLIENT, client=table) == {}
    assert len(table.requests) == 1  # nothing asked for, nothing sent
