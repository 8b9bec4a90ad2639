"""Exceptions and warnings raised by emix.

Every error names what was wrong, the value received, the rule it broke and
what to do about it.  Input errors also derive from :class:`ValueError` (or
:class:`TypeError`) so that code written for scikit-learn keeps catching them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np


class EmixError(Exception):
    """Base class of every error emix raises on purpose.

    ``remedy`` holds, where the remedy is a setting, the constructor
    parameters that fix the problem (e.g. ``{"reg_covar": 1e-4}``), so that
    a program can follow it: ``model.set_params(**error.remedy)``.
    """

    def __init__(self, *args: object, remedy: dict[str, object] | None = None):
        super().__init__(*args)
        self.remedy: dict[str, object] = dict(remedy or {})


class InvalidInputError(EmixError, ValueError):
    """Data, weights or a parameter value that emix cannot use as given."""


class InvalidInputTypeError(EmixError, TypeError):
    """Data of a type that cannot be read as numbers."""


class NotFittedError(EmixError, ValueError, AttributeError):
    """A method that needs fitted parameters was called before ``fit``.

    Derives from :class:`ValueError` and :class:`AttributeError` as
    scikit-learn's does.  When scikit-learn is already imported, the error
    raised is also an instance of ``sklearn.exceptions.NotFittedError`` (see
    :func:`not_fitted`), so code catching that one keeps working.
    """


def not_fitted(message: str) -> NotFittedError:
    """A NotFittedError that scikit-learn also recognises, if it is loaded.

    Never imports scikit-learn: it only looks for a copy already in memory.
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return NotFittedError(message)
    return _bridged(sklearn_exceptions.NotFittedError)(message)


@cache
def _bridged(sklearn_class: type) -> type:
    return type("NotFittedError", (NotFittedError, sklearn_class),
                {"__module__": __name__, "__doc__": NotFittedError.__doc__})


class DegenerateComponentError(EmixError, ArithmeticError):
    """A component collapsed and the collapse policy is ``"raise"``, or the
    covariance of the data itself is singular and nothing can repair it."""


class NumericalError(EmixError, ArithmeticError):
    """A quantity left the range that floating point can represent."""


class ModelFileError(EmixError, ValueError):
    """A model file is missing, truncated, tampered with, or not an emix model."""


class ClusterError(EmixError, RuntimeError):
    """The Dask cluster can no longer run the computation: it lost all its
    workers, its scheduler, or blocks of data that cannot be computed again."""


class ConvergenceWarning(UserWarning):
    """EM stopped before the log-likelihood settled (``max_iter``) or diverged."""


class ComponentCollapseWarning(UserWarning):
    """A component collapsed (onto a point or to zero weight) and was repaired."""


class DataWarning(UserWarning):
    """The data are legal but suspicious: a constant column, a regulariser
    that dominates the data's own variance, and the like."""


@contextmanager
def floating_point_guard() -> Iterator[None]:
    """Turn any floating-point overflow, division by zero or invalid
    operation into a
    :class:`NumericalError` with a remedy, instead of letting inf or NaN
    flow into the parameters (or a confusing error surface later)."""
    try:
        # Underflow is harmless (tiny responsibilities become 0); division by
        # zero and overflow are not.
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            yield
    except FloatingPointError as exc:
        raise NumericalError(
            f"a computation left floating point's range ({exc}): the data's values, "
            "spread or variances are too large or too small for this precision. "
            "Rescale the columns (e.g. standardise them) and fit again."
        ) from None
