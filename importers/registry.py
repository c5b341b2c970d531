"""Which importer reads a payload: by name, or detected from its bytes, name and media type.

Detection, in this order:

1. an explicit name (``csv``, ``xlsx``, ``json``; ``auto`` or none means detect);
2. unmistakable signatures: a zip container (``PK\\x03\\x04``) is XLSX; an OLE2 file (an
   encrypted workbook or an old ``.xls``) is refused with a message that says so;
3. the file name's extension (``.csv``, ``.xlsx``/``.xlsm``, ``.json``), for a URL that of
   its path;
4. the media type (``text/csv``, the XLSX type, ``application/json`` or ``…+json``);
5. the first bytes: ``[`` or ``{`` (after a BOM and spaces) is JSON, anything else CSV.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

from importers.base import Importer, ImportFormatError, Payload
from importers.csv_file import CSVImporter
from importers.json_feed import JSONImporter
from importers.xlsx_file import XLSXImporter

IMPORTERS: dict[str, type[Importer]] = {
    "csv": CSVImporter,
    "xlsx": XLSXImporter,
    "json": JSONImporter,
}

EXTENSIONS = {".csv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".json": "json"}
MEDIA_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/comma-separated-values": "csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.ms-excel.sheet.macroenabled.12": "xlsx",
    "application/json": "json",
    "text/json": "json",
}

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _extension(name: str) -> str:
    path = urlsplit(name).path if "://" in name else name
    return PurePosixPath(path.replace("\\", "/")).suffix.lower()


def detect(payload: Payload) -> str:
    """The name of the importer for a payload (see the module documentation)."""
    try:
        with payload.open() as handle:
            head = handle.read(64)
    except OSError as exc:
        raise ImportFormatError(f"{payload.name} cannot be read: {exc}") from None
    if head.startswith(_ZIP):
        return "xlsx"
    if head.startswith(_OLE):
        raise ImportFormatError(
            f"{payload.name} is a password-protected workbook or an old Excel 97–2003 (.xls) "
            "file; save it unprotected as .xlsx"
        )
    ext = _extension(payload.name)
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    media = (payload.media_type or "").split(";", 1)[0].strip().lower()
    if media in MEDIA_TYPES:
        return MEDIA_TYPES[media]
    if media.endswith("+json"):
        return "json"
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    return "json" if start in (b"[", b"{") else "csv"


def importer_for(payload: Payload, name: str | None = None) -> Importer:
    """An importer for the payload: the one named, or the detected one."""
    if name is not None and name.strip().lower() not in ("", "auto"):
        key = name.strip().lower()
        if key not in IMPORTERS:
            raise ImportFormatError(
                f"unknown importer {name!r}; expected one of: {', '.join(IMPORTERS)} (or auto)"
            )
        return IMPORTERS[key]()
    return IMPORTERS[detect(payload)]()
