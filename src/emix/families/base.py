"""What the EM engine needs from a family of component distributions.

The engine only ever calls these; a new family (Student-t, Poisson, ...)
implements them and reuses the engine, the execution back-ends and the
estimator plumbing unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Stats(Protocol):
    """Additive sufficient statistics of one pass over some rows.

    Immutable; ``a + b`` is the statistics of the union of the rows, and is
    associative and commutative (to rounding).
    """

    log_likelihood: float  # sum_i w_i log p(x_i)
    total_weight: float  # sum_i w_i

    def __add__(self, other: Any) -> Any: ...


@dataclass(frozen=True)
class Collapse:
    """One component that collapsed at one M-step, and what was done."""

    iteration: int
    component: int  # -1 for a covariance shared by all components ("tied")
    reason: str  # "vanished" (no weight left) or "singular" (covariance)
    action: str  # "reseeded" or "floored"


@dataclass
class MStepReport:
    """What the M-step found besides the new parameters."""

    #: Components whose weight vanished or whose covariance became singular,
    #: before any repair; -1 stands for a shared covariance.
    vanished: list[int] = field(default_factory=list)
    singular: list[int] = field(default_factory=list)
    #: The covariance floor the M-step applied to the newly singular
    #: components (one component's shape), and would apply to others.
    floor: np.ndarray | None = None

    @property
    def collapsed(self) -> list[int]:
        return sorted(set(self.vanished) | set(self.singular))


class Family(Protocol):
    """A family of mixture components with additive sufficient statistics."""

    #: Whether the M-step maximises a regularised objective (then the plain
    #: log-likelihood may fall between iterations by design).
    regularised: bool

    def e_step(self, params: Any, X: np.ndarray, weights: np.ndarray | None,
               workspace: Any) -> Stats: ...

    def evaluation_rounding(self, log_likelihood: float) -> float:
        """How precisely the E-step evaluates a per-sample log-likelihood:
        restarts within it of each other are ties."""
        ...

    def step_rounding(self, params: Any) -> float:
        """How far an M-step's rounding alone may move the per-sample
        log-likelihood to ``params``: with the evaluation's, a fall within it
        is no divergence."""
        ...

    def stored(self, params: Any) -> Any:
        """``params`` in the precision the fitted attributes keep."""
        ...

    def m_step(self, stats: Any, floors: dict[int, np.ndarray] | None = None
               ) -> tuple[Any, MStepReport]: ...

    def split(self, params: Any, *, donor: int, target: int) -> Any: ...

    def log_density(self, params: Any, X: np.ndarray, workspace: Any) -> np.ndarray: ...
