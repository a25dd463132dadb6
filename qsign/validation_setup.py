"""The validation service's setup on a local CA, for `qsign demo` and the tests: the CA's
demo trusted list with its scheme operator's certificate (ca/trusted_list.py), and the
portal's seal key certified by the CA (ca/seal.py, portal/seal.py)."""

from __future__ import annotations

from pathlib import Path

from ca.authority import Authority
from ca.registry import Registry
from ca.seal import issue_seal
from ca.trusted_list import SchemeOperator, write_trusted_list
from ground.files import write_atomically
from portal.seal import SEAL_DIR, SEAL_NAME, make_seal
from portal.validation_config import ValidationConfig


def demo_trusted_list(ca_dir: Path, out_dir: Path) -> ValidationConfig:
    """The CA's trusted list, issued afresh, and its operator's certificate in `out_dir`:
    the `[validation]` settings that show the CA's signatures as QES."""
    authority = Authority.load(ca_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    listed = write_trusted_list(authority, out_dir / "trusted-list.xml")
    operator = out_dir / "trusted-list-operator.pem"
    write_atomically(operator, SchemeOperator.of(authority).pem, 0o644)
    return ValidationConfig(trusted_lists=(str(listed),), operator_certs=(operator,))


def seal_from_ca(ca_dir: Path, registry_url: str | None, state_dir: Path,
                 name: str = SEAL_NAME) -> Path:
    """The portal's seal in STATE_DIR/seal/, its certificate issued by the CA once (and
    recorded in the CA's registry at `registry_url`, None: the CA directory's SQLite)."""
    directory = state_dir / SEAL_DIR
    if (directory / "certificate.pem").exists():
        return directory
    authority = Authority.load(ca_dir)
    registry = Registry.open(registry_url, ca_dir)
    try:
        return make_seal(state_dir, lambda spki: (
            issue_seal(authority, registry, spki, authority.config.organization,
                       name).dump(), [authority.issuing.dump()]))
    finally:
        registry.close()
