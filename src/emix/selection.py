"""Model selection: fit a grid of K x covariance structures, rank them by an
information criterion.

``select`` is mclust's one-call model choice with scikit-learn's sign
convention by default (lower is better); ``convention="mclust"`` reports
R's values instead (``2 log L - p log n``, higher is better).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from . import _validation as check
from ._text import text_table
from .em.engine import Progress
from .exceptions import DegenerateComponentError, EmixError, InvalidInputError, NumericalError
from .families.covariance import COVARIANCE_MODELS
from .families.gaussian import GaussianFamily
from .mixture import GaussianMixture, read_in_pieces

CRITERIA = ("bic", "aic", "icl")
CONVENTIONS = ("sklearn", "mclust")
#: The order in which covariance structures are tried and listed: the most
#: flexible first, as mclust's tables read.
COVARIANCE_ORDER = ("full", "tied", "diag", "spherical")

#: GaussianMixture settings that ``select`` passes through to every fit.
_FIT_OPTIONS = ("reg_covar", "init_params", "on_collapse", "chunk_size")
SELECTION_TOL, SELECTION_MAX_ITER = 1e-6, 1000

#: Errors that mean "this (K, structure) cannot be fitted to these data",
#: recorded in the table rather than stopping the selection.
_FIT_FAILURES = (InvalidInputError, DegenerateComponentError, NumericalError)


@dataclass(frozen=True)
class Candidate:
    """One fitted (K, covariance structure) and its criteria.

    ``bic``, ``aic`` and ``icl`` follow the selection's convention;
    ``log_likelihood`` is the total (weighted) log-likelihood. A fit that
    failed has ``error`` set, NaN criteria and no model.
    """

    n_components: int
    covariance_type: str
    log_likelihood: float
    n_parameters: int
    bic: float
    aic: float
    icl: float
    state: str
    n_iter: int
    model: GaussianMixture | None = field(default=None, repr=False, compare=False)
    error: str | None = None
    repairs: int = 0  # collapsed components repaired during the fit
    warnings: tuple[Warning, ...] = field(default=(), repr=False, compare=False)
    #: The total weight of the data (n in the criteria); NaN for a failed fit.
    n_samples: float = field(default=math.nan, repr=False, compare=False)

    @property
    def converged(self) -> bool:
        return self.state == "converged"

    @property
    def label(self) -> str:
        return f"K={self.n_components} {self.covariance_type}"

    def value(self, criterion: str) -> float:
        return float(getattr(self, criterion))


@dataclass(frozen=True)
class FitProgress:
    """What ``select``'s progress callback receives: which fit of the grid
    is running (1-based ``fit`` of ``n_fits``) and its EM progress."""

    fit: int
    n_fits: int
    n_components: int
    covariance_type: str
    em: Progress


@dataclass(frozen=True)
class SelectionResult:
    """The whole table, the winner and the runners-up."""

    candidates: tuple[Candidate, ...]  # in the order fitted
    criterion: str
    convention: str
    n_samples: float  # total weight

    @property
    def higher_is_better(self) -> bool:
        return self.convention == "mclust"

    @property
    def ranking(self) -> list[Candidate]:
        """Fitted candidates, best first (ties: fewer parameters, then fit order).

        Fits that needed a collapsed component repaired come after every
        clean fit: their likelihood is that of a regularised, degenerate
        solution (a component on a few identical rows), which the criteria
        would otherwise reward.
        """
        sign = -1.0 if self.higher_is_better else 1.0
        fitted = [c for c in self.candidates if c.error is None]
        return sorted(fitted, key=lambda c: (c.repairs > 0, sign * c.value(self.criterion),
                                             c.n_parameters))

    @property
    def best_candidate(self) -> Candidate:
        return self.ranking[0]

    @property
    def best(self) -> GaussianMixture:
        """The winning fitted model."""
        model = self.best_candidate.model
        assert model is not None
        return model

    @property
    def runners_up(self) -> list[Candidate]:
        return self.ranking[1:]

    @property
    def margin(self) -> float:
        """How much better the winner is than the runner-up, in criterion
        units (positive; inf when there is no runner-up)."""
        ranking = self.ranking
        if len(ranking) < 2:
            return math.inf
        return abs(ranking[1].value(self.criterion) - ranking[0].value(self.criterion))

    @property
    def header(self) -> str:
        """The criterion's name and sign convention, for table headers."""
        return f"{self.criterion.upper()} ({_direction(self.convention)})"

    def describe(self) -> str:
        """One sentence: who won, and by how much."""
        best = self.best_candidate
        text = (f"best by {self.criterion.upper()}: K={best.n_components}, "
                f"{best.covariance_type} covariance ({self.criterion.upper()} "
                f"{best.value(self.criterion):.2f}, {_direction(self.convention)})")
        if self.runners_up:
            second = self.runners_up[0]
            text += (f"; runner-up K={second.n_components} {second.covariance_type} "
                     f"is worse by {self.margin:.2f}")
        return text

    def to_records(self) -> list[dict[str, Any]]:
        """The table as JSON-ready rows, best first, failed fits last."""
        failed = [c for c in self.candidates if c.error is not None]
        records = []
        for rank, c in enumerate([*self.ranking, *failed], start=1):
            records.append({
                "rank": rank if c.error is None else None,
                "n_components": c.n_components, "covariance_type": c.covariance_type,
                "bic": _finite_or_none(c.bic), "aic": _finite_or_none(c.aic),
                "icl": _finite_or_none(c.icl),
                "log_likelihood": _finite_or_none(c.log_likelihood),
                "n_parameters": c.n_parameters, "converged": c.converged, "state": c.state,
                "n_iter": c.n_iter, "repairs": c.repairs, "error": c.error,
            })
        return records

    def format_table(self) -> str:
        """A text table, best first, with each model's distance to the best."""
        crit = self.criterion.upper()
        lines = [f"model selection by {self.header}, {_count(self.n_samples)} samples; "
                 f"delta: how much worse than the best"]
        header = ["rank", "K", "covariance", "BIC", "AIC", "ICL", "log-lik", "params",
                  f"delta {crit}", "state"]
        best_value = self.best_candidate.value(self.criterion) if self.ranking else math.nan
        worse = -1.0 if self.higher_is_better else 1.0
        rows = []
        for rank, c in enumerate(self.ranking, start=1):
            state = c.state if not c.repairs else f"{c.state}, {c.repairs} repaired"
            rows.append([str(rank), str(c.n_components), c.covariance_type,
                         f"{c.bic:.2f}", f"{c.aic:.2f}", f"{c.icl:.2f}",
                         f"{c.log_likelihood:.2f}", str(c.n_parameters),
                         f"{worse * (c.value(self.criterion) - best_value):.2f}", state])
        failed = [c for c in self.candidates if c.error is not None]
        for c in failed:
            rows.append(["-", str(c.n_components), c.covariance_type, "", "", "", "", "",
                         "", "failed"])
        notes = [f"{c.label} failed: {c.error}" for c in failed]
        if any(c.repairs for c in self.ranking):
            notes.insert(0, "fits marked 'repaired' rank after every clean fit: a collapsed "
                            "component inflates their likelihood")
        return "\n".join([*lines, *text_table(header, rows), *notes]) + "\n"


