"""portal/body_schema.py on its own: the requester API's schemas are portal/openapi.json's
(references inlined, the enums the code's), a refusal names the first field in the body's
documented order and the rule, and never the value."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from portal import legal
from portal.body_schema import BodySchema, closed, openapi_component, openapi_request, text
from portal.errors import Code
from portal.routes import agent_sms, requester

OPENAPI_BODIES = [("/api/v1/transactions", "post"),
                  ("/api/v1/transactions/{id}/messages", "post"),
                  ("/api/v1/sms-otp/send", "post"), ("/api/v1/sms-otp/verify", "post")]


def _refs(node: Any) -> int:
    if isinstance(node, dict):
        return int("$ref" in node) + sum(_refs(v) for v in node.values())
    if isinstance(node, list):
        return sum(_refs(v) for v in node)
    return 0


@pytest.mark.parametrize(("path", "method"), OPENAPI_BODIES)
def test_requester_api_bodies_are_the_openapi_documents(path: str, method: str) -> None:
    schema = openapi_request(path, method).schema
    assert _refs(schema) == 0
    assert schema["additionalProperties"] is False


def test_the_routes_check_with_the_openapi_schemas() -> None:
    assert requester.NEW_TRANSACTION.schema == openapi_request("/api/v1/transactions",
                                                               "post").schema
    assert agent_sms.VERIFY.schema == openapi_request("/api/v1/sms-otp/verify", "post").schema
    signers = requester.NEW_TRANSACTION.schema["properties"]["signers"]["items"]
    assert signers["properties"]["email"] == openapi_component("Email")


def test_the_contracts_enums_are_the_codes() -> None:
    spec = json.loads((resources.files("portal") / "openapi.json").read_text())
    assert spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"] == \
        [code.value for code in Code]
    signer = openapi_request("/api/v1/transactions", "post").schema["properties"]["signers"]
    assert tuple(signer["items"]["properties"]["lang"]["enum"]) == legal.LANGS


def test_the_first_field_in_documented_order_is_named() -> None:
    schema = openapi_request("/api/v1/transactions", "post")
    # requester.email comes before the missing documents, as the fields are documented
    problem = schema.violation({"title": "x", "requester": {"name": "a", "email": "nope"}})
    assert problem is not None
    assert (problem.field, problem.rule) == ("requester.email", "pattern")
    assert str(problem) == "requester.email: an e-mail address"
    problem = schema.violation({"requester": {"name": "a", "email": "nope"}})
    assert problem is not None and (problem.field, problem.rule) == ("title", "required")


@pytest.mark.parametrize(("value", "rule"), [
    (918273, "type"), ("", "minLength"), ("   ", "pattern"), ("SECRET" * 4, "maxLength")])
def test_a_refusal_never_carries_the_value(value: Any, rule: str) -> None:
    schema = BodySchema(closed({"pin": text(20)}, required=["pin"]))
    problem = schema.violation({"pin": value})
    assert problem is not None and (problem.field, problem.rule) == ("pin", rule)
    assert str(problem).startswith("pin: ")
    assert "SECRET" not in str(problem) and "918273" not in str(problem)


def test_an_unknown_field_is_named_only_when_it_is_a_plain_name() -> None:
    schema = BodySchema(closed({}))
    problem = schema.violation({"extra": 1})
    assert problem is not None and (problem.field, problem.rule) == ("extra",
                                                                     "additionalProperties")
    problem = schema.violation({"\u202e<script>" * 20: 1})
    assert problem is not None and problem.field == "(a field)"


@pytest.mark.parametrize(("number", "fits"), [
    ("+33612345678", True), ("+33 6 12 34 56 78", True), ("+1 2025550123", True),
    ("0612345678", False), ("+33612345678x", False), ("+0612345678", False),
    ("+3361234567890123", False), ("+33  612345678", False), ("+33612", False)])
def test_the_phone_is_e164_with_single_spaces(number: str, fits: bool) -> None:
    schema = BodySchema(closed({"phone": openapi_component("Phone")}))
    assert (schema.violation({"phone": number}) is None) is fits
