"""The EM loop: E-step mapped over the data, statistics summed, M-step, monitor.

Nothing here knows about covariance structures, chunks or clusters: the
family supplies ``e_step`` / ``m_step`` / ``split``, the data object
supplies ``map_reduce``, and every back-end (in memory, chunked files,
Dask) runs this same loop.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..exceptions import DegenerateComponentError
from ..families.base import Collapse, MStepReport
from .checkpoint import RunState
from .monitor import DIVERGED, RUNNING, ConvergenceMonitor

logger = logging.getLogger("emix")

COLLAPSE_POLICIES = ("floor", "reseed", "raise")


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives after each iteration."""

    restart: int  # 0-based index of the initialisation
    n_restarts: int
    iteration: int  # M-steps done in this restart
    log_likelihood: float  # per sample (weighted mean)
    change: float  # since the previous iteration (nan at iteration 0)
    elapsed: float  # seconds since this restart began
    state: str


@dataclass
class EMResult:
    """One EM run (or the best of several)."""

    params: Any
    log_likelihood: float  # per sample, of params
    state: str  # converged | max_iter | diverged
    history: list[float]  # per-sample log-likelihood after 0, 1, ... M-steps
    collapses: list[Collapse] = field(default_factory=list)
    decreases: list[tuple[int, float]] = field(default_factory=list)
    restart: int = 0

    @property
    def n_iter(self) -> int:
        return len(self.history) - 1


def run_em(family: Any, data: Any, params: Any, *, tol: float, max_iter: int,
           on_collapse: str = "floor",
           callback: Callable[[Progress], None] | None = None,
           restart: int = 0, n_restarts: int = 1, checkpoint: Any = None,
           resume: RunState | None = None) -> EMResult:
    """Run EM from ``params`` until convergence, ``max_iter`` or divergence.

    With a ``checkpoint`` the run's state is saved after every iteration;
    ``resume`` (a saved state) continues a run instead of starting one, and
    then ``params`` is ignored.
    """
    started = time.perf_counter()
    monitor = ConvergenceMonitor(tol, max_iter)
    if resume is None:
        stats = data.map_reduce(partial(family.e_step, params))
        log_likelihood = stats.log_likelihood / stats.total_weight
        monitor.start(log_likelihood)
        best = (log_likelihood, params, 0)
        collapses: list[Collapse] = []
        reseeds_left = params.n_components
        floors: dict[int, np.ndarray] = {}  # kept from the M-step that applied them on
    else:
        # The saved parameters' statistics are recomputed (the same numbers:
        # the E-step is deterministic); everything else is as it was saved.
        params = resume.params
        stats = data.map_reduce(partial(family.e_step, params))
        monitor.history = list(resume.history)
        monitor.state = resume.state
        monitor.decreases = list(resume.decreases)
        best = (resume.best_log_likelihood, resume.best_params, resume.best_iteration)
        collapses = list(resume.collapses)
        reseeds_left = resume.reseeds_left
        floors = dict(resume.floors)
    _notify(callback, restart, n_restarts, monitor, started)

    def save() -> None:
        if checkpoint is not None:
            checkpoint.save_run(restart, RunState(
                params=params, history=monitor.history, state=monitor.state,
                decreases=monitor.decreases, collapses=collapses, reseeds_left=reseeds_left,
                floors=floors, best_log_likelihood=best[0], best_params=best[1],
                best_iteration=best[2]))

    if resume is None:
        save()
    while monitor.state == RUNNING:
        iteration = monitor.n_iter + 1
        new_params, report = family.m_step(stats, floors)
        events: list[Collapse] = []
        if report.collapsed:
            new_params, events, new_floors = _repair(family, new_params, report, on_collapse,
                                                     reseeds_left, floors, iteration)
            floors.update(new_floors)
            reseeds_left -= sum(event.action == "reseeded" for event in events)
            collapses.extend(events)
        # A new floor or a reseed changes the parameters discontinuously: that
        # iteration is a fresh start, neither progress nor divergence.  (A
        # floor kept from earlier M-steps is a fixed regulariser, no event.)
        fresh_start = bool(events)
        params = new_params
        stats = data.map_reduce(partial(family.e_step, params))
        log_likelihood = stats.log_likelihood / stats.total_weight
        monitor.update(log_likelihood, fresh_start=fresh_start,
                       regularised=bool(floors) or family.regularised,
                       rounding=family.evaluation_rounding(log_likelihood)
                       + family.step_rounding(params))
        if log_likelihood > best[0] or (fresh_start and math.isfinite(log_likelihood)):
            best = (log_likelihood, params, monitor.n_iter)
        save()
        _notify(callback, restart, n_restarts, monitor, started)

    history = monitor.history
    log_likelihood = history[-1]
    if monitor.state == DIVERGED:
        # Return the best parameters seen, with the history that led to them,
        # so that history[n_iter] is always their log-likelihood.
        log_likelihood, params, kept = best
        history = history[:kept + 1]
        # ... and only the repairs that led to them (the falls are kept: they
        # are why the run stopped).
        collapses = [event for event in collapses if event.iteration <= kept]
    return EMResult(params=params, log_likelihood=log_likelihood, state=monitor.state,
                    history=history, collapses=collapses,
                    decreases=monitor.decreases, restart=restart)


