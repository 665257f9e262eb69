"""The job contract: what is accepted, what is rejected and why, and the reasons never leak."""

import json
from typing import Any

import pytest

from worker.contract.jobs import (
    ConfirmForgotPasswordJob,
    JobType,
    MalformedJob,
    SignUpJob,
    decode_job,
)


def body(**fields: Any) -> str:
    return json.dumps({"version": 1, **fields})


def test_a_full_sign_up_is_read() -> None:
    job = decode_job(body(
        type="sign_up", job_id="j-1", client_id="abc123", username="jöhn@exämple.com",
        password="Pa55word!", user_attributes={"email": "a@b.c", "given_name": "Ann"},
        validation_data={"source": "web"}, client_metadata={"campaign": "x"},
        user_context={"ip_address": "192.0.2.1", "encoded_data": "fp"},
    ))  # fmt: skip
    assert isinstance(job, SignUpJob)
    assert job.username == "jöhn@exämple.com"
    assert job.password.get_secret_value() == "Pa55word!"
    assert job.user_attributes["given_name"] == "Ann"
    assert job.user_context is not None
    assert job.user_context.ip_address == "192.0.2.1"


@pytest.mark.parametrize(
    ("fields", "type_"),
    [
        ({"type": "confirm_sign_up", "username": "a", "confirmation_code": "123456",
          "force_alias_creation": True}, JobType.CONFIRM_SIGN_UP),
        ({"type": "resend_confirmation_code", "username": "-a"}, JobType.RESEND_CONFIRMATION_CODE),
        ({"type": "forgot_password", "username": "a@b.c"}, JobType.FORGOT_PASSWORD),
        ({"type": "confirm_forgot_password", "username": "a", "confirmation_code": "1",
          "password": "x"}, JobType.CONFIRM_FORGOT_PASSWORD),
    ],
)  # fmt: skip
def test_every_type_is_read(fields: dict[str, Any], type_: JobType) -> None:
    assert decode_job(body(**fields)).type == type_


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        ("not json", "body is not JSON"),
        ("[1, 2]", "body is a JSON list, not an object"),
        ('"text"', "body is a JSON str, not an object"),
        (body(type="delete_user", username="a"), "type: missing or unknown; expected one of"),
        (body(type="forgot_password", username="a", extra=1), "forgot_password.extra: Extra"),
        (body(type="forgot_password", username="has space"), "forgot_password.username"),
        (body(type="forgot_password", username="a" * 129), "forgot_password.username"),
        (body(type="forgot_password"), "forgot_password.username: Field required"),
        (json.dumps({"type": "forgot_password", "username": "a"}), "version: Field required"),
        (json.dumps({"version": 2, "type": "forgot_password", "username": "a"}), "version"),
        (json.dumps({"version": "1", "type": "forgot_password", "username": "a"}), "version"),
        ("[" * 100_000, "body is not JSON"),
    ],
)
def test_malformed_bodies_are_rejected_with_a_reason(raw: str, reason_part: str) -> None:
    with pytest.raises(MalformedJob) as caught:
        decode_job(raw)
    assert reason_part in caught.value.reason


def test_a_rejected_job_keeps_its_id_and_type() -> None:
    with pytest.raises(MalformedJob) as caught:
        decode_job(body(type="sign_up", job_id="j-9", username="a", password="x", bogus=True))
    assert caught.value.job_id == "j-9"
    assert caught.value.job_type is JobType.SIGN_UP


@pytest.mark.parametrize(
    "fields",
    [
        {"password": 123456789},  # wrong type
        {"password": "has a space 9f8e7d"},  # breaks the pattern
        {"password": "9f8e7d" * 60},  # too long
    ],
)
def test_the_reason_never_quotes_the_password(fields: dict[str, Any]) -> None:
    secret = str(fields["password"])
    raw = body(type="confirm_forgot_password", username="a", confirmation_code="c0de-777",
               **fields)  # fmt: skip
    with pytest.raises(MalformedJob) as caught:
        decode_job(raw)
    assert secret not in caught.value.reason
    assert "9f8e7d" not in caught.value.reason
    assert "c0de-777" not in caught.value.reason


def test_secrets_do_not_show_in_repr() -> None:
    job = decode_job(body(type="confirm_forgot_password", username="a",
                          confirmation_code="c0de-777", password="Pa55word!"))  # fmt: skip
    assert isinstance(job, ConfirmForgotPasswordJob)
    assert "c0de-777" not in repr(job)
    assert "Pa55word!" not in repr(job)


@pytest.mark.parametrize(
    ("username", "where"),
    [
        ("ann smith", "character 4 (U+0020 SPACE)"),
        ("zoë\u200b", "character 4 (U+200B ZERO WIDTH SPACE)"),
        ("tab\tbed", "character 4 (U+0009)"),
    ],
)
def test_a_refused_username_says_which_character_broke_the_pattern(
    username: str, where: str
) -> None:
    body = json.dumps({"version": 1, "type": "sign_up", "username": username,
                       "password": "Corr3ct-Horse!", "user_attributes": {}})  # fmt: skip
    with pytest.raises(MalformedJob) as refused:
        decode_job(body)
    assert refused.value.reason == (
        f"sign_up.username: {where} is not allowed: a username is letters, marks, symbols, "
        "numbers and punctuation, no white space (pattern '^[\\p{L}\\p{M}\\p{S}\\p{N}\\p{P}]+$')"
    )


def test_a_refused_password_names_no_character_of_it() -> None:
    body = json.dumps({"version": 1, "type": "sign_up", "username": "ann",
                       "password": "Corr3ct Horse!", "user_attributes": {}})  # fmt: skip
    with pytest.raises(MalformedJob) as refused:
        decode_job(body)
    assert refused.value.reason == "sign_up.password: String should match pattern '^\\S+$'"
    assert "character" not in refused.value.reason
