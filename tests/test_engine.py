"""The EM loop's states, history and restarts."""

import dataclasses
import logging
import warnings

import numpy as np
import pytest

from emix import ConvergenceWarning, GaussianMixture, InvalidInputError
from emix.em.engine import run_em, run_restarts
from emix.em.monitor import CONVERGED, DIVERGED, MAX_ITER, RUNNING, ConvergenceMonitor
from emix.execution import InMemoryData
from emix.families.covariance import COVARIANCE_MODELS
from emix.families.gaussian import GaussianFamily

from conftest import blobs, fixed_init

# Every test here runs through the compiled E-step kernels and through NumPy.
pytestmark = pytest.mark.usefixtures("e_step_path")



def test_monitor_states():
    monitor = ConvergenceMonitor(tol=1e-3, max_iter=5)
    assert monitor.start(-10.0) == RUNNING
    assert monitor.update(-5.0) == RUNNING
    assert monitor.update(-4.9995) == CONVERGED
    assert monitor.history == [-10.0, -5.0, -4.9995] and monitor.n_iter == 2

    monitor = ConvergenceMonitor(tol=0.0, max_iter=2)
    monitor.start(-3.0)
    assert monitor.update(-2.0) == RUNNING
    assert monitor.update(-1.0) == MAX_ITER  # never "converged" at max_iter

    monitor = ConvergenceMonitor(tol=1e-3, max_iter=50)
    monitor.start(-3.0)
    assert monitor.update(-3.000_000_1) == CONVERGED  # a rounding-size fall is no divergence
    monitor = ConvergenceMonitor(tol=1e-3, max_iter=50)
    monitor.start(-3.0)
    assert monitor.update(-3.5) == DIVERGED
    monitor = ConvergenceMonitor(tol=1e-3, max_iter=50)
    monitor.start(-3.0)
    assert monitor.update(-3.5, fresh_start=True) == RUNNING  # after a reseed
    assert monitor.update(-3.7, regularised=True) == RUNNING  # reg_covar's objective
    assert monitor.decreases == [(2, pytest.approx(-0.2))]
    assert monitor.update(float("nan")) == DIVERGED


def test_a_fall_within_the_rounding_of_the_parameters_is_no_divergence():
    monitor = ConvergenceMonitor(tol=0.0, max_iter=50)
    monitor.start(-3.0)
    assert monitor.update(-3.01, rounding=0.02) == RUNNING
    assert monitor.update(-3.05, rounding=0.02) == DIVERGED


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_rounding_grows_with_the_condition_of_the_correlations(covariance_type):
    # Ill-conditioned covariances round in their smallest directions by
    # about kappa units: the log-likelihood's rounding must say so, and must
    # not depend on the columns' scales.
    family = GaussianFamily(covariance_type)
    means = np.zeros((2, 3))
    rounding = []
    for correlation, scales in ((0.5, [1.0, 1.0, 1.0]), (1 - 1e-10, [1.0, 1.0, 1.0]),
                                (1 - 1e-10, [1e-50, 1.0, 1e50])):
        covariance = np.eye(3)
        covariance[0, 1] = covariance[1, 0] = correlation
        covariance = covariance * np.outer(scales, scales)
        covariances = covariance if covariance_type == "tied" else np.stack([covariance] * 2)
        params = family.make_params(np.array([0.5, 0.5]), means, covariances)
        rounding.append(family.step_rounding(params))
    eps = np.finfo(np.float64).eps
    assert rounding[0] < 1e3 * eps
    assert rounding[1] > 1e8 * eps
    # Evaluating a log-likelihood rounds in proportion to it, whatever kappa:
    # restarts are compared by that alone.
    assert family.evaluation_rounding(-10.0) < 1e-7
    assert rounding[2] == pytest.approx(rounding[1], rel=1e-3)


class _Rounding(GaussianFamily):
    """Its E-step reports 4 ulps more log-likelihood when the components
    are in the other order: the same optimum, another order of the sums."""

    def e_step(self, params, X, weights, workspace):
        stats = super().e_step(params, X, weights, workspace)
        if params.means[0, 0] > params.means[1, 0]:
            stats = dataclasses.replace(
                stats, log_likelihood=stats.log_likelihood * (1 - 4 * np.finfo(float).eps))
        return stats


def test_restarts_that_tie_to_rounding_keep_the_first():
    X = blobs(400, 2, 2, seed=9)
    family = _Rounding("full")
    data = InMemoryData(X, chunk_rows=64)
    first = fixed_init(X, 2, "full", 0)
    covariances = family.covariance.covariances_from_precisions(first["precisions_init"])
    order = np.argsort(first["means_init"][:, 0])

    def initialise(restart):
        means = first["means_init"][order[::-1] if restart else order]
        return family.make_params(np.full(2, 0.5), means, covariances)

    best = run_restarts(family, data, initialise, n_init=2, tol=0.0, max_iter=30)
    runs = [run_em(family, data, initialise(i), tol=0.0, max_iter=30) for i in range(2)]
    assert runs[1].params.means[0, 0] > runs[1].params.means[1, 0]
    assert 0 < runs[1].log_likelihood - runs[0].log_likelihood < 1e-13
    assert best.restart == 0


