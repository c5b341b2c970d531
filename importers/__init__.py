"""Importers: one module per source format behind one small interface.

They arrive with the importers issue.

Every importer writes through :mod:`cbm.services`, so files, feeds, forms and the API are
validated by the same rules.
"""
