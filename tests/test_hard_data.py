"""Data that break naive EM: finite, warned results or clear errors, never NaN."""

import warnings

import numpy as np
import pytest

from emix import (
    ComponentCollapseWarning,
    DataWarning,
    DegenerateComponentError,
    GaussianMixture,
    NumericalError,
)
from emix.families.covariance import COVARIANCE_MODELS

from conftest import COVARIANCE_TYPES, assert_finite_fit, blobs, fixed_init, identity_precisions

# Every test here runs through the compiled E-step kernels and through NumPy.
pytestmark = pytest.mark.usefixtures("e_step_path")



def _fit(X, n_components, covariance_type, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(n_components, covariance_type=covariance_type,
                               random_state=0, **options).fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_offset_of_1e8_keeps_variances_to_1e6(covariance_type):
    X, labels = blobs(3000, 2, 2, seed=11, spread=3.0, return_labels=True)
    init = fixed_init(X, 2, covariance_type, 0, labels)
    options = dict(max_iter=20, tol=0.0)
    base = _fit(X, 2, covariance_type, **init, **options)
    shifted_init = dict(init, means_init=init["means_init"] + 1e8)
    shifted = _fit(X + 1e8, 2, covariance_type, **shifted_init, **options)
    assert_finite_fit(shifted)
    np.testing.assert_allclose(shifted.covariances_, base.covariances_, rtol=1e-6)
    np.testing.assert_allclose(shifted.means_ - 1e8, base.means_, atol=1e-6)
    np.testing.assert_allclose(shifted.weights_, base.weights_, rtol=1e-6)
    # Without a given start (k-means on the offset data) the same holds.
    default = _fit(X + 1e8, 2, covariance_type)
    reference = _fit(X, 2, covariance_type)
    order = np.argsort(default.means_[:, 0])
    expected_order = np.argsort(reference.means_[:, 0])
    np.testing.assert_allclose(
        np.asarray(default.covariances_)[order] if covariance_type != "tied"
        else default.covariances_,
        np.asarray(reference.covariances_)[expected_order] if covariance_type != "tied"
        else reference.covariances_, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_column_is_warned_and_finite(covariance_type):
    X = blobs(400, 2, 2, seed=5)
    X = np.column_stack([X, np.full(len(X), 0.1)])
    with pytest.warns(DataWarning, match=r"feature\(s\) \[2\] are constant"):
        model = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    assert_finite_fit(model)
    np.testing.assert_allclose(model.means_[:, 2], 0.1)
    variances = np.asarray(model.covariances_)
    if covariance_type in ("full", "tied"):
        variance = variances[..., 2, 2]
    elif covariance_type == "diag":
        variance = variances[:, 2]
    else:
        variance = None  # one variance for all features
    if variance is not None:
        np.testing.assert_allclose(variance, model.reg_covar, rtol=1e-6)
    assert model.collapses_ == []  # no variance in the data is not a collapse


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_constant_column_without_regularisation_is_a_clear_error(covariance_type):
    X = np.column_stack([blobs(300, 2, 2, seed=6), np.zeros(300)])
    with pytest.raises(DegenerateComponentError,
                       match=r"reg_covar=0 adds nothing there: set reg_covar=") as error:
        _fit(X, 2, covariance_type, reg_covar=0.0)
    # The remedy, followed, works.
    assert error.value.remedy["reg_covar"] > 0
    assert_finite_fit(_fit(X, 2, covariance_type, **error.value.remedy))


def test_constant_column_is_no_singularity_for_one_variance_per_component():
    X = np.column_stack([blobs(300, 2, 2, seed=6), np.zeros(300)])
    assert_finite_fit(_fit(X, 2, "spherical", reg_covar=0.0))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_duplicated_points(covariance_type):
    X = blobs(150, 2, 3, seed=8)
    repeated = np.repeat(X, 6, axis=0)
    model = _fit(repeated, 3, covariance_type)
    assert_finite_fit(model)
    weighted = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(
        X, sample_weight=np.full(len(X), 6.0))
    np.testing.assert_allclose(model.means_, weighted.means_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("scale", [1e-150, 1e150])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_extreme_scales_give_the_scaled_fit(scale, covariance_type):
    X, labels = blobs(2000, 2, 2, seed=9, return_labels=True)
    init = fixed_init(X, 2, covariance_type, 0, labels)
    options = dict(max_iter=15, tol=0.0, reg_covar=0.0)
    base = _fit(X, 2, covariance_type, **init, **options)
    scaled_init = dict(init, means_init=init["means_init"] * scale,
                       precisions_init=init["precisions_init"] / scale**2)
    scaled = _fit(X * scale, 2, covariance_type, **scaled_init, **options)
    assert_finite_fit(scaled)
    np.testing.assert_allclose(scaled.weights_, base.weights_, rtol=1e-9)
    np.testing.assert_allclose(scaled.means_ / scale, base.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(scaled.covariances_ / scale**2, base.covariances_, rtol=1e-9,
                               atol=1e-12)
    assert scaled.lower_bound_ == pytest.approx(base.lower_bound_ - 2 * np.log(scale),
                                                rel=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_tiny_scale_with_default_regulariser_warns_and_stays_finite(covariance_type):
    X = blobs(500, 2, 2, seed=10) * 1e-150
    with pytest.warns(DataWarning, match="reg_covar=1e-06 exceeds the variance"):
        model = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    assert_finite_fit(model)
    assert np.all(np.isfinite(model.score_samples(X)))


def _collapsing_start(covariance_type):
    """Component 1 starts on a lone far point: it owns that point alone."""
    rng = np.random.default_rng(12)
    X = np.vstack([rng.normal(size=(300, 2)), [[40.0, 40.0]]])
    init = {
        "weights_init": np.array([0.9, 0.1]),
        "means_init": np.array([[0.0, 0.0], [40.0, 40.0]]),
        "precisions_init": identity_precisions(covariance_type, 2, 2),
    }
    return X, init


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_component_collapsing_onto_a_point_is_reseeded(covariance_type):
    X, init = _collapsing_start(covariance_type)
    with pytest.warns(ComponentCollapseWarning, match="component 1 singular"):
        model = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0,
                                on_collapse="reseed", **init).fit(X)
    assert_finite_fit(model)
    assert model.collapses_[0].component == 1
    assert model.collapses_[0].reason == "singular"
    assert model.collapses_[0].action == "reseeded"


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_collapse_policy_floor_keeps_the_component_finite(covariance_type):
    X, init = _collapsing_start(covariance_type)
    with pytest.warns(ComponentCollapseWarning, match="floored"):
        model = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0,
                                **init).fit(X)  # the default policy
    assert_finite_fit(model)
    assert {c.action for c in model.collapses_} == {"floored"}
    # The floored component stays on the lone point with a covariance that is
    # a fixed fraction of the data's, not zero.
    lone = np.argmin(np.abs(model.means_[:, 0] - 40.0))
    np.testing.assert_allclose(model.means_[lone], [40.0, 40.0])
    covariance = np.asarray(model.covariances_)[lone]
    smallest = np.linalg.eigvalsh(covariance)[0] if covariance.ndim == 2 else covariance.min()
    assert smallest > 1e-6 * X.var(axis=0).min()


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_collapse_policy_raise(covariance_type):
    X, init = _collapsing_start(covariance_type)
    with pytest.raises(DegenerateComponentError, match=r"component 1 collapsed.*iteration 1"):
        GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0,
                        on_collapse="raise", **init).fit(X)


def test_shared_covariance_collapse_is_floored_or_raised():
    # Three points, repeated, one component on each: no spread within any.
    points = np.array([[0.0, 0.0], [5.0, 1.0], [2.0, 7.0]])
    X = np.repeat(points, 20, axis=0)
    init = {"weights_init": np.full(3, 1 / 3), "means_init": points + 0.1,
            "precisions_init": np.eye(2)}
    with pytest.raises(DegenerateComponentError, match="the shared covariance collapsed"):
        GaussianMixture(3, covariance_type="tied", on_collapse="raise", **init).fit(X)
    with pytest.warns(ComponentCollapseWarning, match="shared covariance singular"):
        model = GaussianMixture(3, covariance_type="tied", **init).fit(X)
    assert_finite_fit(model)
    assert {c.component for c in model.collapses_} == {-1}
    assert {c.action for c in model.collapses_} == {"floored"}


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_component_with_no_weight_is_reseeded(covariance_type):
    rng = np.random.default_rng(13)
    X = np.vstack([rng.normal(size=(200, 1)), rng.normal(8, 1, size=(200, 1))])
    init = {
        "weights_init": np.array([0.5, 0.5 - 1e-3, 1e-3]),
        "means_init": np.array([[0.0], [8.0], [1e6]]),  # far from every point
        "precisions_init": identity_precisions(covariance_type, 3, 1),
    }
    with pytest.warns(ComponentCollapseWarning, match="component 2 vanished"):
        model = GaussianMixture(3, covariance_type=covariance_type, on_collapse="reseed",
                                **init).fit(X)
    assert_finite_fit(model)
    assert abs(model.means_[2, 0]) < 20  # moved into the data
    assert model.weights_[2] > 0.05


@pytest.mark.parametrize("n_distinct, n_components", [(6, 5), (6, 6), (3, 3)])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_components_close_to_the_number_of_distinct_points(n_distinct, n_components,
                                                           covariance_type):
    rng = np.random.default_rng(n_distinct + n_components)
    points = rng.normal(size=(n_distinct, 2)) * 5
    X = np.repeat(points, 10, axis=0)
    model = _fit(X, n_components, covariance_type)
    assert_finite_fit(model)
    assert np.all(np.isfinite(model.score_samples(X)))
    assert np.all(np.isfinite(model.predict_proba(X)))


def test_all_samples_identical():
    X = np.ones((50, 2))
    model = _fit(X, 1, "full")
    assert_finite_fit(model)
    np.testing.assert_allclose(model.covariances_[0], np.eye(2) * model.reg_covar)
    with pytest.raises(DegenerateComponentError, match="reg_covar") as error:
        _fit(X, 1, "full", reg_covar=0.0)
    assert_finite_fit(_fit(X, 1, "full", **error.value.remedy))


def test_far_outlier_keeps_every_parameter_finite():
    rng = np.random.default_rng(14)
    X = np.concatenate([rng.normal(0, 1, 2000), rng.normal(5, 1, 2000), [1e4, -1e4]])
    for covariance_type in COVARIANCE_TYPES:
        model = _fit(X, 2, covariance_type)
        assert_finite_fit(model)
        assert np.all(np.isfinite(model.predict_proba(X)))
        assert np.all(np.isfinite(model.score_samples(X)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_clusters_far_apart_are_not_collapses(covariance_type):
    # 1e7 standard deviations apart: each cluster's variance is 4e-14 of the
    # data's, yet both are perfectly healthy.
    rng = np.random.default_rng(15)
    a, b = rng.normal(0, 1, 500), rng.normal(1e7, 1, 500)
    model = _fit(np.concatenate([a, b]), 2, covariance_type)
    assert model.collapses_ == []
    order = np.argsort(model.means_[:, 0])
    expected = np.array([a.var(), b.var()])
    if covariance_type == "tied":
        expected = np.array([(a.var() + b.var()) / 2])
        order = [0]
    np.testing.assert_allclose(np.ravel(model.covariances_)[order], expected + model.reg_covar,
                               rtol=1e-6)
    # Mixed units in two columns (metres and nanometres, say) are no collapse either.
    X = np.column_stack([rng.normal(size=1000), rng.normal(scale=1e-9, size=1000)])
    X[500:] += [5.0, 5e-9]
    model = _fit(X, 2, covariance_type)
    assert model.collapses_ == []


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_simultaneous_collapses_never_create_twin_components(covariance_type):
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(5, 2)), 20, axis=0)
    model = _fit(X, 3, covariance_type, on_collapse="reseed")
    assert_finite_fit(model)
    means = model.means_
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(3, 1)]
    assert distances.min() > 1e-6


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_floors_persist_so_em_converges(covariance_type):
    # An atom (50 copies of 10) and an outlier each take a component; a floor
    # that came and went made EM cycle forever.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, 300), rng.normal(4, 1, 300), np.full(50, 10.0),
                        [1e4]])[:, None]
    model = _fit(X, 4, covariance_type, max_iter=300)
    assert model.convergence_state_ == "converged"
    assert model.n_iter_ < 50
    assert len(model.collapses_) <= 4  # each component at most once
    assert_finite_fit(model)


