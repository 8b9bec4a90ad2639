"""Hostile data sets and the invariants every fit of them must keep.

``hostile_case(seed)`` draws, deterministically from the seed, a data set
that combines a few of the things that break naive EM (offsets, extreme
scales, near-collinear or duplicate columns, outliers, duplicated rows, few
distinct values, float32, odd sample weights) with random estimator
settings.  ``check_case(case, paths)`` fits it on each E-step path (the
numba-compiled kernels and the NumPy path) and returns what broke.

Shared by ``tests/test_invariants.py`` (a fixed set of seeds, in CI) and
``bench/hostile_sweep.py`` (thousands of seeds, a table of outcomes), so
that a seed failing in one fails the same way in the other.

The invariants, per case and path (the letters are the categories'):

a. ``fit`` returns or raises an :class:`~emix.exceptions.EmixError`;
   anything else is an *unclear exception*.
b. No NaN or inf in the fitted arrays, ``lower_bound_`` or ``lower_bounds_``.
c. ``lower_bound_`` is ``score(X, sample_weight=w)`` of the returned model,
   to rounding (:data:`LOWER_BOUND_RTOL`, :func:`float32_lower_bound_bound`).
d. float32: ``score_samples`` in float32 agrees row by row with the same
   parameters scoring in float64 (:func:`float32_row_bound`).
e. An error's ``remedy``, applied with ``set_params``, makes the fit work;
   an error that names reg_covar in its text must carry the setting there.
f. On well-conditioned data (:func:`conditioning`) both paths give the same
   fit (:data:`PATH_LOWER_BOUND_RTOL`, :data:`PATH_PARAMETER_TOL`).
g. A fit of well-conditioned data is never reported as diverged.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import emix
from emix.exceptions import EmixError
from emix.families import _compiled

PATHS = ("compiled", "numpy")

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")

#: float64 data: |lower_bound_ - score| <= LOWER_BOUND_RTOL * (1 + mean |log p_i|).
#: Both are weighted means of the same n <= 3000 log-densities under the same
#: parameters; each log-density taken from residuals about its component's
#: mean is exact to a few d * eps64 (d <= 12: ~1e-14 relative) and summing n
#: of them adds at most n * eps64 ~ 1e-12 more.  1e-9 leaves a factor of
#: 1000 over that for the E-step's other order of operations; anything larger
#: means the reported number belongs to other parameters or the E-step lost
#: digits (e.g. a quadratic expansion about a far-away centre).  Measured on
#: the fixed code (commit e2c7092, seeds 0..2999): at most 1.5e-13 on the
#: compiled path, 0 on the NumPy path (the same arithmetic as score); the
#: code before the fixes reached 6.9 (times the bound 1e-9 * (1 + |log p|)).
LOWER_BOUND_RTOL = 1e-9

EPS32 = float(np.finfo(np.float32).eps)

#: float32, per row: |log p_i(float32 arithmetic) - log p_i(float64)| <=
#: FLOAT32_ROW_C * eps32 * d * (|log p_i| + d), for the same (float32-stored)
#: parameters on the same data.  Derivation, u = eps32 / 2 the unit roundoff:
#: log p_i = logsumexp_k(c_k - q_ik / 2), with c_k = log w_k + log|P_k| -
#: d/2 log 2 pi and q_ik = |(x_i - mu_k) P_k|^2.  logsumexp is a
#: responsibility-weighted average of its arguments' errors, so it suffices to
#: bound them for the components that own the row:
#:   * c_k, rounded to float32 once: u |c_k|;
#:   * each whitened coordinate is a dot product of length <= d: relative
#:     error <= d u (for a residual taken without cancellation), so q_ik is off
#:     by <= 2 d u q_ik, and its sum of d squares adds d u q_ik;
#:   * the log-sum-exp itself (max-shift, exp, sum of <= K terms in [0, 1],
#:     log, add back): a few u |log p_i| + u log K.
#: For the owning component c_k - q_ik / 2 is within log K of log p_i; a row
#: in its own cluster has q_ik ~ d and |c_k| <~ |log p_i| + q_ik, a far row
#: has q_ik / 2 ~ |log p_i|.  Both give <= ~3 d u (|log p_i| + d) = 1.5 d eps32
#: (|log p_i| + d); C = 4 allows a little ill-conditioning of the whitening.
#: What it does not allow: errors that grow with the distance of the data
#: from the origin (or the mixture's centre) in units of a component's
#: spread, which come from taking residuals in float32, nor cancellation in
#: float32 whitening of ill-conditioned components.  Measured (seeds
#: 0..2999): C <= 0.43 after the fixes (the NumPy path scores float32 data in
#: float64); up to 5.6e8 before them, 467 on data otherwise well-conditioned.
FLOAT32_ROW_C = 4.0

#: float32, the fit's lower_bound_ against score() of the stored model:
#: |lower_bound_ - score| <= FLOAT32_LOWER_BOUND_C * eps32 * d * (mean |log p_i| + d).
#: Beyond the per-row rounding above (both sides), two more effects are
#: legitimate.  The parameters are stored in float32: rounding w and P moves
#: c_k by <= (d + 1) u and q_ik by <= ~2 d u q_ik (terms of the same form),
#: and rounding the means moves the mean log-likelihood only to second order
#: (its gradient in mu vanishes at the M-step's fixed point).  And the fit
#: sums log-densities in float32 within blocks of up to 256 rows: relative
#: error ~ sqrt(256) u in practice.  So twice the row constant, plus 8 for
#: the block sums.  Measured (seeds 0..2999): at most 0.055 of this bound
#: after the fixes, 7.8e7 times it before them.
FLOAT32_LOWER_BOUND_C = 2 * FLOAT32_ROW_C + 8.0

#: Two paths, same data, same seed, same settings: the same fit.  The E-step
#: differs only in its order of operations (rounding, ~1e-15 relative), and
#: EM is a contraction near its fixed point, so after the same iterations the
#: per-sample log-likelihoods agree to |diff| <= 1e-8 * (1 + |lower_bound_|)
#: and the parameters to 1e-6 in their own units: weights absolutely, means
#: in units of the component's largest standard deviation, covariances
#: relative to the component's largest entry.
PATH_LOWER_BOUND_RTOL = 1e-8
PATH_PARAMETER_TOL = 1e-6

#: Data are well-conditioned (paths must agree, divergence is a false alarm)
#: when each true cluster's covariance has a condition number below this ...
WELL_CONDITIONED_MAX_CONDITION = 1e6
#: ... no row of a cluster is further than this many robust standard
#: deviations (1.4826 MAD) from the cluster's median in any column (a
#: Gaussian sample of 3000 rows reaches ~4.5; an outlier of the generator is
#: >= 1e3 times a row) ...
WELL_CONDITIONED_MAX_ROBUST_Z = 20.0
#: ... every cluster's mean is within this many of its smallest standard
#: deviations from the origin ...
WELL_CONDITIONED_MAX_OFFSET = 1e4
#: ... reg_covar is at most this fraction of every cluster's smallest
#: variance (a regulariser that swamps the data leaves the weights and means
#: of look-alike components undetermined) ...
WELL_CONDITIONED_MAX_REGULARISER = 1e-3
#: ... positive sample weights span at most this ratio ...
WELL_CONDITIONED_MAX_WEIGHT_RATIO = 1e3
#: ... and at least this fraction of the rows are distinct.
WELL_CONDITIONED_MIN_DISTINCT_ROWS = 0.95

FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_",
                 "precisions_cholesky_", "lower_bound_", "lower_bounds_")

#: The categories of a failure, in the order of the sweep's table.
UNCLEAR_EXCEPTION = "unclear exception"
NON_FINITE = "non-finite attribute"
LOWER_BOUND_MISMATCH = "lower_bound_ mismatch"
SCORING_FAILED = "scoring failed after fit"
FLOAT32_BOUND = "float32 bound exceeded"
REMEDY_FAILED = "remedy failed"
REMEDY_NOT_MACHINE_READABLE = "remedy not machine-readable"
DIVERGED_WELL_CONDITIONED = "diverged on well-conditioned data"
PATHS_DISAGREE_WELL_CONDITIONED = "path disagreement (well-conditioned)"
PATHS_DISAGREE = "path disagreement (any data)"

#: Categories that are failures of an invariant.  Path disagreements on
#: ill-conditioned data are counted (how chaotic EM is there), not failed.
FAILURES = (UNCLEAR_EXCEPTION, NON_FINITE, LOWER_BOUND_MISMATCH, SCORING_FAILED,
            FLOAT32_BOUND, REMEDY_FAILED, REMEDY_NOT_MACHINE_READABLE,
            DIVERGED_WELL_CONDITIONED, PATHS_DISAGREE_WELL_CONDITIONED)

MAX_ROWS = 3000
MAX_FEATURES = 12
MAX_COMPONENTS = 6


@dataclass(frozen=True, eq=False)
class Case:
    """One hostile data set and the estimator settings to fit it with."""

    seed: int
    X: np.ndarray  # (n, d): float64, float32 or int64
    sample_weight: np.ndarray | None  # (n,)
    labels: np.ndarray  # (n,): the cluster each row was drawn from
    settings: dict[str, Any]  # GaussianMixture's constructor parameters
    knobs: tuple[str, ...]  # the hostile features drawn (see KNOBS)
    description: str

    def estimator(self) -> emix.GaussianMixture:
        return emix.GaussianMixture(**self.settings)


def hostile_case(seed: int) -> Case:
    """The hostile data set and settings of ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    n = round(10 ** rng.uniform(1.0, math.log10(MAX_ROWS)))
    # d > 4 about two times in three: the compiled full/tied E-step changes
    # method there.
    d = int(rng.integers(1, 5) if rng.random() < 0.35 else rng.integers(5, MAX_FEATURES + 1))
    n_clusters = int(rng.integers(1, MAX_COMPONENTS + 1))
    n_components = int(np.clip(n_clusters + rng.choice([-1, 0, 0, 1]), 1, MAX_COMPONENTS))
    n = max(n, 2 * n_components)
    # A quarter of the cases are plain clusters, with rows enough for every
    # cluster's covariance (the well-conditioned baseline of invariants f
    # and g); the others combine one to four knobs.
    n_knobs = 0 if rng.random() < 0.25 else int(rng.integers(1, 5))
    knobs = set(rng.choice(KNOBS, size=n_knobs, replace=False).tolist())
    if not knobs:
        n = max(n, min(MAX_ROWS, 10 * (d + 1) * n_clusters))
    notes: list[str] = []

    X, labels, spreads = _clusters(rng, n, d, n_clusters, knobs, notes)
    if d >= 2 and "collinear" in knobs:
        i, j = rng.choice(d, size=2, replace=False)
        gap = 10 ** -rng.uniform(4, 12)  # correlation 1 - gap
        scale = X[:, i].std()
        X[:, j] = X[:, i] + math.sqrt(2 * gap) * scale * rng.normal(size=n)
        notes.append(f"corr(x{i},x{j})=1-{gap:.0e}")
    if "duplicate_column" in knobs:
        j = int(rng.integers(d))
        if d >= 2 and rng.random() < 0.5:
            i = int(rng.choice([c for c in range(d) if c != j]))
            X[:, j] = X[:, i]
            notes.append(f"x{j}=x{i}")
        else:
            X[:, j] = rng.normal()
            notes.append(f"x{j} constant")
    if "duplicate_rows" in knobs:
        source = rng.integers(n, size=int(rng.integers(1, max(2, n // 3))))
        copies = rng.integers(1, 10, size=source.size)
        rows = np.repeat(source, copies)
        X, labels = np.vstack([X, X[rows]])[:MAX_ROWS], np.concatenate([labels, labels[rows]])
        labels = labels[:MAX_ROWS]
        notes.append(f"{X.shape[0] - n} duplicated rows")
        n = X.shape[0]
    if "outliers" in knobs:
        count = int(rng.integers(1, 4))
        factor = 10 ** rng.uniform(3, 10)
        rows = rng.choice(n, size=count, replace=False)
        if rng.random() < 0.5:
            X[rows] *= factor
        else:
            X[rows] = rng.normal(size=(count, d)) * factor * spreads.max()
        notes.append(f"{count} outlier(s) x{factor:.0e}")
    if "offset" in knobs:
        offset = 10 ** rng.uniform(2, 10)
        X += offset * X.std() * rng.choice([-1.0, 1.0], size=d) * rng.uniform(0.5, 1, size=d)
        notes.append(f"offset={offset:.0e} sd")
    if "scale" in knobs:
        exponent = rng.uniform(-150, 150)
        X *= 10.0**exponent
        notes.append(f"scale=1e{exponent:.0f}")

    if "few_values" in knobs:
        # A robust spread (outliers and far clusters would make the grid as
        # coarse as they are far).
        deviation = np.median(np.abs(X - np.median(X, axis=0)), axis=0)
        step = float(np.median(deviation)) * 10 ** rng.uniform(-1.5, 0.5)
        if step > 0 and np.abs(X).max() / step < 1e15 and rng.random() < 0.5:
            X = np.round(X / step).astype(np.int64)
            notes.append("integers")
        elif step > 0:
            X = np.round(X / step) * step
            notes.append(f"rounded to {step:.2g}")
    if "float32" in knobs and X.dtype == np.float64:
        largest = float(np.abs(X).max())
        if largest > 1e30:  # float32 range, with room for squares of spreads
            X *= 1e30 / largest
        with np.errstate(under="ignore"):
            X = X.astype(np.float32)
        notes.append("float32")

    sample_weight = None
    if "weights" in knobs:
        sample_weight, note = _weights(rng, X.shape[0])
        notes.append(note)

    settings = _settings(rng, n_components, d, X.shape[0])
    description = (
        f"seed={seed} n={X.shape[0]} d={d} K={n_components} (clusters {n_clusters}) "
        f"{settings['covariance_type']} {settings['init_params']} "
        f"reg_covar={settings['reg_covar']:.0e} n_init={settings['n_init']} "
        f"max_iter={settings['max_iter']} tol={settings['tol']:g}"
        + (": " + ", ".join(notes) if notes else ": plain clusters"))
    return Case(seed=seed, X=X, sample_weight=sample_weight, labels=labels,
                settings=settings, knobs=tuple(sorted(knobs)), description=description)


KNOBS = ("offset", "cluster_offsets", "scale", "collinear", "duplicate_column", "outliers",
          "duplicate_rows", "few_values", "float32", "weights")


def _clusters(rng: np.random.Generator, n: int, d: int, n_clusters: int, knobs: set[str],
              notes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian clusters with random sizes, spreads, correlations and
    (with the knob) offsets of single clusters; returns X, labels and each
    cluster's spread."""
    balance = rng.uniform(0.5, 5) if knobs else rng.uniform(3, 10)
    proportions = rng.dirichlet(np.full(n_clusters, balance))
    labels = rng.choice(n_clusters, size=n, p=proportions)
    spreads = 10 ** rng.uniform(-1, 1, size=n_clusters)
    separation = 10 ** rng.uniform(0, 1.5)
    centres = rng.normal(size=(n_clusters, d)) * separation * spreads.max()
    if "cluster_offsets" in knobs:
        far = 10 ** rng.uniform(2, 8)
        moved = rng.random(n_clusters) < 0.5
        moved[rng.integers(n_clusters)] = True
        centres[moved] += far * spreads[moved, None] * rng.normal(size=(moved.sum(), d))
        notes.append(f"{moved.sum()} cluster(s) {far:.0e} sd away")
    X = np.empty((n, d))
    for k in range(n_clusters):
        rows = labels == k
        rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
        axes = 10 ** rng.uniform(0, 1.5, size=d)  # condition numbers up to 1e3
        X[rows] = centres[k] + spreads[k] * (rng.normal(size=(rows.sum(), d)) * axes) @ rotation
    return X, labels, spreads


def _weights(rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
    kind = rng.choice(["zeros", "integers", "huge"])
    if kind == "zeros":
        weights = rng.uniform(0.5, 2.0, size=n)
        weights[rng.random(n) < rng.uniform(0.05, 0.5)] = 0.0
        weights[rng.integers(n)] = 1.0  # not all zero
        return weights, f"weights with {int((weights == 0).sum())} zeros"
    if kind == "integers":
        weights = rng.integers(0, 11, size=n).astype(np.float64)
        weights[rng.integers(n)] += 1.0  # not all zero
        return weights, "integer weights 0..10"
    scale = 10 ** rng.uniform(-300, 300)
    return scale * 10 ** rng.uniform(-12, 0, size=n), f"weights {scale:.0e} x 1e-12..1"


def _settings(rng: np.random.Generator, n_components: int, d: int, n: int) -> dict[str, Any]:
    reg_covar = float(rng.choice([0.0, 1e-6, 10 ** rng.uniform(-12, -2)], p=[0.2, 0.5, 0.3]))
    max_iter = int(rng.choice([10, 30, 100]))
    n_init = int(rng.choice([1, 1, 1, 2, 3]))
    # Keep a fit well under a second: the largest E-steps (n K d^2 of
    # 3000 x 6 x 144) get fewer iterations in all.
    work = n * n_components * d * d
    while work * max_iter * n_init > 2e8 and max_iter > 10:
        max_iter //= 2
    return {
        "n_components": n_components,
        "covariance_type": str(rng.choice(COVARIANCE_TYPES)),
        "init_params": str(rng.choice(INIT_PARAMS)),
        "reg_covar": reg_covar,
        "n_init": n_init,
        "max_iter": max_iter,
        "tol": float(rng.choice([1e-3, 1e-3, 1e-6, 1e-10, 0.0])),
        "random_state": int(rng.integers(2**31)),
    }


def conditioning(case: Case) -> str | None:
    """Why the case's data are not well-conditioned, or None when they are.

    Computed from the data and the clusters they were drawn from (not from
    the generator's knobs): float64 values (the reason given last: "float32
    data" means that all else is well-conditioned), weights within a ratio of 1e3,
    mostly distinct rows, and every cluster with enough rows for a
    covariance of condition number < 1e6, whose smallest variance is at
    least 1e3 times reg_covar, without robust outliers and with a mean
    within 1e4 of its spreads of the origin.
    """
    X = case.X
    n = X.shape[0]
    weights = case.sample_weight
    if weights is not None:
        positive = weights[weights > 0]
        ratio = positive.max() / positive.min()
        if ratio > WELL_CONDITIONED_MAX_WEIGHT_RATIO:
            return f"weights span a ratio of {ratio:.1e}"
    distinct = np.unique(X, axis=0).shape[0]
    if distinct < WELL_CONDITIONED_MIN_DISTINCT_ROWS * n:
        return f"only {distinct} of {n} rows distinct"
    with np.errstate(all="ignore"):  # huge values: an overflow is an answer here
        reason = _clusters_conditioning(X.astype(np.float64), case.labels,
                                        case.settings["reg_covar"])
    # Last, so that "float32 data" says the data are otherwise well-conditioned.
    if reason is None and X.dtype != np.float64:
        return f"{X.dtype} data"
    return reason


def _clusters_conditioning(X: np.ndarray, labels: np.ndarray, reg_covar: float) -> str | None:
    d = X.shape[1]
    for k in np.unique(labels):
        rows = X[labels == k]
        if rows.shape[0] < 2 * (d + 1):
            return f"cluster {k} has {rows.shape[0]} rows for {d} features"
        covariance = np.atleast_2d(np.cov(rows.T))
        if not np.all(np.isfinite(covariance)):
            return f"cluster {k}'s covariance overflows"
        eigenvalues = np.linalg.eigvalsh(covariance)
        if not eigenvalues[0] > eigenvalues[-1] / WELL_CONDITIONED_MAX_CONDITION:
            return f"cluster {k}'s covariance has eigenvalues {eigenvalues[0]:.2e} .. " \
                   f"{eigenvalues[-1]:.2e}"
        if reg_covar > WELL_CONDITIONED_MAX_REGULARISER * eigenvalues[0]:
            return f"reg_covar={reg_covar:.1e} against cluster {k}'s " \
                   f"smallest variance {eigenvalues[0]:.2e}"
        median = np.median(rows, axis=0)
        spread = 1.4826 * np.median(np.abs(rows - median), axis=0)
        if not np.all(spread > 0):
            return f"cluster {k} has a column with no robust spread"
        z = float(np.max(np.abs(rows - median) / spread))
        if z > WELL_CONDITIONED_MAX_ROBUST_Z:
            return f"cluster {k} has a row {z:.2g} robust sd from its median"
        offset = float(np.linalg.norm(rows.mean(axis=0)) / math.sqrt(eigenvalues[0]))
        if not offset <= WELL_CONDITIONED_MAX_OFFSET:
            return f"cluster {k}'s mean is {offset:.2g} sd from the origin"
    return None


@contextlib.contextmanager
def e_step_path(path: str) -> Iterator[None]:
    """Run the enclosed fits through the compiled kernels or through NumPy
    (the switch of tests/conftest.py's ``e_step_path`` fixture, without pytest)."""
    saved = _compiled._kernels, _compiled._loaded
    try:
        if path == "numpy":
            _compiled._kernels, _compiled._loaded = None, True
        elif _compiled.kernels() is None:
            raise RuntimeError("the compiled path needs numba (pip install -e '.[test]') "
                               "and EMIX_NUMBA unset")
        yield
    finally:
        _compiled._kernels, _compiled._loaded = saved


@dataclass
class Fit:
    """What one path made of one case."""

    path: str
    model: emix.GaussianMixture | None = None
    error: BaseException | None = None

    @property
    def outcome(self) -> str:
        if self.error is None:
            return "ok"
        return "clear EmixError" if isinstance(self.error, EmixError) else UNCLEAR_EXCEPTION


@dataclass
class Failure:
    category: str
    path: str  # "compiled", "numpy" or "both"
    detail: str
    #: How far past its bound (measured / bound), for ranking seeds; 0 where
    #: the failure has no magnitude.
    excess: float = 0.0


@dataclass
class Report:
    """The outcome of one case on each path, its failures and measurements."""

    case: Case
    not_well_conditioned: str | None
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    #: Per path: lower_bound_excess, |lower_bound_ - score| over its bound;
    #: float32_row_C_max / _p99, the worst and 99th percentile over the rows
    #: of |error| / (eps32 d (|log p_i| + d)), the C that the rows need.
    measures: dict[str, dict[str, float]] = field(default_factory=dict)
    paths_disagree: str | None = None
    #: Per path that fitted: convergence_state_ (diverged is a failure only
    #: on well-conditioned data, but worth counting everywhere).
    states: dict[str, str] = field(default_factory=dict)

    @property
    def well_conditioned(self) -> bool:
        return self.not_well_conditioned is None

    def summary(self) -> str:
        lines = [self.case.description,
                 "well-conditioned" if self.well_conditioned
                 else f"not well-conditioned: {self.not_well_conditioned}"]
        for path, outcome in self.outcomes.items():
            error = f" ({self.errors[path]})" if path in self.errors else ""
            measures = ", ".join(f"{name} {value:.3g}"
                                 for name, value in self.measures.get(path, {}).items())
            lines.append(f"  {path}: {outcome}{error}" + (f"; {measures}" if measures else ""))
        if self.paths_disagree:
            lines.append(f"  paths disagree: {self.paths_disagree}")
        lines += [f"  FAIL [{f.path}] {f.category}: {f.detail}" for f in self.failures]
        return "\n".join(lines)


def fit_case(case: Case, path: str, **settings: Any) -> Fit:
    """Fit the case on one path, warnings silenced; exceptions are kept."""
    with e_step_path(path), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = case.estimator().set_params(**settings)
            return Fit(path, model=model.fit(case.X, sample_weight=case.sample_weight))
        except Exception as exc:  # telling clear from unclear is the point
            return Fit(path, error=exc)


def check_case(case: Case, paths: tuple[str, ...] = PATHS) -> Report:
    """Fit ``case`` on each path and check every invariant."""
    report = Report(case, conditioning(case))
    fits = {}
    for path in paths:
        fit = fits[path] = fit_case(case, path)
        check_fit(report, fit)
    if len(paths) == 2:
        report.paths_disagree = paths_disagreement(*fits.values())
        if report.paths_disagree and report.well_conditioned:
            report.failures.append(Failure(PATHS_DISAGREE_WELL_CONDITIONED, "both",
                                           report.paths_disagree))
    return report


def check_fit(report: Report, fit: Fit) -> None:
    """Invariants a to e and g of one path's fit, into ``report``."""
    report.outcomes[fit.path] = fit.outcome
    report.measures[fit.path] = {}
    if fit.error is not None:
        report.errors[fit.path] = f"{type(fit.error).__name__}: {fit.error}"
        _check_error(report, report.case, fit)
    else:
        _check_model(report, report.case, fit)


def _check_error(report: Report, case: Case, fit: Fit) -> None:
    error = fit.error
    if not isinstance(error, EmixError):
        report.failures.append(Failure(UNCLEAR_EXCEPTION, fit.path,
                                       f"{type(error).__name__}: {error}"))
        return
    if error.remedy:
        again = fit_case(case, fit.path, **error.remedy)
        if again.error is not None:
            report.failures.append(Failure(
                REMEDY_FAILED, fit.path, f"{type(error).__name__} with remedy {error.remedy}; "
                f"the fit with it raised {type(again.error).__name__}: {again.error}"))
    elif "reg_covar" in str(error):
        report.failures.append(Failure(
            REMEDY_NOT_MACHINE_READABLE, fit.path,
            f"{type(error).__name__} names reg_covar but .remedy is empty: {error}"))


def non_finite_attributes(model: emix.GaussianMixture) -> list[str]:
    """The fitted arrays (and lower bounds) holding NaN or inf."""
    return [name for name in FITTED_ARRAYS
            if not np.all(np.isfinite(np.asarray(getattr(model, name), dtype=np.float64)))]


def float32_lower_bound_bound(mean_abs_log_density: float, n_features: int) -> float:
    return FLOAT32_LOWER_BOUND_C * EPS32 * n_features * (mean_abs_log_density + n_features)


def float32_row_bound(log_density: np.ndarray, n_features: int) -> np.ndarray:
    return FLOAT32_ROW_C * EPS32 * n_features * (np.abs(log_density) + n_features)


def as_float64_model(model: emix.GaussianMixture) -> emix.GaussianMixture:
    """A copy of a fitted model with every fitted array cast to float64."""
    copy = emix.GaussianMixture(**model.get_params())
    for name, value in vars(model).items():
        if name.endswith("_") and isinstance(value, np.ndarray) and value.dtype == np.float32:
            value = value.astype(np.float64)
        setattr(copy, name, value)
    return copy


def _check_model(report: Report, case: Case, fit: Fit) -> None:
    model, path = fit.model, fit.path
    measures = report.measures[path]
    report.states[path] = model.convergence_state_
    bad = non_finite_attributes(model)
    if bad:
        report.failures.append(Failure(NON_FINITE, path, f"NaN or inf in {', '.join(bad)}"))
        return
    if report.well_conditioned and model.convergence_state_ == "diverged":
        report.failures.append(Failure(
            DIVERGED_WELL_CONDITIONED, path,
            f"diverged after {model.n_iter_} iterations; lower_bounds_ "
            f"{np.round(model.lower_bounds_[-4:], 12).tolist()} (last 4)"))
    X, weights = case.X, case.sample_weight
    float32 = X.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            log_density = model.score_samples(X).astype(np.float64)
            score = model.score(X, sample_weight=weights)
            reference = (as_float64_model(model).score_samples(X.astype(np.float64))
                         if float32 else None)
        except Exception as exc:  # whatever it is, it is a finding
            report.failures.append(Failure(
                SCORING_FAILED, path,
                f"scoring the fitted data raised {type(exc).__name__}: {exc}"))
            return
    magnitude = float(np.average(np.abs(log_density), weights=None if weights is None
                                 else weights / weights.max()))
    d = X.shape[1]
    bound = (float32_lower_bound_bound(magnitude, d) if float32
             else LOWER_BOUND_RTOL * (1.0 + magnitude))
    difference = abs(model.lower_bound_ - score)
    measures["lower_bound_excess"] = difference / bound
    if not difference <= bound:
        report.failures.append(Failure(
            LOWER_BOUND_MISMATCH, path,
            f"lower_bound_ {model.lower_bound_!r} vs score {score!r}: |diff| "
            f"{difference:.3g} > bound {bound:.3g}", excess=difference / bound))
    if reference is not None:
        row_error = np.abs(log_density - reference)
        ratio = row_error / float32_row_bound(reference, d)
        worst = int(np.argmax(ratio))
        # As the constant C that the rows need (the bound has FLOAT32_ROW_C).
        measures["float32_row_C_max"] = FLOAT32_ROW_C * float(ratio.max())
        measures["float32_row_C_p99"] = FLOAT32_ROW_C * float(np.percentile(ratio, 99))
        if not ratio.max() <= 1.0:
            geometry = owner_geometry(model, X[worst])
            measures.update({f"float32_worst_row_{k}": v for k, v in geometry.items()})
            report.failures.append(Failure(
                FLOAT32_BOUND, path,
                f"{int((ratio > 1).sum())} of {ratio.size} rows beyond the bound; row {worst}: "
                f"float32 {float(log_density[worst])!r} vs float64 {float(reference[worst])!r} "
                f"(|diff| {row_error[worst]:.3g}, bound "
                f"{float32_row_bound(reference[worst], d)[()]:.3g}); its component "
                f"{geometry['component']:.0f}: covariance condition number "
                f"{geometry['condition']:.2g}, mean {geometry['offset']:.2g} sd from the "
                f"origin, row {geometry['distance']:.2g} sd from the mean",
                excess=float(ratio.max())))


def owner_geometry(model: emix.GaussianMixture, row: np.ndarray) -> dict[str, float]:
    """Where a row lies for the component that owns it, in float64: the
    component, its covariance's condition number, its mean's distance from
    the origin in units of its smallest standard deviation and the row's
    (Mahalanobis) distance from the mean, all from the precision factor P
    that scoring uses.  The two ways float32 arithmetic loses more than the
    row bound allows are ill-conditioned whitening and residuals taken far
    from the data."""
    reference = as_float64_model(model)
    row = np.asarray(row, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        k = int(np.argmax(reference.predict_proba(row[None])[0]))
        d = row.shape[0]
        factor = np.asarray(reference.precisions_cholesky_)
        factor = {"full": lambda: factor[k], "tied": lambda: factor,
                  "diag": lambda: np.diag(factor[k]),
                  "spherical": lambda: np.eye(d) * factor[k]}[model.covariance_type]()
        singular_values = np.linalg.svd(factor, compute_uv=False)  # 1 / the sds
        mean = np.asarray(reference.means_)[k]
        return {"component": float(k),
                "condition": float((singular_values[0] / singular_values[-1]) ** 2),
                "offset": float(np.linalg.norm(mean) * singular_values[0]),
                "distance": float(np.linalg.norm((row - mean) @ factor))}


def paths_disagreement(first: Fit, second: Fit) -> str | None:
    """How two fits of one case differ beyond rounding, or None."""
    if (first.error is None) != (second.error is None):
        which = first if first.error is not None else second
        return f"only {which.path} raised {type(which.error).__name__}: {which.error}"
    if first.error is not None:
        if type(first.error) is not type(second.error):
            return (f"{first.path} raised {type(first.error).__name__}, {second.path} "
                    f"{type(second.error).__name__}")
        return None
    a, b = first.model, second.model
    same_optimum = abs(a.lower_bound_ - b.lower_bound_) <= PATH_LOWER_BOUND_RTOL * (
        1.0 + abs(a.lower_bound_))
    differences = parameter_differences(a, b)
    if (same_optimum and max(differences.values()) > PATH_PARAMETER_TOL
            and a.get_params()["n_init"] > 1 and permuted_alike(a, b)):
        # Not a rounding error that grew: both paths found the same optimum,
        # but rounding decided which of the tied restarts won.
        return (f"the same optimum with the components permuted (n_iter_ {a.n_iter_} vs "
                f"{b.n_iter_}): tied restarts, and rounding chose a different one on "
                "each path")
    if (a.n_iter_, a.convergence_state_) != (b.n_iter_, b.convergence_state_):
        return (f"{first.path} {a.convergence_state_} after {a.n_iter_} iterations, "
                f"{second.path} {b.convergence_state_} after {b.n_iter_}")
    if not same_optimum:
        return f"lower_bound_ {a.lower_bound_!r} vs {b.lower_bound_!r}"
    for name, size in differences.items():
        if not size <= PATH_PARAMETER_TOL:
            return f"{name} differ by {size:.3g} (in their own units)"
    return None


def parameter_differences(a: emix.GaussianMixture, b: emix.GaussianMixture,
                          order: tuple[int, ...] | None = None) -> dict[str, float]:
    """The largest difference of weights (absolute), means (in units of the
    component's largest standard deviation) and covariances (relative to
    the component's largest entry), with ``b``'s components in ``order``."""
    tied = a.covariance_type == "tied"
    order = list(range(len(a.weights_)) if order is None else order)
    cov_a = np.asarray(a.covariances_, dtype=np.float64)
    cov_b = np.asarray(b.covariances_, dtype=np.float64)
    # One row per covariance: K of them, or the one shared.
    cov_a = cov_a.reshape(1 if tied else cov_a.shape[0], -1)
    cov_b = cov_b.reshape(1 if tied else cov_b.shape[0], -1)[[0] if tied else order]
    largest = np.abs(cov_a).max(axis=1)
    means = np.abs(np.asarray(a.means_, dtype=np.float64)
                   - np.asarray(b.means_, dtype=np.float64)[order]).max(axis=1)
    weights = np.asarray(a.weights_, dtype=np.float64) - np.asarray(b.weights_)[order]
    return {
        "weights_": float(np.abs(weights).max()),
        "means_": float((means / np.sqrt(largest)).max()),
        "covariances_": float((np.abs(cov_a - cov_b).max(axis=1) / largest).max()),
    }


def permuted_alike(a: emix.GaussianMixture, b: emix.GaussianMixture) -> bool:
    """Whether the two fits are the same up to an order of the components,
    to a looser 1e-3 (restarts stop within ``tol`` of the optimum, each
    its own way)."""
    return any(max(parameter_differences(a, b, order).values()) <= 1e-3
               for order in itertools.permutations(range(len(a.weights_))))
