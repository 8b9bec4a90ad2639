"""The benchmark cases, their seeded data and their shared initial parameters.

Everything here is deterministic given the case: both libraries must start
from the very same data and parameters, or their log-likelihoods after a
fixed number of iterations cannot be compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: --quick divides every n by this, keeping d, K and the covariance type.
QUICK_SHRINK = 100
#: ... but keeps this many rows per component and covariance parameter: with
#: fewer (case E: 2,000 rows for 32 components in 64-d), full covariances
#: become singular, emix repairs collapsing components and scikit-learn does
#: not, so the two legitimately part ways and agreement means nothing.
QUICK_ROWS_PER_PARAMETER = 20


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    d: int
    K: int
    covariance_type: str
    n_iter: int
    seed: int

    def shrunk(self, factor: int) -> Case:
        rows = max(self.n // factor, QUICK_ROWS_PER_PARAMETER * self.K * (self.d + 1))
        return Case(self.name, min(rows, self.n), self.d, self.K, self.covariance_type,
                    self.n_iter, self.seed)


# 1-D cases use covariance_type="full" with d=1: the one type both libraries
# share whose precisions are (K, 1, 1). The big cases run fewer iterations so
# that the suite stays within 15 minutes (scikit-learn's C and E take most of
# it); t(n) - t(1) still spans 3 of them, seconds each.  Case A's iterations
# take half a millisecond: 50 of them, so that the difference is not noise.
CASES = {
    "A": Case("A", 20_000, 1, 2, "full", 50, seed=1),
    "B": Case("B", 10_000_000, 1, 2, "full", 5, seed=2),
    "C": Case("C", 1_000_000, 16, 16, "full", 4, seed=3),
    "D": Case("D", 1_000_000, 16, 16, "diag", 10, seed=4),
    "E": Case("E", 200_000, 64, 32, "full", 4, seed=5),
    "F": Case("F", 1_000_000, 2, 5, "full", 10, seed=6),
}


def make_data(case: Case) -> np.ndarray:
    """n rows from a K-component mixture with well separated, unequal
    components, so that EM has real work to do in every iteration."""
    rng = np.random.default_rng(case.seed)
    centres = rng.normal(scale=4.0, size=(case.K, case.d))
    scales = rng.uniform(0.5, 2.0, size=(case.K, case.d))
    labels = rng.integers(case.K, size=case.n)
    X = rng.standard_normal((case.n, case.d))
    X *= scales[labels]
    X += centres[labels]
    return X


def initial_parameters(case: Case, X: np.ndarray) -> dict[str, np.ndarray]:
    """Equal weights, K distinct random rows as means, and the data's own
    covariance for every component, as precisions in the structure's shape
    (full: (K, d, d); diag: (K, d))."""
    rng = np.random.default_rng(case.seed + 1000)
    rows = rng.choice(X.shape[0], size=case.K, replace=False)
    weights = np.full(case.K, 1.0 / case.K)
    means = X[rows].copy()
    if case.covariance_type == "diag":
        precisions = np.repeat(1.0 / X.var(axis=0)[None], case.K, axis=0)
    else:
        covariance = np.atleast_2d(np.cov(X, rowvar=False))
        precisions = np.repeat(np.linalg.inv(covariance)[None], case.K, axis=0)
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions}
