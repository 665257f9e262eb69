"""From a row of the file to a job of the contract: which column goes where, and the job's id.

A row's ``username`` and ``password`` columns become the job's fields of those names; columns named
``validation_data.NAME`` and ``client_metadata.NAME`` go into those maps; every other column is a
user attribute (``email``, ``given_name``, ``custom:plan``...). A job type that has no place for a
column (``forgot_password`` takes a username only) ignores it, and the import says so once. An
empty cell, or a JSON ``null``, means "not given".

Each job is checked with the worker's own decoder, so a row the worker would reject is refused here
with the very reason the worker would publish; before it, the formats Cognito itself enforces
(``formats``), which the contract leaves to Cognito.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from worker.contract.jobs import Job, MalformedJob, decode_job
from worker.importer.formats import attribute_problem, password_problem
from worker.importer.job_types import IMPORTABLE_TYPES

VALIDATION_DATA_PREFIX = "validation_data."
CLIENT_METADATA_PREFIX = "client_metadata."

# Contract fields the import sets itself; a column of that name would be ambiguous.
_RESERVED_COLUMNS = frozenset(
    {"version", "type", "job_id", "client_id", "batch", "user_context", "user_attributes"}
    | {"validation_data", "client_metadata", "confirmation_code", "force_alias_creation"}
    | {"delivery_mediums"}
)
IMPORT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class MappingError(Exception):
    """Raised when the file's columns cannot make jobs of the chosen type (a missing ``username``
    column, a reserved name); the message names the columns."""


def _job_models() -> dict[str, type[BaseModel]]:
    union = typing.get_args(Job)[0]
    models: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        (type_name,) = typing.get_args(model.model_fields["type"].annotation)
        models[type_name] = model
    return models


def importable_types() -> list[str]:
    """The job types this worker's contract knows and an import may send."""
    known = _job_models()
    return [name for name in IMPORTABLE_TYPES if name in known]


@dataclass(frozen=True, slots=True)
class MappedRow:
    """A row made into a job: the job when the contract accepts it, else the reason."""

    line: int
    username: str | None
    job: Job | None
    problem: str | None


@dataclass
class JobMapper:
    """Builds the jobs of one import: one job type, one import id, one optional app client."""

    job_type: str
    import_id: str
    client_id: str | None = None
    ignored_columns: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        models = _job_models()
        if self.job_type not in importable_types():
            raise MappingError(
                f"--type {self.job_type}: an import sends one of {', '.join(importable_types())}"
            )
        fields = models[self.job_type].model_fields
        self._takes_password = "password" in fields
        self._takes_attributes = "user_attributes" in fields
        self._takes_validation_data = "validation_data" in fields
        self._takes_batch = "batch" in fields

    def job_id(self, line: int) -> str:
        """The job id of the row on ``line``: the same for every run of this import."""
        return f"{self.import_id}:{self.job_type}:{line}"

    @property
    def batch_label(self) -> str | None:
        """The ``batch`` every job carries, when the contract has the field."""
        return self.import_id if self._takes_batch else None

    def check_columns(self, columns: Iterable[str], *, password_required: bool = True) -> None:
        """Refuse a header that cannot make jobs; remember the columns this type ignores.

        ``password_required=False`` when rows without a password go another way (an import
        job), so a file without the column is a file of such rows."""
        names = list(columns)
        if "username" not in names:
            raise MappingError("the file has no 'username' column")
        if self._takes_password and password_required and "password" not in names:
            raise MappingError(f"a {self.job_type} import needs a 'password' column")
        reserved = sorted(_RESERVED_COLUMNS.intersection(names))
        if reserved:
            raise MappingError(
                f"column(s) {', '.join(reserved)}: set by the import itself, not by the file"
            )

    def map(self, line: int, fields: dict[str, Any]) -> MappedRow:
        """Make the row's job and check it as the worker would."""
        username = fields.get("username")
        username = username if isinstance(username, str) and username else None
        try:
            document = self._document(line, fields)
        except ValueError as error:
            return MappedRow(line, username, None, str(error))
        try:
            job = decode_job(json.dumps(document, ensure_ascii=False))
        except MalformedJob as error:
            return MappedRow(line, username, None, error.reason)
        return MappedRow(line, username, job, None)

    def _document(self, line: int, fields: dict[str, Any]) -> dict[str, Any]:
        document: dict[str, Any] = {
            "version": 1,
            "type": self.job_type,
            "job_id": self.job_id(line),
        }
        if self.client_id is not None:
            document["client_id"] = self.client_id
        if self.batch_label is not None:
            document["batch"] = self.batch_label
        attributes: dict[str, str] = {}
        validation_data: dict[str, str] = {}
        client_metadata: dict[str, str] = {}
        for name, raw in fields.items():
            value = _text(name, raw)
            if value is None:
                continue
            if name in _RESERVED_COLUMNS:
                raise ValueError(f"{name}: set by the import itself, not by the file")
            if name == "username":
                document["username"] = value
            elif name == "password":
                if self._takes_password and (problem := password_problem(value)):
                    raise ValueError(problem)
                self._put(document, "password", value, taken=self._takes_password)
            elif name.startswith(CLIENT_METADATA_PREFIX):
                client_metadata[name.removeprefix(CLIENT_METADATA_PREFIX)] = value
            elif name.startswith(VALIDATION_DATA_PREFIX):
                key = name.removeprefix(VALIDATION_DATA_PREFIX)
                self._put(validation_data, key, value, self._takes_validation_data, name)
            else:
                if self._takes_attributes and (problem := attribute_problem(name, value)):
                    raise ValueError(problem)
                self._put(attributes, name, value, taken=self._takes_attributes)
        for name, values in (
            ("user_attributes", attributes),
            ("validation_data", validation_data),
            ("client_metadata", client_metadata),
        ):
            if values:
                document[name] = values
        return document

    def _put(
        self,
        target: dict[str, Any],
        key: str,
        value: str,
        taken: bool,
        column: str | None = None,
    ) -> None:
        if taken:
            target[key] = value
        elif len(self.ignored_columns) < _MAX_IGNORED_NAMES:
            self.ignored_columns.add(column or key)


_MAX_IGNORED_NAMES = 20


def _text(name: str, raw: Any) -> str | None:
    """A cell as the text sent to Cognito; None when not given. JSON booleans become the
    ``"true"``/``"false"`` Cognito's attributes take."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str):
        return raw
    raise ValueError(f"{name[:64]}: must be text, not a JSON {type(raw).__name__}")
