r"""Online EM: a stream seen once, in mini-batches (``GaussianMixture.partial_fit``).

Stepwise EM (Cappé & Moulines, 2009, "On-line expectation-maximization
algorithm for latent data models", JRSS-B 71(3)) keeps a running average
:math:`s_t` of the sufficient statistics, per unit weight, and fits the
parameters to it with the ordinary M-step:

.. math::

    s_t = (1 - \gamma_t)\, s_{t-1} + \gamma_t\, \bar S(Y_t; \theta_{t-1}),
    \qquad \theta_t = \bar\theta(s_t),

where :math:`\bar S(Y_t; \theta_{t-1})` is the E-step's statistics of batch
t under the current parameters, divided by the batch's total weight.

Why statistics and not the parameters themselves: the M-step of an average
of statistics is a mixture, always -- weights that sum to one, covariances
that are positive definite, the collapse floors and ``reg_covar`` of a batch
fit -- which a stochastic-gradient step on the parameters does not
guarantee.  And with :math:`\gamma_t = 1/t` the running statistics are
exactly the average that batch EM would use if the parameters stood still,
so the online fit lands where batch EM does, up to sampling noise.

The statistics of each batch are centred on the means its E-step used
(:class:`~emix.families.gaussian.GaussianStats`); the running average is
re-centred exactly onto each new batch's means (:func:`recentred`) before the
two are blended.

Step sizes.  :math:`\gamma_1 = 1`: the first batch's statistics start the
average (so a first batch equal to the data set gives exactly one EM
iteration from the initialisation).  Then :math:`\gamma_t = (t +
t_0)^{-\alpha}` with :data:`STEP_DECAY` :math:`\alpha` and
:data:`STEP_OFFSET` :math:`t_0`; see those for the values and why.

What the fitted attributes mean after ``partial_fit``:

- ``n_iter_``: batches seen since the running statistics started (the first
  ``partial_fit`` call, or the first one after ``fit``, after loading a
  saved model, or after the attributes were changed by hand: the running
  statistics are not part of the public attributes, and are rebuilt from
  the parameters then);
- ``lower_bound_``: the per-sample log-likelihood of the latest batch under
  the parameters its E-step used, i.e. before that batch moved them: an
  honest, held-out score of the model on data it had not seen;
- ``lower_bounds_``: the same for every batch since the running statistics
  started (one float per batch);
- ``converged_`` is False and ``convergence_state_`` is :data:`ONLINE`: a
  stream has no convergence test; the step sizes decide how fast the fit
  settles;
- ``collapses_``: repairs since the running statistics started, with the
  batch number as ``iteration``;
- the parameters are in the dtype of the latest batch (float32 batches give
  float32 attributes, as ``fit`` does); the running statistics and the
  parameters the next E-step uses stay in float64.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from .. import _validation as check
from ..exceptions import ComponentCollapseWarning, InvalidInputError, floating_point_guard
from ..execution.memory import InMemoryData, default_task_rows
from ..execution.threads import single_threaded_blas
from ..families.base import Collapse
from ..families.covariance import COVARIANCE_MODELS, CovarianceModel
from ..families.gaussian import GaussianFamily, GaussianParams, GaussianStats
from .engine import _repair
from .init import distinct_sample, initial_params

#: The step size's decay :math:`\alpha` in :math:`\gamma_t = (t + t_0)^{-\alpha}`.
#: Stochastic approximation needs :math:`\sum \gamma_t = \infty` (the fit keeps
#: moving until it reaches the solution) and :math:`\sum \gamma_t^2 < \infty`
#: (the batches' noise averages out), so :math:`0.5 < \alpha \le 1`.  With 1
#: the running statistics are the plain average of all batches: the least
#: noise where EM settles in a few iterations, but the statistics of the first
#: batches, computed under poor parameters, are forgotten only as 1/t, and
#: where EM needs many iterations the fit crawls.  Measured against batch EM
#: on the same points (largest deviation of weights, means in the data's
#: standard deviations, covariances; see tests/test_online.py):
#:
#: - three well separated 2-D components, 2,000,000 points in batches of
#:   10,000: alpha = 0.6 within 0.7% (covariances; weights 0.5%, means
#:   0.15%, over four streams), 1.0 within 0.003%;
#: - three overlapping 2-D components (batch EM: 31 to 91 iterations),
#:   1,000,000 points in batches of 1,000: alpha = 0.6 within 4-6% (median
#:   1%, log-likelihood 5e-5 per sample below batch EM's), 0.7 within 11%,
#:   0.8 within 25%, 1.0 within 62% (log-likelihood 1e-2 below).
#:
#: 0.6 is the robust choice: it loses little where the problem is easy and
#: much less than larger values where it is hard.
#: Polyak-Ruppert averaging of the parameters (over the second half of the
#: stream, or with polynomial-decay weights) was measured as well: it halved
#: the small, noise-driven deviations of the easy stream and did nothing, or
#: harm, on the hard one, whose deviations are the slow approach of EM itself,
#: so it is not done.
STEP_DECAY = 0.6

#: The offset :math:`t_0` in :math:`\gamma_t = (t + t_0)^{-\alpha}`.  0 gives
#: :math:`\gamma_1 = 1`: the first batch's statistics start the average (which
#: the code ensures for any offset), and later batches, whose statistics come
#: from better parameters, weigh more than earlier ones from the start
#: (:math:`\gamma_2 = 0.66`).  Offsets of 2 and 10, which keep early steps
#: smaller, were measured on the streams above: equal on the easy one, a
#: little worse on the hard one (largest deviation 6.5% and 7.2% against
#: 6.2%).
STEP_OFFSET = 0.0

#: ``convergence_state_`` after ``partial_fit``: no convergence test applies.
ONLINE = "online"

_FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


@dataclass
class OnlineState:
    """What ``partial_fit`` carries from one batch to the next
    (``estimator._online_state``).

    ``stats`` are the running statistics per unit weight (None after a
    reseed: the next batch starts them afresh), ``n_averaged`` the batches
    in them (the step sizes' t), ``params`` the float64 parameters fitted to
    them, which the next E-step uses, and ``n_batches`` the batches seen
    (``n_iter_``).  ``snapshot`` holds copies of the public attributes as
    last set, so that a later ``fit`` or a hand edit of the attributes is
    noticed, and the running statistics restart from the attributes instead
    of contradicting them.
    """

    params: GaussianParams
    stats: GaussianStats | None
    n_batches: int = 0
    n_averaged: int = 0
    n_samples: int = 0
    floors: dict[int, np.ndarray] = field(default_factory=dict)
    reseeds_left: int = 0
    snapshot: dict[str, np.ndarray] = field(default_factory=dict)


def step_size(batch: int, decay: float = STEP_DECAY, offset: float = STEP_OFFSET) -> float:
    r"""The weight :math:`\gamma_t` of batch ``t`` (1-based) in the running
    statistics: 1 for the first batch, :math:`(t + t_0)^{-\alpha}` after."""
    return 1.0 if batch <= 1 else float((batch + offset) ** -decay)


def recentred(stats: GaussianStats, new_shift: np.ndarray,
              covariance: str | CovarianceModel) -> GaussianStats:
    r"""The same statistics, centred on ``new_shift`` (K, d) instead of
    ``stats.shift``.

    Statistics only add, or average, when they are centred on the same
    means; the running average of online EM is centred on the means of the
    batch before, each new batch on the current ones.  With
    :math:`\delta = a - b` (old shift minus new), :math:`x - b = (x - a) +
    \delta`, so exactly

    .. math::

        S^{(1)}_b = S^{(1)}_a + N \delta, \qquad
        S^{(2)}_b = S^{(2)}_a + \delta S^{(1)T}_a + S^{(1)}_a \delta^T
                    + N \delta \delta^T

    per component, reduced to the structure's shape as the E-step reduces
    :math:`S^{(2)}`: the matrix (full), its sum over components (tied), its
    diagonal (diag), its trace, a sum over features (spherical).
    """
    model = COVARIANCE_MODELS[covariance] if isinstance(covariance, str) else covariance
    new_shift = np.asarray(new_shift, dtype=np.float64)
    if new_shift.shape != stats.shift.shape:
        raise ValueError(
            f"new_shift has shape {new_shift.shape}; the statistics are centred on means "
            f"of shape {stats.shift.shape}"
        )
    move = stats.shift - new_shift  # (K, d)
    resp_weight, first = stats.resp_weight, stats.first
    cross = move * first  # (K, d): the diagonal of delta S1^T
    if model.name in ("full", "tied"):
        outer = (move[:, :, None] * first[:, None, :]
                 + first[:, :, None] * move[:, None, :]
                 + resp_weight[:, None, None] * move[:, :, None] * move[:, None, :])
        correction = outer if model.name == "full" else outer.sum(axis=0)
    elif model.name == "diag":
        correction = 2.0 * cross + resp_weight[:, None] * move**2
    elif model.name == "spherical":
        correction = (2.0 * cross + resp_weight[:, None] * move**2).sum(axis=1)
    else:
        raise ValueError(f"no re-centring rule for covariance structure {model.name!r}")
    return replace(stats, shift=new_shift, first=first + resp_weight[:, None] * move,
                   second=stats.second + correction)


def per_unit_weight(stats: GaussianStats) -> GaussianStats:
    """Statistics divided by their total weight: batches of any size (or
    weights of any scale) then enter the running average on an equal
    footing, and the M-step, which uses only ratios, is unchanged."""
    scale = 1.0 / stats.total_weight
    return replace(stats, resp_weight=stats.resp_weight * scale, first=stats.first * scale,
                   second=stats.second * scale,
                   log_likelihood=stats.log_likelihood * scale, total_weight=1.0)


def blended(running: GaussianStats, batch: GaussianStats, gamma: float) -> GaussianStats:
    """``(1 - gamma) running + gamma batch``, both per unit weight and
    centred on the same means (the batch's)."""
    if running.shift is not batch.shift and not np.array_equal(running.shift, batch.shift):
        raise ValueError("blend statistics centred on the same means; re-centre first")
    keep = 1.0 - gamma
    return GaussianStats(
        shift=batch.shift,
        resp_weight=keep * running.resp_weight + gamma * batch.resp_weight,
        first=keep * running.first + gamma * batch.first,
        second=keep * running.second + gamma * batch.second,
        log_likelihood=keep * running.log_likelihood + gamma * batch.log_likelihood,
        total_weight=1.0,
        n_samples=running.n_samples + batch.n_samples,
    )


def partial_fit(estimator: Any, X: Any, sample_weight: Any = None, *,
                step_decay: float = STEP_DECAY, step_offset: float = STEP_OFFSET) -> Any:
    """One stepwise-EM update of ``estimator`` (a GaussianMixture) from the
    batch ``X``; returns the estimator.

    The first call initialises the parameters from this batch with the
    estimator's own settings (``init_params``, ``random_state``,
    ``weights_init`` / ``means_init`` / ``precisions_init``); with
    ``n_init > 1`` the initialisation whose parameters give this batch the
    highest log-likelihood is kept (each candidate costs one E-step of the
    first batch only).  A fitted estimator (from ``fit``, an earlier
    ``partial_fit`` or a loaded file) continues from its parameters, and from
    its running statistics when it has them; without them (after ``fit``) the
    running statistics start from this batch's E-step under the fitted
    parameters, so this batch alone decides the next parameters.

    Collapses follow ``on_collapse``: 'floor' keeps the M-step's floor for the
    rest of the stream, as ``fit`` does for the rest of a run; 'raise' stops
    with DegenerateComponentError; 'reseed' splits a healthy component into
    the collapsed one (at most K times per stream, then 'floor') and starts
    the running statistics, and the step sizes, afresh from the next batch,
    since statistics gathered before the split do not describe the split
    components (the next batch then decides the parameters alone: make it
    as large as a first batch).

    ``tol``, ``max_iter`` and ``warm_start`` play no part (there is no
    convergence test on a stream, and a fitted estimator always continues),
    nor do ``verbose`` and ``verbose_interval`` (``lower_bounds_`` holds the
    trace).  ``step_decay`` and ``step_offset`` are the schedule's alpha and
    t0 (:data:`STEP_DECAY`, :data:`STEP_OFFSET`).
    """
    if (isinstance(step_decay, bool) or not isinstance(step_decay, (int, float))
            or not 0.5 < step_decay <= 1.0):
        raise InvalidInputError(
            f"step_decay must be in (0.5, 1] for stepwise EM to converge; got {step_decay!r}."
        )
    if (isinstance(step_offset, bool) or not isinstance(step_offset, (int, float))
            or not step_offset >= 0.0):
        raise InvalidInputError(f"step_offset must be >= 0; got {step_offset!r}.")
    settings = estimator._check_settings()
    n_components = settings["n_components"]
    fitted = estimator.__sklearn_is_fitted__()
    names = check.feature_names_of(X)
    if fitted:
        estimator._check_feature_names(X)
    X = check.as_float_array(X)
    family = GaussianFamily(settings["covariance_type"], settings["reg_covar"], X.dtype)
    weights = check.check_sample_weight(sample_weight, X.shape[0])
    if weights is not None:
        # As in fit: a power of two brings the weights near 1 exactly; the
        # batch's statistics are divided by its total weight anyway.
        weights = np.ldexp(weights, -np.frexp(weights.max())[1])
    if fitted:
        _check_fitted_shapes(estimator, family, n_components, X.shape[1])

    data = InMemoryData(X, weights, chunk_rows=settings["chunk_size"] or default_task_rows(
        X.shape[0], settings["n_threads"]))
    state = _continued_state(estimator) if fitted else None
    starting = state is None or state.n_batches == 0
    with ExitStack() as threads, floating_point_guard():
        if settings["n_threads"] > 1 and X.shape[0] > data.chunk_rows:
            blas_limited = threads.enter_context(single_threaded_blas())
            if blas_limited or not family.calls_blas(X.shape[1]):
                data.n_threads = settings["n_threads"]
        if state is None:
            _check_first_batch(X, weights, n_components)
            if fitted:
                candidates = [estimator._fitted_params()]
            else:
                candidates = _initial_candidates(estimator, settings, family, data)
            scored = [(params, data.map_reduce(partial(family.e_step, params)))
                      for params in candidates]
            params, batch_stats = max(scored, key=lambda pair: _per_sample(pair[1]))
            state = OnlineState(params=params, stats=None, reseeds_left=n_components)
        else:
            batch_stats = data.map_reduce(partial(family.e_step, state.params))
        events = _update(state, family, batch_stats, settings["on_collapse"],
                         step_decay, step_offset)
        _set_attributes(estimator, state, family, X.dtype, _per_sample(batch_stats),
                        events, restart=starting, names=names if not fitted else None)
        if not fitted:
            estimator._warn_about_features(*data.column_summary())
    if events:
        _warn_about_collapses(events)
    return estimator


def _per_sample(stats: GaussianStats) -> float:
    return stats.log_likelihood / stats.total_weight


def _update(state: OnlineState, family: GaussianFamily, batch_stats: GaussianStats,
            on_collapse: str, step_decay: float, step_offset: float) -> list[Collapse]:
    """Blend the batch into the running statistics, refit, repair collapses;
    returns the repairs made.  ``state`` changes only once all that has
    succeeded (on_collapse='raise' leaves it as it was)."""
    batch = state.n_batches + 1
    normalised = per_unit_weight(batch_stats)
    if state.stats is None:
        running, n_averaged = normalised, 1
    else:
        n_averaged = state.n_averaged + 1
        gamma = step_size(n_averaged, step_decay, step_offset)
        running = blended(recentred(state.stats, normalised.shift, family.covariance),
                          normalised, gamma)
    params, report = family.m_step(running, state.floors)
    events: list[Collapse] = []
    new_floors: dict[int, np.ndarray] = {}
    if report.collapsed:
        params, events, new_floors = _repair(family, params, report, on_collapse,
                                             state.reseeds_left, state.floors, batch)
    reseeded = sum(event.action == "reseeded" for event in events)
    if reseeded:
        running, n_averaged = None, 0
    state.floors.update(new_floors)
    state.reseeds_left -= reseeded
    state.params, state.stats, state.n_averaged = params, running, n_averaged
    state.n_batches = batch
    state.n_samples += batch_stats.n_samples
    return events


def _continued_state(estimator: Any) -> OnlineState | None:
    """The estimator's running state if its attributes are still the ones
    ``partial_fit`` set; None when ``fit`` ran since, or they were edited or
    loaded, and the running statistics must restart from the attributes."""
    state = getattr(estimator, "_online_state", None)
    if not isinstance(state, OnlineState):
        return None
    for name in _FITTED_ARRAYS:
        current, kept = getattr(estimator, name), state.snapshot.get(name)
        if (kept is None or not isinstance(current, np.ndarray) or current.dtype != kept.dtype
                or not np.array_equal(current, kept)):
            return None
    return state


def _check_fitted_shapes(estimator: Any, family: GaussianFamily, n_components: int,
                         n_features: int) -> None:
    """A batch must have the fitted model's features, and the settings its
    shapes: a stream continues one model."""
    if n_features != estimator.n_features_in_:
        hint = (" (1-D input is read as one feature per sample)"
                if n_features == 1 else "")
        # The opening words are scikit-learn's, which its estimator checks expect.
        raise InvalidInputError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input{hint}: every batch of a stream "
            "must have the columns of the first."
        )
    estimator._check_warm_start_shapes(family, n_components, n_features,
                                       continuing="partial_fit",
                                       remedy="Fit a new estimator to change them.")


def _check_first_batch(X: np.ndarray, weights: np.ndarray | None, n_components: int) -> None:
    n_samples = X.shape[0] if weights is None else int(np.count_nonzero(weights))
    if n_samples < max(2, n_components):
        raise InvalidInputError(
            f"partial_fit's first batch has {n_samples} sample(s) (with positive weight), "
            f"but it starts the running statistics of n_components={n_components}: it needs "
            f"at least {max(2, n_components)} (one per component, and two to estimate a "
            "covariance), and preferably many more. Pass a larger first batch or lower "
            "n_components."
        )


def _initial_candidates(estimator: Any, settings: dict[str, Any], family: GaussianFamily,
                        data: InMemoryData) -> list[GaussianParams]:
    """Initial parameters from the first batch, as ``fit`` draws them: the
    same random draws in the same order, so that one ``partial_fit`` on the
    whole data is one EM iteration of ``fit`` with the same seed."""
    n_components = settings["n_components"]
    user_init = estimator._check_initial_parameters(family, n_components, data.n_features)
    rng = check.check_random_state(estimator.random_state)
    method = settings["init_params"]
    if all(part is not None for part in user_init.values()):
        return [initial_params(family, data, n_components, method, rng, None, **user_init)]
    distinct = distinct_sample(data, n_components, rng, what="partial_fit's first batch",
                               remedy="Pass a larger first batch or lower n_components.")
    return [initial_params(family, data, n_components, method, rng, distinct, **user_init)
            for _ in range(settings["n_init"])]


def _set_attributes(estimator: Any, state: OnlineState, family: GaussianFamily,
                    dtype: np.dtype, log_likelihood: float, events: list[Collapse], *,
                    restart: bool, names: np.ndarray | None) -> None:
    params = state.params
    estimator._set_parameters(params, dtype, family)
    estimator.convergence_state_ = ONLINE
    estimator.converged_ = False
    estimator.n_iter_ = state.n_batches
    estimator.lower_bound_ = float(log_likelihood)
    history = [] if restart else list(getattr(estimator, "lower_bounds_", []))
    estimator.lower_bounds_ = [*history, float(log_likelihood)]
    collapses = [] if restart else list(getattr(estimator, "collapses_", []))
    estimator.collapses_ = collapses + events
    estimator.n_features_in_ = params.n_features
    if names is not None:
        estimator.feature_names_in_ = names
    state.snapshot = {name: getattr(estimator, name).copy() for name in _FITTED_ARRAYS}
    estimator._online_state = state


def _warn_about_collapses(events: list[Collapse]) -> None:
    shown = "; ".join(
        f"{'shared covariance' if c.component < 0 else f'component {c.component}'} "
        f"{c.reason} at batch {c.iteration}, {c.action}" for c in events[:5])
    more = "" if len(events) <= 5 else f" (and {len(events) - 5} more)"
    warnings.warn(
        f"{len(events)} component collapse(s) repaired in partial_fit: {shown}{more}. "
        "See collapses_; fewer n_components or a larger reg_covar may fit the data better.",
        ComponentCollapseWarning, stacklevel=4)