def run_restarts(family: Any, data: Any, initialise: Callable[[int], Any], *, n_init: int,
                 checkpoint: Any = None, **options: Any) -> EMResult:
    """``n_init`` EM runs from ``initialise(i)``; the one with the highest
    final log-likelihood wins (the first, on ties to rounding).

    With a ``checkpoint`` (:class:`~emix.em.checkpoint.Checkpoint`) whose
    file exists, the fit resumes where the file says it stopped.
    """
    saved = checkpoint.load() if checkpoint is not None else None
    best: EMResult | None = saved.finished if saved is not None else None
    first = saved.restart if saved is not None else 0
    for restart in range(first, n_init):
        resume = saved.run if saved is not None and restart == saved.restart else None
        params = initialise(restart) if resume is None else None
        result = run_em(family, data, params, restart=restart, n_restarts=n_init,
                        checkpoint=checkpoint, resume=resume, **options)
        logger.debug("restart %d/%d: %s after %d iterations, log-likelihood %.10g",
                     restart + 1, n_init, result.state, result.n_iter, result.log_likelihood)
        # Ties to rounding go to the earlier run: two runs that reached the
        # same optimum (components permuted) would otherwise be told apart
        # by the order of the sums, differently on each E-step path.
        if best is None or result.log_likelihood > best.log_likelihood + max(
                family.evaluation_rounding(best.log_likelihood),
                family.evaluation_rounding(result.log_likelihood)):
            best = result
        if checkpoint is not None:
            checkpoint.save_finished(restart + 1, best)
    assert best is not None
    return _stored(family, data, best)


def _stored(family, data, result: EMResult) -> EMResult:
    """The result with its parameters as the fit keeps them (float32 data:
    rounded to float32), and their log-likelihood, which one more E-step
    gives: ``history[n_iter]`` is that of the parameters returned."""
    params = family.stored(result.params)
    if params is result.params:
        return result
    stats = data.map_reduce(partial(family.e_step, params))
    log_likelihood = stats.log_likelihood / stats.total_weight
    return dataclasses.replace(result, params=params, log_likelihood=log_likelihood,
                               history=[*result.history[:-1], log_likelihood])


def _repair(family, params, report: MStepReport, policy: str, reseeds_left: int,
            floors: dict[int, np.ndarray], iteration: int
            ) -> tuple[Any, list[Collapse], dict[int, np.ndarray]]:
    """Apply the collapse policy to the components the M-step newly flagged.

    The M-step has already floored them.  "floor" keeps that floor for the
    rest of the run.  "reseed" instead splits a healthy component in two
    along its principal axis and gives one half to the collapsed one (each
    donor once per M-step, heaviest first; at most K reseeds per run), so the
    component restarts inside the data rather than at an extreme row; when
    no donor or budget is left it falls back to the floor.  "raise" stops.
    Returns the parameters, the events and the floors to keep.
    """
    reasons = {k: "vanished" for k in report.vanished}
    reasons.update({k: "singular" for k in report.singular})
    if policy == "raise":
        k, reason = next(iter(sorted(reasons.items())))
        which = "the shared covariance" if k < 0 else f"component {k}"
        what = ("lost all its weight" if reason == "vanished"
                else "collapsed onto a point or subspace (singular covariance)")
        raise DegenerateComponentError(
            f"{which} {what} at iteration {iteration}. Remedies: "
            "on_collapse='floor' (the default) or 'reseed' to repair it, fewer "
            "n_components, a larger reg_covar, or another random_state."
        )
    events = []
    if policy == "reseed":
        donors = sorted((k for k in range(params.n_components)
                         if k not in reasons and k not in floors),
                        key=lambda k: -params.weights[k])
        targets = [k for k in sorted(reasons) if k >= 0]
        for target, donor in zip(targets[:reseeds_left], donors, strict=False):
            params = family.split(params, donor=donor, target=target)
            events.append(Collapse(iteration, target, reasons[target], "reseeded"))
    done = {event.component for event in events}
    kept = [k for k in sorted(reasons) if k not in done]
    events += [Collapse(iteration, k, reasons[k], "floored") for k in kept]
    return params, events, {k: report.floor for k in kept}


def _notify(callback, restart, n_restarts, monitor: ConvergenceMonitor, started: float) -> None:
    history = monitor.history
    change = history[-1] - history[-2] if len(history) > 1 else float("nan")
    if callback is not None:
        callback(Progress(restart=restart, n_restarts=n_restarts, iteration=monitor.n_iter,
                          log_likelihood=history[-1], change=change,
                          elapsed=time.perf_counter() - started, state=monitor.state))
