"""The pool's own rules, read with DescribeUserPool and checked on every row before sending.

What a pool decides and the file must follow (AWS's API reference, DescribeUserPool's
``UserPoolType``):

- its attributes (``SchemaAttributes``): a column that is none of them, such as a ``custom:``
  attribute the pool does not define, is refused for the whole file (Cognito would refuse every
  row: "Attributes did not conform to the schema");
- the attributes it requires (``Required``): a row that creates a user without one is invalid;
- an email or phone number as the username (``UsernameAttributes``): the username must then be
  one;
- whether usernames are case-sensitive (``UsernameConfiguration.CaseSensitive``; a pool without
  the setting is case-sensitive), which decides what a repeat in the file is.

Each failure names its rule and the column, never a value. Where the pool cannot be described
(no ``cognito-idp:DescribeUserPool``, no pool id), the import says so and checks what it can
without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.importer.formats import NOT_ATTRIBUTE_PREFIXES, is_e164, is_email

#: Columns that are not attributes: the job's own fields, and the import job's MFA column.
_NOT_ATTRIBUTES = frozenset({"username", "password", "cognito:username", "cognito:mfa_enabled"})
#: The job types whose rows create a user, so the pool's required attributes apply.
CREATING_TYPES = frozenset({"sign_up", "import_user", "invite_user"})
#: Attributes Cognito sets itself, required or not.
_SET_BY_COGNITO = frozenset({"sub"})
#: Cognito's standard attributes, which every pool has (a pool's schema can only add ``custom:``
#: ones). DescribeUserPool lists them; moto leaves them out when a pool was made with a schema.
STANDARD_ATTRIBUTES = frozenset({
    "address", "birthdate", "email", "email_verified", "family_name", "gender", "given_name",
    "locale", "middle_name", "name", "nickname", "phone_number", "phone_number_verified",
    "picture", "preferred_username", "profile", "sub", "updated_at", "website", "zoneinfo",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class PoolRules:
    """What one pool requires of the rows that go to it."""

    pool_id: str
    attributes: frozenset[str]
    required: frozenset[str]
    username_attributes: frozenset[str]
    case_sensitive: bool

    @classmethod
    def from_description(cls, pool: Mapping[str, Any]) -> PoolRules:
        """From DescribeUserPool's ``UserPool``."""
        schema = pool.get("SchemaAttributes", [])
        names = {str(attribute["Name"]) for attribute in schema}
        required = {str(a["Name"]) for a in schema if a.get("Required")} - _SET_BY_COGNITO
        sensitivity = pool.get("UsernameConfiguration") or {}
        return cls(
            pool_id=str(pool.get("Id", "")),
            attributes=frozenset(names | STANDARD_ATTRIBUTES),
            required=frozenset(required),
            username_attributes=frozenset(pool.get("UsernameAttributes") or ()),
            case_sensitive=bool(sensitivity.get("CaseSensitive", True)),
        )

    def unknown_columns(self, columns: Iterable[str]) -> list[str]:
        """The attribute columns the pool does not have."""
        return sorted(
            name
            for name in columns
            if name not in _NOT_ATTRIBUTES
            and not name.startswith(NOT_ATTRIBUTE_PREFIXES)
            and name not in self.attributes
        )

    def columns_problem(self, columns: Iterable[str]) -> str | None:
        """Why the file's columns cannot go to this pool, or None."""
        unknown = self.unknown_columns(columns)
        if not unknown:
            return None
        return (
            f"column(s) {', '.join(c[:64] for c in unknown[:10])}: not attributes of pool "
            f"{self.pool_id} (DescribeUserPool); Cognito would refuse every row"
        )

    def row_problem(self, job_type: str, fields: Mapping[str, Any]) -> str | None:
        """Why this row breaks one of the pool's rules, or None."""
        unknown = self.unknown_columns(name for name, value in fields.items() if value)
        if unknown:
            return f"{unknown[0][:64]}: not an attribute of pool {self.pool_id}"
        if job_type in CREATING_TYPES:
            missing = sorted(name for name in self.required if not fields.get(name))
            if missing:
                return f"{missing[0]}: the pool requires it"
        username = fields.get("username")
        if self.username_attributes and isinstance(username, str) and username:
            return self._username_problem(username)
        return None

    def _username_problem(self, username: str) -> str | None:
        kinds = []
        if "email" in self.username_attributes:
            if is_email(username):
                return None
            kinds.append("an email address")
        if "phone_number" in self.username_attributes:
            if is_e164(username):
                return None
            kinds.append("a phone number in E.164")
        return f"username: the pool signs users in by {' or '.join(kinds)}, so it must be one"
