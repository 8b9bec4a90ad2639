"""Numeric tables from CSV/TSV files, with errors that name the bad cell."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..exceptions import InvalidInputError

#: Header names of a leading row-name column (R's write.csv writes "").
_ROW_NAME_HEADERS = ("", "rownames", "row.names")


def read_table(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a delimited text file of numbers.

    The delimiter (comma, tab, semicolon or whitespace) and a header row are
    detected.  A first column headed "", "rownames" or "row.names" holds row
    names and is dropped.  Returns the (n, d) float64 array and the column
    names (``column 1``, ... when there is no header).
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise InvalidInputError(f"{str(path)!r} is a directory, not a data file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{str(path)!r} is not a UTF-8 text file; pass a CSV/TSV table of numbers"
        ) from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidInputError(f"{str(path)!r} is empty: there is nothing to fit")
    delimiter = _delimiter(lines[0])
    if delimiter is None:
        rows = [line.split() for line in lines]
    else:
        rows = [[cell.strip() for cell in row] for row in csv.reader(lines, delimiter=delimiter)]
    header: list[str] | None = None
    if any(not _is_number(cell) for cell in rows[0]):
        header, rows = rows[0], rows[1:]
    if not rows:
        raise InvalidInputError(f"{str(path)!r} has a header but no data rows")
    width = len(rows[0])
    names = header if header is not None else [f"column {j + 1}" for j in range(width)]
    if len(names) != width:
        raise InvalidInputError(
            f"{str(path)!r}: the header has {len(names)} columns but row 1 has {width}")
    values = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidInputError(
                f"{str(path)!r}: row {i + 1} has {len(row)} columns, expected {width}")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise InvalidInputError(
                    f"{str(path)!r}: column {names[j]!r} is not numeric (row {i + 1} holds "
                    f"{cell!r}); drop or encode that column"
                ) from None
    if header is not None and width > 1 and names[0].strip().lower() in _ROW_NAME_HEADERS:
        values, names = values[:, 1:], names[1:]
    return values, names


def _delimiter(line: str) -> str | None:
    for candidate in (",", "\t", ";"):
        if candidate in line:
            return candidate
    return None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
