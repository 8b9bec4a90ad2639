"""A digest of a fit's data, so that a checkpoint is resumed only on the data
it was written for.

Each back-end sees the rows in its own pieces (threads' ranges of an array,
a file's chunks, a cluster's blocks), and the digest must not depend on
them: a fit resumed with another chunk size, thread count or block layout
reads the same data.  So the rows fall into fixed groups, counted from the
first row (:data:`GROUP_BYTES` of rows each); every group is hashed (SHA-256,
with its index, so that the order of the rows counts) and the groups' hashes
are added modulo 2**256.  A :class:`RowDigest` of some rows is a value that
adds, like the survey's column summary: a piece that holds a group only in
part keeps those rows' bytes until the piece next to it completes the group.

This detects data that changed by accident (a refreshed file, other rows,
another order); it is no defence against data crafted to collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .memory import InMemoryData
from .threads import thread_pool

#: Bytes of float64 rows per group: large enough that hashing runs at its
#: full speed, small enough that the partial groups a Dask block sends to
#: its neighbours stay small.
GROUP_BYTES = 2**16

#: Groups per task when an array is hashed on several threads.
_GROUPS_PER_TASK = 64

_MODULUS = 2**256


def rows_per_group(n_columns: int) -> int:
    """Rows of each group for rows of ``n_columns`` numbers (whatever their
    dtype, so that chunks of mixed dtypes share the groups)."""
    return max(1, GROUP_BYTES // (8 * max(1, n_columns)))


class _Piece(NamedTuple):
    group: int
    first: int  # its first row's place in the group
    rows: int
    data: bytes


@dataclass(frozen=True)
class RowDigest:
    """The digest of consecutive rows, in groups of ``group_rows`` rows."""

    group_rows: int
    total: int = 0  # the sum of the complete groups' hashes, modulo 2**256
    pieces: tuple[_Piece, ...] = ()  # the groups held only in part

    @classmethod
    def of(cls, rows: np.ndarray, start: int, group_rows: int) -> RowDigest:
        """The digest of ``rows`` (n,) or (n, d), the first of them row
        ``start`` of the data."""
        total, pieces = 0, []
        stop = start + rows.shape[0]
        begin = start
        while begin < stop:
            group, first = divmod(begin, group_rows)
            end = min(stop, (group + 1) * group_rows)
            block = rows[begin - start:end - start]
            # Native byte order, C order: the bytes depend on the values only.
            block = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("="))
            if first == 0 and end - begin == group_rows:
                total += _group_hash(group, block)
            else:
                pieces.append(_Piece(group, first, end - begin, block.tobytes()))
            begin = end
        return cls(group_rows, total % _MODULUS, tuple(pieces))

    def __add__(self, other: RowDigest) -> RowDigest:
        assert other.group_rows == self.group_rows
        total = self.total + other.total
        merged: list[_Piece] = []
        for piece in sorted(self.pieces + other.pieces):
            last = merged[-1] if merged else None
            if last is not None and last.group == piece.group \
                    and last.first + last.rows == piece.first:
                merged[-1] = piece = _Piece(piece.group, last.first, last.rows + piece.rows,
                                            last.data + piece.data)
            else:
                merged.append(piece)
        kept = []
        for piece in merged:
            if piece.first == 0 and piece.rows == self.group_rows:
                total += _group_hash(piece.group, piece.data)
            else:
                kept.append(piece)
        return RowDigest(self.group_rows, total % _MODULUS, tuple(kept))

    def hexdigest(self) -> str:
        """The digest of all the data's rows (these must be all of them)."""
        total = self.total
        if self.pieces:
            # Only the last group may be short, and it starts at its first row.
            (last,) = self.pieces
            assert last.first == 0, "rows are missing from the digest"
            total += _group_hash(last.group, last.data)
        return f"{total % _MODULUS:064x}"[:32]


def _group_hash(group: int, data: Any) -> int:
    digest = hashlib.sha256(group.to_bytes(8, "little"))
    digest.update(data)
    return int.from_bytes(digest.digest(), "little")


def combined(rows: RowDigest, weights: RowDigest | None) -> str:
    """One text for the rows' and the weights' digests."""
    return rows.hexdigest() if weights is None else f"{rows.hexdigest()}+{weights.hexdigest()}"


def data_digest(data: Any) -> str:
    """The digest of a fit's data: the rows in the fit's dtype and the
    weights in the user's units (float64).  An array is hashed now, on the
    fit's threads (about 0.5 s per GB and thread); data read in pieces got
    theirs in the pass that surveyed them."""
    if not isinstance(data, InMemoryData):
        return data.digest
    X, weights, n_threads = data.X, data.sample_weight, data.n_threads
    rows = _in_parts(X.shape[0], rows_per_group(X.shape[1]), lambda a, b: X[a:b], n_threads)
    if weights is None:
        return combined(rows, None)
    # The weights were scaled by a power of two: back in the user's units.
    own = _in_parts(weights.shape[0], rows_per_group(1),
                    lambda a, b: np.ldexp(weights[a:b], -data.weight_exponent), n_threads)
    return combined(rows, own)


def _in_parts(n_rows: int, group_rows: int, rows: Callable[[int, int], np.ndarray],
              n_threads: int) -> RowDigest:
    """The digest of ``rows(0, n_rows)``, whole groups per task."""
    step = group_rows * _GROUPS_PER_TASK

    def part(start: int) -> RowDigest:
        return RowDigest.of(rows(start, start + step), start, group_rows)

    return sum(thread_pool(n_threads).map(part, range(0, n_rows, step)), RowDigest(group_rows))
