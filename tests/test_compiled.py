"""The compiled E-step kernels against the NumPy E-step and against numpy's
own functions: same statistics, same log-likelihood, same fallbacks."""

import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from emix import GaussianMixture, NumericalError
from emix.execution import Workspace
from emix.families import _compiled
from emix.families.gaussian import GaussianFamily

from conftest import COVARIANCE_TYPES, blobs, fixed_init

numba_kernels = pytest.importorskip("emix.families._numba_kernels")

# Under EMIX_NUMBA=0 (CI's NumPy-path leg) there are no kernels to compare.
pytestmark = pytest.mark.skipif(
    os.environ.get(_compiled.ENVIRONMENT_SWITCH, "1") == "0",
    reason=f"{_compiled.ENVIRONMENT_SWITCH}=0 switches the compiled kernels off")


def _params(family, X, n_components, seed=0):
    """Parameters with unequal weights and each component's own covariance."""
    rng = np.random.default_rng(seed)
    n_features = X.shape[1]
    means = X[rng.choice(X.shape[0], n_components, replace=False)]
    weights = rng.uniform(0.5, 1.5, n_components)
    weights /= weights.sum()
    spread = np.cov(X, rowvar=False).reshape(n_features, n_features)
    full = np.stack([spread * rng.uniform(0.3, 1.2) + 0.05 * np.eye(n_features)
                     for _ in range(n_components)])
    covariances = {
        "full": full,
        "tied": full[0],
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([np.diag(c).mean() for c in full]),
    }[family.covariance.name]
    return family.make_params(weights, means, covariances)


def _numpy_stats(family, params, X, weights, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(_compiled, "_kernels", None)
        patch.setattr(_compiled, "_loaded", True)
        return family.e_step(params, X, weights, Workspace())


def _assert_same_stats(ours, reference, rtol):
    np.testing.assert_array_equal(ours.shift, reference.shift)
    scale = reference.resp_weight.sum()
    np.testing.assert_allclose(ours.resp_weight, reference.resp_weight, rtol=rtol,
                               atol=rtol * scale)
    # First moments about the means nearly cancel: their natural scale is
    # N sigma, the square root of N times the second moments.
    second_scale = np.abs(reference.second).max()
    np.testing.assert_allclose(ours.first, reference.first, rtol=rtol,
                               atol=rtol * np.sqrt(second_scale * scale))
    np.testing.assert_allclose(ours.second, reference.second, rtol=rtol,
                               atol=rtol * second_scale)
    assert ours.log_likelihood == pytest.approx(reference.log_likelihood, rel=rtol)
    assert ours.total_weight == pytest.approx(reference.total_weight, rel=1e-15)
    assert ours.n_samples == reference.n_samples


def test_exponential_matches_numpy_within_two_ulp():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(-708.0, 0.0, 200_000), rng.uniform(-1.0, 0.0, 50_000),
                             [0.0, -0.0, -1e-300, -708.0, -707.9999]])
    out = values.copy()
    scratch = np.empty(values.size)
    numba_kernels.exp_nonpositive(out, values.size, scratch, scratch.view(np.int64))
    reference = np.exp(values)
    ulp = np.spacing(reference)
    assert np.max(np.abs(out - reference) / ulp) <= 2.0
    assert out[values == 0.0].tolist() == [1.0, 1.0]


