"""Numeric tables in and out of the command line, with errors that name the bad cell.

Reading: delimited text (CSV, TSV, semicolon or whitespace separated, from a
file or standard input), NumPy ``.npy`` and Parquet (with pyarrow, imported
only when a Parquet file is read).  :func:`read_data` loads a whole table;
:func:`iter_chunks` streams one a block of rows at a time, so that files
larger than memory can be scored.  Both check every selected cell: a value
that is not a number, is missing, or is infinite raises an
:class:`~emix.exceptions.InvalidInputError` whose one-line message names the
column, the data row (counted from 1, the header excluded) and a remedy.

Text, from a file or standard input alike, is UTF-8 (a byte-order mark is
dropped), its lines at most :data:`LINE_LIMIT` characters long; a pipe or a
device (``<(command)``, a named pipe) is read once, as it comes.  Rows that
are each two whole numbers joined by a comma, without a header ("1,5"), are
read as two columns with a :class:`~emix.exceptions.DataWarning`: they may
as well be one column with decimal commas, which no reader can tell apart.
Parquet's 64-bit integers beyond 2**53 are read as the nearest float64, with
a warning.

Writing: :func:`write_table` and the incremental :class:`TableWriter` write
CSV, TSV or JSON.  Files are replaced atomically: the output goes to a
temporary file in the destination's directory and is renamed over the
destination only once it is complete.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import io
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain, islice, repeat
from pathlib import Path
from typing import IO, Any

import numpy as np

from .._text import one_line
from ..exceptions import DataWarning, InvalidInputError
from .atomic import atomic_output, check_writable
from .pages import copy_rows

__all__ = ["ChunkedTable", "Table", "TableWriter", "iter_chunks", "output_format",
           "read_data", "read_table", "write_table"]

#: Header names of a leading row-name column (R's write.csv writes "").
_ROW_NAME_HEADERS = ("", "rownames", "row.names")

#: Cells that spreadsheets, R and pandas write for a missing value.
_MISSING = frozenset({"", "na", "n/a", "nan", "-nan", "+nan", "null", "none", "#n/a", "?"})

_TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".dat"})
_NPY_SUFFIXES = frozenset({".npy"})
_PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
_SUPPORTED = ("supported formats are delimited text (.csv, .tsv, .txt, .dat), "
              "NumPy .npy and Parquet (.parquet, .pq)")

#: Rows per block when a whole table is read: large enough that per-block
#: overhead vanishes, small enough that the text of a block stays small...
_BLOCK_ROWS = 1 << 16

#: ... and cells per block, so that a wide table's blocks stay as small: a
#: cell of text costs some 60 bytes while it is parsed, against 8 as a
#: float (65,536 rows of 2,000 columns peaked at 4 GB).
_BLOCK_CELLS = 1 << 18

#: Bytes of one chunk when a table is streamed and no size is asked for.
CHUNK_BYTES = 64 * 2**20

_OUTPUT_FORMATS = ("csv", "tsv", "json")


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, eq=False)
class Table:
    """A numeric table read by :func:`read_data`.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), float64
        The selected data columns.
    names : list of str
        Their names, in the order of ``X``'s columns.
    weights : ndarray of shape (n_samples,), float64, or None
        The frequency weights column, when one was asked for.
    """

    X: np.ndarray
    names: list[str]
    weights: np.ndarray | None = None


class ChunkedTable:
    """A table read a block of rows at a time; made by :func:`iter_chunks`.

    Iterating yields float64 arrays of shape (m, len(names)) with
    ``1 <= m <= chunk_rows``.  Files can be iterated again (each pass reopens
    them); standard input only once.  Use it as a context manager, or call
    :meth:`close`, to release a memory map or Parquet file early.

    Attributes
    ----------
    names : list of str
        The selected columns' names.
    """

    def __init__(self, source: _Source, select: list[int], chunk_rows: int):
        self._source = source
        self._select = select
        self._chunk_rows = chunk_rows
        self.names = [source.names[j] for j in select]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._source.blocks(self._select, self._chunk_rows)

    @property
    def all_names(self) -> list[str]:
        """Every column of the source, selected or not."""
        return list(self._source.names)

    def select(self, columns: Sequence[str]) -> ChunkedTable:
        """The same source read as ``columns`` (names or 1-based positions)
        instead; for a choice that depends on :attr:`all_names`."""
        data, _ = _selection(self._source, columns, None)
        return ChunkedTable(self._source, data, self._chunk_rows)

    def close(self) -> None:
        """Release the file the table reads from."""
        self._source.close()

    def __enter__(self) -> ChunkedTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_data(source: str | os.PathLike, *, columns: Sequence[str] | None = None,
              weights: str | None = None, stdin: IO[str] | None = None) -> Table:
    """Read a numeric table from a file or standard input.

    Parameters
    ----------
    source : str or path-like
        A file (format from its extension: .csv/.tsv/.txt/.dat or other text,
        .npy, .parquet/.pq) or ``"-"`` for delimited text on standard input.
    columns : list of str, optional
        The columns to use, by name or 1-based position ("3"), in this order.
        Default: all but the weights column.  Only these need be numeric.
    weights : str, optional
        A column (name or 1-based position) of frequency weights, returned
        apart from ``X``.
    stdin : text stream, optional
        Read instead of ``sys.stdin`` when ``source`` is ``"-"``; when it
        has a file descriptor, its bytes are read and decoded as a file's.

    Returns
    -------
    Table
    """
    src = _open_source(source, stdin)
    try:
        data, weight = _selection(src, columns, weights)
        select = data + ([weight] if weight is not None else [])
        rows = max(1, min(_BLOCK_ROWS, _BLOCK_CELLS // len(src.names)))
        blocks = list(src.blocks(select, rows))
    finally:
        src.close()
    if not blocks:
        raise InvalidInputError(f"{src.label} has a header but no data rows")
    values = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    if weight is None:
        return Table(values, [src.names[j] for j in data], None)
    w = values[:, -1].copy()
    negative = np.flatnonzero(w < 0)
    if negative.size:
        i = int(negative[0])
        raise InvalidInputError(
            f"{src.label}: weights column {src.names[weight]!r} holds a negative weight "
            f"(data row {i + 1} holds {float(w[i])!r}); frequency weights must be >= 0")
    X = np.ascontiguousarray(values[:, :-1])
    return Table(X, [src.names[j] for j in data], w)


def iter_chunks(source: str | os.PathLike, *, chunk_rows: int | None,
                columns: Sequence[str] | None = None,
                stdin: IO[str] | None = None) -> ChunkedTable:
    """Stream a numeric table ``chunk_rows`` rows at a time.

    Text is read block by block, .npy through a memory map, Parquet batch by
    batch, so memory use does not grow with the file.  The cells are checked
    as :func:`read_data` checks them, with the same messages and data row
    numbers that continue across chunks; an error surfaces when the chunk
    holding it is read.  The header (and whether the file is empty) is
    checked at once.

    Parameters
    ----------
    source, columns, stdin
        As for :func:`read_data`.
    chunk_rows : int or None
        The most rows per chunk (>= 1); None: CHUNK_BYTES worth of float64.

    Returns
    -------
    ChunkedTable
        Iterable of float64 arrays; ``.names`` names their columns.
    """
    if chunk_rows is not None and (isinstance(chunk_rows, bool)
                                   or not isinstance(chunk_rows, int | np.integer)
                                   or chunk_rows < 1):
        raise InvalidInputError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    src = _open_source(source, stdin)
    try:
        data, _ = _selection(src, columns, None)
    except BaseException:
        src.close()
        raise
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // (8 * len(data)))
    return ChunkedTable(src, data, int(chunk_rows))


def read_table(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a table of numbers; every column is used.

    The delimiter (comma, tab, semicolon or whitespace) and a header row are
    detected.  A first column headed "", "rownames" or "row.names" holds row
    names and is dropped.  Returns the (n, d) float64 array and the column
    names (``column 1``, ... when there is no header).  See :func:`read_data`.
    """
    table = read_data(path)
    return table.X, table.names


