"""OpenAI's published response schemas for the endpoints /v1/ serves, vendored, and a validator for them.

tests/api/openai_schemas.json holds the named schemas below and everything they reference, cut from OpenAI's
openapi.yaml (shared/openai/openapi.yaml beside the repository, read-only; CI's clone may not have it), with
prose dropped and 3.0-style `nullable` rewritten the 3.1 way (the document declares 3.1 but still uses it). To
refresh it: ``.venv/bin/python -m tests.api.openai_schema ../shared/openai/openapi.yaml``.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource

VENDORED = Path(__file__).with_name("openai_schemas.json")
ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ListModelsResponse",
    "ErrorResponse",
)


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _strip(node: object) -> object:
    """Drop prose and examples: only what validation reads is kept (property names stay, whatever they are)."""
    if isinstance(node, dict):
        skip = ("description", "example", "examples", "x-oaiMeta", "x-stainless-const", "deprecated")
        kept = {key: _strip(value) for key, value in node.items() if key not in skip}
        if isinstance(node.get("properties"), dict):
            kept["properties"] = {key: _strip(value) for key, value in node["properties"].items()}
        return _nullable(kept)
    if isinstance(node, list):
        return [_strip(value) for value in node]
    return node


def _nullable(node: dict) -> dict:
    """Rewrite OpenAPI 3.0's `nullable: true`, which the 3.1 document still uses, as 3.1 says it."""
    if not node.pop("nullable", False):
        return node
    if isinstance(node.get("enum"), list):
        node["enum"] = [*node["enum"], None]
    if isinstance(node.get("type"), str):
        return {**node, "type": [node["type"], "null"]}
    return {"anyOf": [node, {"type": "null"}]}


def vendor(spec_path: str) -> None:
    import yaml

    spec = yaml.load(Path(spec_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schemas = spec["components"]["schemas"]
    wanted, todo = {}, list(ROOTS)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted[name] = _strip(schemas[name])
            todo += sorted(_refs(schemas[name]))
    document = {
        "$comment": f"Cut from OpenAI's openapi.yaml version {spec['info']['version']} by tests/api/openai_schema.py.",
        "components": {"schemas": dict(sorted(wanted.items()))},
    }
    VENDORED.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")


@cache
def _document() -> dict:
    return json.loads(VENDORED.read_text())


def validate(name: str, instance: object) -> None:
    """Raise jsonschema.ValidationError unless instance matches OpenAI's schema `name`."""
    document = _document()
    registry = Registry().with_resource("urn:openai", Resource.opaque(document))
    schema = {"$ref": f"urn:openai#/components/schemas/{name}"}
    OAS31Validator(schema, registry=registry).validate(instance)


if __name__ == "__main__":
    vendor(sys.argv[1])
