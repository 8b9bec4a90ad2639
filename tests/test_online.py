"""Online (stepwise) EM: ``partial_fit`` on streams seen once in mini-batches.

The reference is batch EM on the same points: a stream seen once should land
where ``fit`` does, up to the noise of the last batches' weights.
"""

import copy
import itertools
import warnings

import numpy as np
import pytest

from emix import (
    ComponentCollapseWarning,
    ConvergenceWarning,
    DegenerateComponentError,
    GaussianMixture,
    InvalidInputError,
    load,
    save,
)
from emix.em import online
from emix.execution.workspace import Workspace
from emix.families.covariance import COVARIANCE_MODELS
from emix.families.gaussian import GaussianFamily

from conftest import COVARIANCE_TYPES, assert_finite_fit, blobs, identity_precisions

# A known mixture: three well separated 2-D components with full covariances.
WEIGHTS = np.array([0.5, 0.3, 0.2])
MEANS = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, -3.0]])
COVARIANCES = np.array([[[1.0, 0.5], [0.5, 2.0]],
                        [[1.5, -0.6], [-0.6, 1.0]],
                        [[0.7, 0.0], [0.0, 0.4]]])
_FACTORS = np.linalg.cholesky(COVARIANCES)


def stream_batch(seed: int, index: int, size: int) -> np.ndarray:
    """Batch ``index`` of the stream ``seed``: the same rows every time it is
    drawn, so that the stream need not be held to be replayed."""
    rng = np.random.default_rng([seed, index])
    labels = rng.choice(len(WEIGHTS), p=WEIGHTS, size=size)
    noise = rng.standard_normal((size, MEANS.shape[1]))
    return MEANS[labels] + np.einsum("nj,nij->ni", noise, _FACTORS[labels])


def deviations(model, reference, scale: np.ndarray) -> tuple[float, float, float]:
    """Largest relative deviation of the weights, of the means in units of
    each feature's standard deviation, and of the covariances (Frobenius),
    components matched by their first coordinate (the means are far apart)."""
    order, reference_order = np.argsort(model.means_[:, 0]), np.argsort(reference.means_[:, 0])
    n_components, n_features = np.shape(model.means_)
    structure = COVARIANCE_MODELS[model.covariance_type]
    covariances = structure.full_matrices(np.asarray(model.covariances_, dtype=np.float64),
                                          n_components, n_features)[order]
    reference_covariances = structure.full_matrices(
        np.asarray(reference.covariances_, dtype=np.float64), n_components,
        n_features)[reference_order]
    weights = reference.weights_[reference_order]
    return (
        float(np.max(np.abs(model.weights_[order] - weights) / weights)),
        float(np.max(np.abs(model.means_[order] - reference.means_[reference_order]) / scale)),
        float(max(np.linalg.norm(c - r) / np.linalg.norm(r)
                  for c, r in zip(covariances, reference_covariances, strict=True))),
    )


def _quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


def assert_same_model(model, reference, rtol: float) -> None:
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        actual, expected = getattr(model, name), getattr(reference, name)
        np.testing.assert_allclose(actual, expected, rtol=rtol,
                                   atol=rtol * np.abs(expected).max(), err_msg=name)


