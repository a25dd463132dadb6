"""qsign: qualified electronic signatures with hardware tokens. This package is the
top: the `qsign` command and `qsign demo` compose the parts; nothing imports it."""

from ground import __version__

__all__ = ["__version__"]
