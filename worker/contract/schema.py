"""The published JSON Schemas: one document per contract (job, result), as in ``schema/``.

They are pydantic's schemas of the contract's models, made usable by the validators producers run
(python-jsonschema, ajv): ``$schema`` and ``$id``, portable patterns
(:mod:`worker.contract.patterns`), and no OpenAPI-only keywords (``discriminator``; the ``password``
format), which ajv's strict mode refuses. The ``oneOf`` on each job type's ``const`` ``type`` says
what the discriminator did.
"""

from __future__ import annotations

from typing import Any

from worker.contract.jobs import JOB_ADAPTER, JobResult
from worker.contract.patterns import portable_patterns

DRAFT = "https://json-schema.org/draft/2020-12/schema"
JOB_SCHEMA_ID = "urn:cognito-worker:schema:job:1"
RESULT_SCHEMA_ID = "urn:cognito-worker:schema:result:1"


def job_schema() -> dict[str, Any]:
    """The JSON Schema of one job (any of the job types)."""
    return _published(JOB_ADAPTER.json_schema(), JOB_SCHEMA_ID, "A cognito-worker job")


def result_schema() -> dict[str, Any]:
    """The JSON Schema of one result, as published to the results topic."""
    return _published(JobResult.model_json_schema(), RESULT_SCHEMA_ID, "A cognito-worker result")


def _published(schema: dict[str, Any], schema_id: str, title: str) -> dict[str, Any]:
    document: dict[str, Any] = {"$schema": DRAFT, "$id": schema_id, "title": title}
    used: dict[str, str] = {}
    document.update(_portable(schema, portable_patterns(), used))
    if used:
        # Each long pattern once, referred to where it applies ($ref beside other keywords is
        # plain 2020-12).
        definitions = document.setdefault("$defs", {})
        for name, pattern in sorted(used.items()):
            definitions[name] = {"type": "string", "pattern": pattern}
    return document


def _portable(node: Any, patterns: dict[str, tuple[str, str]], used: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_portable(item, patterns, used) for item in node]
    if not isinstance(node, dict):
        return node
    node = _names_by_pattern(node)
    result = {}
    for key, value in node.items():
        if key == "discriminator" and isinstance(value, dict):
            continue
        if key == "format" and value == "password":
            continue
        if key == "pattern" and isinstance(value, str):
            if value not in patterns:
                raise ValueError(
                    f"no portable form of the pattern {value!r}: see worker/contract/patterns.py"
                )
            name, pattern = patterns[value]
            used[name] = pattern
            result["$ref"] = f"#/$defs/{name}"
            continue
        result[key] = _portable(value, patterns, used)
    return result


def _names_by_pattern(node: dict[str, Any]) -> dict[str, Any]:
    """pydantic writes ``dict[Name, Value]`` as ``patternProperties``, which lets a key that does
    not match through unchecked; the worker refuses it. Say it as the worker means it: every key
    matches (``propertyNames``), every value is a ``Value`` (``additionalProperties``)."""
    pattern_properties = node.get("patternProperties")
    if not isinstance(pattern_properties, dict) or len(pattern_properties) != 1:
        return node
    ((pattern, value_schema),) = pattern_properties.items()
    rewritten = {k: v for k, v in node.items() if k != "patternProperties"}
    rewritten["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
    rewritten["additionalProperties"] = value_schema
    return rewritten
