"""The redaction step: by key and by value, in plain fields, nested ones and tracebacks."""

import json
import logging
import reprlib

import pytest
import structlog

from worker.telemetry.logs import REDACTED, configure_logging, get_logger, masking, register_secret


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str]) -> "callable":  # type: ignore[valid-type]
    configure_logging("DEBUG", "json")
    yield lambda: [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    structlog.reset_defaults()


def test_sensitive_keys_are_masked(json_lines) -> None:  # type: ignore[no-untyped-def]
    get_logger("t").info(
        "x", password="p-1", client_secret="s-1", secret_hash="h-1", confirmation_code="c-1",
        request={"SecretHash": "h-2", "Password": "p-2", "Username": "ann"},
    )  # fmt: skip
    (line,) = json_lines()
    assert line["password"] == line["client_secret"] == line["secret_hash"] == REDACTED
    assert line["confirmation_code"] == REDACTED
    assert line["request"] == {"SecretHash": REDACTED, "Password": REDACTED, "Username": "ann"}


def test_registered_values_are_masked_anywhere(json_lines) -> None:  # type: ignore[no-untyped-def]
    register_secret("client-secret-123")
    with masking(["Pa55word!", "hash+abc/=="]):
        get_logger("t").warning(
            "Cognito said: Pa55word! is bad", detail="see hash+abc/== and client-secret-123"
        )
    get_logger("t").info("after the job", note="Pa55word! is no longer a registered value")
    first, second = json_lines()
    assert "Pa55word!" not in json.dumps(first)
    assert "hash+abc/==" not in json.dumps(first)
    assert "client-secret-123" not in json.dumps(first)
    assert first["event"] == f"Cognito said: {REDACTED} is bad"
    assert second["note"].startswith("Pa55word!")


def test_tracebacks_are_scrubbed(json_lines) -> None:  # type: ignore[no-untyped-def]
    with masking(["Tr4ceSecret"]):
        try:
            raise ValueError("failed with Tr4ceSecret inside")
        except ValueError:
            get_logger("t").exception("boom")
    (line,) = json_lines()
    assert "Tr4ceSecret" not in json.dumps(line)
    assert "failed with" in json.dumps(line)


LOCAL_PASSWORD = "Local-Passw0rd-In-A-Frame!"
REQUEST_PASSWORD = "Request-Dict-Passw0rd-Zeta!"


def _fail_with_secrets_in_locals() -> None:
    password = LOCAL_PASSWORD
    request = {"Username": "ann", "Password": REQUEST_PASSWORD}
    raise ValueError(f"could not sign up {request['Username']} ({len(password)} chars)")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_traceback_outside_a_job_shows_no_local_variables(
    capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    # Outside a job nothing is registered: only leaving the locals out keeps them out.
    configure_logging("DEBUG", log_format)
    try:
        try:
            _fail_with_secrets_in_locals()
        except ValueError:
            get_logger("t").exception("sign-up failed")
        try:
            _fail_with_secrets_in_locals()
        except ValueError:
            logging.getLogger("asyncio").error("a library's traceback", exc_info=True)
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr().out
    assert "_fail_with_secrets_in_locals" in out  # the tracebacks are there, frames and all
    assert "could not sign up ann (26 chars)" in out
    assert LOCAL_PASSWORD not in out
    assert REQUEST_PASSWORD not in out
    assert "Passw0rd" not in out


def test_a_secret_cut_short_for_display_is_still_masked(json_lines) -> None:  # type: ignore[no-untyped-def]
    secret = "Leak-Passw0rd-Alpha-And-Then-Some!"
    shown = [
        repr(secret)[:21] + "+14",  # structlog's cut of a long local
        reprlib.repr(secret),  # the start and the end, with "..." between
        secret[:12],  # a prefix alone
    ]
    with masking([secret]):
        get_logger("t").error("invalid input", shown=shown, detail=f"input_value={shown[1]}")
    (line,) = json_lines()
    text = json.dumps(line)
    starts = [secret[:n] for n in range(6, len(secret) + 1)]
    ends = [secret[-n:] for n in range(6, len(secret) + 1)]
    assert [fragment for fragment in starts + ends if fragment in text] == []
    assert line["shown"][0] == f"'{REDACTED}+14"
    assert line["shown"][1] == f"'{REDACTED}...{REDACTED}'"  # the shape stays, the secret goes


def test_short_words_of_a_secret_are_not_masked(json_lines) -> None:  # type: ignore[no-untyped-def]
    with masking(["Leak-Passw0rd-Alpha!"]):
        get_logger("t").info("Leak: the word alone is no secret")
    (line,) = json_lines()
    assert line["event"] == "Leak: the word alone is no secret"