def test_float32_restarts_keep_the_best_one_whatever_the_conditioning():
    # A first restart with an ill-conditioned component (kappa 3e5) had made
    # every later one a "tie": float32 fits returned the worst restart,
    # 0.48 nats per sample below the best.
    rng = np.random.default_rng(1)
    n, d, k = 2000, 12, 8
    X = rng.normal(scale=3, size=(k, d))[rng.integers(k, size=n)] + rng.normal(size=(n, d))
    finals = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixture(k, n_init=6, init_params="random_from_data", random_state=0)
        model.fit(X.astype(np.float32),
                  progress=lambda p: finals.__setitem__(p.restart, p.log_likelihood))
    assert max(finals.values()) - min(finals.values()) > 0.1
    assert model.lower_bound_ == pytest.approx(max(finals.values()), abs=1e-4)


def test_float32_data_far_from_the_origin_fit_as_float64_does():
    # At 5e6 float32's spacing is 0.5, a standard deviation: means rounded at
    # every step had stalled on that grid and the fit was declared diverged
    # (11 seeds in 20).  EM runs on float64 parameters; the result is
    # rounded once and lower_bound_ is the log-likelihood of what is stored.
    rng = np.random.default_rng(0)
    values = 5e6 + np.concatenate([rng.normal(0, 1, 500), rng.normal(1.5, 0.5, 500)])
    X = values[:, None].astype(np.float32)
    for seed in range(5):
        settings = dict(reg_covar=0.0, tol=0.0, max_iter=200, init_params="random",
                        random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            single = GaussianMixture(2, **settings).fit(X)
            double = GaussianMixture(2, **settings).fit(X.astype(np.float64))
        assert single.convergence_state_ != "diverged", seed
        assert single.lower_bound_ == single.lower_bounds_[-1] == pytest.approx(
            single.score(X), abs=1e-12)
        # The same optimum as float64's, rounded: storing means in float32
        # at 5e6 costs what it costs, and nothing more.
        for name in ("weights_", "means_", "covariances_", "precisions_",
                     "precisions_cholesky_"):
            setattr(double, name, getattr(double, name).astype(np.float32))
        assert single.lower_bound_ == pytest.approx(double.score(X), rel=1e-9), seed


def test_max_iter_is_reported_honestly():
    X = blobs(500, 2, 3, seed=1)
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=2"):
        model = GaussianMixture(3, max_iter=2, tol=0.0, random_state=0).fit(X)
    assert not model.converged_
    assert model.convergence_state_ == "max_iter"
    assert model.n_iter_ == 2 and len(model.lower_bounds_) == 3
    assert model.lower_bound_ == model.lower_bounds_[-1]
    assert model.lower_bound_ == pytest.approx(model.score(X), rel=1e-12)


def test_converged_fit_history_ends_within_tol():
    X = blobs(500, 2, 2, seed=2)
    model = GaussianMixture(2, tol=1e-6, random_state=0).fit(X)
    assert model.converged_ and model.convergence_state_ == "converged"
    assert abs(model.lower_bounds_[-1] - model.lower_bounds_[-2]) < 1e-6
    assert model.lower_bound_ == pytest.approx(model.score(X), rel=1e-12)


def test_large_regulariser_is_not_divergence():
    # With reg_covar far above the data's variance the plain likelihood can
    # fall at every step; that is the regularised objective, not a failure.
    X = blobs(400, 2, 2, seed=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixture(4, covariance_type="diag", reg_covar=1.0,
                                random_state=0).fit(X)
    assert model.convergence_state_ != "diverged"
    assert model.n_iter_ > 1


class _Sabotaged(GaussianFamily):
    """A family whose M-step ruins the fit at the third iteration."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def m_step(self, stats, floors=None):
        params, report = super().m_step(stats, floors)
        self.calls += 1
        if self.calls == 3:
            params = self.make_params(params.weights, params.means + 5.0, params.covariances)
        return params, report


def test_divergence_returns_the_best_parameters_seen():
    X, labels = blobs(400, 2, 2, seed=3, return_labels=True)
    family = _Sabotaged("full", reg_covar=0.0)  # unregularised EM must never fall
    data = InMemoryData(X, chunk_rows=64)
    init = fixed_init(X, 2, "full", 0, labels)
    start = family.make_params(init["weights_init"], init["means_init"],
                               family.covariance.covariances_from_precisions(
                                   init["precisions_init"]))
    result = run_em(family, data, start, tol=0.0, max_iter=20)
    assert result.state == DIVERGED
    # The ruined third step is dropped: history ends at the returned parameters.
    assert result.n_iter == 2 and len(result.history) == 3
    assert result.log_likelihood == result.history[-1] == max(result.history)
    assert [i for i, _ in result.decreases] == [3]
    assert result.log_likelihood == pytest.approx(
        data.map_reduce(lambda X, w, ws: family.e_step(result.params, X, w, ws))
        .log_likelihood / len(X), rel=1e-12)


def test_restarts_keep_the_best():
    X = blobs(300, 2, 3, seed=4)
    family = GaussianFamily("full")
    data = InMemoryData(X, chunk_rows=128)
    rng = np.random.default_rng(0)
    starts = []

    def initialise(restart):
        rows = rng.choice(len(X), 3, replace=False)
        starts.append(rows)
        return family.make_params(np.full(3, 1 / 3), X[rows], np.repeat(np.eye(2)[None], 3, 0))

    best = run_restarts(family, data, initialise, n_init=4, tol=1e-6, max_iter=5)
    singles = [run_em(family, data, family.make_params(
        np.full(3, 1 / 3), X[rows], np.repeat(np.eye(2)[None], 3, 0)), tol=1e-6, max_iter=5)
        for rows in starts]
    assert best.log_likelihood == max(r.log_likelihood for r in singles)
    assert best.restart == int(np.argmax([r.log_likelihood for r in singles]))


def test_n_init_never_worse_than_one_init():
    X = blobs(600, 2, 4, seed=5, spread=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = GaussianMixture(4, init_params="random", random_state=3).fit(X)
        many = GaussianMixture(4, init_params="random", n_init=6, random_state=3).fit(X)
    # The first restart of n_init=6 is the n_init=1 fit (same random stream).
    assert many.lower_bound_ >= one.lower_bound_


def test_same_seed_same_fit_different_seed_may_differ():
    X = blobs(400, 2, 3, seed=6)
    a = GaussianMixture(3, init_params="random", random_state=7).fit(X)
    b = GaussianMixture(3, init_params="random", random_state=7).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    assert a.lower_bounds_ == b.lower_bounds_


def test_warm_start_continues_where_it_stopped():
    X, labels = blobs(500, 2, 2, seed=8, return_labels=True)
    init = fixed_init(X, 2, "full", 0, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = GaussianMixture(2, max_iter=10, tol=0.0, **init).fit(X)
        warm = GaussianMixture(2, max_iter=5, tol=0.0, warm_start=True, **init)
        warm.fit(X)
        warm.fit(X)
    np.testing.assert_allclose(warm.means_, straight.means_, rtol=1e-12)
    np.testing.assert_allclose(warm.covariances_, straight.covariances_, rtol=1e-12)
    assert warm.lower_bound_ == pytest.approx(straight.lower_bound_, rel=1e-13)


def test_verbose_logs_progress(caplog):
    X = blobs(300, 2, 2, seed=9)
    with caplog.at_level(logging.INFO, logger="emix"):
        GaussianMixture(2, verbose=2, verbose_interval=1, random_state=0).fit(X)
    messages = [r.getMessage() for r in caplog.records if r.name == "emix"]
    assert any("initialisation 1 of 1" in m for m in messages)
    assert any("iteration 1: log-likelihood" in m for m in messages)
    assert any("converged" in m for m in messages)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_sample_follows_the_model(covariance_type):
    X = blobs(3000, 2, 2, seed=10, spread=8.0)
    model = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    samples, labels = model.sample(40_000)
    assert samples.shape == (40_000, 2) and labels.shape == (40_000,)
    counts = np.bincount(labels, minlength=2) / len(labels)
    np.testing.assert_allclose(counts, model.weights_, atol=0.01)
    matrices = COVARIANCE_MODELS[covariance_type].full_matrices(model.covariances_, 2, 2)
    for k in range(2):
        drawn = samples[labels == k]
        np.testing.assert_allclose(drawn.mean(axis=0), model.means_[k], atol=0.05)
        np.testing.assert_allclose(np.cov(drawn.T), matrices[k], atol=0.1)
    again, _ = model.sample(40_000)
    np.testing.assert_array_equal(again, samples)  # an int random_state repeats itself


def test_icl_is_mclusts_bic_plus_the_map_classification_term():
    X = blobs(400, 2, 2, seed=11, spread=1.5)
    model = GaussianMixture(2, random_state=0).fit(X)
    z = model.predict_proba(X)
    # R mclust, icl.R: icl = BIC + 2 * sum(unmap(map(z)) * log(z)), higher is better
    hard = np.eye(2)[z.argmax(axis=1)]
    mclust_icl = -model.bic(X) + 2 * np.sum(hard * np.log(np.clip(z, 1e-300, None)))
    assert model.icl(X) == pytest.approx(-mclust_icl, rel=1e-12)
    assert model.icl(X) > model.bic(X)
    n_parameters = 2 - 1 + 2 * 2 + 2 * 3
    assert model.bic(X) == pytest.approx(
        -2 * model.score(X) * len(X) + n_parameters * np.log(len(X)), rel=1e-12)
    assert model.aic(X) == pytest.approx(-2 * model.score(X) * len(X) + 2 * n_parameters,
                                         rel=1e-12)


@pytest.mark.parametrize("change", [{"n_components": 3}, {"covariance_type": "diag"},
                                    {"covariance_type": "tied"}])
def test_warm_start_with_other_shapes_is_a_clear_error(change):
    X = blobs(300, 2, 2, seed=13)
    model = GaussianMixture(2, warm_start=True, random_state=0).fit(X)
    model.set_params(**change)
    with pytest.raises(InvalidInputError, match="warm_start=True continues the fitted model"):
        model.fit(X)
