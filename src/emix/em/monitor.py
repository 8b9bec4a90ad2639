"""Convergence of EM with explicit, honest states.

``converged`` means the log-likelihood changed by less than ``tol`` between
two iterations; reaching ``max_iter`` is a state of its own, never reported
as convergence; ``diverged`` means the log-likelihood became non-finite, or
fell by more than rounding explains while EM was unregularised, and the
best parameters seen are returned instead of the last.

Why only unregularised EM: plain EM never lowers the likelihood, but with
``reg_covar`` (or a collapse floor) the M-step maximises a regularised
objective, and the plain likelihood may fall by design (far more than
rounding when ``reg_covar`` is large against the data's variance).  Such
falls are recorded in ``decreases``, not treated as failure.
"""

from __future__ import annotations

import math

RUNNING = "running"
CONVERGED = "converged"
MAX_ITER = "max_iter"
DIVERGED = "diverged"

#: In unregularised EM, a fall of the per-sample log-likelihood larger than
#: this many times tol (and than 1e-6 relative) is divergence.
DIVERGENCE_FACTOR = 10.0


class ConvergenceMonitor:
    """Records the per-sample log-likelihood after each iteration and
    decides when to stop.

    ``history[i]`` is the log-likelihood of the parameters after ``i``
    M-steps; ``history[0]`` is that of the initial parameters.
    """

    def __init__(self, tol: float, max_iter: int):
        self.tol = tol
        self.max_iter = max_iter
        self.history: list[float] = []
        self.state = RUNNING
        self.decreases: list[tuple[int, float]] = []

    @property
    def n_iter(self) -> int:
        """M-steps done so far."""
        return max(0, len(self.history) - 1)

    def start(self, log_likelihood: float) -> str:
        self.history = [log_likelihood]
        self.state = self._state_after(None, log_likelihood, fresh_start=True)
        return self.state

    def update(self, log_likelihood: float, *, fresh_start: bool = False,
               regularised: bool = False, rounding: float = 0.0) -> str:
        """Record one iteration.

        ``fresh_start`` after a discontinuous change of the parameters (a new
        floor or a reseed), which is neither progress nor divergence;
        ``regularised`` when the M-step maximised a regularised objective,
        whose falls of the plain likelihood are expected; ``rounding`` how
        far rounding alone may move the log-likelihood (it grows with the
        covariances' condition number), which no fall within it exceeds.
        """
        previous = self.history[-1]
        self.history.append(log_likelihood)
        self.state = self._state_after(previous, log_likelihood, fresh_start, regularised,
                                       rounding)
        return self.state

    def _state_after(self, previous: float | None, current: float, fresh_start: bool,
                     regularised: bool = False, rounding: float = 0.0) -> str:
        if not math.isfinite(current):
            return DIVERGED
        if previous is not None and not fresh_start:
            change = current - previous
            if change < 0:
                self.decreases.append((self.n_iter, change))
                margin = max(DIVERGENCE_FACTOR * self.tol, 1e-6 * (1.0 + abs(previous)),
                             rounding)
                if -change > margin and not regularised:
                    return DIVERGED
            if abs(change) < self.tol:
                return CONVERGED
        if self.n_iter >= self.max_iter:
            return MAX_ITER
        return RUNNING