# -- the statistics ------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_recentred_statistics_equal_those_computed_about_the_new_shift(covariance_type):
    rng = np.random.default_rng(3)
    n_components, n_features = 3, 4
    X = rng.normal(size=(500, n_features)) * [1.0, 3.0, 0.5, 10.0] + [2.0, -1.0, 0.0, 5.0]
    weights = rng.uniform(0.1, 2.0, size=500)
    resp = rng.dirichlet(np.ones(n_components), size=500)
    old = rng.normal(size=(n_components, n_features))
    new = old + rng.normal(scale=2.0, size=(n_components, n_features))
    family = GaussianFamily(covariance_type)
    about_old = family.assignment_stats(old, X, weights, resp, Workspace())
    about_new = family.assignment_stats(new, X, weights, resp, Workspace())
    for structure in (covariance_type, COVARIANCE_MODELS[covariance_type]):
        moved = online.recentred(about_old, new, structure)
        np.testing.assert_array_equal(moved.shift, new)
        np.testing.assert_array_equal(moved.resp_weight, about_old.resp_weight)
        for name in ("first", "second"):
            expected = getattr(about_new, name)
            np.testing.assert_allclose(getattr(moved, name), expected, rtol=1e-10,
                                       atol=1e-10 * np.abs(expected).max(), err_msg=name)
        assert moved.total_weight == about_old.total_weight


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_blending_two_batches_with_their_share_is_the_union(covariance_type):
    """With gamma = (weight of the new batch) / (total weight) the running
    statistics are exactly those of all the rows: stepwise EM with 1/t steps
    is batch EM's average."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(700, 3))
    weights = rng.uniform(0.5, 1.5, size=700)
    resp = rng.dirichlet(np.ones(2), size=700)
    first_shift, second_shift = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    family = GaussianFamily(covariance_type)
    early = family.assignment_stats(first_shift, X[:300], weights[:300], resp[:300], Workspace())
    late = family.assignment_stats(second_shift, X[300:], weights[300:], resp[300:],
                                   Workspace())
    union = family.assignment_stats(second_shift, X, weights, resp, Workspace())
    gamma = late.total_weight / (early.total_weight + late.total_weight)
    running = online.recentred(online.per_unit_weight(early), second_shift, covariance_type)
    blended = online.blended(running, online.per_unit_weight(late), gamma)
    expected = online.per_unit_weight(union)
    for name in ("resp_weight", "first", "second"):
        np.testing.assert_allclose(getattr(blended, name), getattr(expected, name),
                                   rtol=1e-10, atol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="same means"):
        online.blended(online.per_unit_weight(early), online.per_unit_weight(late), 0.5)


def test_step_sizes():
    assert online.step_size(1) == 1.0
    assert online.step_size(1, 0.9, 5.0) == 1.0  # the first batch starts the average
    assert online.step_size(7) == pytest.approx(7 ** -online.STEP_DECAY)
    assert online.step_size(7, 0.75, 3.0) == pytest.approx(10 ** -0.75)
    steps = [online.step_size(t) for t in range(1, 1000)]
    assert all(a > b for a, b in itertools.pairwise(steps))


# -- against batch EM ----------------------------------------------------------------
def test_stream_of_two_million_points_lands_on_the_batch_em_solution():
    seed, n_batches, size = 2009, 200, 10_000
    model = GaussianMixture(3, random_state=0)
    for index in range(n_batches):  # one batch in memory at a time
        model.partial_fit(stream_batch(seed, index, size))
    assert model.n_iter_ == n_batches and model.convergence_state_ == online.ONLINE
    assert len(model.lower_bounds_) == n_batches and not model.converged_

    X = np.concatenate([stream_batch(seed, index, size) for index in range(n_batches)])
    reference = GaussianMixture(3, tol=1e-8, max_iter=500, random_state=0).fit(X)
    assert reference.converged_
    weights, means, covariances = deviations(model, reference, X.std(axis=0))
    # Measured: 0.5% (weights), 0.08% (means), 0.4% (covariances).
    assert weights < 0.02 and means < 0.02 and covariances < 0.02
    # Measured: 1.4e-5 below batch EM's log-likelihood per sample.
    assert model.score(X) == pytest.approx(reference.score(X), abs=1e-4)
    # The last batch's log-likelihood is that of a model as good as batch EM's.
    assert model.lower_bound_ == pytest.approx(reference.score(X[-size:]), abs=1e-3)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_each_covariance_type_follows_batch_em(covariance_type):
    seed, n_batches, size = 11, 20, 10_000
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=1)
    for index in range(n_batches):
        model.partial_fit(stream_batch(seed, index, size))
    X = np.concatenate([stream_batch(seed, index, size) for index in range(n_batches)])
    reference = GaussianMixture(3, covariance_type=covariance_type, tol=1e-8, max_iter=500,
                                random_state=1).fit(X)
    weights, means, covariances = deviations(model, reference, X.std(axis=0))
    # Measured: at most 0.23%, 0.23% and 1.4% over the four structures, and
    # 5e-5 below batch EM's log-likelihood per sample.
    assert weights < 0.01 and means < 0.01 and covariances < 0.05
    assert model.score(X) == pytest.approx(reference.score(X), abs=5e-4)


@pytest.mark.usefixtures("e_step_path")
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_one_batch_of_all_the_data_is_one_em_iteration(covariance_type, init_params):
    X = blobs(1500, 3, 3, seed=5)
    settings = dict(covariance_type=covariance_type, init_params=init_params, random_state=4)
    model = GaussianMixture(3, **settings).partial_fit(X)
    reference = _quietly(GaussianMixture(3, max_iter=1, tol=0.0, **settings).fit, X)
    assert reference.n_iter_ == 1
    assert_same_model(model, reference, rtol=1e-10)
    # The batch's log-likelihood under the initial parameters.
    assert model.lower_bound_ == pytest.approx(reference.lower_bounds_[0], rel=1e-12)
    assert model.n_iter_ == 1 and model.lower_bounds_ == [model.lower_bound_]
    assert model.n_features_in_ == 3 and model.collapses_ == []


def test_user_initial_parameters_are_honoured():
    X = blobs(1000, 2, 2, seed=6)
    init = {"weights_init": np.array([0.3, 0.7]), "means_init": X[[0, 1]],
            "precisions_init": identity_precisions("full", 2, 2, 0.5)}
    model = GaussianMixture(2, **init).partial_fit(X)
    reference = _quietly(GaussianMixture(2, max_iter=1, tol=0.0, **init).fit, X)
    assert_same_model(model, reference, rtol=1e-10)
    # Means alone replace k-means' centres; the rest comes from the batch.
    means_only = GaussianMixture(2, means_init=X[[0, 1]], random_state=0).partial_fit(X)
    reference = _quietly(GaussianMixture(2, max_iter=1, tol=0.0, means_init=X[[0, 1]],
                                         random_state=0).fit, X)
    assert_same_model(means_only, reference, rtol=1e-10)


def test_n_init_keeps_the_start_that_fits_the_first_batch_best():
    X = blobs(2000, 2, 4, seed=8, spread=3.0)
    # The first of the five starts is the one random_state=0 gives alone.
    alone = GaussianMixture(4, init_params="random_from_data", random_state=0).partial_fit(X)
    several = GaussianMixture(4, init_params="random_from_data", n_init=5, random_state=0)
    several.partial_fit(X)
    assert several.lower_bound_ >= alone.lower_bound_


def test_continuing_after_fit_is_one_em_step_from_the_fitted_model():
    X = blobs(3000, 2, 3, seed=9)
    first, second = X[:2000], X[2000:]
    model = GaussianMixture(3, random_state=0).fit(first)
    reference = copy.deepcopy(model)
    model.partial_fit(second)
    reference.set_params(warm_start=True, max_iter=1, tol=0.0)
    _quietly(reference.fit, second)
    assert_same_model(model, reference, rtol=1e-10)
    assert model.n_iter_ == 1 and model.lower_bound_ == pytest.approx(
        reference.lower_bounds_[0], rel=1e-12)


def test_a_refit_or_an_edit_restarts_the_running_statistics():
    model = GaussianMixture(3, random_state=0)
    for index in range(3):
        model.partial_fit(stream_batch(1, index, 2000))
    assert model.n_iter_ == 3 and len(model.lower_bounds_) == 3
    model.fit(stream_batch(1, 3, 2000))
    model.partial_fit(stream_batch(1, 4, 2000))
    assert model.n_iter_ == 1  # fit's parameters, not the stale running statistics
    model.partial_fit(stream_batch(1, 5, 2000))
    assert model.n_iter_ == 2
    model.means_ = model.means_ + 0.5  # edited by hand
    edited = copy.deepcopy(model)
    model.partial_fit(stream_batch(1, 6, 2000))
    assert model.n_iter_ == 1
    edited.set_params(warm_start=True, max_iter=1, tol=0.0)
    _quietly(edited.fit, stream_batch(1, 6, 2000))
    assert_same_model(model, edited, rtol=1e-10)


def test_lower_bound_is_the_batch_score_before_the_update():
    model = GaussianMixture(3, random_state=0).partial_fit(stream_batch(2, 0, 3000))
    for index in range(1, 4):
        batch = stream_batch(2, index, 3000)
        before = model.score(batch)
        model.partial_fit(batch)
        assert model.lower_bound_ == pytest.approx(before, rel=1e-9)
    assert model.lower_bounds_[-1] == model.lower_bound_ and len(model.lower_bounds_) == 4


def test_frequency_weights_are_repeated_rows():
    rng = np.random.default_rng(10)
    weighted = GaussianMixture(3, random_state=0)
    repeated = GaussianMixture(3, random_state=0)
    for index in range(3):
        batch = stream_batch(3, index, 500)
        counts = rng.integers(0, 4, size=500)
        counts[0] = 1
        weighted.partial_fit(batch, sample_weight=counts)
        repeated.partial_fit(np.repeat(batch, counts, axis=0))
    assert_same_model(weighted, repeated, rtol=1e-8)
    # The batch's weight scale does not matter: each batch counts per unit weight.
    scaled = GaussianMixture(3, random_state=0)
    unit = GaussianMixture(3, random_state=0)
    for index in range(3):
        batch = stream_batch(3, index, 500)
        scaled.partial_fit(batch, sample_weight=np.full(500, 10.0 ** (3 * index)))
        unit.partial_fit(batch)
    assert_same_model(scaled, unit, rtol=1e-10)


def test_float32_batches_give_float32_attributes_close_to_float64():
    single = GaussianMixture(3, random_state=0)
    double = GaussianMixture(3, random_state=0)
    for index in range(10):
        batch = stream_batch(4, index, 5000)
        single.partial_fit(batch.astype(np.float32))
        double.partial_fit(batch)
    for name in ("weights_", "means_", "covariances_", "precisions_",
                 "precisions_cholesky_"):
        assert getattr(single, name).dtype == np.float32, name
    assert isinstance(single.lower_bound_, float)
    np.testing.assert_allclose(single.means_, double.means_, atol=1e-4)
    np.testing.assert_allclose(single.covariances_, double.covariances_, rtol=1e-4, atol=1e-5)


def test_fitted_model_saves_loads_and_continues(tmp_path):
    model = GaussianMixture(3, random_state=0)
    for index in range(2):
        model.partial_fit(stream_batch(5, index, 2000))
    path = save(model, tmp_path / "online.emix")
    loaded = load(path)
    np.testing.assert_array_equal(loaded.means_, model.means_)
    assert loaded.convergence_state_ == online.ONLINE and loaded.n_iter_ == 2
    loaded.partial_fit(stream_batch(5, 2, 2000))
    assert loaded.n_iter_ == 1  # the running statistics are not saved: they restart
    assert_finite_fit(loaded)


def test_feature_names_are_recorded_and_checked():
    pandas = pytest.importorskip("pandas")
    batch = stream_batch(6, 0, 1000)
    model = GaussianMixture(3, random_state=0).partial_fit(
        pandas.DataFrame(batch, columns=["a", "b"]))
    assert list(model.feature_names_in_) == ["a", "b"]
    model.partial_fit(pandas.DataFrame(stream_batch(6, 1, 1000), columns=["a", "b"]))
    with pytest.raises(InvalidInputError, match="feature names should match"):
        model.partial_fit(pandas.DataFrame(stream_batch(6, 2, 1000), columns=["b", "a"]))


# -- validation ------------------------------------------------------------------------
def test_batch_with_other_features_is_refused_and_changes_nothing():
    model = GaussianMixture(3, random_state=0).partial_fit(stream_batch(7, 0, 1000))
    means = model.means_.copy()
    with pytest.raises(InvalidInputError,
                       match=r"X has 3 features.*expecting 2 features.*columns of the first"):
        model.partial_fit(np.ones((100, 3)))
    with pytest.raises(InvalidInputError, match=r"has 1 features.*one feature per sample"):
        model.partial_fit(np.ones(100))
    np.testing.assert_array_equal(model.means_, means)
    assert model.n_iter_ == 1


def test_first_batch_smaller_than_n_components_is_refused():
    with pytest.raises(InvalidInputError, match=r"first batch has 3 sample.*n_components=5"):
        GaussianMixture(5).partial_fit(stream_batch(7, 0, 3))
    with pytest.raises(InvalidInputError, match=r"first batch has 2 sample.*positive weight"):
        GaussianMixture(3).partial_fit(stream_batch(7, 0, 10),
                                       sample_weight=[1, 1] + [0] * 8)
    with pytest.raises(InvalidInputError, match="only 1 distinct rows"):
        GaussianMixture(2).partial_fit(np.ones((10, 2)))
    # Later batches may be as small as one row.
    model = GaussianMixture(3, random_state=0).partial_fit(stream_batch(7, 0, 1000))
    model.partial_fit(stream_batch(7, 1, 1))
    assert model.n_iter_ == 2


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_refused(bad):
    batch = stream_batch(8, 0, 100)
    batch[17, 1] = bad
    with pytest.raises(InvalidInputError, match=r"NaN|inf"):
        GaussianMixture(2).partial_fit(batch)
    model = GaussianMixture(3, random_state=0).partial_fit(stream_batch(8, 1, 1000))
    with pytest.raises(InvalidInputError, match="first at row 17"):
        model.partial_fit(batch)
    assert model.n_iter_ == 1


def test_bad_weights_settings_and_step_sizes_are_refused():
    batch = stream_batch(9, 0, 100)
    with pytest.raises(InvalidInputError, match="non-negative"):
        GaussianMixture(2).partial_fit(batch, sample_weight=-np.ones(100))
    with pytest.raises(InvalidInputError, match="shape"):
        GaussianMixture(2).partial_fit(batch, sample_weight=np.ones(99))
    with pytest.raises(InvalidInputError, match="covariance_type"):
        GaussianMixture(2, covariance_type="round").partial_fit(batch)
    model = GaussianMixture(3, random_state=0).partial_fit(batch)
    model.set_params(n_components=4)
    with pytest.raises(InvalidInputError, match="partial_fit continues the fitted model"):
        model.partial_fit(batch)
    with pytest.raises(InvalidInputError, match="step_decay"):
        online.partial_fit(GaussianMixture(2), batch, step_decay=0.5)
    with pytest.raises(InvalidInputError, match="step_offset"):
        online.partial_fit(GaussianMixture(2), batch, step_offset=-1.0)


# -- collapses -------------------------------------------------------------------------
def _lone_point_batch(seed: int) -> np.ndarray:
    """A blob and one far point, which component 1 owns alone."""
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(size=(300, 2)), [[40.0, 40.0]]])


def _lone_point_model(covariance_type: str, **options) -> GaussianMixture:
    return GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0,
                           weights_init=np.array([0.9, 0.1]),
                           means_init=np.array([[0.0, 0.0], [40.0, 40.0]]),
                           precisions_init=identity_precisions(covariance_type, 2, 2),
                           **options)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_collapse_is_floored_for_the_rest_of_the_stream(covariance_type):
    model = _lone_point_model(covariance_type)
    with pytest.warns(ComponentCollapseWarning, match="component 1 singular at batch 1"):
        model.partial_fit(_lone_point_batch(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ComponentCollapseWarning)  # no new collapse
        for seed in range(1, 4):
            model.partial_fit(_lone_point_batch(seed))
    assert_finite_fit(model)
    assert [(c.iteration, c.component, c.action) for c in model.collapses_] == [
        (1, 1, "floored")]
    np.testing.assert_allclose(model.means_[1], [40.0, 40.0])
    covariance = np.asarray(model.covariances_)[1]
    assert np.min(np.linalg.eigvalsh(covariance) if covariance.ndim == 2 else covariance) > 0


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_collapse_policy_raise_and_reseed(covariance_type):
    with pytest.raises(DegenerateComponentError, match=r"component 1 collapsed.*iteration 1"):
        _lone_point_model(covariance_type, on_collapse="raise").partial_fit(
            _lone_point_batch(0))
    model = _lone_point_model(covariance_type, on_collapse="reseed")
    with pytest.warns(ComponentCollapseWarning, match="reseeded"):
        model.partial_fit(_lone_point_batch(0))
    assert model._online_state.stats is None  # the split parameters start afresh
    assert model.collapses_[0].action == "reseeded"
    for seed in range(1, 4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ComponentCollapseWarning)
            model.partial_fit(_lone_point_batch(seed))
    assert_finite_fit(model)
    assert model.n_iter_ == 4
    assert model._online_state.n_averaged == 3  # the step sizes restarted with the statistics
