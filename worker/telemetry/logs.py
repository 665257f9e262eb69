"""Logging: structlog JSON lines on stdout, with a redaction step no log line can bypass.

Redaction works two ways. By key: any field whose name says password, secret, code or hash is
masked. By value: the secrets the worker holds (client secrets, and per job the password, code and
SecretHash) are registered here and replaced wherever they appear, even inside an exception text,
and so is any run of at least :data:`MIN_FRAGMENT_CHARS` of a secret's first or last characters:
a long value shortened for display (``'Leak-Passw0rd-Al'+20``, ``'Leak-Pa...rd!'``) is still its
secret.

Tracebacks carry no local variables: a frame's locals hold passwords under names no key rule
knows, and before a job registers its secrets (a request dict while parsing, for one).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

REDACTED = "[REDACTED]"
# The shortest start or end of a secret masked on its own: short enough to catch a value cut for
# display, long enough that ordinary text rarely matches (a six-digit code is matched whole).
MIN_FRAGMENT_CHARS = 6

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
    """Replace every registered secret (and ``extra``) in ``text``, and the fragments of them.

    A fragment is a run of at least :data:`MIN_FRAGMENT_CHARS` characters that starts the secret
    or ends it, as a shortened display of it does; a secret shorter than that is matched whole.
    """
    for secret in sorted({*_process_secrets, *_masked_values.get(), *extra}, key=len, reverse=True):
        if secret:
            text = _mask_secret(text, secret)
    return text


def _mask_secret(text: str, secret: str) -> str:
    if secret in text:
        text = text.replace(secret, REDACTED)
    if len(secret) <= MIN_FRAGMENT_CHARS:
        return text
    return _mask_tails(_mask_heads(text, secret), secret)


def _mask_heads(text: str, secret: str, marker: str = REDACTED) -> str:
    """Mask each place where the secret's start appears, as far as it goes on matching."""
    head = secret[:MIN_FRAGMENT_CHARS]
    start = text.find(head)
    while start != -1:
        end = start + len(head)
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        text = text[:start] + marker + text[end:]
        start = text.find(head, start + len(marker))
    return text


def _mask_tails(text: str, secret: str) -> str:
    """Mask each place where the secret's end appears: the heads of the reversed secret."""
    return _mask_heads(text[::-1], secret[::-1], REDACTED[::-1])[::-1]


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


# structlog's own dict_tracebacks shows every frame's locals; these show none.
_DICT_TRACEBACKS_WITHOUT_LOCALS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


_write_lock = threading.Lock()


def write_line(line: str) -> None:
    """Write one line to the stdout of the moment; never raise, never wedge on a broken pipe.

    When stdout's reader is gone (``| head -1`` exited, a FIFO's reader closed), the write fails
    with EPIPE. Logging must not take the worker down with it, nor stop a signal from acting:
    stdout is pointed at /dev/null from then on, so later lines (and the interpreter's own flush
    at exit) go nowhere quietly instead of raising again.
    """
    with _write_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):  # ValueError: stdout already closed
            _discard_stdout()


def _discard_stdout() -> None:
    stream = sys.stdout
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
        # What the failed write left in the buffer now goes to /dev/null.
        stream.flush()
    except (OSError, ValueError, AttributeError):
        # Not a real file (a test's capture): leave it alone; the line is dropped either way.
        pass


class _LineLogger:
    """structlog's logger: each rendered line through :func:`write_line`."""

    def msg(self, message: str) -> None:
        write_line(message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


def _line_logger_factory(*_args: Any) -> _LineLogger:
    return _LineLogger()


class _StdoutHandler(logging.Handler):
    """The stdlib handler for library log records: same lines, same stdout, same EPIPE safety."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a broken record must not break the caller; say so on stderr
            self.handleError(record)
            return
        write_line(line)


def _drop_empty_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Console only: leave out fields that are None, so a terminal line says what happened."""
    return {key: value for key, value in event_dict.items() if value is not None}


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    """Set up structlog (and the stdlib loggers of our libraries) to write to stdout."""
    use_console = log_format == "console" or (log_format == "auto" and sys.stdout.isatty())
    renderer: Any = structlog.processors.JSONRenderer()
    console_only: list[Any] = []
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(
            # Plain tracebacks: rich's, the default where rich is installed, print each frame's
            # locals.
            exception_formatter=structlog.dev.plain_traceback,
            # https://no-color.org: any non-empty NO_COLOR turns colours off.
            colors=not os.environ.get("NO_COLOR"),
        )
        console_only = [_drop_empty_fields]
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
        finishing.insert(0, _DICT_TRACEBACKS_WITHOUT_LOCALS)
        finishing.remove(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*shared, *finishing, *console_only, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # No file bound: each line goes to the sys.stdout of the moment it is written.
        logger_factory=_line_logger_factory,
        cache_logger_on_first_use=True,
    )
    # Libraries log through the stdlib: render them the same way, through the same redaction.
    handler = _StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *finishing,
                *console_only,
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
