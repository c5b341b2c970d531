"""Importers: one module per source format behind one small interface.

Every importer writes through :mod:`cbm.services`, so files, feeds, forms and the API are
validated by the same rules.

- :mod:`importers.base` — the interface: :class:`Payload`, :class:`Batch`,
  :class:`Importer`, :class:`ImportFormatError`;
- :mod:`importers.csv_file`, :mod:`importers.xlsx_file`, :mod:`importers.json_feed` — the
  formats (each module documents its shape and limits);
- :mod:`importers.registry` — :func:`importer_for` picks the importer of a payload;
- :mod:`importers.locations` — :func:`open_location` turns a file, folder, glob or URL into
  payloads; :func:`read_location` pairs them with their batches; :func:`mark_imported`
  remembers what was imported.
"""

from importers.base import Batch, Importer, ImportFormatError, Payload
from importers.csv_file import CSVImporter
from importers.json_feed import JSONImporter
from importers.locations import (
    FetchPolicy,
    LocationError,
    mark_imported,
    open_location,
    read_location,
)
from importers.registry import IMPORTERS, detect, importer_for
from importers.xlsx_file import XLSXImporter

__all__ = [
    "IMPORTERS",
    "Batch",
    "CSVImporter",
    "FetchPolicy",
    "ImportFormatError",
    "Importer",
    "JSONImporter",
    "LocationError",
    "Payload",
    "XLSXImporter",
    "detect",
    "importer_for",
    "mark_imported",
    "open_location",
    "read_location",
]