def test_default_policy_floors_and_reseed_is_available():
    X, init = _collapsing_start("full")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        floored = GaussianMixture(2, reg_covar=0.0, **init).fit(X)
        reseeded = GaussianMixture(2, reg_covar=0.0, on_collapse="reseed", **init).fit(X)
    assert any(issubclass(w.category, ComponentCollapseWarning) for w in caught)
    assert floored.collapses_[0].action == "floored"
    assert reseeded.collapses_[0].action == "reseeded"


def test_global_error_state_does_not_break_a_fit():
    # Underflow of tiny responsibilities is harmless and must not turn into
    # an error under a user's np.seterr(all="raise").
    X = blobs(500, 2, 2, seed=16, spread=30.0)
    with np.errstate(all="raise"):
        model = GaussianMixture(2, random_state=0).fit(X)
        assert np.all(np.isfinite(model.predict_proba(X)))
    assert_finite_fit(model)


def test_precisions_beyond_floating_point_are_a_clear_error():
    X = blobs(300, 2, 2, seed=17) * 1e-155
    with pytest.raises(NumericalError, match="Rescale the columns"):
        _fit(X, 2, "diag", reg_covar=0.0)


def test_float32_row_whose_square_overflows_float32_is_scored_in_float64():
    X = blobs(400, 1, 2, seed=18).astype(np.float32)
    model = GaussianMixture(2, random_state=0).fit(X)
    far = np.array([[3e19], [0.5]], dtype=np.float32)
    scores = model.score_samples(far)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, model.score_samples(far.astype(np.float64)), rtol=1e-5)
    proba = model.predict_proba(far)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_offset_common_to_all_columns_is_no_collapse(covariance_type):
    # Every column at 1e8 with standard deviation 1e-3, clusters 100 sd apart:
    # the offset limits no computation (everything is centred), so nothing
    # collapses and the fit equals that of the centred data.
    rng = np.random.default_rng(1)
    base = 1e-3 * rng.standard_normal((2000, 3))
    base[:1000, 0] += 0.1
    shifted = _fit(base + 1e8, 2, covariance_type)
    centred = _fit(base, 2, covariance_type)
    assert shifted.collapses_ == [] and centred.collapses_ == []
    order = np.argsort(shifted.means_[:, 0])
    expected_order = np.argsort(centred.means_[:, 0])
    covariances = np.asarray(shifted.covariances_)
    expected = np.asarray(centred.covariances_)
    if covariance_type != "tied":
        covariances, expected = covariances[order], expected[expected_order]
    np.testing.assert_allclose(covariances, expected, rtol=1e-3, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_column_far_from_zero_is_no_collapse(covariance_type):
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.standard_normal(2000), np.full(2000, 1e13)])
    X[:1000, 0] += 10
    model = _fit(X, 2, covariance_type)
    assert model.collapses_ == []


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_an_atom_never_ends_the_fit_as_diverged(covariance_type):
    # 15 copies of one point and 5 of another among 60: components floored
    # mid-fit, after which the plain likelihood may fall for a while.
    for seed in range(12):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((60, 2))
        X[:15], X[15:20] = X[0], X[15]
        model = _fit(X, 6, covariance_type, max_iter=300, tol=1e-6)
        assert model.convergence_state_ != "diverged", seed
        assert_finite_fit(model)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_ill_conditioned_float32_model_samples_and_warm_starts(covariance_type):
    # Rounding the fitted covariances to float32 makes them indefinite; the
    # covariance factor comes from the stored precision factor instead.
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((2, 3000))
    X = np.column_stack([1e3 * z1, 1e3 * z1 + 0.1 * z2])
    X[:1500] += [1e4, -1e4]
    model = _fit(X.astype(np.float32), 2, covariance_type)
    samples, _ = model.sample(100)
    assert samples.dtype == np.float32 and np.all(np.isfinite(samples))
    model.set_params(warm_start=True, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X.astype(np.float32))
    assert_finite_fit(model)


