"""The demo data set: a deterministic, realistic history for 2012-2025 with planted cases.

- :mod:`cbm.demo.generator` builds the rows (pure data, no database);
- :mod:`cbm.demo.loader` writes them through the services (``cbm demo load``);
- :mod:`cbm.demo.planted` lists the planted compliance cases
  (rendered to ``docs/demo-planted-cases.md``).
"""
