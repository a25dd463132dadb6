"""Request parameters checked against a JSON Schema (Draft 2020-12), for the WebSocket
methods and the CSC routes alike: the first violation becomes one typed INVALID_PARAMS."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from agent.protocol.errors import ErrorCode, RpcError


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema`, itself checked against the 2020-12 metaschema."""
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def violation(checker: Draft202012Validator, params: Any) -> RpcError | None:
    """INVALID_PARAMS naming the first failing field and rule, or None when `params` fit."""
    problems = sorted(checker.iter_errors(params), key=lambda e: list(e.path))
    if not problems:
        return None
    problem = problems[0]
    path = [str(p) for p in problem.path]
    if problem.validator == "required" and isinstance(problem.instance, dict):
        path += [next(str(k) for k in problem.validator_value if k not in problem.instance)]
    where = "/".join(path) or "params"
    # Name the field and the rule, never echo the value: it may be a PIN.
    return RpcError(ErrorCode.INVALID_PARAMS, f"{where}: fails {problem.validator!r}")
