"""Console output for people at a terminal: NO_COLOR honoured, empty fields left out; JSON whole."""

import json

import pytest
import structlog

from worker.telemetry.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _reset() -> object:
    yield
    structlog.reset_defaults()


def test_no_color_turns_colours_off(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    configure_logging("INFO", "console")
    get_logger("t").info("coloured", job_id="j1")
    assert "\x1b[" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    configure_logging("INFO", "console")
    get_logger("t").info("plain", job_id="j1")
    out = capsys.readouterr().out
    assert "plain" in out
    assert "\x1b[" not in out


def test_console_leaves_out_empty_fields(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    configure_logging("INFO", "console")
    get_logger("t").info("job finished", status="succeeded", detail=None, error_code=None)
    out = capsys.readouterr().out
    assert "status=succeeded" in out
    assert "detail" not in out
    assert "error_code" not in out


def test_json_keeps_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    get_logger("t").info("job finished", status="succeeded", detail=None, error_code=None)
    line = json.loads(capsys.readouterr().out)
    assert line["detail"] is None
    assert line["error_code"] is None
