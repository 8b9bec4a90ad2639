"""Convergence of EM with explicit, honest states.

``converged`` means the log-likelihood changed by less than ``tol`` between
two iterations; reaching ``max_iter`` is a state of its own, never reported
as convergence; ``diverged`` means the log-likelihood fell by a margin that
rounding and regularisation cannot explain, and the best parameters seen are
returned instead of the last.
"""

from __future__ import annotations

import math

RUNNING = "running"
CONVERGED = "converged"
MAX_ITER = "max_iter"
DIVERGED = "diverged"

#: A fall of the per-sample log-likelihood larger than this many times tol
#: (and than 1e-6 relative) is divergence.  Smaller falls can come from
#: reg_covar, which makes the M-step a slightly regularised maximiser.
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

    def update(self, log_likelihood: float, *, fresh_start: bool = False) -> str:
        """Record one iteration; ``fresh_start`` after a discontinuous change
        of the parameters (a reseeded component), which is neither progress
        nor divergence."""
        previous = self.history[-1]
        self.history.append(log_likelihood)
        self.state = self._state_after(previous, log_likelihood, fresh_start)
        return self.state

    def _state_after(self, previous: float | None, current: float, fresh_start: bool) -> str:
        if not math.isfinite(current):
            return DIVERGED
        if previous is not None and not fresh_start:
            change = current - previous
            if change < 0:
                self.decreases.append((self.n_iter, change))
                margin = max(DIVERGENCE_FACTOR * self.tol, 1e-6 * (1.0 + abs(previous)))
                if -change > margin:
                    return DIVERGED
            if abs(change) < self.tol:
                return CONVERGED
        if self.n_iter >= self.max_iter:
            return MAX_ITER
        return RUNNING
