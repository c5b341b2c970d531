"""XLSX workbooks: one sheet per kind of record, each sheet named after its contract file.

Format: an Office Open XML workbook (``.xlsx``; ``.xlsm`` is read too, its macros never
run). Each sheet named after a contract file (``activities``, ``notifications``, …; case,
spaces and dashes do not matter, and ``2024 activities`` names ``activities``) holds those
records: its first non-empty row is the header, the rows below it the records. Sheets are
read in the contract's load order (activities before the notifications that cite them).

- With a kind given, the sheet of that name is read; a workbook with a single non-empty
  sheet is read as that kind whatever the sheet is called.
- Without one, every sheet named after a kind is read; other non-empty sheets are skipped
  and reported in ``payload.warnings``. A workbook none of whose sheets is named after a kind
  is read only if it has one non-empty sheet, whose kind then comes from the file name or
  its header; otherwise it is refused with the sheet names it has.

**Cells** become contract text: whole numbers lose their ``.0``, booleans are
``true``/``false``, dates ``YYYY-MM-DD``. A spreadsheet date-time has *no time zone*, so it
is handed over without one and the validator refuses it ("has no time zone"): write
timestamps as text with ``Z`` or an offset (``2024-03-01T09:30:00Z``). A midnight date-time
in a date column is that date. Formulas are never evaluated: the value Excel cached when it
saved the file is read, and a formula without one is an empty cell (so are error cells such
as ``#N/A``). Text that looks like a formula (``=…``, ``+…``, ``-…``, ``@…``) is data and is
kept as it is; exports escape it. Rows are numbered as the sheet numbers them.

**Safety.** Before the workbook is parsed its zip container is inspected, decompressing
every member as a stream without keeping it: more than ``max_entries`` members (1,000), more
than ``max_uncompressed`` bytes in all (200 MiB), a member that inflates more than
``max_ratio`` times (100:1, for members over 1 MiB — a zip bomb), an encrypted member, or an
XML member that declares a DOCTYPE or an ENTITY (XXE, "billion laughs") is refused with a
message that says which. Workbooks are then read with python-calamine (Rust; it does not
expand entities or fetch anything).
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import pandas as pd

from cbm import contract
from importers.base import Batch, Importer, ImportFormatError, Payload
from importers.common import (
    cell_text,
    check_kind,
    field_types,
    kind_from_name,
    normalise_header,
    resolve_kind,
    runs,
    warn,
)

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_DECLARATIONS = tuple(
    word.encode(enc)
    for word in ("<!DOCTYPE", "<!ENTITY")
    for enc in ("utf-8", "utf-16-le", "utf-16-be")
)
_OVERLAP = max(len(d) for d in _DECLARATIONS)


class XLSXImporter(Importer):
    """Reads the sheets of a workbook, each as the kind of record its name gives."""

    name = "xlsx"
    version = "1"

    def __init__(
        self,
        *,
        max_entries: int = 1000,
        max_uncompressed: int = 200 * 2**20,
        max_ratio: float = 100.0,
        ratio_grace: int = 2**20,
    ) -> None:
        self.max_entries = max_entries
        self.max_uncompressed = max_uncompressed
        self.max_ratio = max_ratio
        self.ratio_grace = ratio_grace

    def batches(
        self, payload: Payload, *, kind: str | None = None, chunk_size: int = 50_000
    ) -> Iterator[Batch]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if kind is not None:
            check_kind(kind)
        self.inspect(payload)
        import python_calamine

        with payload.open() as handle:
            try:
                workbook = python_calamine.CalamineWorkbook.from_filelike(handle)
            except Exception as exc:  # calamine raises its own error types
                raise ImportFormatError(
                    f"{payload.name}: the workbook cannot be read: {exc}"
                ) from None
            try:
                plan = self._plan(payload, workbook, kind)
                for sheet_name, sheet_kind in plan:
                    yield from self._sheet(payload, workbook, sheet_name, sheet_kind, chunk_size)
            finally:
                workbook.close()

    # -- the container ---------------------------------------------------------------------

    def inspect(self, payload: Payload) -> None:
        """Refuse a workbook whose container is unsafe, before anything parses it."""
        name = payload.name
        with payload.open() as handle:
            head = handle.read(8)
            if head.startswith(_OLE_MAGIC):
                raise ImportFormatError(
                    f"{name} is a password-protected workbook or an old Excel 97–2003 (.xls) "
                    "file; save it unprotected as .xlsx"
                )
            if not head.startswith(_ZIP_MAGIC):
                raise ImportFormatError(f"{name} is not an XLSX workbook (not a zip container)")
            handle.seek(0)
            try:
                with zipfile.ZipFile(handle) as archive:
                    self._check_archive(name, archive)
            except zipfile.BadZipFile as exc:
                raise ImportFormatError(
                    f"{name}: the workbook is damaged or truncated ({exc})"
                ) from None
            except (EOFError, OSError, NotImplementedError, zlib.error) as exc:
                # zlib.error: a member's compressed bytes are damaged (not a zip problem
                # zipfile itself reports).
                raise ImportFormatError(
                    f"{name}: the workbook is damaged or truncated ({exc})"
                ) from None

    def _check_archive(self, name: str, archive: zipfile.ZipFile) -> None:
        infos = archive.infolist()
        if len(infos) > self.max_entries:
            raise ImportFormatError(
                f"{name}: the workbook holds {len(infos):,} files; at most "
                f"{self.max_entries:,} are accepted"
            )
        members = {i.filename for i in infos}
        if "xl/workbook.xml" not in members:
            if "xl/workbook.bin" in members:
                raise ImportFormatError(f"{name} is a binary workbook (.xlsb); save it as .xlsx")
            raise ImportFormatError(f"{name} is a zip file but not an XLSX workbook")
        declared = sum(i.file_size for i in infos)
        if declared > self.max_uncompressed:
            raise ImportFormatError(
                f"{name}: the workbook unpacks to {declared:,} bytes; at most "
                f"{self.max_uncompressed:,} are accepted"
            )
        total = 0
        for info in infos:
            if info.flag_bits & 0x1:
                raise ImportFormatError(f"{name}: {info.filename} is encrypted")
            if info.is_dir():
                continue
            self._check_ratio(name, info.filename, info.file_size, info.compress_size)
            is_xml = info.filename.lower().endswith(_XML_SUFFIXES)
            size = 0
            tail = b""
            with archive.open(info) as member:
                while block := member.read(1 << 20):
                    size += len(block)
                    total += len(block)
                    if total > self.max_uncompressed:
                        raise ImportFormatError(
                            f"{name}: the workbook unpacks to more than "
                            f"{self.max_uncompressed:,} bytes; refused"
                        )
                    self._check_ratio(name, info.filename, size, info.compress_size)
                    if is_xml:
                        window = tail + block
                        for marker in _DECLARATIONS:
                            if marker in window:
                                raise ImportFormatError(
                                    f"{name}: {info.filename} declares a DOCTYPE or ENTITY; "
                                    "workbooks never need one and it can be used to attack "
                                    "the reader (XML entity expansion); refused"
                                )
                        tail = window[-_OVERLAP:]

    def _check_ratio(self, name: str, member: str, size: int, compressed: int) -> None:
        if size > self.ratio_grace and size > self.max_ratio * max(compressed, 1):
            raise ImportFormatError(
                f"{name}: {member} inflates more than {self.max_ratio:g} times "
                f"({max(compressed, 1):,} bytes to over {size:,}); this looks like a zip bomb "
                "and is refused"
            )

    # -- the sheets ------------------------------------------------------------------------

    def _plan(self, payload: Payload, workbook: Any, kind: str | None) -> list[tuple[str, str]]:
        """Which sheets to read, as (sheet name, kind), in load order."""
        names = list(workbook.sheet_names)
        named = {s: kind_from_name(s) for s in names}
        # Sheets named after a kind are read anyway; only the others are looked into here.
        nonempty = [s for s in names if named[s] is not None or self._has_cells(workbook, s)]
        if kind is not None:
            chosen = [s for s in names if named[s] == kind]
            if len(chosen) > 1:
                raise ImportFormatError(
                    f"{payload.name}: several sheets hold {kind}: {', '.join(chosen)}"
                )
            if not chosen:
                if len(nonempty) == 1:
                    chosen = nonempty
                else:
                    raise ImportFormatError(
                        f"{payload.name}: no sheet is named {kind!r}; it has "
                        f"{', '.join(repr(s) for s in names)}"
                    )
            for sheet in nonempty:
                if sheet not in chosen:
                    warn(
                        payload, f"{payload.name}: sheet {sheet!r} skipped (only {kind} asked for)"
                    )
            return [(chosen[0], kind)]
        by_kind: dict[str, str] = {}
        for sheet in names:
            k = named[sheet]
            if k is None:
                continue
            if k in by_kind:
                raise ImportFormatError(
                    f"{payload.name}: sheets {by_kind[k]!r} and {sheet!r} both hold {k}"
                )
            by_kind[k] = sheet
        if not by_kind:
            if len(nonempty) == 1:
                return [(nonempty[0], "")]  # kind from the file name or the header
            raise ImportFormatError(
                f"{payload.name}: no sheet is named after a kind of record "
                f"({', '.join(contract.FILES)}); it has {', '.join(repr(s) for s in names)}"
            )
        self._skipped(payload, [s for s in nonempty if named[s] is None])
        return [(by_kind[k], k) for k in contract.LOAD_ORDER if k in by_kind]

    @staticmethod
    def _has_cells(workbook: Any, sheet: str) -> bool:
        try:
            data = workbook.get_sheet_by_name(sheet)
        except Exception:
            return False
        return data.height > 0 and data.width > 0 and data.start is not None

    @staticmethod
    def _skipped(payload: Payload, sheets: list[str]) -> None:
        for sheet in sheets:
            warn(
                payload,
                f"{payload.name}: sheet {sheet!r} is not named after a kind of record "
                f"({', '.join(contract.FILES)}); skipped",
            )

    def _sheet(
        self, payload: Payload, workbook: Any, sheet: str, kind: str, chunk_size: int
    ) -> Iterator[Batch]:
        where = f"{payload.name}, sheet {sheet!r}"
        try:
            rows = iter(workbook.get_sheet_by_name(sheet).iter_rows())
        except Exception as exc:
            raise ImportFormatError(f"{where} cannot be read: {exc}") from None
        number = 0  # rows are numbered from 1, as in the sheet
        header = None
        for cells in rows:
            number += 1
            if any(c not in ("", None) for c in cells):
                header = cells
                break
        if header is None:
            return
        names = normalise_header(header, where)
        if not kind:
            kind = resolve_kind(None, payload.name, names, where)
        types = field_types(kind, names)
        width = len(names)
        buffer: list[list[str]] = []
        first = number + 1
        for cells in rows:
            buffer.append(
                [cell_text(v, t) for v, t in zip(cells[:width], types, strict=False)]
                + [""] * (width - len(cells))
            )
            if len(buffer) >= chunk_size:
                yield from runs(
                    pd.DataFrame(buffer, columns=names, dtype=object), first, kind, sheet
                )
                first += len(buffer)
                buffer = []
        if buffer:
            yield from runs(pd.DataFrame(buffer, columns=names, dtype=object), first, kind, sheet)
