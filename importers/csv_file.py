"""The data-contract CSV: one file per kind of record (``activities.csv``, …).

Format: UTF-8 (a byte-order mark is accepted), RFC 4180 quoting, comma-separated, one
header row; column order is free, names are matched after trimming and lower-casing.

The kind of record is, in this order: the one given (``--kind``), the one the file name
names as a word (``activities.csv``, ``2024-activities.csv``, ``notifications_export.csv``),
or the one whose columns best match the header (a tie is an error asking for ``--kind``).

**Row numbers** are those a spreadsheet shows when it opens the file: the header is row 1,
each record the next row. For an ordinary file that is the line number. A quoted cell that
holds line breaks is one record spread over several lines, so the rows after it are numbered
by record, not by line (the message :data:`ROW_NUMBERS` says so for reports). Blank lines
and rows whose cells are all empty are skipped but keep their number.

Before any row is handed over, the whole file is checked once (a fast pass over the bytes):
it must be UTF-8 (otherwise the error names the byte offset and line) and no line may be
longer than ``max_line_bytes`` (1 MiB), so one runaway line cannot exhaust memory. Then
pandas' C parser reads ``chunk_size`` rows at a time, every cell as text. Problems only the
parser sees (a file that ends inside a quoted value — a truncated file —, a row with more
cells than the header) stop the reading with an :class:`ImportFormatError` that names the
row; the batches before it have been handed over (an all-or-nothing import keeps nothing).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator

import pandas as pd
from pandas.errors import EmptyDataError, ParserError

from importers.base import Batch, Importer, ImportFormatError, Payload
from importers.common import drop_empty_unnamed, normalise_header, resolve_kind, runs

ROW_NUMBERS = (
    "Rows are numbered as a spreadsheet shows the file: the header is row 1 and each record "
    "the next row; a cell holding line breaks is one row, and blank lines count as rows."
)

_BLOCK = 1 << 20


def _batches(chunk: pd.DataFrame, first_row_number: int, kind: str) -> Iterator[Batch]:
    """The chunk as one batch when no row is blank, else :func:`runs` splits it.

    A row with a value in the first column is not blank, so one column is looked at
    instead of every cell of the chunk.
    """
    frame = drop_empty_unnamed(chunk)
    if len(frame) and frame.shape[1]:
        first = frame.iloc[:, 0].to_numpy(dtype=object)
        if not ((first == "") | pd.isna(first)).any():
            yield Batch(kind, frame.reset_index(drop=True), first_row_number)
            return
    yield from runs(chunk, first_row_number, kind)


def _check_some_contract_column(names: list[str], kind: str, what: str) -> None:
    """A first line that names no column of its kind is not a contract header: most often an
    HTML error page or a truncated answer served with a 200 by a feed. Without this, such an
    answer with no further line would pass as an empty, successful import."""
    from cbm import contract

    spec = contract.FILES[kind]
    if set(names) & set(spec.columns):
        return
    shown = ", ".join(repr(n[:40]) for n in names[:3]) + (", …" if len(names) > 3 else "")
    raise ImportFormatError(
        f"{what}: the first line ({shown}) names none of the columns of {kind} "
        f"({', '.join(spec.key)}, …), so it is not a contract CSV header; is it an error "
        "page or a file of another kind?"
    )


class CSVImporter(Importer):
    """Reads contract CSV files in chunks, every cell as text."""

    name = "csv"
    version = "1"

    def __init__(self, *, max_line_bytes: int = 1 << 20) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes

    def batches(
        self, payload: Payload, *, kind: str | None = None, chunk_size: int = 50_000
    ) -> Iterator[Batch]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self._scan(payload)
        header = self._header(payload)
        names = normalise_header(header, payload.name)
        if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
            sep = "semicolons" if ";" in names[0] else "tabs"
            raise ImportFormatError(
                f"{payload.name}: the header has one column ({names[0][:80]!r}); the file "
                f"seems separated by {sep}. Contract CSV files are separated by commas "
                "(in Excel: save as 'CSV UTF-8 (comma delimited)')."
            )
        kind = resolve_kind(kind, payload.name, names, payload.name)
        _check_some_contract_column(names, kind, payload.name)
        yield from self._read(payload, names, kind, chunk_size)

    # -- the pass over the bytes -----------------------------------------------------------

    def _scan(self, payload: Payload) -> None:
        """Check the whole file is UTF-8 and has no over-long line, before reading rows."""
        limit = self.max_line_bytes
        offset = 0  # absolute offset of the current block
        lines = 0  # line terminators seen before the current block
        run = 0  # bytes of the current line seen so far
        pending = b""  # an incomplete UTF-8 sequence at the end of the previous block
        term = b"\n"
        with payload.open() as handle:
            first = True
            while True:
                block = handle.read(_BLOCK)
                if not block:
                    break
                if first:
                    first = False
                    if b"\n" not in block and b"\r" in block:
                        term = b"\r"  # old Mac line ends
                if pending or not block.isascii():
                    pending = self._check_utf8(payload, pending, block, offset, lines)
                count = block.count(term)
                if count == 0:
                    run += len(block)
                    if run > limit:
                        self._too_long(payload, lines + 1)
                else:
                    first_end = block.find(term)
                    if run + first_end > limit:
                        self._too_long(payload, lines + 1)
                    if len(block) > limit:
                        pieces = block.split(term)
                        for i, piece in enumerate(pieces[1:-1], start=1):
                            if len(piece) > limit:
                                self._too_long(payload, lines + i + 1)
                    run = len(block) - block.rfind(term) - 1
                    if run > limit:
                        self._too_long(payload, lines + count + 1)
                lines += count
                offset += len(block)
        if offset == 0:
            raise ImportFormatError(f"{payload.name} is empty: a CSV file needs a header row")
        if pending:
            raise ImportFormatError(
                f"{payload.name} ends in the middle of a UTF-8 character (byte "
                f"{offset - len(pending)}, line {lines + 1}); the file is truncated or not UTF-8"
            )

    @staticmethod
    def _check_utf8(
        payload: Payload, pending: bytes, block: bytes, offset: int, lines: int
    ) -> bytes:
        data = pending + block
        try:
            _text, consumed = codecs.utf_8_decode(data, "strict", False)
        except UnicodeDecodeError as exc:
            at = offset - len(pending) + exc.start
            in_block = max(exc.start - len(pending), 0)
            line = lines + block[:in_block].count(b"\n") + 1
            bad = data[exc.start : exc.start + 1].hex().upper()
            raise ImportFormatError(
                f"{payload.name} is not UTF-8 text: byte {at} (line {line}) is 0x{bad}, which "
                "UTF-8 does not allow there. Save the file as UTF-8 (in Excel: 'CSV UTF-8'); "
                "it may be in Latin-1 or Windows-1252."
            ) from None
        return data[consumed:]

    def _too_long(self, payload: Payload, line: int) -> None:
        raise ImportFormatError(
            f"{payload.name}: line {line} is longer than {self.max_line_bytes:,} bytes; such "
            "a line is refused (is it a CSV file with line breaks?)"
        )

    # -- the header and the rows -----------------------------------------------------------

    @staticmethod
    def _header(payload: Payload) -> list[str]:
        with payload.open() as handle:
            text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
            try:
                header = next(csv.reader(text), None)
            except csv.Error as exc:
                raise ImportFormatError(
                    f"{payload.name}: the header row cannot be read: {exc}"
                ) from None
            finally:
                text.detach()
        if not header or all(not h.strip() for h in header):
            raise ImportFormatError(
                f"{payload.name}: the first line is empty; it must be the header row "
                "(the column names)"
            )
        return header

    def _read(
        self, payload: Payload, names: list[str], kind: str, chunk_size: int
    ) -> Iterator[Batch]:
        row = 2  # the header is row 1
        with payload.open() as handle:
            try:
                reader = pd.read_csv(
                    handle,
                    engine="c",
                    sep=",",
                    quotechar='"',
                    doublequote=True,
                    header=0,
                    names=names,
                    # Plain Python strings (object columns): cheaper to make than pandas'
                    # string arrays, and what the validator reads anyway.
                    dtype=object,
                    keep_default_na=False,
                    na_filter=False,
                    skip_blank_lines=False,
                    encoding="utf-8-sig",
                    chunksize=chunk_size,
                )
                with reader:
                    for chunk in reader:
                        if not isinstance(chunk.index, pd.RangeIndex):
                            # pandas treats one extra cell on every row as an index column.
                            raise ImportFormatError(
                                f"{payload.name}: row {row} has {len(names) + 1} cells but the "
                                f"header names {len(names)} columns (a trailing comma, or a "
                                "column without a name in the header?)"
                            )
                        yield from _batches(chunk, row, kind)
                        row += len(chunk)
            except EmptyDataError:
                return
            except ParserError as exc:
                raise self._parser_error(payload, exc, len(names)) from None

    @staticmethod
    def _parser_error(payload: Payload, exc: ParserError, columns: int) -> ImportFormatError:
        text = str(exc)
        match = re.search(r"EOF inside string starting at row (\d+)", text)
        if match:
            # pandas counts records from 0 with the header; rows count from 1.
            row = int(match.group(1)) + 1
            return ImportFormatError(
                f"{payload.name}: the file ends inside a quoted value that starts in row {row}; "
                'the file is truncated, or a quote (") is not closed'
            )
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
        if match:
            expected, row, saw = match.groups()
            return ImportFormatError(
                f"{payload.name}: row {row} has {saw} cells but the header names {expected} "
                "columns (an unquoted comma in a value?); fix the row and import again"
            )
        return ImportFormatError(f"{payload.name}: cannot be read as CSV: {text.strip()}")
