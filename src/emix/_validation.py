"""Check input once, at the boundary, and say exactly what is wrong.

Everything past this module may assume a C- or F-ordered 2-D floating array
without NaN or inf, weights that are finite and non-negative, and parameters
inside their documented ranges.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .exceptions import InvalidInputError, InvalidInputTypeError

#: Floating types kept as they are; everything else numeric becomes float64.
_KEPT_FLOATS = (np.float32, np.float64)


def feature_names_of(X: Any) -> np.ndarray | None:
    """Column names of a data frame whose columns are all strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "iloc"):
        return None
    names = list(columns)
    if names and all(isinstance(c, str) for c in names):
        return np.asarray(names, dtype=object)
    return None


def as_float_array(X: Any, *, name: str = "X", dtype: Any = None) -> np.ndarray:
    """Return ``X`` as a finite 2-D float32 or float64 array of shape (n, d).

    1-D input of shape (n,) is read as n samples of one feature.  Integer and
    boolean input become float64; float32 stays float32 unless ``dtype`` says
    otherwise.  Never copies data that already has a usable dtype and layout.
    """
    if _is_sparse(X):
        raise InvalidInputTypeError(
            f"{name} is a sparse matrix; emix needs dense data. Sparse input is "
            f"not supported: convert it with {name}.toarray() if it fits in memory."
        )
    if isinstance(X, (str, bytes)):
        raise InvalidInputTypeError(f"{name} is a string, not an array of numbers.")
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{name} cannot be read as a numeric array ({exc}); pass a NumPy "
            "array, a list of equal-length rows, or a data frame of numbers."
        ) from exc
    if np.iscomplexobj(array):
        raise InvalidInputError(
            f"Complex data not supported: {name} has dtype {array.dtype}; pass "
            f"the real part ({name}.real) or split real and imaginary parts into columns."
        )
    if array.dtype.kind in "USV":
        raise InvalidInputTypeError(
            f"{name} holds strings, not numbers ({_first_non_number(array)}); convert or "
            "drop the text columns first, e.g. np.asarray(X, dtype=float) for numbers "
            "written as text."
        )
    if array.dtype.kind == "O":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            # numpy's own message ("float() argument must be a string or a real
            # number, not 'dict'") names the offending type: keep it.
            raise InvalidInputTypeError(
                f"{name} holds values that are not numbers: {exc}. Convert or "
                "drop the non-numeric entries first."
            ) from exc
    elif array.dtype.kind not in "biuf":
        raise InvalidInputTypeError(
            f"{name} has dtype {array.dtype}, which is not numeric; pass numbers."
        )

    if array.ndim == 1:
        array = array.reshape(-1, 1)
    elif array.ndim != 2:
        raise InvalidInputError(
            f"{name} must be 1-D (one feature) or 2-D (samples x features); got "
            f"an array with shape {array.shape}. Reshape it, e.g. "
            f"{name}.reshape(len({name}), -1)."
        )
    n_samples, n_features = array.shape
    if n_samples == 0:
        raise InvalidInputError(
            f"{name} has 0 samples (shape={array.shape}) while a minimum of 1 is "
            "required; pass at least one row."
        )
    if n_features == 0:
        raise InvalidInputError(
            f"Found array with 0 feature(s) (shape={array.shape}) while a minimum "
            f"of 1 is required. {name} needs at least one column."
        )

    target = _target_dtype(array.dtype, dtype)
    if array.dtype != target:
        array = array.astype(target)
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    check_finite(array, name=name)
    return array


def check_finite(array: np.ndarray, *, name: str = "X") -> None:
    """Raise if ``array`` holds NaN or inf, naming how many rows and the first."""
    # The sum is one cheap pass; only on failure do we locate the culprits.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(array, dtype=np.float64)
    if np.isfinite(total):
        return
    bad = ~np.isfinite(array)
    if not bad.any():  # the sum overflowed, the values are fine
        return
    rows = np.flatnonzero(bad.reshape(array.shape[0], -1).any(axis=1))
    kinds = []
    if np.isnan(array).any():
        kinds.append("NaN")
    if np.isinf(array).any():
        kinds.append("inf")
    what = " and ".join(kinds)
    raise InvalidInputError(
        f"{name} contains {what} in {rows.size} row(s) (first at row {rows[0]}); "
        f"EM needs finite numbers. Drop those rows, e.g. "
        f"{name}[np.isfinite({name}).all(axis=1)], or impute them."
    )


