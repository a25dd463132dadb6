"""The portal's `[validation]` table (portal.toml): where the validation service finds its
trusted lists (ETSI TS 119 612, files or URLs) and the scheme operators' certificates
that sign them, how many validations a client address may ask, and the service's seal
(the key and certificate that seal the PDF reports). An unknown key is an error naming
its path, as in portal/config.py.

    [validation]
    trusted_lists = ["/etc/qsign/tl.xml", "https://ec.europa.eu/tools/lotl/eu-lotl.xml"]
    operator_certs = ["/etc/qsign/tl-operator.pem"]
    per_address_per_hour = 60
    use_expired_lists = true                    # a list past its NextUpdate: used, flagged
    seal_key = "/etc/qsign/seal.key"            # default: STATE_DIR/seal/key.pem
    seal_certificate = "/etc/qsign/seal.pem"    # default: STATE_DIR/seal/certificate.pem
    seal_chain = ["/etc/qsign/issuing.pem"]     # default: STATE_DIR/seal/chain.pem
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ValidationConfig:
    trusted_lists: tuple[str, ...] = ()
    operator_certs: tuple[Path, ...] = ()
    # Validations one client address may ask per hour at /validate and the API.
    per_address_per_hour: int = 60
    # A trusted list past its NextUpdate (TS 119 612 §5.3.15): used (flagged) or not.
    use_expired_lists: bool = True
    seal_key: Path | None = None
    seal_certificate: Path | None = None
    seal_chain: tuple[Path, ...] = ()

    @classmethod
    def from_table(cls, table: Any, source: str) -> ValidationConfig:
        """The `[validation]` table; ValueError naming the key otherwise."""
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [validation] must be a table")
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            where = f"{source}: validation.{key}"
            if key not in known:
                raise ValueError(f"{where}: unknown key")
            if key == "per_address_per_hour":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{where}: a positive integer")
                values[key] = value
            elif key == "use_expired_lists":
                if not isinstance(value, bool):
                    raise ValueError(f"{where}: true or false")
                values[key] = value
            elif key in ("trusted_lists", "operator_certs", "seal_chain"):
                if not isinstance(value, list) or not all(
                        isinstance(v, str) and v for v in value):
                    raise ValueError(f"{where}: a list of paths or URLs")
                values[key] = tuple(value) if key == "trusted_lists" else tuple(
                    Path(v).expanduser() for v in value)
            else:
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{where}: a path")
                values[key] = Path(value).expanduser()
        return cls(**values)
