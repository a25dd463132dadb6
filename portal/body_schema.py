"""Request bodies checked by JSON Schema (Draft 2020-12, json-schema.org/draft/2020-12):
one schema per JSON route, checked once where the body is read (portal/json_body.py's
`read_json`, the identity service's `_json`).

The requester API's schemas are read from portal/openapi.json (an OpenAPI 3.1 Schema
Object is a 2020-12 schema, OpenAPI 3.1 §4.8.24), local `$ref`s inlined, so the published
contract and the check are one text; the other audiences declare theirs beside their
handlers with the helpers below. A refusal names the first field that breaks a rule in
the body's documented order (the order of `properties`, then array positions), the rule
(the schema keyword) and a sentence saying it; never the value, which may be personal
data or a secret.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

__all__ = ["NOT_BLANK", "BodySchema", "Schema", "Violation", "base64_string", "closed",
           "openapi_component", "openapi_request", "text"]

Schema = dict[str, Any]

NOT_BLANK = r"\S"  # at least one character that is not white space
_TYPES = {"string": "a string", "integer": "an integer", "number": "a number",
          "boolean": "true or false", "array": "a list", "object": "an object",
          "null": "null"}
_FIELD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ANNOTATIONS = frozenset({"description", "title", "default", "examples"})


def closed(properties: Schema, required: Iterable[str] = (), **more: Any) -> Schema:
    """An object with exactly these properties (unknown fields refused)."""
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False, **more}


def text(max_length: int) -> Schema:
    """A string of 1 to `max_length` characters, not only white space."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": NOT_BLANK}


def base64_string(max_bytes: int) -> Schema:
    """Base64 (RFC 4648 §4, padded) of at most `max_bytes` bytes; decoding stays with the
    handler."""
    return {"type": "string", "maxLength": 4 * math.ceil(max_bytes / 3),
            "contentEncoding": "base64"}


@dataclass(frozen=True)
class Violation:
    field: str  # e.g. "signers[0].phone"; "body" for the body itself
    rule: str  # the JSON Schema keyword, e.g. "maxLength"
    text: str  # the rule in words, from the schema only

    def __str__(self) -> str:
        return f"{self.field}: {self.text}"


class BodySchema:
    """A request body's schema, itself checked against the 2020-12 metaschema."""

    def __init__(self, schema: Schema) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self._validator = Draft202012Validator(schema)

    def violation(self, instance: Any) -> Violation | None:
        """The first rule `instance` breaks, in documented field order; None when it fits."""
        errors = list(self._validator.iter_errors(instance))
        if not errors:
            return None
        return _describe(min(errors, key=lambda error: _position(self.schema, error)))


@cache
def _openapi() -> Schema:
    document: Schema = json.loads((resources.files("portal") / "openapi.json").read_text())
    return document


def openapi_request(path: str, method: str) -> BodySchema:
    """The JSON request body schema of `method path` in portal/openapi.json."""
    operation = _openapi()["paths"][path][method.lower()]
    return BodySchema(_inline(operation["requestBody"]["content"]["application/json"]
                              ["schema"], ()))


def openapi_component(name: str) -> Schema:
    """`#/components/schemas/<name>` of portal/openapi.json, its `$ref`s inlined."""
    inlined: Schema = _inline({"$ref": f"#/components/schemas/{name}"}, ())
    return inlined


def _resolve(reference: str) -> Any:
    """A local JSON Pointer (RFC 6901) into the OpenAPI document."""
    if not reference.startswith("#/"):
        raise ValueError(f"only local references are inlined, not {reference}")
    node: Any = _openapi()
    for token in reference[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _inline(node: Any, seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, seen) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str):
        if reference in seen:
            raise ValueError(f"{reference} refers to itself: it cannot be inlined")
        beside = {k: v for k, v in node.items() if k != "$ref"}
        if set(beside) - _ANNOTATIONS:  # a sibling rule would need allOf to keep its meaning
            raise ValueError(f"{reference}: only annotations may stand beside a $ref")
        return {**_inline(_resolve(reference), (*seen, reference)), **beside}
    return {key: _inline(value, seen) for key, value in node.items()}


def _names(schema: Any) -> list[str]:
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return list(properties) if isinstance(properties, dict) else []


def _position(schema: Schema, error: ValidationError) -> tuple[int, ...]:
    """Where the error's field stands in the documented order of the body."""
    key: list[int] = []
    node: Any = schema
    for step in error.absolute_path:
        names = _names(node)
        if isinstance(step, int):
            key.append(step)
            node = node.get("items", {}) if isinstance(node, dict) else {}
        else:
            key.append(names.index(step) if step in names else len(names))
            node = node.get("properties", {}).get(step, {}) if step in names else {}
    names = _names(node)
    if error.validator == "required":
        missing = _missing(error)
        key.append(names.index(missing) if missing in names else len(names))
    elif error.validator == "additionalProperties":
        key.append(len(names))
    return tuple(key)


def _missing(error: ValidationError) -> str:
    present = error.instance if isinstance(error.instance, dict) else {}
    return next(str(name) for name in error.validator_value if name not in present)


def _field(path: Sequence[str | int]) -> str:
    field = ""
    for step in path:
        field += f"[{step}]" if isinstance(step, int) else f".{step}" if field else step
    return field or "body"


def _plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _describe(error: ValidationError) -> Violation:
    path: list[str | int] = list(error.absolute_path)
    rule, value = str(error.validator), error.validator_value
    subschema = error.schema if isinstance(error.schema, dict) else {}
    said = subschema.get("description")
    if rule == "required":
        path.append(_missing(error))
        words = "required"
    elif rule == "additionalProperties":
        known = set(_names(subschema))
        extra = next((str(k) for k in error.instance if k not in known), "")
        path.append(extra if _FIELD_NAME.fullmatch(extra) else "(a field)")
        words = "not a field of this body"
    elif rule == "type":
        kinds = value if isinstance(value, list) else [value]
        words = "must be " + " or ".join(_TYPES.get(str(k), str(k)) for k in kinds)
    elif rule == "minLength":
        words = "must not be empty" if value == 1 else f"at least {_plural(value, 'character')}"
    elif rule == "maxLength":
        words = f"at most {_plural(value, 'character')}"
    elif rule == "minItems":
        words = f"at least {_plural(value, 'item')}"
    elif rule == "maxItems":
        words = f"at most {_plural(value, 'item')}"
    elif rule == "minimum":
        words = f"at least {value}"
    elif rule == "maximum":
        words = f"at most {value}"
    elif rule == "enum":
        words = "one of " + ", ".join(json.dumps(v) for v in value)
    elif rule == "pattern":
        words = ("must not be blank" if value == NOT_BLANK
                 else said if isinstance(said, str) else f"must match {value}")
    elif rule == "const":
        words = said if isinstance(said, str) else f"must be {json.dumps(value)}"
    else:
        words = f"breaks the rule {rule!r}"
    return Violation(_field(path), rule, words)
