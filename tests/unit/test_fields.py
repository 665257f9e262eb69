"""The parts of field encryption that need no KMS: the wire form, the DLQ copy, the settings."""

import json

import pytest

from worker.fields import plaintext_fields, without_plaintext_secrets
from worker.jobs import EncryptedSecret, MalformedJob, decode_job, encode_job, plain_secret
from worker.settings import Settings, SettingsError

ENCRYPTED = {"encrypted": "AgV4ZXhhbXBsZQ=="}


def body(**fields: object) -> str:
    return json.dumps({"version": 1, **fields})


def test_an_encrypted_field_is_read_and_written_back_as_sent() -> None:
    job = decode_job(body(type="sign_up", job_id="j", username="a", password=ENCRYPTED))
    assert isinstance(job.password, EncryptedSecret)
    assert json.loads(encode_job(job))["password"] == ENCRYPTED
    assert plaintext_fields(job) == []
    with pytest.raises(ValueError, match="still encrypted"):
        plain_secret(job.password)


def test_plaintext_fields_are_named() -> None:
    job = decode_job(body(type="confirm_forgot_password", job_id="j", username="a",
                          confirmation_code="123", password=ENCRYPTED))  # fmt: skip
    assert plaintext_fields(job) == ["confirmation_code"]


@pytest.mark.parametrize(
    "value",
    [{"encrypted": "not base64!"}, {"encrypted": ""}, {"encrypted": "AAAA", "key": "x"}, {}],
)
def test_a_malformed_encrypted_field_is_refused(value: object) -> None:
    with pytest.raises(MalformedJob, match="password"):
        decode_job(body(type="sign_up", job_id="j", username="a", password=value))


def test_the_dlq_copy_drops_plaintext_secrets_and_keeps_encrypted_ones() -> None:
    raw = body(type="confirm_forgot_password", job_id="j", username="a", password="Pl41n-Secret!",
               confirmation_code=ENCRYPTED, extra=1)  # fmt: skip
    copy = json.loads(without_plaintext_secrets(raw))
    assert "password" not in copy
    assert copy["confirmation_code"] == ENCRYPTED
    assert copy["username"] == "a"
    assert copy["extra"] == 1


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", body(type="sign_up", username="a")])
def test_a_body_without_secret_fields_is_copied_as_it_is(raw: str) -> None:
    assert without_plaintext_secrets(raw) == raw


def test_a_password_disguised_as_an_object_is_dropped_too() -> None:
    raw = body(type="sign_up", password={"encrypted": "x", "plain": "Pl41n-Secret!"})
    assert "Pl41n-Secret!" not in without_plaintext_secrets(raw)


BASE = {
    "AWS_REGION": "eu-west-1",
    "JOBS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
    "RESULTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:results",
    "COGNITO_USER_POOL_ID": "eu-west-1_abc",
    "COGNITO_CLIENT_ID": "client1",
}
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_key_arns_are_comma_separated() -> None:
    settings = Settings.from_env({**BASE, "FIELD_ENCRYPTION_KEY_ARNS": f"{KEY}, {KEY}2"})
    assert settings.field_encryption_key_arns == (KEY, KEY + "2")


def test_mandatory_encryption_needs_a_key() -> None:
    with pytest.raises(SettingsError, match="REQUIRE_ENCRYPTED_FIELDS"):
        Settings.from_env({**BASE, "REQUIRE_ENCRYPTED_FIELDS": "true"})


def test_an_alias_is_not_a_key_arn() -> None:
    alias = "arn:aws:kms:eu-west-1:123456789012:alias/jobs"
    with pytest.raises(SettingsError, match="FIELD_ENCRYPTION_KEY_ARNS"):
        Settings.from_env({**BASE, "FIELD_ENCRYPTION_KEY_ARNS": alias})