@pytest.mark.parametrize("scale", [1e-320, 1e-300, 1e300])
def test_weights_scale_changes_nothing(scale):
    X = blobs(400, 2, 2, seed=3)
    counts = np.random.default_rng(4).integers(1, 4, size=len(X)).astype(float)
    reference = GaussianMixture(2, random_state=0).fit(X, sample_weight=counts)
    scaled = GaussianMixture(2, random_state=0).fit(X, sample_weight=counts * scale)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(scaled, name), getattr(reference, name),
                                   rtol=1e-10, atol=1e-14)
    assert scaled.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-12)


def _grid(values: np.ndarray, bits: int = 20) -> np.ndarray:
    """Values rounded onto the grid 2**-bits, so adding a large offset is exact."""
    return np.round(values * 2.0**bits) / 2.0**bits


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_density_is_exact_under_a_representable_offset(covariance_type):
    """Moving data and means by an offset that is added *exactly* (every value
    on a 2**-20 grid, 1e9 has an ulp of 2**-23) must not change the
    log-density beyond rounding of the small residuals (~1e-15).  Whitening
    ``X @ P`` before subtracting the central point multiplies numbers of size
    1e9 * |P| and cancels them afterwards, losing ~1e-4 here.
    """
    rng = np.random.default_rng(7)
    labels = rng.integers(2, size=600)
    Z = _grid(np.array([[0.0, 0.0], [0.02, -0.01]])[labels]
              + 1e-3 * rng.normal(size=(600, 2)) @ np.array([[1.0, 0.6], [0.0, 0.8]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(Z)
    model.means_ = _grid(model.means_)
    offset = 1e9
    Y = Z + offset
    assert np.array_equal(Y - offset, Z)  # the offset is exact
    base_density = model.score_samples(Z)
    base_proba = model.predict_proba(Z)
    means = model.means_.copy()
    model.means_ = means + offset
    assert np.array_equal(model.means_ - offset, means)
    np.testing.assert_allclose(model.score_samples(Y), base_density, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.predict_proba(Y), base_proba, rtol=0, atol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_uniform_power_of_two_weights_give_the_unweighted_fit_bit_for_bit(covariance_type):
    """Frequency weights all equal to a power of two scale every statistic
    exactly, so with a fixed start and a fixed number of iterations (tol=0)
    the parameters must be bit-identical to the unweighted fit, including
    the weight of a component that vanished (clamped to the smallest normal
    float).  Dividing by the row count instead of the total weight is undone
    by the renormalisation for every other component, but the clamped one
    ends at tiny * n / total instead of tiny.
    """
    rng = np.random.default_rng(13)
    X = np.vstack([rng.normal(size=(200, 1)), rng.normal(8, 1, size=(200, 1))])
    shape = COVARIANCE_MODELS[covariance_type].shape(3, 1)
    init = {
        "weights_init": np.array([0.5, 0.5 - 1e-3, 1e-3]),
        "means_init": np.array([[0.0], [8.0], [1e6]]),  # far from every point
        "precisions_init": (np.ones(shape) if covariance_type in ("diag", "spherical")
                            else np.broadcast_to(np.eye(1), shape).copy()),
    }
    fits = []
    for sample_weight in (None, np.full(len(X), 2.0**20)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(GaussianMixture(3, covariance_type=covariance_type, tol=0.0,
                                        max_iter=20, on_collapse="floor", random_state=0,
                                        **init).fit(X, sample_weight=sample_weight))
    unweighted, weighted = fits
    assert [c.reason for c in unweighted.collapses_] == ["vanished"]
    assert unweighted.weights_[2] >= np.finfo(np.float64).tiny
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(weighted, name), getattr(unweighted, name),
                                      err_msg=name)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_outliers_in_many_features_report_the_likelihood_of_the_fit(covariance_type):
    # Issue 13's reproduction: with more than 4 features the compiled E-step
    # expands the log-densities about the mixture's centre; three rows at 1e8
    # that a broad component owns made lower_bound_ -75.6 against a score of
    # -56.8 (EM then optimised something that is not the likelihood).
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(200, 8))
    Y[:3] = rng.normal(size=(3, 8)) * 1e8
    model = _fit(Y, 2, covariance_type)
    assert_finite_fit(model)
    assert model.lower_bound_ == pytest.approx(model.score(Y), rel=1e-10)
    for i, lower_bound in enumerate(model.lower_bounds_):
        assert np.isfinite(lower_bound), i


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [1e3, 1e5, 1e6])
def test_float32_scores_do_not_depend_on_the_distance_from_the_origin(covariance_type, offset):
    # The same float32 parameters scored in float64 are the reference: the
    # float32 scores had been off by 1e-4 nats at 1e3 standard deviations
    # from the origin, 0.1-0.29 at 1e6 (residuals formed in float32 after a
    # product with the data).
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(500, 3)), rng.normal(size=(500, 3)) * 2 + 5])
    X32 = (X + offset).astype(np.float32)
    model = _fit(X32, 2, covariance_type)
    reference = _fit(X32, 2, covariance_type)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        setattr(reference, name, getattr(model, name).astype(np.float64))
    expected = reference.score_samples(X32.astype(np.float64))
    ours = model.score_samples(X32)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=4 * np.finfo(np.float32).eps, atol=1e-5)
    # The fit's log-likelihood is that of the stored float32 parameters.
    assert model.lower_bound_ == pytest.approx(expected.mean(), rel=1e-6, abs=1e-6)


