"""Data read a chunk of rows at a time: files larger than memory, memory maps,
or any source that can be read again from the start.

EM makes one pass over the data per iteration; each pass here reads the
source afresh, runs the in-memory back-end on the chunk in hand (on every
core) and adds the statistics, so memory holds one chunk at a time and the
result equals the in-memory fit's to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .. import _validation as check
from ..exceptions import InvalidInputError
from ..io.pages import copy_rows
from .digest import RowDigest, combined, rows_per_group
from .memory import InMemoryData, default_task_rows
from .summary import ColumnSummary, RowSample
from .workspace import Workspace

#: Bytes of one chunk read from a memory map (the page cache holds the file;
#: the process only ever maps this much of it at a time).
MEMMAP_CHUNK_BYTES = 64 * 2**20  # also io.tables' default for files

ChunkItem = Any  # an array (n, d), or a pair (array, weights (n,))


class ChunkedData:
    """Rows from ``source()``, an iterable of arrays or (array, weights) pairs.

    ``source`` is called once per pass and must give the same rows every
    time.  A first pass at construction checks every chunk and counts the
    rows, so that errors surface before any fitting, with the chunk named.

    ``sample_weight`` (n,), if given, holds the weights of all rows in
    memory instead (for sources whose chunks are plain arrays).
    """

    def __init__(self, source: Callable[[], Iterable[ChunkItem]], *,
                 sample_weight: np.ndarray | None = None, label: str = "the chunk source",
                 task_rows: int | None = None, n_threads: int = 1):
        self._source = source
        self._given_weights = sample_weight
        self.label = label
        self._task_rows = task_rows
        self._runner = InMemoryData(np.empty((0, 1)), chunk_rows=1)
        self.n_threads = n_threads
        #: :meth:`chunks` scales the weights by 2**weight_exponent (set by the survey).
        self.weight_exponent = 0
        self._survey()

    # -- what the fit needs to know ------------------------------------------------
    @property
    def n_threads(self) -> int:
        return self._runner.n_threads

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        self._runner.n_threads = max(1, int(value))

    def _survey(self) -> None:
        """One pass: shapes, dtypes, weights, the columns' summary and the
        data's digest (:mod:`emix.execution.digest`); every chunk checked."""
        n_samples = 0
        n_features = None
        all_float32 = True
        has_weights = self._given_weights is not None
        positive = 0
        largest_weight = 0.0
        summary = None
        rows_digest = weights_digest = None
        for number, (X, weights) in enumerate(self._raw_chunks(), start=1):
            if n_features is None:
                n_features = X.shape[1]
                rows_digest = RowDigest(rows_per_group(n_features))
            elif X.shape[1] != n_features:
                raise InvalidInputError(
                    f"chunk {number} of {self.label} has {X.shape[1]} columns, the chunks "
                    f"before it {n_features}; every chunk must have the same columns.")
            all_float32 &= X.dtype == np.float32
            if weights is None:
                positive += X.shape[0]
            else:
                has_weights = True
                positive += int(np.count_nonzero(weights))
                if weights.size:
                    largest_weight = max(largest_weight, float(weights.max()))
            rows_digest += RowDigest.of(X, n_samples, rows_digest.group_rows)
            if weights is not None and weights_digest is None:
                weights_digest = _ones_digest(n_samples)
            if weights_digest is not None:
                weights_digest += RowDigest.of(np.ones(X.shape[0]) if weights is None else weights,
                                               n_samples, weights_digest.group_rows)
            n_samples += X.shape[0]
            part = ColumnSummary.of(X, weights)
            summary = part if summary is None else summary + part
        if n_features is None or n_samples == 0:
            raise InvalidInputError(
                f"{self.label} gave no rows; pass a source with at least one row of data.")
        if self._given_weights is not None and self._given_weights.shape[0] != n_samples:
            raise InvalidInputError(
                f"sample_weight has {self._given_weights.shape[0]} weights but {self.label} "
                f"has {n_samples} rows; give one weight per row.")
        if has_weights and positive == 0:
            raise InvalidInputError(
                f"the weights of {self.label} are zero everywhere: at least one row needs a "
                "positive weight for there to be anything to fit.")
        self.n_samples = n_samples
        self.n_features = n_features
        self.n_positive = positive
        self.dtype = np.dtype(np.float32 if all_float32 else np.float64)
        self.has_weights = has_weights
        self._summary = summary
        #: Of the rows and the weights as the fit reads them (1 where a chunk has none).
        self.digest = combined(rows_digest, weights_digest)
        if has_weights:
            # As in memory: the fit does not depend on the weights' scale, and
            # a power of two brings them near 1 exactly.
            self.weight_exponent = -int(np.frexp(largest_weight)[1])

    def _raw_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Checked chunks as the source gives them (any float dtype)."""
        items = self._source()
        if items is None or not isinstance(items, Iterable):
            raise InvalidInputError(
                f"{self.label} returned {type(items).__name__}, not an iterable of chunks; "
                "it must return an iterator of arrays or of (array, weights) pairs.")
        start = 0
        given = self._given_weights
        for number, item in enumerate(items, start=1):
            name = f"chunk {number} of {self.label}"
            weights = None
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise InvalidInputError(
                        f"{name} is a tuple of {len(item)} items; a chunk is an array or "
                        "a pair (array, weights).")
                item, weights = item
            X = check.as_float_array(item, name=name)
            if weights is not None:
                if given is not None:
                    raise InvalidInputError(
                        f"{name} carries its own weights and sample_weight was given too; "
                        "give the weights one way only.")
                weights = check.check_sample_weight(weights, X.shape[0],
                                                    name=f"the weights of {name}",
                                                    allow_all_zero=True)
            elif given is not None:
                weights = given[start:start + X.shape[0]]
                if weights.shape[0] != X.shape[0]:
                    raise InvalidInputError(
                        f"sample_weight has {given.shape[0]} weights but {self.label} has "
                        "more rows; give one weight per row.")
            yield X, weights
            start += X.shape[0]

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(rows, weights or None) in the fit's dtype, the weights scaled as
        the survey decided; checks that each pass gives the survey's rows."""
        seen = 0
        for X, weights in self._raw_chunks():
            if X.dtype != self.dtype:
                X = X.astype(self.dtype)
            if self.has_weights:
                weights = np.ones(X.shape[0]) if weights is None else weights
                weights = np.ldexp(weights, self.weight_exponent)
            seen += X.shape[0]
            if seen > self.n_samples:
                break
            yield X, weights
        if seen != self.n_samples:
            raise InvalidInputError(
                f"{self.label} gave {seen if seen <= self.n_samples else 'more than'} "
                f"{'' if seen <= self.n_samples else str(self.n_samples) + ' '}rows in this "
                f"pass but {self.n_samples} in the first: EM reads the data once per "
                "iteration, so the source must give the same rows every time it is called "
                "(a function returning a fresh iterator, not a used one).")

    # -- the back-end interface ----------------------------------------------------
    def map_reduce(self, step: Callable[[np.ndarray, np.ndarray | None, Workspace], Any]) -> Any:
        """``sum(step(rows, weights, workspace))`` over the whole source; each
        chunk runs on the in-memory back-end's threads."""
        runner = self._runner
        total = None
        for X, weights in self.chunks():
            runner.X, runner.sample_weight = X, weights
            runner.chunk_rows = self._task_rows or default_task_rows(X.shape[0],
                                                                     runner.n_threads)
            part = runner.map_reduce(step)
            total = part if total is None else total + part
        runner.X, runner.sample_weight = np.empty((0, 1)), None
        return total

    def column_summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """From the survey's pass: no pass of its own."""
        return self._summary.result()

    def sample(self, max_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`InMemoryData.sample`: all rows of positive weight, in
        order, when there are at most ``max_rows`` (no randomness spent, so
        the fit matches the in-memory one); otherwise a uniform sample
        without replacement, drawn in one pass (bottom-k), never holding
        more than ``max_rows`` rows besides the chunk in hand."""
        if self.n_positive <= max_rows:
            rows, weights = [], []
            for X, w in self.chunks():
                if w is not None:
                    X, w = X[w > 0], w[w > 0]
                rows.append(X)
                weights.append(np.ones(X.shape[0]) if w is None else w)
            return np.concatenate(rows), np.concatenate(weights)
        sample = None
        start = 0
        for X, weights in self.chunks():
            part = RowSample.of(X, weights, start, max_rows, rng)
            sample = part if sample is None else sample + part
            start += X.shape[0]
        assert sample is not None
        return sample.result()


def _ones_digest(n_rows: int) -> RowDigest:
    """The digest of ``n_rows`` weights of 1: those of the chunks before
    the first that has weights."""
    digest = RowDigest(rows_per_group(1))
    step = 64 * digest.group_rows
    for start in range(0, n_rows, step):
        digest += RowDigest.of(np.ones(min(step, n_rows - start)), start, digest.group_rows)
    return digest


# ------------------------------------------------------------------ memory maps


def memmap_source(X: np.ndarray, rows: int | None = None
                  ) -> Callable[[], Iterator[np.ndarray]]:
    """A chunk source over a memory map that copies out one chunk at a time
    without leaving its pages in the process (see :mod:`emix.io.pages`): a
    fit of a 4 GB map would otherwise end with the whole file resident.
    ``rows`` per chunk (default: MEMMAP_CHUNK_BYTES worth)."""
    row_bytes = X.dtype.itemsize * int(np.prod(X.shape[1:]))
    rows = rows or max(1, MEMMAP_CHUNK_BYTES // max(1, row_bytes))
    def source() -> Iterator[np.ndarray]:
        for start in range(0, X.shape[0], rows):
            yield copy_rows(X, start, start + rows)

    return source
