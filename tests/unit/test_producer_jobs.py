"""The producer's checks and wire form, without a queue: the worker's decoder is the judge."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.contract.jobs import (
    ConfirmForgotPasswordJob,
    ConfirmSignUpJob,
    MalformedJob,
    SignUpJob,
    decode_job,
    encode_job,
)
from worker.producer import InvalidJob, prepare_job
from worker.producer.jobs import sqs_id

PASSWORD = "Corr3ct-Horse!"


def test_the_wire_carries_the_real_password_while_the_repr_stays_masked() -> None:
    job = SignUpJob(version=1, type="sign_up", job_id="j1", username="alice", password=PASSWORD)
    body = encode_job(job)
    assert json.loads(body)["password"] == PASSWORD
    assert PASSWORD not in repr(job)
    assert PASSWORD not in job.model_dump_json()
    assert decode_job(body) == job


def test_every_secret_field_reaches_the_wire() -> None:
    confirm = ConfirmForgotPasswordJob(
        version=1, type="confirm_forgot_password", username="bob",
        confirmation_code="123456", password=PASSWORD,
    )  # fmt: skip
    document = json.loads(encode_job(confirm))
    assert (document["confirmation_code"], document["password"]) == ("123456", PASSWORD)
    assert decode_job(encode_job(confirm)) == confirm


usernames = st.text(st.characters(categories=["L", "M", "S", "N", "P"]), min_size=1, max_size=128)
values = st.text(max_size=40)  # any code point, lone surrogates and non-characters included


@given(usernames, st.dictionaries(st.sampled_from(["email", "name", "custom:x"]), values))
def test_decoding_the_wire_form_gives_back_the_same_job(username: str, attributes: dict) -> None:
    job = SignUpJob(
        version=1, type="sign_up", job_id="j", username=username, password=PASSWORD,
        user_attributes=attributes, batch="import-1",
    )  # fmt: skip
    body = encode_job(job)
    # What SQS accepts in a body: no lone surrogates, no U+FFFE or U+FFFF.
    body.encode("utf-8")
    assert "\ufffe" not in body
    assert "\uffff" not in body
    assert decode_job(body) == job


def test_a_job_without_an_id_gets_one() -> None:
    first = prepare_job({"version": 1, "type": "forgot_password", "username": "alice"})
    second = prepare_job(ConfirmSignUpJob(
        version=1, type="confirm_sign_up", username="alice", confirmation_code="1"
    ))  # fmt: skip
    assert first.job_id
    assert second.job_id
    assert first.job_id != second.job_id
    assert json.loads(first.body)["job_id"] == first.job_id


@pytest.mark.parametrize(
    "document",
    [
        {"version": 1, "type": "sign_up", "username": "a b", "password": "Secret-1!"},
        {"version": 1, "type": "sign_up", "username": "alice", "password": "has space"},
        {"version": 1, "type": "sign_up", "username": "alice"},
        {"version": 1, "type": "unknown", "username": "alice"},
        {"version": 2, "type": "forgot_password", "username": "alice"},
        {"version": 1, "type": "forgot_password", "username": "alice", "pasword": "typo"},
        {"version": 1, "type": "forgot_password", "username": "alice", "batch": "a b"},
        {"version": 1, "type": "forgot_password", "username": "alice", "batch": "x" * 65},
    ],
)
def test_a_job_the_worker_would_reject_is_refused_with_the_workers_reason(document: dict) -> None:
    document = {"job_id": "job-7", **document}
    with pytest.raises(MalformedJob) as worker_verdict:
        decode_job(json.dumps(document))
    with pytest.raises(InvalidJob) as refused:
        prepare_job(document, index=3)
    assert refused.value.reason == worker_verdict.value.reason
    assert (refused.value.job_id, refused.value.index) == ("job-7", 3)
    for value in ("has space", "Secret-1!", "typo", "a b"):
        assert value not in str(refused.value)


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidJob, match="not JSON"):
        prepare_job({"version": 1, "type": "forgot_password", "username": "a", "x": object()})


def test_a_job_over_the_size_limit_is_refused() -> None:
    job = {"version": 1, "type": "forgot_password", "username": "a",
           "client_metadata": {"k": "x" * 2000}}  # fmt: skip
    assert prepare_job(job, max_bytes=4096)
    with pytest.raises(InvalidJob, match="over the queue's limit"):
        prepare_job(job, max_bytes=1024)


def test_group_and_deduplication_ids_are_what_sqs_accepts() -> None:
    assert sqs_id("alice@example.com") == "alice@example.com"
    hashed = sqs_id("Zoë")
    assert len(hashed) == 64
    assert hashed.isascii()
    assert hashed == sqs_id("Zoë")
    assert sqs_id("x" * 129) != sqs_id("x" * 130)
    assert sqs_id("a\n") != "a\n"


def test_a_username_is_sent_as_given_unless_a_normal_form_is_asked_for() -> None:
    decomposed = "zoe\u0308"  # "zoë" as e + COMBINING DIAERESIS (NFD)
    job = {"version": 1, "type": "forgot_password", "job_id": "n", "username": decomposed}
    assert json.loads(prepare_job(job).body)["username"] == decomposed
    nfc = json.loads(prepare_job(job, normalize_username="NFC").body)["username"]
    assert nfc == "zo\u00eb"
    assert len(nfc) == 3
