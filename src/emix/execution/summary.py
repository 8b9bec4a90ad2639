"""Mergeable summaries of rows, for back-ends that see the data in pieces.

Both are values that add: the summary of two sets of rows is the sum of
their summaries, whichever chunk, file or worker each part came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ColumnSummary:
    """Each column's minimum, maximum, weighted mean and sum of squared
    deviations over rows of positive weight (float64).

    Parts merge by Chan, Golub & LeVeque's pairwise update, so variances
    keep their digits however the rows were split (no moments about zero).
    """

    weight: float
    mean: np.ndarray
    squares: np.ndarray  # sum_i w_i (x_i - mean)^2, per column
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, weights: np.ndarray | None) -> ColumnSummary | None:
        """The summary of ``X``'s rows of positive weight (None if there are none)."""
        if weights is not None:
            keep = weights > 0
            X, weights = X[keep], weights[keep]
        if X.shape[0] == 0:
            return None
        X = X.astype(np.float64, copy=False)
        if weights is None:
            weight = float(X.shape[0])
            mean = X.mean(axis=0)
            centred = X - mean
            squares = np.einsum("ij,ij->j", centred, centred)
        else:
            weight = float(weights.sum())
            mean = weights @ X / weight
            centred = X - mean
            squares = weights @ (centred * centred)
        return cls(weight, mean, squares, X.min(axis=0), X.max(axis=0))

    def __add__(self, other: ColumnSummary | None) -> ColumnSummary:
        if other is None:
            return self
        weight = self.weight + other.weight
        delta = other.mean - self.mean
        share = other.weight / weight
        return ColumnSummary(
            weight=weight,
            mean=self.mean + delta * share,
            squares=self.squares + other.squares + delta * delta * self.weight * share,
            low=np.minimum(self.low, other.low),
            high=np.maximum(self.high, other.high),
        )

    def __radd__(self, other: ColumnSummary | None) -> ColumnSummary:
        return self if other is None or other == 0 else other + self

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(minimum, maximum, weighted variance) of each column."""
        return self.low, self.high, np.maximum(self.squares / self.weight, 0.0)


def summarise(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge an iterable of summaries (None for parts without rows)."""
    total = None
    for part in parts:
        if part is not None:
            total = part if total is None else total + part
    assert total is not None, "no row of positive weight"  # the caller checked
    return total.result()


@dataclass(frozen=True)
class RowSample:
    """A uniform random sample, without replacement, of rows of positive
    weight: the ``size`` rows with the smallest random keys (bottom-k
    sampling, which is reservoir sampling that merges).

    Every row draws a key where it is read, so a sample is built in one pass
    over chunks, or in parallel over blocks and merged, holding at most
    ``size`` rows at any time.  ``index`` (the rows' positions in the data)
    restores the data's order at the end.
    """

    keys: np.ndarray
    index: np.ndarray
    rows: np.ndarray
    weights: np.ndarray
    size: int

    @classmethod
    def of(cls, X: np.ndarray, weights: np.ndarray | None, start: int, size: int,
           rng: np.random.Generator) -> RowSample:
        """The sample of a chunk whose first row is row ``start`` of the data."""
        index = np.arange(start, start + X.shape[0])
        w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights is not None:
            keep = w > 0
            index, X, w = index[keep], X[keep], w[keep]
        keys = rng.random(index.size)
        return cls(keys, index, X, w, size)._trimmed()

    def __add__(self, other: RowSample) -> RowSample:
        return RowSample(np.concatenate([self.keys, other.keys]),
                         np.concatenate([self.index, other.index]),
                         np.concatenate([self.rows, other.rows]),
                         np.concatenate([self.weights, other.weights]),
                         self.size)._trimmed()

    def _trimmed(self) -> RowSample:
        if self.keys.size <= self.size:
            return self
        kept = np.argpartition(self.keys, self.size - 1)[:self.size]
        return RowSample(self.keys[kept], self.index[kept], self.rows[kept],
                         self.weights[kept], self.size)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The sampled rows and their weights, in the data's order."""
        order = np.argsort(self.index, kind="stable")
        return np.ascontiguousarray(self.rows[order]), self.weights[order]
