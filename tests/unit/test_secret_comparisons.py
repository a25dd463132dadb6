"""Secrets are compared in constant time (SECURITY #23), checked on the source.

The modules that compare something a person or a program presents against what the
service holds (OTP codes, SADs, pairing and confirmation codes, bearer tokens, link
MACs, PIN verifiers, identity nonces) call `hmac.compare_digest`, and none of them
compares a secret with `==`, `!=`: those return at the first differing byte, and the
time they take tells an attacker how much of a guess was right.

What counts as a secret is a rule on names (a word such as code, token, digest, SAD,
PIN in the identifier, not qualified by id, mode, error, ...) followed through
assignments in each function. The rule is checked against itself: it must see a
secret in the arguments of each module's real `compare_digest` calls, so that writing
any of them back as `==` fails this test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("ground", "firmware_sim", "agent", "ca", "portal", "qsign")

# The modules that compare secrets (found by grepping compare_digest and secret names).
SECRET_MODULES = frozenset({
    "agent/identity/otp.py",  # TOTP codes
    "agent/identity/hotp.py",  # HOTP codes
    "agent/policy.py",  # SADs (by their SHA-256)
    "agent/journal.py",  # a replay's SAD hash
    "agent/state.py",  # pairing codes
    "agent/confirmations.py",  # confirmation codes
    "agent/protocol/csc.py",  # the CSC bearer token
    "agent/protocol/approve.py",  # the approval page's secret
    "portal/otp.py",  # SMS codes
    "portal/links.py",  # link MACs
    "portal/agent_auth.py",  # the agents' bearer credential
    "portal/routes/access.py",  # the requester's bearer token
    "portal/routes/oidc_signin.py",  # OpenID Connect state and nonce
    "portal/accounts/credentials.py",  # API tokens, sessions, CSRF tokens
    "portal/webhooks.py",  # webhook signatures (HMAC)
    "portal/identity/service.py",  # liveness challenge nonces
    "portal/blobs.py",  # content digests
    "ca/service.py",  # the CA's admin token
    "firmware_sim/state.py",  # the card's PIN and PUK verifiers
})
# compare_digest callers that check a card cryptogram in a protocol (GENERAL
# AUTHENTICATE witnesses), not a code someone presents: outside the name rule.
CRYPTOGRAM_MODULES = frozenset({"agent/tokens/piv.py", "firmware_sim/piv.py"})

SECRET_WORDS = frozenset({
    "secret", "code", "token", "mac", "hmac", "digest", "hexdigest", "sad", "otp", "totp",
    "hotp", "pin", "puk", "nonce", "password", "passcode", "authorization", "bearer",
    "typed", "presented", "stored"})
# A secret word beside one of these names data about the secret, not the secret.
QUALIFIERS = frozenset({
    "id", "ids", "mode", "type", "kind", "status", "state", "error", "reason", "purpose",
    "policy", "ref", "reference", "path", "file", "url", "name", "label", "len", "length",
    "size", "count", "retries", "attempts", "left", "serial", "sw", "method", "algorithm",
    "scheme", "format", "version", "step", "period", "digits", "expires", "ttl", "at",
    "workspace"})
NOT_VALUES = frozenset({"len", "isinstance", "type", "bool", "int", "float", "hasattr",
                        "callable", "id"})
PREDICATES = frozenset({"startswith", "endswith", "isdigit", "isascii", "isprintable",
                        "isalnum", "isalpha", "count", "find", "rfind", "index"})


def words(identifier: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier)
    return {w for w in spaced.lower().split("_") if w}


def secret_name(identifier: str) -> bool:
    found = words(identifier)
    return bool(found & SECRET_WORDS) and not found & QUALIFIERS


def _str_key(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else None


class Scope:
    """One function (or the module's top level) and the names in it that hold a secret
    because they were assigned one."""

    def __init__(self) -> None:
        self.tainted: set[str] = set()

    def secret(self, node: ast.expr) -> bool:
        """Does `node` evaluate to a secret (or a transform of one: encoded, stripped,
        hashed, formatted into a header)? A length, a type or a predicate does not."""
        if isinstance(node, ast.Name):
            return node.id in self.tainted or secret_name(node.id)
        if isinstance(node, ast.Attribute):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id[:1].isupper() and not owner.id.isupper():
                return False  # a class constant (KeyRef.PIN), not a value
            return secret_name(node.attr)
        if isinstance(node, ast.Subscript):
            key = node.slice
            named = _str_key(key)
            if named is not None:
                return secret_name(named)  # body["code"], headers["Authorization"]
            if isinstance(key, ast.Name | ast.Attribute):
                return self.secret(key)  # app[_TOKEN]
            return isinstance(key, ast.Slice) and self.secret(node.value)  # a prefix
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                if func.attr in PREDICATES:
                    return False
                if func.attr == "get":
                    named = _str_key(node.args[0] if node.args else None)
                    return named is not None and secret_name(named)
                return secret_name(func.attr) or self.secret(func.value)
            if isinstance(func, ast.Name):
                if func.id in NOT_VALUES:
                    return False
                return secret_name(func.id) or any(self.secret(a) for a in node.args)
            return False
        if isinstance(node, ast.JoinedStr):
            return any(isinstance(v, ast.FormattedValue) and self.secret(v.value)
                       for v in node.values)
        if isinstance(node, ast.BinOp):
            return self.secret(node.left) or self.secret(node.right)
        return False


def _scopes(tree: ast.Module) -> Iterator[tuple[ast.AST, Scope]]:
    bodies: list[ast.AST] = [tree, *(n for n in ast.walk(tree) if isinstance(
        n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))]
    for body in bodies:
        scope = Scope()
        changed = True
        while changed:  # to a fixed point: typed = code.strip(); raw = typed.encode()
            changed = False
            for node in ast.walk(body):
                pairs: list[tuple[ast.expr, ast.expr]] = []
                if isinstance(node, ast.Assign):
                    pairs = [(t, node.value) for t in node.targets]
                elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
                    pairs = [(node.target, node.value)]
                for target, value in pairs:
                    if (isinstance(target, ast.Name) and target.id not in scope.tainted
                            and scope.secret(value)):
                        scope.tainted.add(target.id)
                        changed = True
        yield body, scope


def plain_comparisons(tree: ast.Module) -> list[tuple[int, str]]:
    """`==` / `!=` with a secret on either side."""
    found = set()
    for body, scope in _scopes(tree):
        for node in ast.walk(body):
            if isinstance(node, ast.Compare) and any(
                    isinstance(op, ast.Eq | ast.NotEq) for op in node.ops) and any(
                    scope.secret(o) for o in (node.left, *node.comparators)):
                found.add((node.lineno, ast.unparse(node)))
    return sorted(found)


def _is_compare_digest(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "compare_digest"
            and isinstance(func.value, ast.Name) and func.value.id == "hmac")


class _AsPlainComparison(ast.NodeTransformer):
    """hmac.compare_digest(a, b) -> (a == b): what the rule must catch."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if _is_compare_digest(node) and len(node.args) == 2:
            return ast.copy_location(ast.Compare(node.args[0], [ast.Eq()], [node.args[1]]),
                                     node)
        return node


def _production_modules() -> dict[str, ast.Module]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[str(path.relative_to(REPO))] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _production_modules()


def test_every_module_calling_compare_digest_is_checked() -> None:
    callers = {name for name, tree in MODULES.items()
               if any(_is_compare_digest(n) for n in ast.walk(tree))}
    assert callers - CRYPTOGRAM_MODULES <= SECRET_MODULES, \
        "a new module compares secrets: add it to SECRET_MODULES"
    assert callers >= CRYPTOGRAM_MODULES


@pytest.mark.parametrize("module", sorted(SECRET_MODULES))
def test_secrets_are_compared_in_constant_time(module: str) -> None:
    tree = MODULES[module]
    calls = [n for n in ast.walk(tree) if _is_compare_digest(n)]
    assert calls, f"{module} never calls hmac.compare_digest"
    assert plain_comparisons(tree) == [], f"{module} compares a secret with == or !="
    # Not vacuous: the rule sees the secret in this module's own constant-time
    # comparisons, so any of them written as == would be caught above.
    rewritten = _AsPlainComparison().visit(ast.parse(ast.unparse(tree)))
    caught = plain_comparisons(rewritten)
    assert caught, f"the rule sees no secret in {module}'s compare_digest calls"


BAD = [
    "def f(code, stored_code):\n    return code == stored_code",
    "def f(request, expected):\n    return request.headers['Authorization'] != expected",
    "def f(request, x):\n    return request.headers.get('Authorization', '') == x",
    "def f(body, otp):\n    return body['OTP'] == otp",
    "def f(session, guess):\n    return session.code_digest == hashlib.sha256(guess).hexdigest()",
    "def f(auth, service):\n    return auth == f'Bearer {service.admin_token}'",
    "def f(raw, x):\n    typed = raw.strip().upper()\n    return x == typed",
    "def f(code, x):\n    typed = code.strip()\n    raw = typed.encode()\n    return x == raw",
    "def f(app, header):\n    return header == app[_TOKEN]",
    "def f(self, tag, payload):\n    return tag == self._mac(payload)",
    "def f(sad, row):\n    return sad[:8] == row",
    "def f(pin, x):\n    return bytes(pin) != x",
]
GOOD = [
    "def f(code):\n    return hmac.compare_digest(code, stored)",
    "def f(token_id, other):\n    return token_id == other",
    "def f(config):\n    return config.otp_mode == 'sms'",
    "def f(code):\n    return len(code) == 6",
    "def f(pin):\n    return pin[6][1] == 0",
    "def f(ref):\n    return ref == KeyRef.PIN",
    "def f(error_code):\n    return error_code != 'OTP_INVALID'",
    "def f(code):\n    return code.isdigit() == True",
    "def f(pin_policy):\n    return pin_policy == PinPolicy.ALWAYS",
]


@pytest.mark.parametrize("source", BAD)
def test_the_rule_catches_a_secret_compared_with_eq(source: str) -> None:
    assert plain_comparisons(ast.parse(source)), source


@pytest.mark.parametrize("source", GOOD)
def test_the_rule_leaves_data_about_secrets_alone(source: str) -> None:
    assert plain_comparisons(ast.parse(source)) == [], source
