"""The parts of field encryption that need no KMS: the wire form, the DLQ copy, the settings."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.contract.fields import (
    KNOWN_NOT_SECRET,
    FieldKeyRefused,
    FieldKeyUnreachable,
    FieldUnreadable,
    _classified,
    dead_letter_body,
    plaintext_fields,
)
from worker.contract.jobs import EncryptedSecret, MalformedJob, decode_job, encode_job, plain_secret
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


def test_the_dlq_copy_drops_plaintext_secrets_and_unknown_fields_and_keeps_encrypted_ones() -> None:
    raw = body(type="confirm_forgot_password", job_id="j", username="a", password="Pl41n-Secret!",
               confirmation_code=ENCRYPTED, passwd="Pl41n-Secret!")  # fmt: skip
    copy = json.loads(dead_letter_body(raw))
    assert copy == {
        "version": 1,
        "type": "confirm_forgot_password",
        "job_id": "j",
        "username": "a",
        "confirmation_code": ENCRYPTED,
    }


def test_a_job_holding_nothing_secret_is_copied_as_it_is() -> None:
    raw = body(type="sign_up", username="a", password=ENCRYPTED, user_attributes={"email": "e"})
    assert dead_letter_body(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        '{"version": 1, "password": "Pl41n-Secret!"',  # not JSON: cut off
        '["Pl41n-Secret!"]',  # not an object
        '{"password": "Pl41n-Secret!", "password": {"encrypted": "AAAA"}}',  # a key twice
        '{"user_attributes": {"a": "b", "a": "Pl41n-Secret!"}}',  # a key twice, nested
    ],
)
def test_a_body_that_cannot_be_read_as_a_job_keeps_only_its_size(raw: str) -> None:
    assert json.loads(dead_letter_body(raw)) == {
        "unreadable_body": {"bytes": len(raw.encode()), "kept": False}
    }


def test_a_password_disguised_as_an_object_is_dropped_too() -> None:
    raw = body(type="sign_up", password={"encrypted": "x", "plain": "Pl41n-Secret!"})
    assert "Pl41n-Secret!" not in dead_letter_body(raw)


SECRET = "Zq-9!secret"  # printable, no JSON escapes: found in the copy if it is anywhere there
field_names = st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), max_size=12)
not_secret_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8).filter(lambda t: "Zq" not in t),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_names, inner, max_size=3),
    max_leaves=6,
)
# Where a producer's mistake can put a secret: a secret field in plaintext, a misspelt or
# unknown field, inside a disguised "encrypted" value, or nested in any of those.
secret_places = st.sampled_from(
    [
        lambda k: ("password", SECRET),
        lambda k: ("confirmation_code", SECRET),
        lambda k: (k or "passwd", SECRET),
        lambda k: ("password", {"encrypted": SECRET + "=", "also": SECRET}),
        lambda k: ("password", {"encrypted": [SECRET]}),
        lambda k: (k or "x", {"password": SECRET}),
        lambda k: ("confirmation_code", [SECRET]),
    ]
)


@st.composite
def bodies_with_a_secret(draw: st.DrawFn) -> str:
    safe = sorted(KNOWN_NOT_SECRET - {"username", "job_id"})
    fields = draw(st.dictionaries(st.sampled_from(safe), not_secret_values, max_size=4))
    name, value = draw(secret_places)(draw(field_names.filter(lambda n: n not in KNOWN_NOT_SECRET)))
    pairs = [*fields.items(), (name, value)]
    pairs = draw(st.permutations(pairs))
    text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
    form = draw(st.sampled_from(["object", "cut off", "key twice", "in an array", "as text"]))
    if form == "cut off":
        text = text[: draw(st.integers(text.index(SECRET) + len(SECRET), len(text) - 1))]
    elif form == "key twice":
        text = text[:-1] + ', "password": {"encrypted": "AAAA"}, "password": {"encrypted": "AAAA"}}'
    elif form == "in an array":
        text = f"[{text}]"
    elif form == "as text":
        text = f"password={SECRET}"
    return text


# Drawing these bodies is slow on a busy machine: that is no failure of the code under test.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=bodies_with_a_secret())
def test_no_rejected_body_leaves_a_secret_in_its_dlq_copy(raw: str) -> None:
    assert SECRET in raw
    copy = dead_letter_body(raw)
    assert SECRET not in copy
    assert SECRET not in json.dumps(json.loads(copy), ensure_ascii=False)


@pytest.mark.parametrize(
    ("kms_answers", "blamed"),
    [
        # No Decrypt call at all: no data key of the message is under a key the worker accepts
        # (a producer's raw key, another account's key). No key ever will: the message's fault.
        ([], FieldUnreadable),
        (["InvalidCiphertextException"], FieldUnreadable),  # the data key is not this key's
        ([""], FieldUnreadable),  # KMS answered, the SDK found the data key wrong
        (["AccessDeniedException"], FieldKeyRefused),  # a key we accept, a permission missing
        (["DisabledException"], FieldKeyRefused),
        (["InvalidCiphertextException", "AccessDeniedException"], FieldKeyRefused),
        (["KMSInternalException"], FieldKeyUnreachable),
        (["HTTP503"], FieldKeyUnreachable),
    ],
)
def test_a_failed_decryption_is_blamed_on_who_caused_it(
    kms_answers: list[str], blamed: type[Exception]
) -> None:
    assert type(_classified(kms_answers, "password")) is blamed


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
