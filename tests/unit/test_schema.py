"""The published JSON Schemas: what the command prints, what is checked in, and that their
patterns mean exactly what the worker checks."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError

from worker.contract.jobs import JobResult, JobType, MalformedJob, decode_job
from worker.contract.patterns import (
    _COGNITO_NAME_RANGES,
    _NO_WHITE_SPACE_RANGES,
    _WORD_OR_PLUS_RANGES,
    COGNITO_NAME,
    JOB_ID,
    NO_WHITE_SPACE,
    WORD_OR_PLUS,
    _parse,
    derive_ranges,
    job_id_ranges,
    portable_patterns,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {kind: ROOT / "schema" / f"{kind}.schema.json" for kind in ("job", "result")}


def examples(kind: str) -> list[dict[str, Any]]:
    """Every JSON object in the block of docs/contract.md marked ``example {kind}``."""
    text = (ROOT / "docs" / "contract.md").read_text()
    block = text.split(f"<!-- example {kind}:", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    decoder, objects, position = json.JSONDecoder(), [], 0
    while block[position:].strip():
        while block[position].isspace():
            position += 1
        document, position = decoder.raw_decode(block, position)
        objects.append(document)
    return objects


def validator(kind: str) -> Any:
    schema = json.loads(SCHEMAS[kind].read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("kind", ["job", "result"])
def test_the_checked_in_schema_is_what_the_command_prints(kind: str) -> None:
    printed = subprocess.run([sys.executable, "-m", "worker", "schema", kind],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert json.loads(printed.stdout) == json.loads(SCHEMAS[kind].read_text())
    schema = json.loads(printed.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:cognito-worker:schema:{kind}:1"
    assert "\\p{" not in printed.stdout


def test_every_example_job_is_valid_for_the_schema_and_the_worker() -> None:
    jobs = examples("jobs")
    assert {job["type"] for job in jobs} == {job_type.value for job_type in JobType}
    for job in jobs:
        validator("job").validate(job)
        decode_job(json.dumps(job))


def test_every_example_result_is_valid_for_the_schema_and_the_model() -> None:
    results = examples("results")
    assert len(results) == 3
    for result in results:
        validator("result").validate(result)
        JobResult.model_validate(result)


BROKEN = [
    {"username": "two words"},
    {"username": "trailing-newline\n"},
    {"username": "zero\u200bwidth"},  # a format character (Cf): not in Cognito's classes
    {"username": "x" * 129},
    {"password": "has space"},
    {"password": "ends-in-newline\n"},
    {"user_attributes": {"bad name": "x"}},
    {"user_attributes": {"email": 5}},
    {"batch": "two words"},
    {"batch": "é"},
    {"client_id": "with-hyphen"},
    {"unknown_field": 1},
    {"type": "sign_in"},
    {"version": 2},
    {"version": True},
    {"version": "1"},
    {"job_id": "nul\u0000inside"},
    {"job_id": "non-character\uffff"},
    {"job_id": "right-to-left\u202eoverride"},
    {"job_id": "tab\tinside"},
    {"job_id": ""},
]


@pytest.mark.parametrize("change", BROKEN, ids=[json.dumps(c)[:30] for c in BROKEN])
def test_the_schema_refuses_what_the_worker_refuses(change: dict[str, Any]) -> None:
    job = {**examples("jobs")[0], **change}
    with pytest.raises(MalformedJob):
        decode_job(json.dumps(job))
    assert not validator("job").is_valid(job)


def test_a_version_written_as_a_float_is_refused_by_the_worker_though_json_schema_cannot() -> None:
    # JSON Schema compares numbers by value: 1.0 is the integer 1 to every validator, so the
    # schema cannot refuse it. The worker reads the text and does (docs/contract.md says so).
    job = {**examples("jobs")[0], "version": 1.0}
    with pytest.raises(MalformedJob, match="version"):
        decode_job(json.dumps(job))
    assert validator("job").is_valid(job)


# --------------------------------------------------------------------------- the patterns

CLASSES = [
    (COGNITO_NAME, _parse(_COGNITO_NAME_RANGES)),
    (JOB_ID, job_id_ranges()),
    (WORD_OR_PLUS, _parse(_WORD_OR_PLUS_RANGES)),
    (NO_WHITE_SPACE, _parse(_NO_WHITE_SPACE_RANGES)),
]


@pytest.mark.parametrize(
    ("pattern", "ranges"), CLASSES, ids=["name", "job_id", "client_id", "secret"]
)
def test_every_code_point_is_judged_as_the_worker_judges_it(
    pattern: str, ranges: list[tuple[int, int]]
) -> None:
    # Exhaustive over U+0000..U+10FFFF: the ranges are the code points the worker accepts...
    assert ranges == derive_ranges(pattern)
    # ...and the published pattern, run by Python's re as python-jsonschema runs it, matches
    # exactly those one-character texts.
    compiled = re.compile(portable_patterns()[pattern][1])
    accepted = {cp for first, last in ranges for cp in range(first, last + 1)}
    for code_point in range(0x110000):
        assert (compiled.search(chr(code_point)) is not None) == (code_point in accepted)


def _worker_accepts(pattern: str, text: str) -> bool:
    try:
        TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)]).validate_python(text)
    except ValidationError:
        return False
    return True


texts = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(" \t\n\r\x0b\x0c\x85\xa0\u2028\u200b\ufeff\U0001f600+_-"),
    ),
    max_size=12,
)


@pytest.mark.parametrize("pattern", [p for p, _ in CLASSES] + ["^[A-Za-z0-9._:-]+$"])
@given(text=texts)
def test_whole_texts_are_judged_as_the_worker_judges_them(pattern: str, text: str) -> None:
    published = portable_patterns()[pattern][1]
    assert (re.search(published, text) is not None) == _worker_accepts(pattern, text)
