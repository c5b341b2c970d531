"""The one small interface every importer implements, and the values that cross it.

A *location* (a file, a drop folder or glob, an HTTP(S) URL) yields :class:`Payload` s; an
:class:`Importer` turns a payload into :class:`Batch` es of contract rows (strings, as read);
the import service (:mod:`cbm.services.imports`) validates and writes each batch through the
record services and keeps the run's counts, rejections and provenance.
"""

from __future__ import annotations

import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

import pandas as pd


class ImportFormatError(ValueError):
    """The payload as a whole cannot be read (encoding, structure, size, zip bomb …).

    The message is shown to the user as the reason the run failed: name the file, sheet,
    line or limit concerned.
    """


@dataclass
class Payload:
    """One file or HTTP response to import: a name for people, and the bytes (or a path)."""

    name: str
    path: Path | None = None
    content: bytes | None = None
    media_type: str | None = None
    # For drop folders and feeds: what to remember once the payload is imported.
    meta: dict[str, object] = field(default_factory=dict)
    _checksum: str | None = field(default=None, repr=False)
    # File-level remarks an importer makes while reading (a skipped sheet, …): not errors,
    # but worth showing in the run's report.
    warnings: list[str] = field(default_factory=list)

    def open(self) -> BinaryIO:
        if self.content is not None:
            return io.BytesIO(self.content)
        if self.path is None:
            raise ImportFormatError(f"{self.name}: nothing to read")
        return self.path.open("rb")

    @property
    def size(self) -> int:
        if self.content is not None:
            return len(self.content)
        return self.path.stat().st_size if self.path is not None else 0

    @property
    def checksum(self) -> str:
        """SHA-256 of the bytes: an unchanged payload is recognised and skipped."""
        if self._checksum is None:
            digest = hashlib.sha256()
            with self.open() as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._checksum = digest.hexdigest()
        return self._checksum


@dataclass
class Batch:
    """A chunk of rows of one contract file, as read (strings; '' for empty cells).

    ``first_row_number`` is the source's own number for the first row (for a CSV with a
    header, 2), so rejections point at the line a person sees in a spreadsheet. ``part``
    names where in the payload the rows come from (a sheet, a file of a folder).
    """

    kind: str
    rows: pd.DataFrame
    first_row_number: int
    part: str = ""


class Importer(ABC):
    """Reads one source format. Implementations are small and stateless."""

    name: ClassVar[str]
    version: ClassVar[str]

    @abstractmethod
    def batches(
        self, payload: Payload, *, kind: str | None = None, chunk_size: int = 50_000
    ) -> Iterator[Batch]:
        """Yield the payload's rows in chunks; raise ImportFormatError for an unreadable one."""
