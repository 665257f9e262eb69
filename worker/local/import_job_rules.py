"""The local front's reading of a user import job's file, row by row, as AWS's guide describes it
("Creating the user import CSV file"; "Viewing the user pool import results").

What the guide states is checked as it states it: every column of the pool's header present,
``cognito:username`` without spaces or tabs, ``cognito:mfa_enabled`` set and agreeing with the
pool's MFA setting, an auto-verified attribute true with the address or number it verifies, the
pool's required attributes, at most 16,000 characters a row, ``birthdate`` as mm/dd/yyyy,
``updated_at`` in epoch seconds, commas in a value escaped with a backslash, values trimmed. The
log lines for success, an existing user and a missing auto-verified attribute are the guide's
own; the other failure texts are this front's, in the same form, since the guide gives none.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

#: The standard attributes GetCSVHeader lists (the guide's sample answer), before custom ones.
STANDARD_COLUMNS = (
    "name", "given_name", "family_name", "middle_name", "nickname", "preferred_username",
    "profile", "picture", "website", "email", "email_verified", "gender", "birthdate",
    "zoneinfo", "locale", "phone_number", "phone_number_verified", "address", "updated_at",
)  # fmt: skip
USERNAME = "cognito:username"
MFA_ENABLED = "cognito:mfa_enabled"
MAX_ROW_CHARACTERS = 16_000
SUCCEEDED = "The import succeeded."
EXISTS = "The user already exists."
NO_AUTO_VERIFIED = (
    "The User Record does not set any of the auto verified attributes to true. "
    "(Example: email_verified to true)."
)
_VERIFIES = {"email": "email_verified", "phone_number": "phone_number_verified"}
_BIRTHDATE = re.compile(r"^\d{2}/\d{2}/\d{4}$")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


class UnreadableJobFile(Exception):
    """The file as a whole cannot be read: the job fails (the guide: "unable to parse")."""


@dataclass(frozen=True, slots=True)
class PoolRules:
    """What a row is checked against: the pool's header and settings."""

    header: Sequence[str]
    auto_verified: Sequence[str]  # "email", "phone_number"
    mfa: str  # OFF, ON, OPTIONAL
    required: frozenset[str]


@dataclass(frozen=True, slots=True)
class JobRow:
    """A row to import: its file line, username and attributes; or the reason it fails."""

    line: int
    username: str
    attributes: dict[str, str]
    failure: str | None = None


def split_cells(text: str) -> list[str]:
    """A line's cells: split at commas not escaped, ``\\,`` made a comma, each value trimmed."""
    return [cell.replace("\\,", ",").strip() for cell in _UNESCAPED_COMMA.split(text)]


def job_rows(content: bytes, rules: PoolRules) -> Iterator[JobRow]:
    """Every row of the file, checked; raise :class:`UnreadableJobFile` for a file-wide fault."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableJobFile("the file is not UTF-8") from None
    lines = text.split("\n")
    header = split_cells(lines[0].rstrip("\r"))
    if set(header) != set(rules.header) or len(header) != len(rules.header):
        raise UnreadableJobFile(
            "the header is not the pool's (GetCSVHeader): every column, none other, once each"
        )
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line:
            continue
        yield _row(number, line, header, rules)


def _row(number: int, text: str, header: Sequence[str], rules: PoolRules) -> JobRow:
    if len(text) > MAX_ROW_CHARACTERS:
        return JobRow(number, "", {}, "The row is longer than 16,000 characters.")
    cells = split_cells(text)
    if len(cells) != len(header):
        return JobRow(number, "", {}, "The row does not have the header's number of columns.")
    values = {name: cell for name, cell in zip(header, cells, strict=True) if cell}
    username = values.pop(USERNAME, "")
    mfa = values.pop(MFA_ENABLED, "").lower()
    failure = _failure(username, mfa, values, rules)
    return JobRow(number, username, values, failure)


def _failure(username: str, mfa: str, values: dict[str, str], rules: PoolRules) -> str | None:
    if not username:
        return "The cognito:username value is missing."
    if any(c in username for c in " \t"):
        return "The cognito:username value contains a space or a tab."
    if mfa not in ("true", "false"):
        return "The cognito:mfa_enabled value must be true or false."
    if (rules.mfa == "ON" and mfa != "true") or (rules.mfa == "OFF" and mfa != "false"):
        return f"The cognito:mfa_enabled value disagrees with the user pool's MFA ({rules.mfa})."
    for flag in ("email_verified", "phone_number_verified"):
        if flag in values:
            values[flag] = values[flag].lower()
            if values[flag] not in ("true", "false"):
                return f"The {flag} value must be true or false."
    verified = [a for a in rules.auto_verified if values.get(_VERIFIES[a]) == "true"]
    if not verified or (len(rules.auto_verified) == 1 and len(verified) != 1):
        return NO_AUTO_VERIFIED
    for attribute, flag in _VERIFIES.items():
        if values.get(flag) == "true" and not values.get(attribute):
            return f"The {flag} value is true but {attribute} is missing."
    missing = sorted(name for name in rules.required if not values.get(name))
    if missing:
        return f"The required attribute(s) {', '.join(missing)} are missing."
    if "birthdate" in values and not _BIRTHDATE.match(values["birthdate"]):
        return "The birthdate value is not in the format mm/dd/yyyy."
    if "updated_at" in values and not values["updated_at"].isdigit():
        return "The updated_at value is not a time in epoch seconds."
    return None
