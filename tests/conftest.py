"""Shared data generators and initialisations for the tests."""

from __future__ import annotations

import os

import numpy as np
import pytest

from emix.families.covariance import COVARIANCE_MODELS

COVARIANCE_TYPES = tuple(COVARIANCE_MODELS)


def blobs(n_samples: int, n_features: int, n_components: int, seed: int,
          spread: float = 4.0, return_labels: bool = False):
    """Gaussian clusters with random centres, scales and correlations."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    mixing = rng.normal(size=(n_components, n_features, n_features)) * 0.4
    mixing += np.eye(n_features) * rng.uniform(0.5, 1.5, size=(n_components, 1, 1))
    noise = rng.normal(size=(n_samples, n_features))
    X = centres[labels] + np.einsum("nd,nde->ne", noise, mixing[labels])
    return (X, labels) if return_labels else X


def identity_precisions(covariance_type: str, n_components: int, n_features: int,
                        scale: float = 1.0) -> np.ndarray:
    """Precisions of ``scale`` times the identity in the structure's shape."""
    shape = COVARIANCE_MODELS[covariance_type].shape(n_components, n_features)
    if covariance_type == "full":
        return np.repeat(np.eye(n_features)[None] * scale, n_components, axis=0)
    if covariance_type == "tied":
        return np.eye(n_features) * scale
    return np.full(shape, scale)


def fixed_init(X: np.ndarray, n_components: int, covariance_type: str,
               seed: int = 0, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Initial parameters both emix and scikit-learn accept: rows as means
    (one from each true cluster when ``labels`` are given)."""
    rng = np.random.default_rng(seed)
    if labels is None:
        rows = rng.choice(X.shape[0], size=n_components, replace=False)
    else:
        rows = np.array([rng.choice(np.flatnonzero(labels == k)) for k in range(n_components)])
    variance = float(X.var(axis=0).mean())
    return {
        "weights_init": np.full(n_components, 1.0 / n_components),
        "means_init": X[rows].copy(),
        "precisions_init": identity_precisions(covariance_type, n_components, X.shape[1],
                                               1.0 / variance),
    }


def assert_finite_fit(model) -> None:
    for name in ("weights_", "means_", "covariances_", "precisions_",
                 "precisions_cholesky_"):
        value = getattr(model, name)
        assert np.all(np.isfinite(value)), f"{name} is not finite: {value}"
    assert np.isfinite(model.lower_bound_)
    assert np.all(np.isfinite(model.lower_bounds_))


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request) -> str:
    return request.param


#: The E-step paths a test of both runs through: with EMIX_NUMBA=0 (CI runs
#: the numerically sensitive tests so) only NumPy's.
E_STEP_PATHS = (["numpy"] if os.environ.get("EMIX_NUMBA", "1") == "0"
                else ["compiled", "numpy"])


@pytest.fixture(params=E_STEP_PATHS)
def e_step_path(request, monkeypatch):
    """Run a test through the compiled kernels (numba) and through NumPy."""
    from emix.families import _compiled

    if request.param == "numpy":
        monkeypatch.setattr(_compiled, "_kernels", None)
        monkeypatch.setattr(_compiled, "_loaded", True)
    elif _compiled.kernels() is None:
        pytest.fail("numba is part of the test extra: pip install -e '.[test]'")
    return request.param
