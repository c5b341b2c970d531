"""Read-only queries behind the pages, the exports and the API.

Each function takes an explicit :class:`~sqlalchemy.orm.Session` first, runs a few
set-based statements (GROUP BY in the database, never a loop over rows) and returns plain
dataclasses, so views, the CLI and tests read the same figures. Nothing here writes.
"""
