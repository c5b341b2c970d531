"""cbm: a tracker of compliance with military confidence- and security-building measures."""

__version__ = "0.1.0"
