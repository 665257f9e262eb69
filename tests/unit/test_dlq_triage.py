"""The DLQ triage's pure parts: reason rules, masked usernames, choices, and the redrive journal."""

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from worker.operations.dead_letters import (
    MOVED_BY_SQS,
    DeadLetter,
    mask_username,
    read_dead_letter,
    reason_rule,
)
from worker.operations.dlq_selection import Selection, duration
from worker.operations.redrive_journal import JournalMismatch, RedriveJournal

QUEUE = "http://127.0.0.1:1/123456789012/jobs-dlq"


@pytest.mark.parametrize(
    ("reason", "rule"),
    [
        (None, MOVED_BY_SQS),
        ("TooManyRequestsException: transient errors in 5 deliveries",
         "TooManyRequestsException: transient errors in every allowed delivery"),
        ("body is not JSON: Expecting value at line 1 column 2",
         "body is not JSON: Expecting value"),
        ("username: character 4 (U+0020 SPACE) is not allowed: a username is ... (pattern '^x$')",
         "username: a character is not allowed: a username is ... (pattern '^x$')"),
        ("username: character 12 (U+200B ZERO WIDTH SPACE) is not allowed: a username is ...",
         "username: a character is not allowed: a username is ..."),
    ],
)  # fmt: skip
def test_alike_reasons_share_a_rule(reason: str | None, rule: str) -> None:
    assert reason_rule(reason) == rule


def test_usernames_are_masked_as_cognito_masks_destinations() -> None:
    assert mask_username("carol@example.com") == "c***@e***"
    assert mask_username("dana") == "d***"


def _letter(body: str, sent_ms: int, **attributes: str) -> DeadLetter:
    return read_dead_letter(
        {
            "MessageId": "m-1",
            "ReceiptHandle": "h",
            "Body": body,
            "Attributes": {"SentTimestamp": str(sent_ms), "ApproximateReceiveCount": "2"},
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value}
                for name, value in attributes.items()
            },
        }
    )


def test_a_letter_reads_no_secret_and_a_choice_needs_every_criterion() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    sent = int((now - timedelta(hours=3)).timestamp() * 1000)
    letter = _letter(
        '{"version": 1, "type": "sign_up", "job_id": "j1", "username": "ann", "password": "pw1!"}',
        sent,
        lane="bulk",
        original_message_id="orig-1",
    )
    # Only the body (kept for a redrive, never printed) holds the password.
    assert "pw1!" not in repr(dataclasses.replace(letter, body=""))
    assert letter.username == "a***"
    either = frozenset({"sign_up", "import_user"})
    chosen = Selection(job_types=either, lanes=frozenset({"bulk"}), older_than=duration("2h"))
    assert chosen.matches(letter, now)
    assert Selection(job_ids=frozenset({"orig-1"})).matches(letter, now)
    assert not Selection(job_types=either, lanes=frozenset({"-"})).matches(letter, now)
    assert not Selection(newer_than=duration("1h")).matches(letter, now)
    assert Selection(batches=frozenset({"-"})).matches(letter, now)


def test_the_journal_remembers_sent_and_in_doubt_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    first = RedriveJournal.open(path, QUEUE)
    first.about_to_send(["a", "b", "c"])
    first.did_send(["a"])
    first.did_not_send(["c"])
    first.about_to_send(["d"])  # stopped here, before SQS answered
    first.close()
    with path.open("a") as torn:
        torn.write('{"sent": ["x"')  # a line cut off by a kill

    again = RedriveJournal.open(path, QUEUE)

    assert again.sent == {"a"}
    assert [again.in_doubt(m) for m in "abcd"] == [False, True, False, True]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again.close()
    with pytest.raises(JournalMismatch):
        RedriveJournal.open(path, QUEUE + "-other")
