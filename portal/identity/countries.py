"""The states the reference identity service knows: ICAO 9303-3 §5 three-letter codes
(as printed in the MRZ), their ISO 3166-1 alpha-2 codes (for ETSI EN 319 412-1
semantics identifiers) and English names (for specimen documents).

Deliberately the EU, the EEA and neighbours: a vendor's service knows the world; this
one knows what its accepted-document list can name. ICAO's fictional "UTO" (Utopia,
the state of Doc 9303's specimens) has no alpha-2 code and can never back evidence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class State:
    mrz_code: str  # as in the MRZ, without fillers ('D' for Germany: 9303-3 §5)
    alpha2: str | None
    name: str


_STATES = (
    State("AUT", "AT", "Austria"), State("BEL", "BE", "Belgium"),
    State("BGR", "BG", "Bulgaria"), State("HRV", "HR", "Croatia"),
    State("CYP", "CY", "Cyprus"), State("CZE", "CZ", "Czechia"),
    State("DNK", "DK", "Denmark"), State("EST", "EE", "Estonia"),
    State("FIN", "FI", "Finland"), State("FRA", "FR", "France"),
    State("D", "DE", "Germany"), State("GRC", "GR", "Greece"),
    State("HUN", "HU", "Hungary"), State("IRL", "IE", "Ireland"),
    State("ITA", "IT", "Italy"), State("LVA", "LV", "Latvia"),
    State("LTU", "LT", "Lithuania"), State("LUX", "LU", "Luxembourg"),
    State("MLT", "MT", "Malta"), State("NLD", "NL", "Netherlands"),
    State("POL", "PL", "Poland"), State("PRT", "PT", "Portugal"),
    State("ROU", "RO", "Romania"), State("SVK", "SK", "Slovakia"),
    State("SVN", "SI", "Slovenia"), State("ESP", "ES", "Spain"),
    State("SWE", "SE", "Sweden"), State("ISL", "IS", "Iceland"),
    State("LIE", "LI", "Liechtenstein"), State("NOR", "NO", "Norway"),
    State("CHE", "CH", "Switzerland"), State("GBR", "GB", "United Kingdom"),
    State("MCO", "MC", "Monaco"), State("AND", "AD", "Andorra"),
    State("SMR", "SM", "San Marino"), State("USA", "US", "United States"),
    State("CAN", "CA", "Canada"), State("UTO", None, "Utopia"),
)
BY_MRZ_CODE = {s.mrz_code: s for s in _STATES}
# People write DEU for Germany; the MRZ says D.
ALIASES = {"DEU": "D"}


def lookup(code: str) -> State | None:
    """A state by its MRZ code (fillers stripped) or its ISO alpha-3 alias."""
    code = code.rstrip("<").upper()
    return BY_MRZ_CODE.get(ALIASES.get(code, code))
