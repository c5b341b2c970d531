"""Dashboards: the Flask blueprint, chart builders and vendored assets.

- :mod:`dashboards.views`: the blueprint (``/dashboards``): overview, region, State and
  method pages, and a CSV per chart;
- :mod:`dashboards.queries`: the set-based statements the pages read;
- :mod:`dashboards.charts`: chart data and ECharts option dictionaries built in Python,
  sparklines drawn as SVG, the colour-blind-safe palettes;
- ``static/dashboards/vendor/``: Apache ECharts and the region map, with their licences,
  fetched and derived by ``tools/vendor.py``.
"""

from __future__ import annotations

from dashboards.views import bp

__all__ = ["bp"]
