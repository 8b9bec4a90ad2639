"""The seed: EM for a two-component 1-D Gaussian mixture on 20,000 samples."""

import warnings

import numpy as np
import pytest

from emix import GaussianMixture
from emix.datasets import two_gaussians

WEIGHTS, MEANS, STDS = (0.3, 0.7), (-1.0, 3.0), (1.0, 0.6)
N = 20_000


def _fit_sorted(X, **options):
    model = GaussianMixture(2, random_state=0, tol=1e-8, max_iter=500, **options).fit(X)
    order = np.argsort(model.means_[:, 0])
    stds = np.sqrt(np.asarray(model.covariances_).reshape(2, -1)[:, 0])
    return model, model.weights_[order], model.means_[order, 0], stds[order]


def _seed_e_step(x, weights, means, stds):
    """The seed's E-step: raw densities, normalised per point."""
    density = weights * np.exp(-0.5 * ((x[:, None] - means) / stds) ** 2) / (
        np.sqrt(2 * np.pi) * stds)
    return density / density.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_recovers_the_mixture_within_three_standard_errors(covariance_type):
    X, _ = two_gaussians(N, weights=WEIGHTS, means=MEANS, stds=STDS, random_state=2024)
    model, weights, means, stds = _fit_sorted(X, covariance_type=covariance_type)
    assert model.converged_
    true_w, true_mu, true_sigma = map(np.asarray, (WEIGHTS, MEANS, STDS))
    n_k = N * true_w
    np.testing.assert_array_less(np.abs(weights - true_w), 3 * np.sqrt(true_w * (1 - true_w) / N))
    np.testing.assert_array_less(np.abs(means - true_mu), 3 * true_sigma / np.sqrt(n_k))
    np.testing.assert_array_less(np.abs(stds - true_sigma), 3 * true_sigma / np.sqrt(2 * n_k))


def test_far_outlier_breaks_the_seed_but_not_emix():
    X, _ = two_gaussians(N, weights=WEIGHTS, means=MEANS, stds=STDS, random_state=7)
    X = np.append(X, 1e4)
    with np.errstate(all="ignore"):
        resp = _seed_e_step(X, np.array(WEIGHTS), np.array(MEANS), np.array(STDS))
    assert np.isnan(resp[-1]).all()  # 0/0: the seed's raw densities underflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        two = GaussianMixture(2, random_state=0).fit(X)
        three = GaussianMixture(3, random_state=0, tol=1e-8, max_iter=500).fit(X)
    for model in (two, three):
        for value in (model.weights_, model.means_, model.covariances_, model.lower_bound_):
            assert np.all(np.isfinite(value))
        proba = model.predict_proba(X[-2:])
        assert np.all(np.isfinite(proba))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # With a component to spare, the outlier gets its own and the bulk's fit
    # stays within three standard errors.
    bulk = np.argsort(three.weights_)[1:]
    order = bulk[np.argsort(three.means_[bulk, 0])]
    n_k = N * np.asarray(WEIGHTS)
    np.testing.assert_array_less(np.abs(three.means_[order, 0] - MEANS),
                                 3 * np.asarray(STDS) / np.sqrt(n_k))
    assert three.means_[np.argmin(three.weights_), 0] == pytest.approx(1e4)


def test_integer_input_equals_float_input():
    X, _ = two_gaussians(5000, random_state=3)
    X_int = np.round(X * 100).astype(np.int64)
    from_int = GaussianMixture(2, random_state=0).fit(X_int)
    from_float = GaussianMixture(2, random_state=0).fit(X_int.astype(np.float64))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(from_int, name), getattr(from_float, name))
        assert getattr(from_int, name).dtype == np.float64
    np.testing.assert_array_equal(from_int.score_samples(X_int),
                                  from_float.score_samples(X_int.astype(np.float64)))


def test_float32_input_stays_float32_and_close_to_float64():
    X, _ = two_gaussians(N, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = GaussianMixture(2, random_state=0, tol=1e-9, max_iter=300).fit(
            X.astype(np.float32))
        double = GaussianMixture(2, random_state=0, tol=1e-9, max_iter=300).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(single, name).dtype == np.float32
        np.testing.assert_allclose(getattr(single, name), getattr(double, name), rtol=1e-4)
    assert single.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert single.score_samples(X.astype(np.float32)).dtype == np.float32
    assert single.sample(10)[0].dtype == np.float32
    assert single.lower_bound_ == pytest.approx(double.lower_bound_, rel=1e-6)
