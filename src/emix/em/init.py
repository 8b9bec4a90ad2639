"""Initial parameters: k-means, k-means++, random responsibilities, random
rows, or the user's own.

Clustering runs on a bounded sample of the rows (all of them when there are
few enough); the initial parameters then come from one pass of hard (or
random) responsibilities over all the data through the same statistics as
EM itself.  Frequency weights are honoured everywhere: a weight of 2 draws
and counts like the row twice.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..exceptions import InvalidInputError, floating_point_guard
from ..execution.workspace import Workspace
from ..families.covariance import SingularCovariance
from ..families.gaussian import GaussianFamily, GaussianParams

#: Rows that k-means and reseeding look at, at most.
SAMPLE_ROWS = 100_000

INIT_METHODS = ("kmeans", "k-means++", "kmeans++", "random", "random_from_data")


def distinct_rows(X: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``X`` in lexicographic order, each with the sum of
    its weights.

    Initialisation works on this canonical form, so that a row of weight 2
    and a row given twice are the same input, and the order of the rows does
    not matter: the fit is invariant to both, whatever the method.
    """
    # np.unique(X, axis=0) would sort the rows as opaque records, ten times
    # slower than sorting on the columns as numbers.
    order = np.lexsort(X.T[::-1])
    ordered = X[order]
    starts = np.ones(X.shape[0], dtype=bool)
    starts[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    groups = np.cumsum(starts) - 1
    unique = ordered[starts]
    return unique, np.bincount(groups, weights=weights[order], minlength=unique.shape[0])


def distinct_sample(data: Any, n_components: int, rng: np.random.Generator, *,
                    what: str = "X", remedy: str = "Lower n_components."
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a sample of at most SAMPLE_ROWS rows of ``data``
    (:func:`distinct_rows`), which the initialisation methods work on;
    fewer than ``n_components`` of them is an error."""
    sample = data.sample(SAMPLE_ROWS, rng)
    with floating_point_guard():
        distinct = distinct_rows(*sample)
    if distinct[0].shape[0] < n_components:
        raise InvalidInputError(
            f"{what} has only {distinct[0].shape[0]} distinct rows (with positive weight"
            f"{'' if data.n_samples <= SAMPLE_ROWS else ', in a sample of the rows'}) "
            f"for n_components={n_components}: some components would coincide. {remedy}"
        )
    return distinct


def kmeans_plusplus(X: np.ndarray, weights: np.ndarray, n_clusters: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Greedy weighted k-means++ seeding (Arthur & Vassilvitskii, 2007).

    Each centre is drawn by inverse transform sampling, one uniform number
    per draw, with probability proportional to weight x squared distance to
    the nearest centre; the best of ``2 + log K`` candidates is kept.
    Returns indices into ``X``.
    """
    n_local_trials = 2 + int(math.log(n_clusters))
    cumulative = np.cumsum(weights)
    first = _draw(cumulative, rng.random(1))[0]
    indices = [first]
    closest = _squared_distances(X, X[first:first + 1])[:, 0]
    for _ in range(1, n_clusters):
        cumulative = np.cumsum(weights * closest)
        if not cumulative[-1] > 0:  # every row is already a centre
            indices.append(int(rng.integers(X.shape[0])))
            continue
        candidates = _draw(cumulative, rng.random(n_local_trials))
        candidate_distances = np.minimum(closest[:, None],
                                         _squared_distances(X, X[candidates]))
        potentials = weights @ candidate_distances
        best = int(np.argmin(potentials))
        indices.append(int(candidates[best]))
        closest = candidate_distances[:, best]
    return np.asarray(indices)


def kmeans(X: np.ndarray, weights: np.ndarray, n_clusters: int, rng: np.random.Generator,
           *, max_iter: int = 300, tol: float = 1e-4) -> np.ndarray:
    """Weighted Lloyd iterations from k-means++ seeds; returns the centres.

    Stops when the centres move by less than ``tol`` times the data's mean
    variance (scikit-learn's rule).  An empty cluster is moved to the row
    farthest from its centre.
    """
    origin = weights @ X / weights.sum()
    centred = X - origin
    variance = weights @ (centred**2) / weights.sum()
    threshold = tol * float(variance.mean())
    centres = centred[kmeans_plusplus(centred, weights, n_clusters, rng)]
    for _ in range(max_iter):
        distances = _squared_distances(centred, centres)
        labels = np.argmin(distances, axis=1)
        mass = np.bincount(labels, weights=weights, minlength=n_clusters)
        # One weighted count per feature: np.add.at is an order of magnitude
        # slower for the same sums.
        sums = np.stack([np.bincount(labels, weights=column * weights, minlength=n_clusters)
                         for column in centred.T], axis=1)
        new = centres.copy()
        filled = mass > 0
        new[filled] = sums[filled] / mass[filled, None]
        if not filled.all():
            own = distances[np.arange(len(labels)), labels]
            own[weights <= 0] = -np.inf
            far = np.argsort(own)[::-1]
            for k, row in zip(np.flatnonzero(~filled), far, strict=False):
                new[k] = centred[row]
        moved = float(((new - centres) ** 2).sum())
        centres = new
        if moved <= threshold:
            break
    return centres + origin


def _draw(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    picks = np.searchsorted(cumulative, uniforms * cumulative[-1], side="right")
    return np.minimum(picks, cumulative.size - 1)


def _squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(n, k) squared Euclidean distances; X should be roughly centred."""
    distances = (X**2).sum(axis=1)[:, None] - 2.0 * (X @ centres.T)
    distances += (centres**2).sum(axis=1)
    return np.maximum(distances, 0.0)


def initial_params(family: GaussianFamily, data: Any, n_components: int, method: str,
                   rng: np.random.Generator, sample: tuple[np.ndarray, np.ndarray] | None, *,
                   weights_init: np.ndarray | None = None,
                   means_init: np.ndarray | None = None,
                   precisions_init: np.ndarray | None = None) -> GaussianParams:
    """Parameters to start EM from.

    Whatever the user gave (``*_init``, already validated) replaces the
    corresponding part of the method's answer; when all three are given the
    method does not run at all.
    """
    given = (weights_init, means_init, precisions_init)
    if all(part is not None for part in given):
        covariances = _covariances_from_user(family, precisions_init)
        return family.make_params(weights_init, means_init, covariances)

    sample_X, sample_w = sample
    sample_X64 = sample_X.astype(np.float64, copy=False)
    if method == "random_from_data":
        rows = _draw_rows_without_replacement(sample_w, n_components, rng)
        total = _data_covariance(family, sample_X64, sample_w)
        covariances = total if not family.covariance.per_component else np.repeat(
            np.asarray(total)[None], n_components, axis=0)
        params = family.make_params(
            np.full(n_components, 1.0 / n_components),
            sample_X64[rows],
            family.covariance.regularise(covariances, family.reg_covar),
        )
    else:
        if method == "random":
            # Random responsibilities of the sample's rows, not of every
            # row: drawn in one place, they do not depend on how the data
            # are split into chunks, threads or Dask blocks (a generator
            # shared by threads, or copied to workers, would), and with
            # more rows than the sample the average of random
            # responsibilities is the data's mean anyway.
            centre = sample_w @ sample_X64 / sample_w.sum()
            shift = np.repeat(centre[None], n_components, axis=0)
            resp = rng.random((sample_X64.shape[0], n_components))
            resp /= resp.sum(axis=1, keepdims=True)
            stats = family.assignment_stats(shift, sample_X64, sample_w, resp, Workspace())
            params, _ = family.m_step(stats)
        else:
            if method == "kmeans":
                shift = kmeans(sample_X64, sample_w, n_components, rng)
            else:  # k-means++ seeds, without Lloyd iterations
                shift = sample_X64[kmeans_plusplus(sample_X64, sample_w, n_components, rng)]

            def step(X, w, workspace):
                labels = np.argmin(_squared_distances(X - shift[0], shift - shift[0]), axis=1)
                resp = np.zeros((X.shape[0], n_components))
                resp[np.arange(X.shape[0]), labels] = 1.0
                return family.assignment_stats(shift, X, w, resp, workspace)

            params, _ = family.m_step(data.map_reduce(step))

    if not any(part is not None for part in given):
        return params
    weights = params.weights if weights_init is None else weights_init
    means = params.means if means_init is None else means_init
    covariances = (params.covariances if precisions_init is None
                   else _covariances_from_user(family, precisions_init))
    return family.make_params(weights, means, covariances)


def _covariances_from_user(family: GaussianFamily, precisions: np.ndarray) -> np.ndarray:
    try:
        return family.covariance.covariances_from_precisions(precisions)
    except SingularCovariance as exc:
        raise InvalidInputError(
            f"precisions_init is not symmetric positive definite for component(s) "
            f"{exc.components}; pass precision matrices (inverse covariances), "
            "e.g. np.linalg.inv(covariance) for each component."
        ) from None


def _data_covariance(family: GaussianFamily, X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The (weighted) covariance of ``X`` in one component's shape of the
    family's structure, from the statistics of a single component."""
    centre = (w @ X / w.sum())[None]
    stats = family.assignment_stats(centre, X, w, np.ones((X.shape[0], 1)), Workspace())
    model = family.covariance
    delta = stats.first / stats.resp_weight[:, None]
    empirical = model.empirical(stats.resp_weight, delta, stats.second, stats.total_weight)
    return model.total_covariance(stats.resp_weight, centre + delta, empirical)


def _draw_rows_without_replacement(weights: np.ndarray, count: int,
                                   rng: np.random.Generator) -> np.ndarray:
    """Rows drawn in proportion to weight, no row twice (inverse transform)."""
    remaining = weights.astype(np.float64).copy()
    rows = []
    for _ in range(count):
        cumulative = np.cumsum(remaining)
        if not cumulative[-1] > 0:
            remaining = weights.astype(np.float64).copy()  # fewer rows than K
            cumulative = np.cumsum(remaining)
        row = int(_draw(cumulative, rng.random(1))[0])
        rows.append(row)
        remaining[row] = 0.0
    return np.asarray(rows)
