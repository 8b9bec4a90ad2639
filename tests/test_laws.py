"""Laws of EM, checked on generated data (hypothesis)."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emix import GaussianMixture
from emix.execution.workspace import Workspace
from emix.families.gaussian import GaussianFamily

from conftest import COVARIANCE_TYPES, blobs, fixed_init, identity_precisions

# Every test here runs through the compiled E-step kernels and through NumPy.
pytestmark = pytest.mark.usefixtures("e_step_path")


LAW_SETTINGS = settings(max_examples=25, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.function_scoped_fixture])

problems = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n_features": st.integers(1, 3),
    "n_components": st.integers(1, 3),
    "covariance_type": st.sampled_from(COVARIANCE_TYPES),
})


def _data(problem, per_component=40):
    n = per_component * problem["n_components"] * (problem["n_features"] + 1)
    return blobs(n, problem["n_features"], problem["n_components"], problem["seed"],
                 return_labels=True)


def _fit(X, problem, sample_weight=None, **options):
    settings_ = dict(covariance_type=problem["covariance_type"], random_state=0)
    settings_.update(options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(problem["n_components"], **settings_).fit(
            X, sample_weight=sample_weight)


def _assert_same_fit(a, b, rtol):
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol,
                                   atol=rtol * np.max(np.abs(getattr(b, name))), err_msg=name)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=rtol, abs=rtol)


@LAW_SETTINGS
@given(problem=problems)
def test_log_likelihood_never_decreases(problem):
    X, labels = _data(problem)
    init = fixed_init(X, problem["n_components"], problem["covariance_type"],
                      problem["seed"] % 1000, labels)
    model = _fit(X, problem, max_iter=40, tol=0.0, reg_covar=0.0, **init)
    history = np.asarray(model.lower_bounds_)
    assert len(history) == model.n_iter_ + 1
    reseeded = {c.iteration for c in model.collapses_ if c.action == "reseeded"}
    for i in range(1, len(history)):
        if i in reseeded:  # a reseed is a new start, not an EM step
            continue
        assert history[i] >= history[i - 1] - 1e-10 * (1 + abs(history[i - 1])), (
            f"log-likelihood fell at iteration {i}: {history[i - 1]!r} -> {history[i]!r}")


@LAW_SETTINGS
@given(problem=problems, split=st.floats(0.05, 0.95), weighted=st.booleans())
def test_statistics_of_two_chunks_add_up_to_the_whole(problem, split, weighted):
    X, labels = _data(problem)
    family = GaussianFamily(problem["covariance_type"])
    init = fixed_init(X, problem["n_components"], problem["covariance_type"], 1, labels)
    params = family.make_params(
        init["weights_init"], init["means_init"],
        family.covariance.covariances_from_precisions(init["precisions_init"]))
    rng = np.random.default_rng(problem["seed"])
    weights = rng.uniform(0, 3, size=X.shape[0]) if weighted else None
    cut = int(split * X.shape[0])

    def stats(rows):
        w = None if weights is None else weights[rows]
        return family.e_step(params, X[rows], w, Workspace())

    whole = stats(slice(None))
    parts = stats(slice(0, cut)) + stats(slice(cut, None))
    for name in ("resp_weight", "first", "second"):
        expected = np.asarray(getattr(whole, name))
        np.testing.assert_allclose(getattr(parts, name), expected, rtol=1e-11,
                                   atol=1e-11 * np.max(np.abs(expected)), err_msg=name)
    assert parts.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)
    assert parts.total_weight == pytest.approx(whole.total_weight, rel=1e-14)
    assert parts.n_samples == whole.n_samples == X.shape[0]


@LAW_SETTINGS
@given(problem=problems, chunk=st.integers(1, 50))
def test_chunk_size_does_not_change_the_fit(problem, chunk):
    X, _ = _data(problem)
    _assert_same_fit(_fit(X, problem, chunk_size=chunk), _fit(X, problem), rtol=1e-10)


@LAW_SETTINGS
@given(problem=problems, init_params=st.sampled_from(["kmeans", "k-means++",
                                                     "random_from_data"]))
def test_integer_weights_equal_duplicated_rows(problem, init_params):
    X, _ = _data(problem, per_component=15)
    counts = np.random.default_rng(problem["seed"]).integers(0, 4, size=X.shape[0])
    counts[:problem["n_components"] * 2] = 1  # enough distinct rows to fit
    weighted = _fit(X, problem, sample_weight=counts, init_params=init_params, max_iter=30)
    repeated = _fit(np.repeat(X, counts, axis=0), problem, init_params=init_params,
                    max_iter=30)
    _assert_same_fit(weighted, repeated, rtol=1e-8)
    assert weighted.n_iter_ == repeated.n_iter_
    assert weighted.score(X, sample_weight=counts) == pytest.approx(
        repeated.score(np.repeat(X, counts, axis=0)), rel=1e-10)
    assert weighted.bic(X, sample_weight=counts) == pytest.approx(
        repeated.bic(np.repeat(X, counts, axis=0)), rel=1e-10)
    assert weighted.icl(X, sample_weight=counts) == pytest.approx(
        repeated.icl(np.repeat(X, counts, axis=0)), rel=1e-8)


@LAW_SETTINGS
@given(problem=problems, init_params=st.sampled_from(["kmeans", "k-means++",
                                                     "random_from_data"]))
def test_permuting_rows_changes_nothing(problem, init_params):
    X, _ = _data(problem)
    order = np.random.default_rng(problem["seed"] + 1).permutation(X.shape[0])
    original = _fit(X, problem, init_params=init_params)
    permuted = _fit(X[order], problem, init_params=init_params)
    _assert_same_fit(permuted, original, rtol=1e-9)
    np.testing.assert_array_equal(permuted.predict(X), original.predict(X))


def _transform(covariance_type, n_features, rng):
    """An affine map the covariance structure is closed under: (A, b)."""
    b = rng.normal(scale=10, size=n_features)
    if covariance_type in ("full", "tied"):
        A = rng.normal(size=(n_features, n_features)) + 2 * np.eye(n_features)
    elif covariance_type == "diag":
        A = np.diag(rng.uniform(0.1, 10, size=n_features) * rng.choice([-1, 1], n_features))
    else:  # spherical: a scaled rotation
        q, _ = np.linalg.qr(rng.normal(size=(n_features, n_features)))
        A = rng.uniform(0.1, 10) * q
    return A, b


@LAW_SETTINGS
@given(problem=problems)
def test_affine_change_of_data_transforms_the_fit(problem):
    covariance_type = problem["covariance_type"]
    n_features, n_components = problem["n_features"], problem["n_components"]
    X, labels = _data(problem)
    rng = np.random.default_rng(problem["seed"])
    A, b = _transform(covariance_type, n_features, rng)
    init = fixed_init(X, n_components, covariance_type, 2, labels)
    init["precisions_init"] = identity_precisions(covariance_type, n_components, n_features)
    moved_init = dict(init, means_init=init["means_init"] @ A.T + b)
    A_inv = np.linalg.inv(A)
    if covariance_type in ("full", "tied"):
        moved_init["precisions_init"] = A_inv.T @ init["precisions_init"] @ A_inv
    elif covariance_type == "diag":
        moved_init["precisions_init"] = init["precisions_init"] / np.diag(A) ** 2
    else:
        moved_init["precisions_init"] = init["precisions_init"] / (A[0] @ A[0])
    options = dict(max_iter=15, tol=0.0, reg_covar=0.0, on_collapse="raise")
    fit = _fit(X, problem, **init, **options)
    moved = _fit(X @ A.T + b, problem, **moved_init, **options)

    np.testing.assert_allclose(moved.weights_, fit.weights_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(moved.means_, fit.means_ @ A.T + b, rtol=1e-7,
                               atol=1e-7 * np.abs(b).max())
    if covariance_type in ("full", "tied"):
        expected = A @ fit.covariances_ @ A.T
    elif covariance_type == "diag":
        expected = fit.covariances_ * np.diag(A) ** 2
    else:
        expected = fit.covariances_ * (A[0] @ A[0])
    np.testing.assert_allclose(moved.covariances_, expected, rtol=1e-7,
                               atol=1e-7 * np.abs(expected).max())
    log_det = np.linalg.slogdet(A)[1]
    assert moved.lower_bound_ == pytest.approx(fit.lower_bound_ - log_det, rel=1e-8,
                                               abs=1e-8)
