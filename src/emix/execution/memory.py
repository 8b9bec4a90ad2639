"""In-memory execution: the E-step mapped over row chunks, statistics summed.

Chunking bounds every temporary of the E-step by the chunk, never by
n_samples: the largest one is chunk_rows x K x d.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .summary import ColumnSummary, summarise
from .threads import thread_pool
from .workspace import Workspace

#: Bytes of the largest per-chunk temporary (rows x K x d) by default.  The
#: E-step keeps about three of them, so the working set stays in the tens of MB.
DEFAULT_CHUNK_BYTES = 8 * 2**20

#: Most rows per chunk: the NumPy path's sums inside a chunk run in the
#: data's precision (float32 for float32 data), so chunks stay short enough
#: for those sums to keep float32's precision; across chunks everything adds
#: in float64 (the compiled kernels switch to float64 after each block).
MAX_CHUNK_ROWS = 2**16


#: Fewest rows worth a task of their own: below this a thread hand-over (tens
#: of microseconds) costs about what the second core saves (measured on case A).
MIN_TASK_ROWS = 16384


#: Rows per block of :meth:`InMemoryData.column_summary`.
SUMMARY_ROWS = 2048


def default_task_rows(n_samples: int, n_threads: int = 1) -> int:
    """Rows per chunk of a fit: as many as MAX_CHUNK_ROWS allows, so that
    per-chunk overheads vanish, in equal chunks that the threads share
    evenly.  The
    compiled kernels keep nothing chunk-sized (only blocks of a few hundred
    rows; measured on case C: chunks of 65,536 rows 5% faster than 16,384),
    and the NumPy path splits a chunk further by its temporaries' size
    (:func:`default_chunk_rows`)."""
    tasks = max(1, min(n_threads, n_samples // MIN_TASK_ROWS))
    # Equal chunks, a multiple of the threads in number: with 65,536-row
    # chunks case E's 200,000 rows made 3 full chunks and a sliver, one
    # thread taking two full ones (measured: E 30% slower than balanced).
    n_chunks = -(-max(n_samples, 1) // MAX_CHUNK_ROWS)
    n_chunks = -(-n_chunks // tasks) * tasks
    return int(max(1, -(-n_samples // n_chunks)))


def default_chunk_rows(n_components: int, n_features: int, itemsize: int) -> int:
    """Rows per chunk so that a (rows, K, d) temporary takes DEFAULT_CHUNK_BYTES."""
    per_row = max(1, n_components) * max(1, n_features) * itemsize
    return int(min(MAX_CHUNK_ROWS, max(64, DEFAULT_CHUNK_BYTES // per_row)))


class InMemoryData:
    """Rows of an array (and optional frequency weights), visited in chunks."""

    def __init__(self, X: np.ndarray, sample_weight: np.ndarray | None = None, *,
                 chunk_rows: int, n_threads: int = 1, workspace: Workspace | None = None,
                 weight_exponent: int = 0):
        self.X = X
        self.sample_weight = sample_weight
        #: The caller scaled the weights by 2**weight_exponent (sums of
        #: weights scaled back by it are in the user's units).
        self.weight_exponent = weight_exponent
        self.chunk_rows = int(chunk_rows)
        self.n_threads = max(1, int(n_threads))
        self.workspace = Workspace() if workspace is None else workspace
        self._workspaces = threading.local()

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    def chunks(self, rows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(rows of X, their weights or None), ``rows`` (default: the chunk
        size) at a time."""
        weights = self.sample_weight
        step = rows or self.chunk_rows
        for start in range(0, self.n_samples, step):
            stop = start + step
            yield self.X[start:stop], None if weights is None else weights[start:stop]

    def map_reduce(self, step: Callable[[np.ndarray, np.ndarray | None, Workspace], Any]) -> Any:
        """``sum(step(X_chunk, w_chunk, workspace) for each chunk)``.

        With several threads the chunks run concurrently, each thread with
        its own workspace; the parts are still added in chunk order, so the
        result does not depend on the number of threads."""
        n_chunks = -(-self.n_samples // self.chunk_rows)
        if self.n_threads == 1 or n_chunks < 2:
            parts = (step(X, weights, self.workspace) for X, weights in self.chunks())
        else:
            def run(chunk):
                return step(*chunk, self._thread_workspace())
            parts = thread_pool(self.n_threads).map(run, self.chunks())
        total = None
        for part in parts:
            total = part if total is None else total + part
        return total

    def _thread_workspace(self) -> Workspace:
        workspace = getattr(self._workspaces, "workspace", None)
        if workspace is None:
            workspace = self._workspaces.workspace = Workspace()
        return workspace

    def map_rows(self, step: Callable[[np.ndarray, Workspace], np.ndarray],
                 out: np.ndarray) -> np.ndarray:
        """Write ``step(X_chunk, workspace)`` into the matching rows of ``out``."""
        for start in range(0, self.n_samples, self.chunk_rows):
            stop = start + self.chunk_rows
            out[start:stop] = step(self.X[start:stop], self.workspace)
        return out

    def column_summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each column's minimum, maximum and (weighted) variance over the
        rows of positive weight, in one pass of chunks (float64)."""
        # Short blocks: this pass's temporaries (a few per block) are not
        # the E-step's, and should not add to a fit's peak memory.
        return summarise(ColumnSummary.of(X, weights) for X, weights in self.chunks(SUMMARY_ROWS))

    @property
    def n_positive(self) -> int:
        """Rows of positive weight."""
        if self.sample_weight is None:
            return self.n_samples
        return int(np.count_nonzero(self.sample_weight))

    def sample(self, max_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """At most ``max_rows`` rows with positive weight, and their weights.

        All of them, in order, when there are few enough (no randomness
        spent); otherwise a uniform random subset without replacement, whose
        weights keep the sample unbiased.
        """
        weights = self.sample_weight
        if weights is None:
            rows = np.arange(self.n_samples)
        else:
            rows = np.flatnonzero(weights > 0)
        if rows.size > max_rows:
            rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
        X = self.X[rows]
        w = np.ones(rows.size) if weights is None else weights[rows]
        return X, w
