"""Logging: structlog JSON lines on stdout, with a redaction step no log line can bypass.

Redaction works two ways. By key: any field whose name says password, secret, code or hash is
masked. By value: the secrets the worker holds (client secrets, and per job the password, code and
SecretHash) are registered here and replaced wherever they appear, even inside an exception text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"(password|secret|confirmation_?code|secret_?hash|token|authorization|encoded_?data)",
    re.IGNORECASE,
)
_process_secrets: set[str] = set()
_masked_values: ContextVar[tuple[str, ...]] = ContextVar("masked_values", default=())


def register_secret(value: str) -> None:
    """Mask this value in every log line from now on (used for client secrets)."""
    if value:
        _process_secrets.add(value)


@contextmanager
def masking(values: Iterable[str]) -> Iterator[None]:
    """Mask these values in every log line written inside the block (this task only)."""
    token = _masked_values.set(tuple(v for v in values if v))
    try:
        yield
    finally:
        _masked_values.reset(token)


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """Replace every registered secret (and ``extra``) in ``text``."""
    for secret in sorted({*_process_secrets, *_masked_values.get(), *extra}, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact(value: Any, key: str = "") -> Any:
    if key and _SENSITIVE_KEY.search(key) and value is not None:
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask sensitive keys and known secret values (runs last but render)."""
    return {key: _redact(value, key) for key, value in event_dict.items()}


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    """Set up structlog (and the stdlib loggers of our libraries) to write to stdout."""
    use_console = log_format == "console" or (log_format == "auto" and sys.stdout.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    finishing: list[Any] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        # Redact after exceptions are formatted, so a traceback text is scrubbed too.
        redact_event,
    ]
    if not use_console:
        finishing.insert(0, structlog.processors.dict_tracebacks)
        finishing.remove(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*shared, *finishing, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # No file bound: each line goes to the sys.stdout of the moment it is written.
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the stdlib: render them the same way, through the same redaction.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *finishing,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # botocore logs whole request bodies at DEBUG; the SDK stays at WARNING whatever LOG_LEVEL says.
    for noisy in ("botocore", "aiobotocore", "aioboto3", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger bound to a component name."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
