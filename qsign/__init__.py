"""qsign: qualified electronic signatures with hardware tokens."""

__version__ = "0.1.0"
