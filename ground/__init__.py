"""The ground floor: field code every part of qsign shares and nothing above it may be
imported by (ISO 7816-4 status words and BER-TLV, PIV identifiers, the SQL layer,
atomic files, the TRAFFIC log level, bounded JSON, the HTTP connection guard, what
second factors are bound to). It imports no other qsign package."""

__version__ = "0.1.0"