def test_exponential_below_the_cutoff_is_zero():
    values = np.array([-708.5, -745.0, -1e5, -np.inf])
    scratch = np.empty(values.size)
    numba_kernels.exp_nonpositive(values, values.size, scratch, scratch.view(np.int64))
    assert values.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_float32_exponential_within_two_float32_ulp():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.uniform(-87.0, 0.0, 200_000), rng.uniform(-1.0, 0.0, 50_000),
                             [0.0, -87.0, -86.99]]).astype(np.float32)
    out = values.copy()
    scratch = np.empty(values.size, np.float32)
    numba_kernels.exp_nonpositive_float32(out, values.size, scratch, scratch.view(np.int32))
    reference = np.exp(values.astype(np.float64))
    ulp = np.spacing(reference.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out - reference) / ulp) <= 2.0
    below = np.array([-87.5, -100.0, -1e5, -np.inf], np.float32)
    numba_kernels.exp_nonpositive_float32(below, below.size, scratch, scratch.view(np.int32))
    assert below.tolist() == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negligible_responsibilities_are_taken_as_zero(dtype):
    # exp(-50) = 2e-22 and exp(-120) = 8e-53 next to 1: below the square
    # root of the least normal number in float32 (1e-19; products with them
    # would be subnormal), above it in float64.
    log_densities = np.array([[0.0, 0.0, -3.0], [-50.0, -120.0, 0.0]])
    # One feature x = 0, 1, 2 and quadratic features (x^2, x, 1): these
    # coefficients give exactly those log-densities (a column of zeros pads
    # the three terms to four).
    X = np.array([[0.0], [1.0], [2.0]], dtype)
    theta = np.array([[-1.5, 1.5, 0.0, 0.0], [95.0, -165.0, -50.0, 0.0]], dtype)
    # Moments about 0 and 2: component 1's only other residuals are those of
    # the rows where its responsibility is negligible.
    means = np.array([[0.0], [2.0]], dtype)
    smallest = np.sqrt(np.finfo(dtype).tiny)
    resp_weight, first, second = np.zeros(2), np.zeros((2, 1)), np.zeros((2, 4, 4))
    # Buffers for blocks of two rows: the second block is a partial one.
    # Bounds of zero: no row is recomputed about the means.
    log_likelihood, recomputed = numba_kernels.quadratic_e_step(
        X, np.zeros(1), theta, np.zeros((3, 2)), np.array([1e-15, 1e-9, 50.0]),
        means.astype(np.float64), np.ones((2, 1, 1)), np.zeros(2), np.empty(4 * 2, dtype),
        np.empty(2 * 2, dtype), np.empty(0), False, smallest, resp_weight, first, second)
    assert recomputed == 0
    reference = np.exp(log_densities)
    responsibilities = reference / reference.sum(axis=0)
    kept = np.where(responsibilities < smallest, 0.0, responsibilities)
    residuals = X[:, 0] - means
    np.testing.assert_allclose(first[:, 0], (kept * residuals).sum(axis=1),
                               rtol=4 * np.finfo(dtype).eps, atol=0)
    np.testing.assert_allclose(second[:, 0, 0], (kept * residuals**2).sum(axis=1),
                               rtol=4 * np.finfo(dtype).eps, atol=0)
    assert (first[1, 0] == 0.0) == (dtype == np.float32)
    # The weights are those of normalisation, before any is taken as 0.
    np.testing.assert_allclose(resp_weight, responsibilities.sum(axis=1),
                               rtol=4 * np.finfo(dtype).eps)
    # Each row's log-sum-exp in the dtype (float32: to about 1e-7), the sum in float64.
    assert log_likelihood == pytest.approx(np.log(reference.sum(axis=0)).sum(), rel=1e-15,
                                           abs=12 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
# 1-4 features take the fused kernels for full and tied, 5 and more the
# quadratic-form kernels (7: an odd width, padded to even inside).
@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("weighted", [False, True])
# Two components take a path of their own (one exponential per row); six
# take the coefficients' product in a group of four and two single rows.
@pytest.mark.parametrize("n_components", [2, 6])
def test_compiled_statistics_equal_numpy_statistics(covariance_type, n_features, weighted,
                                                    n_components, monkeypatch):
    X = blobs(3000, n_features, 3, seed=n_features)
    family = GaussianFamily(covariance_type)
    params = _params(family, X, n_components, seed=n_features)
    weights = np.random.default_rng(1).uniform(0.0, 3.0, X.shape[0]) if weighted else None
    reference = _numpy_stats(family, params, X, weights, monkeypatch)
    ours = family.e_step(params, X, weights, Workspace())
    _assert_same_stats(ours, reference, rtol=1e-11)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_features", [1, 3, 6])
@pytest.mark.parametrize("n_components", [2, 3])
def test_float32_statistics_are_within_float32_rounding_of_float64(
        covariance_type, n_features, n_components, monkeypatch):
    X = blobs(4000, n_features, 3, seed=10 + n_features)
    family = GaussianFamily(covariance_type)
    params = _params(family, X, n_components, seed=n_features)
    reference = _numpy_stats(family, params, X, None, monkeypatch)
    ours = family.e_step(params, X.astype(np.float32), None, Workspace())
    _assert_same_stats(ours, reference, rtol=2e-5)


def test_a_row_beyond_range_takes_the_numpy_path_and_its_error():
    X = blobs(500, 6, 2, seed=3)
    X[17] = 1e200
    family = GaussianFamily("full")
    params = _params(family, X[100:], 2)
    with pytest.raises(NumericalError, match="rescale"):
        family.e_step(params, X, None, Workspace())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quadratic_form_yields_to_residuals_where_it_would_lose_digits(dtype, monkeypatch):
    """Two clusters 1e4 standard deviations apart (float32: the expansion
    about the mixture's centre would lose every digit, eps * |c|^2 = 6), and
    in float64 three outliers 1e4 away that a broad component owns (their
    terms are 1e8 times their log-densities): those rows, and only those,
    get their log-densities from residuals about each mean, and the
    statistics are those of the NumPy path."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(size=(1000, 5)), rng.normal(size=(1000, 5)) + 1e4])
    weights = np.array([0.5, 0.5])
    means = np.array([X[:1000].mean(0), X[1000:].mean(0)])
    covariances = np.stack([np.eye(5), np.eye(5)])
    if dtype == np.float64:
        X = rng.normal(size=(2000, 5))
        X[:3] = 1e4 * rng.normal(size=(3, 5))
        weights = np.array([1997, 3]) / 2000
        means = np.array([X[3:].mean(0), X[:3].mean(0)])
        covariances = np.stack([np.eye(5), np.cov(X[:3].T, bias=True) + np.eye(5)])
    family = GaussianFamily("full")
    params = family.make_params(weights, means, covariances)
    kernels = dict(_compiled.kernels())
    counts = []

    def counted(*args):
        log_likelihood, recomputed = _compiled.kernels()["quadratic_e_step"](*args)
        counts.append(recomputed)
        return log_likelihood, recomputed

    Xd = X.astype(dtype)
    reference = _numpy_stats(family, params, Xd.astype(np.float64), None, monkeypatch)
    monkeypatch.setitem(kernels, "quadratic_e_step", counted)
    ours = family._compiled_e_step(kernels, params, Xd, None, Workspace())
    assert sum(counts) == (2000 if dtype == np.float32 else 3)
    _assert_same_stats(ours, reference, rtol=1e-5 if dtype == np.float32 else 1e-11)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_threads_do_not_change_the_fit(covariance_type):
    X = blobs(20_000, 5, 3, seed=7)
    init = fixed_init(X, 3, covariance_type)
    fits = []
    for n_threads in (1, 2):
        model = GaussianMixture(3, covariance_type=covariance_type, tol=0.0, max_iter=5,
                                chunk_size=1500, n_threads=n_threads, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(model.fit(X))
    one, two = fits
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert one.lower_bounds_ == two.lower_bounds_


@pytest.mark.filterwarnings("ignore::emix.ConvergenceWarning")
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_features", [1, 2, 6])
def test_compiled_and_numpy_fits_agree(covariance_type, n_features, monkeypatch):
    X = blobs(5000, n_features, 3, seed=20 + n_features)
    init = fixed_init(X, 3, covariance_type)
    settings = dict(covariance_type=covariance_type, tol=0.0, max_iter=20, **init)
    compiled = GaussianMixture(3, **settings).fit(X)
    with monkeypatch.context() as patch:
        patch.setattr(_compiled, "_kernels", None)
        patch.setattr(_compiled, "_loaded", True)
        reference = GaussianMixture(3, **settings).fit(X)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(compiled, name), getattr(reference, name),
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(compiled.lower_bounds_, reference.lower_bounds_, rtol=1e-12)


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setattr(_compiled, "_loaded", False)
    monkeypatch.setattr(_compiled, "_kernels", None)
    monkeypatch.setenv(_compiled.ENVIRONMENT_SWITCH, "0")
    assert _compiled.kernels() is None


def test_threads_asking_at_once_on_first_use_all_get_the_kernels(monkeypatch):
    # A process's first fit asks from every chunk's thread at once; while one
    # thread loads, the others must wait for the kernels, not run without them.
    monkeypatch.setattr(_compiled, "_loaded", False)
    monkeypatch.setattr(_compiled, "_kernels", None)
    loads = []

    def slow_load():
        loads.append(1)
        time.sleep(0.2)
        return {"loaded": True}

    monkeypatch.setattr(_compiled, "_load", slow_load)
    start = threading.Barrier(4)

    def ask(_):
        start.wait()
        return _compiled.kernels()

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    assert answers == [{"loaded": True}] * 4
    assert len(loads) == 1