def test_float32_row_far_beyond_the_others_scores_and_fits():
    # One row at (1e10, 1e10) among 199 standard normals: it had scored
    # -2**31, and the NumPy path's fit had gone wrong there.
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 2))
    X[0] = 1e10
    model = _fit(X.astype(np.float32), 2, "full")
    assert_finite_fit(model)
    far = int(np.argmax(model.means_[:, 0]))
    np.testing.assert_allclose(model.means_[far], [1e10, 1e10], rtol=1e-6)
    np.testing.assert_allclose(model.means_[1 - far], X[1:].mean(axis=0), atol=1e-5)
    scores = model.score_samples(X.astype(np.float32))
    assert np.isfinite(scores).all() and scores[0] > -100
    assert model.lower_bound_ == pytest.approx(model.score(X.astype(np.float32)), rel=1e-6)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_collinear_columns_give_a_remedy_that_works_from_every_start(init_params):
    # random_from_data had let the internal SingularCovariance escape ("[0]").
    x = np.random.default_rng(3).normal(size=500)
    X = np.column_stack([x, x]) * 1e10
    with pytest.raises(DegenerateComponentError, match=r"set reg_covar=") as error:
        _fit(X, 2, "full", init_params=init_params)
    assert error.value.remedy["reg_covar"] > 1e-6
    assert_finite_fit(_fit(X, 2, "full", init_params=init_params, **error.value.remedy))


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("distance", [10.0, 1e7])
def test_scores_match_scipy_near_and_far_from_the_centre(covariance_type, distance):
    # Scoring whitens rows about the mixture's centre in one product while
    # they are within 1e5 of the smallest spread from it, and about each
    # mean beyond: both must give scipy's log-densities.
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(size=(300, 3)), 1e-2 * rng.normal(size=(300, 3)) + distance])
    model = _fit(X, 2, covariance_type)
    covariances = (model.covariances_ if covariance_type == "full"
                   else [model.covariances_] * 2)
    expected = logsumexp([np.log(w) + multivariate_normal(m, c).logpdf(X)
                          for w, m, c in zip(model.weights_, model.means_, covariances,
                                             strict=True)], axis=0)
    np.testing.assert_allclose(model.score_samples(X), expected, rtol=1e-10, atol=1e-9)
    assert model.lower_bound_ == pytest.approx(expected.mean(), rel=1e-10)