def select(X: Any, n_components: int | Iterable[int] = range(1, 10),
           covariance_types: str | Iterable[str] = COVARIANCE_ORDER, *,
           criterion: str = "bic", n_init: int = 1, sample_weight: Any = None,
           convention: str = "sklearn", random_state: Any = None,
           tol: float = SELECTION_TOL, max_iter: int = SELECTION_MAX_ITER,
           progress: Callable[[FitProgress], None] | None = None,
           **options: Any) -> SelectionResult:
    """Fit every K in ``n_components`` with every covariance structure and
    rank the fits by ``criterion``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples,)
        Or anything :meth:`GaussianMixture.fit` reads in pieces (a file
        path, a memory map, a function returning chunks, a Dask
        collection): each fit then reads it so, and the criteria's sums
        take one more pass per model.
    n_components : int or iterable of int, default=range(1, 10)
    covariance_types : str or iterable of str, default=all four
        Any of 'full', 'tied', 'diag', 'spherical'; 'all' means the four.
        With one feature full, diag and spherical are one model: only the
        first of them asked for is fitted.
    criterion : {'bic', 'aic', 'icl'}, default='bic'
    n_init : int, default=1
        Initialisations per fit; the best of them is the fit.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights; ``n`` in the criteria is their sum.
    convention : {'sklearn', 'mclust'}, default='sklearn'
        'sklearn': ``BIC = -2 log L + p log n``, ``AIC = -2 log L + 2p``,
        ``ICL = BIC - 2 sum_i log max_k r_ik``; lower is better. 'mclust': R mclust's
        values, the negatives of these; higher is better.
    random_state : int, Generator or None
        Passed to every fit, so an int gives a reproducible table.
    tol, max_iter : float, int, default=1e-6, 1000
        Convergence of each fit.  Tighter than GaussianMixture's defaults
        (1e-3, 100) because the criteria compare log-likelihoods: on Old
        Faithful, tol=1e-3 stops the 3-component tied fit 14 log-likelihood
        units short of its optimum and hands the win to another model.
    progress : callable, optional
        Receives a :class:`FitProgress` after every EM iteration of every fit.
    **options
        Passed to every :class:`GaussianMixture`: ``reg_covar``,
        ``init_params``, ``on_collapse``, ``chunk_size``.

    Returns
    -------
    SelectionResult
        ``.best`` (the fitted winner), ``.runners_up``, ``.ranking``,
        ``.candidates`` (the whole grid, failed fits included with their
        error), ``.format_table()``, ``.to_records()``.

    A (K, structure) that cannot be fitted to the data (K above the number
    of distinct rows, a collapse with ``on_collapse='raise'``) is recorded as
    failed; if every fit fails the first error is raised.  Warnings from the
    individual fits are kept in each candidate's ``warnings``; only the
    winner's are re-issued.
    """
    criterion = check.check_choice("criterion", criterion, CRITERIA)
    convention = check.check_choice("convention", convention, CONVENTIONS)
    grid_k = _component_counts(n_components)
    grid_types = _covariance_types(covariance_types)
    unknown = sorted(set(options) - set(_FIT_OPTIONS))
    if unknown:
        raise InvalidInputError(
            f"select() got unknown option(s) {unknown}; it passes only {list(_FIT_OPTIONS)} "
            "to GaussianMixture.")
    with ExitStack() as opened:
        if read_in_pieces(X):
            # A file, memory map, chunk source or Dask collection, opened and
            # checked once for all the fits; each fit reads it in pieces, and
            # the criteria's sums take one more pass per model.
            settings = GaussianMixture(chunk_size=options.get("chunk_size"))._check_settings()
            data, names = GaussianMixture()._data_for_fit(X, sample_weight, settings, opened)
            n_features = data.n_features

            def fit(model: GaussianMixture, report) -> None:
                model._fit_data(data, names, model._check_settings(), report, None)

            def totals(model: GaussianMixture) -> tuple[float, float]:
                return _weighted_sums(data, model)
        else:
            X = check.as_float_array(X)
            weights = check.check_sample_weight(sample_weight, X.shape[0])
            n_samples = float(X.shape[0] if weights is None else weights.sum())
            n_features = X.shape[1]

            def fit(model: GaussianMixture, report) -> None:
                model.fit(X, sample_weight=weights, progress=report)

            def totals(model: GaussianMixture) -> tuple[float, float]:
                return n_samples, model.classification_cost(X, weights)

        if n_features == 1:
            grid_types = _distinct_in_one_dimension(grid_types)
        grid = [(k, cov) for cov in grid_types for k in grid_k]
        candidates = []
        for index, (k, cov) in enumerate(grid, start=1):
            model = GaussianMixture(k, covariance_type=cov, n_init=n_init, tol=tol,
                                    max_iter=max_iter, random_state=random_state, **options)
            report = None
            if progress is not None:
                def report(state, index=index, k=k, cov=cov):
                    progress(FitProgress(index, len(grid), k, cov, state))
            candidates.append(_fit_candidate(model, fit, totals, n_features, convention, report))

    fitted = [c for c in candidates if c.error is None]
    if not fitted:
        raise EmixError(f"no model could be fitted: {candidates[0].error}")
    result = SelectionResult(tuple(candidates), criterion, convention, fitted[0].n_samples)
    for warning in result.best_candidate.warnings:
        warnings.warn(f"{result.best_candidate.label}: {warning}", type(warning), stacklevel=2)
    return result