# ------------------------------------------------------------------ column selection


def _selection(src: _Source, columns: Sequence[str] | None,
               weights: str | None) -> tuple[list[int], int | None]:
    """Indices of the data columns and of the weights column."""
    weight = None if weights is None else _resolve(weights, src)
    if columns is None:
        data = [j for j in range(len(src.names)) if j != weight]
        if not data:
            raise InvalidInputError(
                f"{src.label} has no column left for the data besides the weights column "
                f"{src.names[weight]!r}")
        return data, weight
    if isinstance(columns, str | int):
        columns = [columns]
    data = [_resolve(spec, src) for spec in columns]
    if not data:
        raise InvalidInputError("the column selection is empty; name at least one column")
    seen: set[int] = set()
    for j in data:
        if j in seen:
            raise InvalidInputError(
                f"column {src.names[j]!r} is selected twice; list each column once")
        seen.add(j)
    if weight is not None and weight in seen:
        raise InvalidInputError(
            f"column {src.names[weight]!r} is selected both as data and as the weights; "
            "leave it out of the data columns")
    return data, weight


def _resolve(spec: str | int, src: _Source) -> int:
    """A column's index from its name, else its 1-based position."""
    names = src.names
    text = str(spec).strip() if not isinstance(spec, str) else spec
    if text in names:
        if names.count(text) > 1:
            positions = [str(j + 1) for j, name in enumerate(names) if name == text]
            raise InvalidInputError(
                f"{src.label} has {len(positions)} columns named {text!r} (at positions "
                f"{', '.join(positions)}); choose one by its 1-based position")
        return names.index(text)
    if re.fullmatch(r"\s*[0-9]+\s*", text):
        position = int(text)
        if 1 <= position <= len(names):
            return position - 1
        raise InvalidInputError(
            f"column position {position} is out of range: {src.label} has {len(names)} "
            f"column{'s' if len(names) != 1 else ''} (1 to {len(names)})")
    close = difflib.get_close_matches(text, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    shown = ", ".join(repr(name) for name in names[:20])
    if len(names) > 20:
        shown += f", ... ({len(names)} in all)"
    raise InvalidInputError(
        f"{src.label} has no column {text!r}; {hint}its columns are {shown} "
        "(or give a 1-based position)")


# -------------------------------------------------------------------------- sources


class _Source:
    """A table's column names and its rows, block by block."""

    label: str
    names: list[str]

    def blocks(self, select: list[int], rows: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _open_source(source: str | os.PathLike, stdin: IO[str] | None) -> _Source:
    if isinstance(source, str) and source == "-":
        stream = stdin if stdin is not None else sys.stdin
        if stream is None:  # Python sets sys.stdin to None when descriptor 0 is closed
            raise InvalidInputError("standard input is closed: there is nothing to read")
        binary = _binary_of(stream)
        if binary is None:  # text given as text (io.StringIO): read as it comes
            return _TextSource("standard input", stream=stream)
        return _stream_source(binary, "standard input")
    path = Path(source)
    label = repr(str(path))
    if not path.exists():
        raise InvalidInputError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise InvalidInputError(f"{label} is a directory, not a data file")
    suffix = path.suffix.lower()
    if suffix in _NPY_SUFFIXES | _PARQUET_SUFFIXES and not path.is_file():
        raise InvalidInputError(
            f"{label} is not a regular file (it is a pipe or a device), and .npy and Parquet "
            "files are read in place; save it to a file first")
    if suffix in _NPY_SUFFIXES:
        return _NpySource(path, label)
    if suffix in _PARQUET_SUFFIXES:
        return _ParquetSource(path, label)
    if not path.is_file():
        # A pipe (<(command), a named pipe) or a device (/dev/zero): what
        # is read is gone, so it is read once, as standard input is.
        return _stream_source(_open_binary(path, label), label)
    if suffix not in _TEXT_SUFFIXES:
        # Unknown extension: recognise the binary formats by their magic
        # bytes, and refuse other binary files before parsing them as text.
        with _open_binary(path, label) as f:
            head = f.read(_HEAD_BYTES)
        if head.startswith(_NPY_MAGIC):
            return _NpySource(path, label)
        if head.startswith(_PARQUET_MAGIC):
            return _ParquetSource(path, label)
        _refuse_binary(head, label)
    return _TextSource(label, path=path)


#: Bytes looked at to tell a binary file from text.
_HEAD_BYTES = 1 << 16
_NPY_MAGIC = b"\x93NUMPY"
_PARQUET_MAGIC = b"PAR1"


def _open_binary(path: Path, label: str) -> io.BufferedReader:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {label}: {exc.strerror or exc}") from None


def _stream_source(binary: io.BufferedReader, label: str) -> _TextSource:
    """Text read once from a stream of bytes, which the source closes."""
    try:
        try:
            head = binary.peek(_HEAD_BYTES)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {label}: {exc.strerror or exc}") from None
        _refuse_binary(head, label)
    except BaseException:
        binary.close()
        raise
    return _TextSource(label, stream=_decoded(binary), owned=True)


def _binary_of(stream: IO[str]) -> io.BufferedReader | None:
    """The bytes under a text stream with a file descriptor (the process's
    standard input), so that they are decoded as files are; None for text
    that has no bytes under it."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    # closefd=False: the descriptor stays open for whoever owns it.
    return open(descriptor, "rb", closefd=False)


def _decoded(binary: IO[bytes]) -> IO[str]:
    """Text as every text table is read, from a file or standard input alike:
    UTF-8, with line endings kept as they are (the csv module needs them for
    quoted cells; a lone "\\r" ends a line too).  A byte-order mark is
    dropped by :func:`_lines`, which sees text given as text too."""
    return io.TextIOWrapper(binary, encoding="utf-8", newline="")


def _refuse_binary(head: bytes, label: str) -> None:
    """Refuse bytes that are not text, naming what they look like."""
    if head.startswith((_NPY_MAGIC, _PARQUET_MAGIC)):  # files of these were dispatched before
        kind = "a NumPy .npy file" if head.startswith(_NPY_MAGIC) else "a Parquet file"
        raise InvalidInputError(
            f"{label} holds {kind}, which is read from a file (not a pipe or standard input): "
            "give the file's name")
    if _is_binary(head):
        raise InvalidInputError(f"{label} is not a text file; {_SUPPORTED}")


def _is_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    try:
        # final=False: a multi-byte character cut at the end of the sample is fine.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


class _TextSource(_Source):
    """Delimited text; the delimiter and a header are detected from the first lines.

    A regular file is reopened for each pass; a stream (standard input, a
    pipe) is read once.
    """

    def __init__(self, label: str, *, path: Path | None = None,
                 stream: IO[str] | None = None, owned: bool = False):
        self.label = label
        self._path = path
        self._stream = stream if owned else None  # closed with the source
        self._pending: Iterator[str] | None = None
        self._ambiguous_warned = False
        try:
            if path is not None:
                with self._open() as f:
                    self._inspect(f)
                self._pending = None  # each pass over a file reopens it
            else:
                self._inspect(stream)
        except BaseException:
            self.close()
            raise

    def _open(self) -> IO[str]:
        return _decoded(_open_binary(self._path, self.label))

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def _inspect(self, stream: IO[str]) -> None:
        with _TextErrors(self.label):
            lines = _lines(stream, self.label)
            first = next(lines, None)
            if first is None:
                raise InvalidInputError(f"{self.label} is empty: it has no rows of data")
            commented = first.lstrip().startswith("#")
            if commented:  # np.savetxt(header="a,b") writes "# a,b"
                first = first.lstrip()[1:]
            second = next(lines, None)
            _refuse_nul(first + (second or ""), self.label)
            self._delimiter = _delimiter(first, second)
            head = _split_line(first, self._delimiter)
            if first.count('"') % 2:  # a quote left open: the cell goes on on the next line
                raise InvalidInputError(
                    f"{self.label}: a quoted cell of the first line spans lines; numeric tables "
                    "need one row per line")
            self._header = commented or any(not _is_number_or_missing(cell) for cell in head)
            if self._header:
                if second is None:
                    raise InvalidInputError(f"{self.label} has a header but no data rows")
                names = [_clean_name(cell, self._delimiter) for cell in head]
                first_width = len(_split_line(second, self._delimiter))
                pending = [second]
            else:
                names = [f"column {j + 1}" for j in range(len(head))]
                pending = [first] if second is None else [first, second]
        self._width = len(head)
        self._skip = 0
        if self._header and len(names) > 1 and names[0].lower() in _ROW_NAME_HEADERS:
            self._skip = 1  # R's write.csv: a row-names column headed ""
            names = names[1:]
        elif self._header and first_width == len(names) + 1:
            # R's write.table (and pandas' rule): a header one cell short of
            # the rows means the first column holds row names.
            self._skip = 1
            self._width += 1
        if self._header and len(names) > 1 and names[-1] == "":
            names = names[:-1]  # a delimiter ending every line ("a,b,"): no column there
        self.names = names
        # Rows "1,5" without a header: two columns, or one of decimal commas?
        # Checked on every row; a warning once the whole table is read.
        self._every_row_a_decimal_comma = self._could_be_decimal_commas()
        self._pending = chain(pending, lines)

    def _could_be_decimal_commas(self) -> bool:
        """Whether the rows could be one column of decimal commas ("1,5"
        for 1.5) as well as the two columns they were read as."""
        return self._delimiter == "," and not self._header and self._width == 2

    def blocks(self, select: list[int], rows: int) -> Iterator[np.ndarray]:
        if self._path is None:
            if self._pending is None:
                raise InvalidInputError(
                    f"{self.label} can be read only once (it is a stream, not a file); "
                    "save it to a file first")
            lines, self._pending = self._pending, None
            return self._parse(lines, select, rows, None)
        f = self._open()
        lines = _lines(f, self.label)
        if self._header:
            with _TextErrors(self.label):
                next(lines)
        return self._parse(lines, select, rows, f)

    def _parse(self, lines: Iterator[str], select: list[int], rows: int,
               f: IO[str] | None) -> Iterator[np.ndarray]:
        raw = [j + self._skip for j in select]
        names = [self.names[j] for j in select]
        start = 1
        try:
            while True:
                with _TextErrors(self.label):
                    block = list(islice(lines, rows))
                if not block:
                    break
                with _TextErrors(self.label):
                    yield self._parse_block(block, raw, names, start)
                start += len(block)
        finally:
            if f is not None:
                f.close()
        if self._every_row_a_decimal_comma and not self._ambiguous_warned:
            self._ambiguous_warned = True
            warnings.warn(
                f"{self.label} is ambiguous: it was read as 2 columns, but every row is two "
                "whole numbers joined by a comma, which is also one column of numbers with "
                f"decimal commas (1,5 for 1.5). If the commas are decimal commas, "
                f"{_CONVERT_DECIMAL_COMMAS}; if these are two columns, add a header line "
                "(such as x,y) to say so", DataWarning, stacklevel=2)

    def _parse_block(self, lines: list[str], select: list[int], names: list[str],
                     start: int) -> np.ndarray:
        """The selected columns of some lines as float64, every cell checked."""
        n, width, delimiter = len(lines), self._width, self._delimiter
        text = "".join(lines)
        _refuse_nul(text, self.label)
        if self._every_row_a_decimal_comma:
            self._every_row_a_decimal_comma = _DECIMAL_COMMA_ROWS.fullmatch(text) is not None
        if delimiter is not None:
            # Fast path, for blocks without quotes whose lines all hold the
            # expected number of delimiters: split the block's text at once
            # (the csv module and a transpose cost more than the floats).
            if '"' not in text and set(map(str.count, lines, repeat(delimiter))) == {width - 1}:
                if not text.endswith("\n"):
                    text += "\n"
                cells = text.replace("\n", delimiter).split(delimiter)
                # A lone "\r" ending a line would merge two rows: the count shows it.
                if len(cells) == n * width + 1:
                    if len(select) == width and select == list(range(width)):
                        # Every column: one pass over the cells, not one per
                        # column (a wide table has thousands); a bad cell is
                        # found and named column by column below.
                        values = _floats(cells[:-1])
                        if values is not None:
                            return values.reshape(n, width)
                    return self._convert([cells[j:n * width:width] for j in select], names,
                                         start)
            rows = list(csv.reader(lines, delimiter=delimiter))
        else:
            rows = [line.split() for line in lines]
        if len(rows) != n:
            raise InvalidInputError(
                f"{self.label}: a quoted cell spans lines near data row {start}; "
                "numeric tables need one row per line")
        if set(map(len, rows)) != {width}:
            i = next(i for i, row in enumerate(rows) if len(row) != width)
            like = "like the header" if self._header else "like data row 1"
            hint = ""
            if self._could_be_decimal_commas() and len(rows[i]) == 1 \
                    and _is_number_or_missing(rows[i][0]):
                # One column of decimal commas, with a whole number in it.
                hint = f" (if the commas are decimal commas, {_CONVERT_DECIMAL_COMMAS})"
            raise InvalidInputError(
                f"{self.label}: data row {start + i} has {len(rows[i])} columns, expected "
                f"{width} {like}{hint}; fix or remove that row")
        return self._convert([[row[j] for row in rows] for j in select], names, start)

    def _convert(self, columns: list[list[str]], names: list[str], start: int) -> np.ndarray:
        n = len(columns[0])
        out = np.empty((n, len(columns)))
        for k, cells in enumerate(columns):
            values = _floats(cells)
            if values is None:
                _raise_bad_cell(cells, names[k], self.label, start)
            out[:, k] = values
        return out


def _floats(cells: list[str]) -> np.ndarray | None:
    """The cells as float64, or None if one is not a finite number."""
    try:
        values = np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
    except ValueError:
        return None
    return values if np.isfinite(values).all() else None


class _TextErrors:
    """Turn decoding and csv errors into one-line input errors."""

    def __init__(self, label: str):
        self.label = label

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and issubclass(exc_type, UnicodeDecodeError):
            utf16 = exc.start < 2 and exc.object[:2] in (codecs.BOM_UTF16_LE,
                                                         codecs.BOM_UTF16_BE)
            what, encoding = ("it is UTF-16, Excel's \"Unicode text\"", "UTF-16") if utf16 \
                else (f"it holds the byte 0x{exc.object[exc.start]:02x}", "LATIN1")
            raise InvalidInputError(
                f"{self.label} is not a UTF-8 text file ({what}); save it as UTF-8 "
                f"(iconv -f {encoding} -t UTF-8 FILE, for one); {_SUPPORTED}") from None
        if exc_type is not None and issubclass(exc_type, csv.Error):
            raise InvalidInputError(
                f"{self.label} cannot be read as delimited text ({one_line(str(exc))}); "
                f"{_SUPPORTED}") from None


#: The longest line of a text table read, in characters: 16 Mi.  A line is
#: held whole while it is split, so a text without line breaks (/dev/zero, a
#: binary stream, a table written without newlines) must be refused before
#: it fills the memory.  A row of 600,000 numbers of 17 digits fits; a table
#: that wide is a matter for .npy or Parquet, whose rows have no such limit.
LINE_LIMIT = 1 << 24


def _lines(stream: IO[str], label: str) -> Iterator[str]:
    """The non-blank lines of a text, a byte-order mark (Excel writes one)
    dropped from the first; at most LINE_LIMIT characters each."""
    pieces = iter(partial(stream.readline, LINE_LIMIT + 1), "")
    first = next(pieces, "").removeprefix("\ufeff")
    for line in chain((first,) if first else (), pieces):
        if not line.isspace():
            if len(line) > LINE_LIMIT:
                raise InvalidInputError(
                    f"{label} has a line longer than {LINE_LIMIT:,} characters, the most a "
                    "text table's row may hold: is it text at all? Rows must end in line "
                    "breaks; save a table this wide as .npy or Parquet")
            yield line


def _refuse_nul(text: str, label: str) -> None:
    if "\x00" in text:
        raise InvalidInputError(
            f"{label} holds NUL bytes, which text never does: it is not a text table, or it "
            f"is damaged; {_SUPPORTED}")


def _delimiter(first: str, second: str | None) -> str | None:
    """The delimiter of the first two lines; None for runs of whitespace.

    A delimiter must split the second line as it splits the first (or into
    one more cell: row names), so that a comma in a TSV header's names does
    not make it a CSV.
    """
    present = [c for c in (",", "\t", ";") if c in first]
    if second is not None:
        for candidate in present:
            width = len(_split_line(first, candidate))
            if width > 1 and len(_split_line(second, candidate)) in (width, width + 1):
                return candidate
    return present[0] if present else None


def _split_line(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter))


def _clean_name(cell: str, delimiter: str | None) -> str:
    name = cell.strip()
    if delimiter is None and len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]  # R's write.table quotes names even when space separated
    return name


def _is_number_or_missing(cell: str) -> bool:
    if cell.strip().lower() in _MISSING:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


#: A number written with a decimal comma, "1,5" for 1.5 (also a thousands
#: separator, "1,000", or two whole numbers where the comma delimits).
_DECIMAL_COMMA = r"[-+]?\d+,\d+"

#: Lines that each hold one such number and nothing else (blank lines are
#: dropped before); each line's end is required, so no backtracking.
_DECIMAL_COMMA_ROWS = re.compile(
    rf"(?:[ \t]*{_DECIMAL_COMMA}[ \t]*(?:\r\n|\r|\n))*(?:[ \t]*{_DECIMAL_COMMA}[ \t]*)?")

_CONVERT_DECIMAL_COMMAS = ("convert them to points first (tr , . < FILE, or pandas.read_csv("
                           "FILE, decimal=',') and save it again)")


def _raise_bad_cell(cells: Sequence[str], name: str, label: str, start: int) -> None:
    """Raise for the first cell of a column that is not a finite number."""
    for i, cell in enumerate(cells):
        shown = cell.strip()
        row = start + i
        try:
            value = float(cell)
        except ValueError:
            if shown.lower() in _MISSING:
                _raise_missing(name, label, row, shown)
            hint = ""
            if re.fullmatch(_DECIMAL_COMMA, shown):
                hint = (" (decimal commas are not supported: write 1.5, not 1,5; "
                        f"{_CONVERT_DECIMAL_COMMAS})")
            raise InvalidInputError(
                f"{label}: column {name!r} is not numeric (row {row} holds {shown!r}){hint}; "
                "drop it with --columns or encode it as numbers") from None
        if math.isnan(value):
            _raise_missing(name, label, row, shown)
        if math.isinf(value):
            _raise_infinite(name, label, row, shown)
    raise AssertionError("no bad cell found")  # pragma: no cover


def _raise_missing(name: str, label: str, row: int, shown: str) -> None:
    raise InvalidInputError(
        f"{label}: column {name!r} contains NaN or missing values (first at data row {row}, "
        f"{shown!r}); remove or impute those rows, or leave the column out with --columns")


def _raise_infinite(name: str, label: str, row: int, shown: str) -> None:
    raise InvalidInputError(
        f"{label}: column {name!r} contains infinite values (first at data row {row}, "
        f"{shown!r}); remove those rows or replace the values")


def _check_finite(values: np.ndarray, names: list[str], label: str, start: int) -> None:
    """Raise for the first NaN or infinity, column by column as text is checked."""
    finite = np.isfinite(values)
    if finite.all():
        return
    for k in range(values.shape[1]):
        bad = np.flatnonzero(~finite[:, k])
        if bad.size:
            i = int(bad[0])
            value = float(values[i, k])
            if math.isnan(value):
                _raise_missing(names[k], label, start + i, repr(value))
            _raise_infinite(names[k], label, start + i, repr(value))


class _NpySource(_Source):
    """A NumPy .npy file, memory-mapped so that blocks are read on demand."""

    def __init__(self, path: Path, label: str):
        self.label = label
        with _open_binary(path, label) as f:
            magic = f.read(len(_NPY_MAGIC))
        # np.load reads what is neither .npy nor .npz as a pickle; only one
        # that starts as pickles do is called one.
        if not magic.startswith((_NPY_MAGIC, b"PK", b"\x80")):
            raise InvalidInputError(
                f"{label} is not a .npy file (those begin with the bytes \\x93NUMPY); "
                f"{_SUPPORTED}")
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r")
        except ValueError as exc:
            message = str(exc)
            if "pickle" in message or "Python objects" in message:
                raise InvalidInputError(
                    f"{label} holds Python objects (pickled data), which emix never loads; "
                    "save a plain numeric array with np.save(path, X.astype(float))") from None
            raise InvalidInputError(
                f"{label} is not a valid .npy file ({one_line(message)})") from None
        except (OSError, EOFError) as exc:
            raise InvalidInputError(
                f"{label} is not a valid .npy file ({one_line(str(exc))})") from None
        if not isinstance(array, np.ndarray):
            raise InvalidInputError(f"{label} is not a .npy array file")
        if array.dtype.names is not None:
            raise InvalidInputError(
                f"{label} holds a structured array (fields {', '.join(array.dtype.names)}); "
                "save a plain 2-D numeric array instead")
        if array.dtype.kind not in "biuf":
            raise InvalidInputError(
                f"{label} holds {array.dtype} values, not real numbers; "
                "save a numeric array with np.save(path, X.astype(float))")
        if array.ndim not in (1, 2):
            raise InvalidInputError(
                f"{label} holds a {array.ndim}-dimensional array; a table needs 1 or 2 "
                "dimensions (rows x columns)")
        if array.shape[0] == 0:
            raise InvalidInputError(f"{label} is empty: it has no rows of data")
        n_columns = 1 if array.ndim == 1 else array.shape[1]
        if n_columns == 0:
            raise InvalidInputError(f"{label} has no columns")
        self._array = array  # 1-D: one column, made a column per block
        self.names = [f"column {j + 1}" for j in range(n_columns)]

    def blocks(self, select: list[int], rows: int) -> Iterator[np.ndarray]:
        array = self._array
        names = [self.names[j] for j in select]
        whole = select == list(range(len(self.names)))
        for start in range(0, array.shape[0], rows):
            # Only these rows are read, and a pass over a large file does
            # not stay resident in the process (emix.io.pages).
            part = copy_rows(array, start, start + rows).reshape(-1, len(self.names))
            values = np.ascontiguousarray(part if whole else part[:, select],
                                          dtype=np.float64)  # no second copy of float64
            _check_finite(values, names, self.label, start + 1)
            yield values

    def close(self) -> None:
        # The map closes when the last array using it goes; chunks are copies.
        self._array = None


class _ParquetSource(_Source):
    """A Parquet file, read batch by batch with pyarrow.

    Whatever pyarrow raises while reading (a damaged file, a type it cannot
    cast) becomes an InvalidInputError naming the file and the columns.
    """

    def __init__(self, path: Path, label: str):
        self.label = label
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InvalidInputError(
                "reading Parquet needs pyarrow: pip install 'emix[parquet]'") from None
        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise InvalidInputError(
                f"{label} is not a valid Parquet file ({one_line(str(exc))}); if it was cut "
                "short (an interrupted copy or download), copy or write it again") from None
        schema = self._file.schema_arrow
        self.names = list(schema.names)
        self._types = [schema.field(j).type for j in range(len(schema.names))]
        self._rounded: set[str] = set()  # columns already warned of lost digits
        if not self.names:
            raise InvalidInputError(f"{label} has no columns")
        if self._file.metadata.num_rows == 0:
            raise InvalidInputError(f"{label} is empty: it has no rows of data")

    def blocks(self, select: list[int], rows: int) -> Iterator[np.ndarray]:
        import pyarrow as pa

        names = [self.names[j] for j in select]
        for j in select:
            kind, name = self._types[j], self.names[j]
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_boolean(kind) or pa.types.is_decimal(kind)):
                raise InvalidInputError(
                    f"{self.label}: column {name!r} is not numeric (Parquet type "
                    f"{kind}); drop it with --columns or encode it as numbers")
            if self.names.count(name) > 1:
                raise InvalidInputError(
                    f"{self.label} has {self.names.count(name)} columns named {name!r}, which "
                    "pyarrow reads by name and cannot tell apart; rename them "
                    "(pyarrow's Table.rename_columns) and write the file again")
        return self._batches(names, rows)

    def _batches(self, names: list[str], rows: int) -> Iterator[np.ndarray]:
        start = 1
        batches = self._file.iter_batches(batch_size=rows, columns=names)
        while True:
            with self._arrow_errors(f"the column(s) {', '.join(map(repr, names))} from data "
                                    f"row {start} on"):
                batch = next(batches, None)
            if batch is None:
                return
            out = np.empty((batch.num_rows, len(names)))
            for k, name in enumerate(names):
                column = batch.column(batch.schema.get_field_index(name))
                if column.null_count:
                    nulls = column.is_null().to_numpy(zero_copy_only=False)
                    _raise_missing(name, self.label, start + int(np.argmax(nulls)), "null")
                with self._arrow_errors(f"column {name!r} (Parquet type {column.type})"):
                    out[:, k] = self._floats(column, name, start)
            _check_finite(out, names, self.label, start)
            start += batch.num_rows
            yield out

    def _floats(self, column: Any, name: str, start: int) -> np.ndarray:
        """A column of a batch as float64; 64-bit integers beyond 2**53 are
        rounded to the nearest float64, with a warning (once per column)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = column.type
        if not (pa.types.is_integer(kind) and kind.bit_width == 64):
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        # pyarrow refuses to cast these; a fit needs no more than float64's
        # 16 digits, and a column of identifiers is the user's to leave out.
        values = column.to_numpy(zero_copy_only=False)
        beyond = values > _EXACT_INTEGERS
        if pa.types.is_signed_integer(kind):
            beyond |= values < -_EXACT_INTEGERS
        if name not in self._rounded and beyond.any():
            self._rounded.add(name)
            i = int(np.argmax(beyond))
            warnings.warn(
                f"{self.label}: column {name!r} holds integers beyond 2**53 (first at data row "
                f"{start + i}: {int(values[i])}), where float64 holds only some integers "
                f"exactly: they are read as the nearest float64 ({float(values[i])!r}), their "
                "last digits lost; if they are identifiers, leave the column out with --columns",
                DataWarning, stacklevel=2)
        return values  # converted, each to the nearest float64, where it is stored

    @contextlib.contextmanager
    def _arrow_errors(self, what: str) -> Iterator[None]:
        import pyarrow as pa

        try:
            yield
        except (pa.ArrowException, OSError) as exc:  # ArrowInvalid, thrift errors, ...
            raise InvalidInputError(
                f"{self.label}: reading {what} failed ({one_line(str(exc))}); the file is "
                "damaged or holds what emix cannot read as numbers: write it again, or leave "
                "those columns out with --columns") from None

    def close(self) -> None:
        self._file.close()


#: Integers up to this magnitude are float64 values exactly; beyond it, only some are.
_EXACT_INTEGERS = 2**53


# -------------------------------------------------------------------------- writing


def output_format(path: str | os.PathLike | None, fmt: str | None = None) -> str:
    """The output format: ``fmt`` checked, or else inferred from the extension.

    ``.json`` gives "json", ``.tsv`` "tsv", anything else (and standard
    output) "csv".
    """
    if fmt is not None:
        chosen = str(fmt).lower()
        if chosen not in _OUTPUT_FORMATS:
            raise InvalidInputError(
                f"unknown output format {fmt!r}; choose one of {', '.join(_OUTPUT_FORMATS)}")
        return chosen
    if path is None or (isinstance(path, str) and path == "-"):
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix in _BINARY_SUFFIXES:
        raise InvalidInputError(
            f"cannot write {str(path)!r}: tables are written as text; name the output "
            ".csv or .json (or .tsv)")
    return {".json": "json", ".tsv": "tsv"}.get(suffix, "csv")


#: Extensions of binary formats that a text table must not pretend to be.
_BINARY_SUFFIXES = (".parquet", ".pq", ".npy", ".npz", ".xlsx", ".xls", ".feather", ".arrow",
                    ".h5", ".hdf5", ".emix", ".zip", ".gz", ".png", ".svg", ".pdf")


def write_table(dest: str | os.PathLike | None, array: Any, names: Sequence[str], *,
                fmt: str | None = "csv", stdout: IO[str] | None = None) -> None:
    """Write a 2-D numeric array as CSV, TSV or JSON.

    Parameters
    ----------
    dest : str, path-like or None
        The output file, replaced atomically; ``"-"`` or None for ``stdout``.
    array : array-like of shape (n_rows, n_columns)
        Integers are written as integers, floats in the shortest form that
        reads back to the same float64.  A 1-D array is one column.
    names : sequence of str
        The column names (the CSV header; the JSON keys).
    fmt : {"csv", "tsv", "json"} or None
        None infers it from ``dest``'s extension (see :func:`output_format`).
        JSON is a list of objects, one per row: ``[{"a": 1.5, "b": 2}, ...]``,
        with null for NaN and infinities.
    stdout : text stream, optional
        Where ``"-"`` writes; default ``sys.stdout``.
    """
    values = _as_rows(array, len(names))
    with TableWriter(dest, names, fmt, stdout=stdout) as writer:
        writer.write(values)


class TableWriter:
    """Write a table chunk by chunk; a context manager.

    On a clean exit the file is complete and renamed over ``dest``; if the
    block raises, the temporary file is removed and an existing ``dest`` is
    left as it was.  Standard output is written as the chunks come.

    Parameters
    ----------
    dest, names, fmt, stdout
        As for :func:`write_table`.
    """

    def __init__(self, dest: str | os.PathLike | None, names: Sequence[str],
                 fmt: str | None = "csv", *, stdout: IO[str] | None = None):
        self.fmt = output_format(dest, fmt)
        self.names = [str(name) for name in names]
        if not self.names:
            raise InvalidInputError("a table to write needs at least one column")
        if self.fmt == "json" and len(set(self.names)) != len(self.names):
            duplicated = next(n for n in self.names if self.names.count(n) > 1)
            raise InvalidInputError(
                f"column name {duplicated!r} appears twice; JSON objects need unique names")
        self.rows_written = 0
        self._stream: IO[str] | None = None
        self._file = contextlib.ExitStack()
        self._done = False
        if dest is None or (isinstance(dest, str) and dest == "-"):
            self._path = None
            self._stdout = stdout if stdout is not None else sys.stdout
        else:
            self._path = check_writable(dest)
            self._stdout = None
        if self.fmt == "json":
            self._keys = [json.dumps(name) + ": " for name in self.names]
        else:
            self._delimiter = "\t" if self.fmt == "tsv" else ","

    def __enter__(self) -> TableWriter:
        if self._path is None:
            self._stream = self._stdout
        else:
            self._stream = self._file.enter_context(atomic_output(self._path, text=True))
        try:
            self._write_start()
        except BaseException as exc:
            self._done = True
            self._file.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._done = True
        if exc_type is None:
            try:
                self._write_end()
                self._stream.flush()
            except BaseException as error:
                self._file.__exit__(type(error), error, error.__traceback__)
                raise
        self._stream = None
        self._file.__exit__(exc_type, exc, tb)

    def write(self, chunk: Any) -> None:
        """Append rows: an array-like of shape (m, len(names))."""
        if self._stream is None or self._done:
            raise RuntimeError("TableWriter.write needs an open writer: use it in a with block")
        values = _as_rows(chunk, len(self.names))
        if not len(values):
            return
        rows = values.tolist()
        if self.fmt == "json":
            text = self._json_rows(rows, values)
        else:
            text = "".join(self._delimiter.join(map(repr, row)) + "\n" for row in rows)
            if values.dtype.kind == "f":
                # Whole floats as integers ("2", not "2.0"): they read back to
                # the same float64, and labels stored among floats stay labels.
                text = _WHOLE_FLOAT.sub("", text)
        self._stream.write(text)
        self.rows_written += len(rows)

    # The pieces of the document.

    def _write_start(self) -> None:
        if self.fmt == "json":
            self._stream.write("[")
        else:
            writer = csv.writer(self._stream, delimiter=self._delimiter, lineterminator="\n")
            writer.writerow(self.names)

    def _json_rows(self, rows: list[list[Any]], values: np.ndarray) -> str:
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            # JSON has no NaN or infinity: write null.
            rows = [[v if math.isfinite(v) else None for v in row] for row in rows]
        keys = self._keys
        parts = []
        for row in rows:
            separator = "\n" if self.rows_written == 0 and not parts else ",\n"
            cells = ", ".join(key + _json_number(v) for key, v in zip(keys, row, strict=True))
            parts.append(separator + "{" + cells + "}")
        return "".join(parts)

    def _write_end(self) -> None:
        if self.fmt == "json":
            self._stream.write("\n]\n")


#: The ".0" that ends a whole float's repr (a cell is followed by a delimiter or newline).
_WHOLE_FLOAT = re.compile(r"\.0(?=[,\t\n])")


def _json_number(value: float | int | None) -> str:
    if value is None:
        return "null"
    text = repr(value)
    # -0.0 keeps its point: JSON's integer -0 would read back as 0.
    return text[:-2] if text.endswith(".0") and text != "-0.0" else text


def _as_rows(array: Any, width: int) -> np.ndarray:
    """A 2-D array of ints or floats, ``width`` columns wide."""
    values = np.asarray(array)
    if values.ndim == 1 and width == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[1] != width:
        raise InvalidInputError(
            f"cannot write an array of shape {values.shape} under {width} column "
            f"name{'s' if width != 1 else ''}; expected shape (n_rows, {width})")
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    if values.dtype.kind not in "iuf":
        raise InvalidInputError(
            f"cannot write {values.dtype} values as a numeric table; pass numbers")
    return values