def check_sample_weight(
    sample_weight: Any, n_samples: int, *, name: str = "sample_weight",
    allow_all_zero: bool = False,
) -> np.ndarray | None:
    """Validate frequency weights: finite, non-negative, not all zero.

    Returns a float64 array of shape (n_samples,), or None for unit weights.
    The caller's array is never modified.
    """
    if sample_weight is None:
        return None
    if _is_sparse(sample_weight):
        raise InvalidInputTypeError(f"{name} must be dense; got a sparse matrix.")
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        weights = np.full(n_samples, float(sample_weight))
    else:
        try:
            weights = np.asarray(sample_weight, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{name} must be numbers, one per sample ({exc})."
            ) from exc
    weights = weights.reshape(-1) if weights.ndim == 2 and 1 in weights.shape else weights
    if weights.shape != (n_samples,):
        raise InvalidInputError(
            f"{name} must have shape ({n_samples},), one weight per sample of X; "
            f"got shape {weights.shape}."
        )
    if not np.isfinite(weights).all():
        raise InvalidInputError(
            f"{name} contains NaN or inf (first at index "
            f"{int(np.flatnonzero(~np.isfinite(weights))[0])}); weights must be finite."
        )
    if (weights < 0).any():
        first = int(np.flatnonzero(weights < 0)[0])
        raise InvalidInputError(
            f"{name} must be non-negative (a weight counts how often a sample "
            f"occurs); got {weights[first]!r} at index {first}. Drop the sample "
            "or give it weight 0."
        )
    if not allow_all_zero and not (weights > 0).any():
        raise InvalidInputError(
            f"{name} is zero everywhere: at least one sample needs a positive weight "
            "for there to be anything to fit."
        )
    if weights is sample_weight:
        weights = weights.copy()
    return weights


def check_random_state(seed: Any) -> np.random.Generator:
    """A NumPy Generator from None, an int, a Generator or a legacy RandomState."""
    if seed is None or isinstance(seed, (numbers.Integral, np.integer)):
        if seed is not None and int(seed) < 0:
            raise InvalidInputError(
                f"random_state must be a non-negative int, a Generator or None; got {seed}."
            )
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        # Draw a seed from it so that the caller's stream advances, as with
        # scikit-learn estimators sharing one RandomState.
        return np.random.default_rng(seed.randint(0, 2**31 - 1))
    raise InvalidInputError(
        f"random_state must be None, an int, a numpy.random.Generator or a "
        f"RandomState; got {type(seed).__name__}."
    )


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """An integer parameter >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InvalidInputError(
            f"{name} must be an int >= {minimum}; got {value!r} "
            f"({type(value).__name__})."
        )
    if value < minimum:
        raise InvalidInputError(f"{name} must be an int >= {minimum}; got {value}.")
    return int(value)


def check_float(name: str, value: Any, *, minimum: float = 0.0) -> float:
    """A finite real parameter >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(
            f"{name} must be a real number >= {minimum}; got {value!r} "
            f"({type(value).__name__})."
        )
    value = float(value)
    if not np.isfinite(value) or value < minimum:
        raise InvalidInputError(f"{name} must be a finite number >= {minimum}; got {value}.")
    return value


def check_choice(name: str, value: Any, choices: dict[str, Any] | tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise InvalidInputError(f"{name} must be one of {allowed}; got {value!r}.")
    return value


def _first_non_number(array: np.ndarray) -> str:
    for index in np.ndindex(array.shape):
        try:
            float(array[index])
        except (TypeError, ValueError):
            return f"{array[index]!r} at index {index}"
    return "all of them numbers written as text"


def _target_dtype(current: np.dtype, requested: Any) -> np.dtype:
    if requested is not None:
        return np.dtype(requested)
    if current.type in _KEPT_FLOATS:
        return current
    return np.dtype(np.float64)


def _is_sparse(X: Any) -> bool:
    # Duck typing spares importing scipy.sparse just to check.
    return hasattr(X, "tocsr") and hasattr(X, "nnz")
