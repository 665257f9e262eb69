"""The formats Cognito enforces on a user's values, checked on every row before anything is sent.

Cognito refuses an ``email`` that is not an address, a ``phone_number`` that is not E.164 (``+``
and up to 15 digits), an attribute value over 2048 characters, a username over 128 and a password
outside 6-256 (its API model's limits, and the least any pool's password policy asks: a policy's
``MinimumLength`` is at least 6). Caught here, such a row is ``invalid`` with its line and rule;
sent, it costs a job, a Cognito call and an error result each, and an emulator may answer it with
an HTTP 500 that the worker retries. The email check is a shape (a name, one ``@``, a domain with a
dot, no spaces), not Cognito's own rule, which AWS does not publish. Messages name the column and
the rule, never the value.
"""

from __future__ import annotations

import re
from typing import Any

MAX_ATTRIBUTE_VALUE_CHARS = 2048  # AttributeValueType
MAX_USERNAME_CHARS = 128  # UsernameType
MIN_PASSWORD_CHARS = 6  # PasswordPolicyMinLengthType: no pool's policy takes fewer
MAX_PASSWORD_CHARS = 256  # PasswordType
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_E164 = re.compile(r"\+[0-9]{1,15}")
# Columns that are not user attributes (see mapping): their values are checked elsewhere.
_NOT_ATTRIBUTES = ("username", "password")
NOT_ATTRIBUTE_PREFIXES = ("validation_data.", "client_metadata.")


def is_email(value: str) -> bool:
    """Whether ``value`` has the shape of an email address."""
    return _EMAIL.fullmatch(value) is not None


def is_e164(value: str) -> bool:
    """Whether ``value`` is a phone number in E.164."""
    return _E164.fullmatch(value) is not None


def attribute_problem(name: str, value: str) -> str | None:
    """The rule a user attribute's value breaks, if any."""
    if len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
        return (
            f"{name[:64]}: longer than {MAX_ATTRIBUTE_VALUE_CHARS} characters, "
            "Cognito's limit for an attribute value"
        )
    if name == "email" and not is_email(value):
        return "email: not an email address (a name, one @, a domain with a dot; no spaces)"
    if name == "phone_number" and not is_e164(value):
        return (
            "phone_number: not an E.164 number (+ and 1 to 15 digits, no spaces or dashes, "
            "e.g. +447700900123)"
        )
    return None


def password_problem(value: str) -> str | None:
    """The rule a password breaks, if any (its length only: the pool's policy is the pool's)."""
    if len(value) < MIN_PASSWORD_CHARS:
        return (
            f"password: shorter than {MIN_PASSWORD_CHARS} characters, which no Cognito "
            "password policy accepts"
        )
    if len(value) > MAX_PASSWORD_CHARS:
        return f"password: longer than {MAX_PASSWORD_CHARS} characters, Cognito's limit"
    return None


def username_problem(value: str) -> str | None:
    """The length rule a username breaks, if any (its characters are the contract's to check)."""
    if len(value) > MAX_USERNAME_CHARS:
        return f"username: longer than {MAX_USERNAME_CHARS} characters, Cognito's limit"
    return None


def import_job_row_problem(fields: dict[str, Any]) -> str | None:
    """The first format rule a row bound for Cognito's import job breaks, if any."""
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            continue
        if name == "username":
            problem = username_problem(value)
        elif name in _NOT_ATTRIBUTES or name.startswith(NOT_ATTRIBUTE_PREFIXES):
            continue
        else:
            problem = attribute_problem(name, value)
        if problem is not None:
            return problem
    return None
