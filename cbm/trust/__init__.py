"""Trust signals: per State, region and year, each 0-100 or "no data", from the facts and the
findings, by a versioned method (:mod:`cbm.trust.method`), computed by
:mod:`cbm.trust.compute` and read by the pages through :mod:`cbm.trust.store`."""

from cbm.trust.method import INDEX, METHOD_VERSION, SIGNAL_IDS, WEIGHTS

__all__ = ["INDEX", "METHOD_VERSION", "SIGNAL_IDS", "WEIGHTS"]