def _weighted_sums(data: Any, model: GaussianMixture) -> tuple[float, float]:
    """One pass: the total weight and ICL's classification cost ``-sum_i w_i
    log max_k r_ik``, in the caller's units of weight."""
    total = data.map_reduce(partial(weighted_sums_of_chunk, model))
    # The back-ends scaled the weights by 2**weight_exponent (exactly); a
    # power of two as a float could overflow, its exponent cannot.
    total = np.ldexp(total, -data.weight_exponent)
    return float(total[0]), float(total[1])


def weighted_sums_of_chunk(model: GaussianMixture, X: np.ndarray, weights: np.ndarray | None,
                           workspace: Any = None) -> np.ndarray:
    """(total weight, classification cost) of some rows, as an array that
    adds over chunks."""
    best = -np.log(model.predict_proba(X).astype(np.float64).max(axis=1))
    if weights is None:
        return np.array([X.shape[0], best.sum()])
    return np.array([weights.sum(), weights @ best])


def _fit_candidate(model: GaussianMixture, fit: Callable[[GaussianMixture, Any], None],
                   totals: Callable[[GaussianMixture], tuple[float, float]], n_features: int,
                   convention: str, report) -> Candidate:
    k, cov = model.n_components, model.covariance_type
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit(model, report)
        except _FIT_FAILURES as exc:
            n_parameters = GaussianFamily(cov, model.reg_covar).n_parameters(k, n_features)
            return Candidate(k, cov, math.nan, n_parameters, math.nan, math.nan, math.nan,
                             "failed", 0, error=str(exc))
    n, classification_cost = totals(model)
    notes = tuple(w.message for w in caught)
    # lower_bound_ is the per-sample log-likelihood of the fitted parameters,
    # from the fit's last E-step: no extra pass over the data for BIC/AIC.
    log_likelihood = model.lower_bound_ * n
    n_parameters = model._n_parameters()
    criteria = information_criteria(log_likelihood, n_parameters, n, classification_cost)
    scale = -1.0 if convention == "mclust" else 1.0
    return Candidate(k, cov, log_likelihood, n_parameters,
                     **{name: scale * value for name, value in criteria.items()},
                     state=model.convergence_state_, n_iter=model.n_iter_, model=model,
                     repairs=len(model.collapses_), warnings=notes, n_samples=n)


