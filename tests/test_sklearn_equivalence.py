"""Same data, same initial parameters, same number of iterations: emix and
scikit-learn compute the same model (1e-8 relative, float64)."""

import warnings

import numpy as np
import pytest

from emix import GaussianMixture

from conftest import COVARIANCE_TYPES, blobs, fixed_init

# Every test here runs through the compiled E-step kernels and through NumPy.
pytestmark = pytest.mark.usefixtures("e_step_path")


sklearn_mixture = pytest.importorskip("sklearn.mixture")

SHAPES = [(300, 1, 1), (500, 1, 2), (400, 2, 1), (600, 2, 3), (800, 4, 3), (700, 6, 5)]
N_ITER = 8
RTOL = 1e-8


def _pair(X, labels, n_components, covariance_type, seed=0, **options):
    init = fixed_init(X, n_components, covariance_type, seed, labels)
    settings = dict(covariance_type=covariance_type, max_iter=N_ITER, tol=0.0, **init,
                    **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = sklearn_mixture.GaussianMixture(n_components, **settings).fit(X)
        ours = GaussianMixture(n_components, **settings).fit(X)
    # A collapse would be repaired by emix and not by scikit-learn: the
    # comparison is only meaningful without one.
    assert ours.collapses_ == []
    return ours, reference


def _close(actual, desired, rtol=RTOL):
    actual, desired = np.asarray(actual), np.asarray(desired)
    scale = np.max(np.abs(desired))
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}-d{}-K{}".format(*s))
def test_same_parameters_as_scikit_learn(covariance_type, shape):
    n_samples, n_features, n_components = shape
    X, labels = blobs(n_samples, n_features, n_components, seed=sum(shape), return_labels=True)
    ours, reference = _pair(X, labels, n_components, covariance_type)

    assert ours.n_iter_ == reference.n_iter_ == N_ITER
    for name in ("weights_", "means_", "covariances_", "precisions_",
                 "precisions_cholesky_"):
        _close(getattr(ours, name), getattr(reference, name))
    # scikit-learn's lower_bound_ belongs to the parameters one M-step
    # before the returned ones; emix keeps the whole history.
    assert ours.lower_bounds_[N_ITER - 1] == pytest.approx(reference.lower_bound_, rel=RTOL)
    assert ours.lower_bound_ == pytest.approx(reference.score(X), rel=RTOL)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_predictions_and_criteria_as_scikit_learn(covariance_type):
    X, labels = blobs(600, 3, 3, seed=7, return_labels=True)
    ours, reference = _pair(X, labels, 3, covariance_type)
    _close(ours.score_samples(X), reference.score_samples(X))
    _close(ours.predict_proba(X), reference.predict_proba(X))
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X))
    assert ours.score(X) == pytest.approx(reference.score(X), rel=RTOL)
    assert ours.bic(X) == pytest.approx(reference.bic(X), rel=RTOL)
    assert ours.aic(X) == pytest.approx(reference.aic(X), rel=RTOL)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_integer_input_scores_like_float_input(covariance_type):
    # scikit-learn 1.9 returns wrong score_samples for integer X with full
    # or tied covariances; emix converts integers to float64 first.
    rng = np.random.default_rng(3)
    X_int = np.concatenate([rng.integers(0, 10, size=(200, 2)),
                            rng.integers(20, 30, size=(200, 2))])
    X_float = X_int.astype(np.float64)
    ours = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X_int)
    reference = sklearn_mixture.GaussianMixture(
        2, covariance_type=covariance_type, weights_init=ours.weights_,
        means_init=ours.means_, precisions_init=ours.precisions_, max_iter=1).fit(X_float)
    reference.weights_, reference.means_ = ours.weights_, ours.means_
    reference.precisions_cholesky_ = ours.precisions_cholesky_
    np.testing.assert_allclose(ours.score_samples(X_int), ours.score_samples(X_float),
                               rtol=1e-14)
    np.testing.assert_allclose(ours.score_samples(X_int), reference.score_samples(X_float),
                               rtol=1e-10)
