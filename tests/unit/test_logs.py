"""The redaction step: by key and by value, in plain fields, nested ones and tracebacks."""

import json

import pytest
import structlog

from worker.logs import REDACTED, configure_logging, get_logger, masking, register_secret


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