def information_criteria(log_likelihood: float, n_parameters: int, n_samples: float,
                         classification_cost: float) -> dict[str, float]:
    """BIC, AIC and ICL in scikit-learn's convention (lower is better) from
    the total log-likelihood, the free parameters, the (weighted) number of
    samples and ICL's classification cost (see ``GaussianMixture.icl``)."""
    bic = -2.0 * log_likelihood + n_parameters * math.log(n_samples)
    return {"bic": bic, "aic": -2.0 * log_likelihood + 2.0 * n_parameters,
            "icl": bic + 2.0 * classification_cost}


def _component_counts(n_components: int | Iterable[int]) -> list[int]:
    values = [n_components] if isinstance(n_components, (int, np.integer)) \
        else list(n_components)
    counts = [check.check_int("n_components", k, minimum=1) for k in values]
    if not counts:
        raise InvalidInputError("n_components is empty; give at least one number of components.")
    return sorted(set(counts))


def _covariance_types(covariance_types: str | Iterable[str]) -> list[str]:
    if isinstance(covariance_types, str):
        covariance_types = COVARIANCE_ORDER if covariance_types == "all" \
            else [covariance_types]
    types = [check.check_choice("covariance_type", cov, COVARIANCE_MODELS)
             for cov in covariance_types]
    if not types:
        raise InvalidInputError("covariance_types is empty; give at least one structure.")
    return sorted(set(types), key=COVARIANCE_ORDER.index)


def _distinct_in_one_dimension(types: list[str]) -> list[str]:
    """With one feature, full, diag and spherical are the same model (one
    variance per component): keep the first asked for; tied (one shared
    variance) differs."""
    kept, per_component = [], False
    for cov in types:
        if cov == "tied":
            kept.append(cov)
        elif not per_component:
            kept.append(cov)
            per_component = True
    return kept


def _direction(convention: str) -> str:
    return ("higher is better, mclust's convention" if convention == "mclust"
            else "lower is better, scikit-learn's convention")


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _count(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else f"{n:g}"
