"""Model selection: the table against independent scikit-learn fits, the
ranking against the table, conventions, failures and progress."""

import math
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnMixture

import emix
from emix.datasets import load_faithful
from emix.selection import FitProgress, select

COVARIANCES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def faithful_selection():
    X, _ = load_faithful()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = select(X, range(1, 7), "all", random_state=0, tol=1e-9, max_iter=3000)
    return X, result


def test_faithful_table_agrees_with_independent_sklearn_fits(faithful_selection):
    """Each (K, structure): scikit-learn's own EM, started where emix's
    initialisation put emix's first iterate, reaches the same log-likelihood
    (1e-4 relative) and BIC, unless emix repaired a collapsing component: then
    scikit-learn's solution is the degenerate one (a variance at reg_covar)."""
    X, result = faithful_selection
    assert len(result.candidates) == 24
    compared = 0
    for c in result.candidates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = emix.GaussianMixture(c.n_components, covariance_type=c.covariance_type,
                                         random_state=0, max_iter=1).fit(X)
            reference = SklearnMixture(
                c.n_components, covariance_type=c.covariance_type, tol=1e-10, max_iter=5000,
                weights_init=start.weights_, means_init=start.means_,
                precisions_init=start.precisions_).fit(X)
        reference_ll = reference.score(X) * X.shape[0]
        assert not c.repairs
        compared += 1
        assert c.log_likelihood == pytest.approx(reference_ll, rel=1e-4), c.label
        assert c.bic == pytest.approx(reference.bic(X), rel=1e-4), c.label
        assert c.aic == pytest.approx(reference.aic(X), rel=1e-4), c.label
        assert c.n_parameters == reference._n_parameters(), c.label
    assert compared == 24


def test_where_emix_repairs_a_collapse_sklearn_finds_a_degenerate_spike():
    """Old Faithful, K=5 diagonal: scikit-learn's best of 10 starts has a
    higher likelihood only through a variance at reg_covar on identical
    waiting times; emix floors that collapse and ranks the fit as repaired."""
    X, _ = load_faithful()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (ours,) = select(X, [5], "diag", n_init=3, random_state=0, tol=1e-8).candidates
        theirs = SklearnMixture(5, covariance_type="diag", tol=1e-8, max_iter=1000, n_init=10,
                                random_state=0).fit(X)
    assert ours.repairs >= 1 and ours.model.collapses_
    assert theirs.score(X) * X.shape[0] > ours.log_likelihood
    spike = np.unravel_index(np.argmin(theirs.covariances_), theirs.covariances_.shape)
    assert theirs.covariances_[spike] < 1e-5  # reg_covar = 1e-6
    assert np.min(ours.model.covariances_) > 1e-3


def test_faithful_selection_picks_the_table_minimum(faithful_selection):
    X, result = faithful_selection
    bics = {(c.n_components, c.covariance_type): c.bic for c in result.candidates
            if not c.repairs}
    best = min(bics, key=bics.get)
    assert (result.best_candidate.n_components, result.best_candidate.covariance_type) == best
    # mclust's answer for these data: EEE (tied), 3 components.
    assert best == (3, "tied")
    assert result.best is result.best_candidate.model
    assert result.best.score(X) * X.shape[0] == pytest.approx(
        result.best_candidate.log_likelihood, rel=1e-12)
    clean = [c for c in result.ranking if not c.repairs]
    repaired = [c for c in result.ranking if c.repairs]
    assert result.ranking == clean + repaired and len(repaired) < 5
    ranked = [c.bic for c in clean]
    assert ranked == sorted(ranked)
    assert [c.bic for c in repaired] == sorted(c.bic for c in repaired)
    assert result.runners_up == result.ranking[1:]
    assert result.margin == pytest.approx(ranked[1] - ranked[0])
    assert "lower is better" in result.header
    assert "K=3, tied" in result.describe()


def test_each_candidate_matches_a_direct_fit_and_its_criteria():
    X, _ = load_faithful()
    result = select(X, [2, 3], ["full", "diag"], criterion="icl", random_state=1, n_init=2)
    for c in result.candidates:
        direct = emix.GaussianMixture(c.n_components, covariance_type=c.covariance_type,
                                      random_state=1, n_init=2, tol=1e-6, max_iter=1000).fit(X)
        np.testing.assert_allclose(c.model.means_, direct.means_, rtol=1e-12)
        assert c.bic == pytest.approx(direct.bic(X), rel=1e-12)
        assert c.aic == pytest.approx(direct.aic(X), rel=1e-12)
        assert c.icl == pytest.approx(direct.icl(X), rel=1e-12)
    icls = [c.icl for c in result.ranking]
    assert icls == sorted(icls)


def test_mclust_convention_negates_and_ranks_higher_first():
    X, _ = load_faithful()
    ours = select(X, range(1, 4), ("full", "spherical"), random_state=0)
    theirs = select(X, range(1, 4), ("full", "spherical"), random_state=0,
                    convention="mclust")
    for a, b in zip(ours.candidates, theirs.candidates, strict=True):
        assert b.bic == -a.bic and b.icl == -a.icl and b.aic == -a.aic
        # mclust: BIC = 2 log L - p log n
        assert b.bic == pytest.approx(2 * a.log_likelihood - a.n_parameters * math.log(272))
    assert theirs.higher_is_better and "higher is better" in theirs.header
    assert theirs.best_candidate.label == ours.best_candidate.label
    values = [c.bic for c in theirs.ranking]
    assert values == sorted(values, reverse=True)


def test_sample_weights_count_as_repeated_rows():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (40, 2)), rng.normal(5, 1, (40, 2))])
    counts = rng.integers(1, 4, size=X.shape[0])
    weighted = select(X, [1, 2], "diag", sample_weight=counts, random_state=0)
    repeated = select(np.repeat(X, counts, axis=0), [1, 2], "diag", random_state=0)
    for a, b in zip(weighted.candidates, repeated.candidates, strict=True):
        assert a.bic == pytest.approx(b.bic, rel=1e-9)
        assert a.icl == pytest.approx(b.icl, rel=1e-9)
    assert weighted.n_samples == counts.sum()


def test_a_degenerate_fit_does_not_win_on_its_inflated_likelihood():
    X = np.array([[0.0], [0.0], [1.0], [1.0], [5.0], [5.0]])
    result = select(X, [1, 2, 3], "full", random_state=0)  # the clean winner: no warning
    three = next(c for c in result.candidates if c.n_components == 3)
    assert three.repairs == 3 and three.bic < min(c.bic for c in result.candidates
                                                   if c.n_components < 3)
    assert [(c.n_components, c.repairs) for c in result.ranking] == [(1, 0), (3, 3), (2, 1)]
    assert "converged, 3 repaired" in result.format_table()
    assert [r["repairs"] for r in result.to_records()] == [0, 3, 1]


def test_one_feature_fits_each_distinct_structure_once():
    X = np.random.default_rng(0).normal(size=(100, 1))
    result = select(X, [1, 2], "all", random_state=0)
    assert [(c.n_components, c.covariance_type) for c in result.candidates] == [
        (1, "full"), (2, "full"), (1, "tied"), (2, "tied")]
    only_diag = select(X, [1], ["diag", "spherical"], random_state=0)
    assert [c.covariance_type for c in only_diag.candidates] == ["diag"]


def test_a_model_that_cannot_be_fitted_is_recorded_not_fatal():
    X = np.array([[0.0], [0.0], [1.0], [1.0], [5.0], [5.0]])
    result = select(X, [1, 2, 3, 4], "full", random_state=0)
    failed = [c for c in result.candidates if c.error is not None]
    assert [c.n_components for c in failed] == [4]
    assert "distinct rows" in failed[0].error and math.isnan(failed[0].bic)
    assert failed[0].model is None and failed[0].state == "failed"
    assert all(c.error is None for c in result.ranking)
    records = result.to_records()
    assert records[-1]["error"] and records[-1]["bic"] is None and records[-1]["rank"] is None
    assert "K=4 full failed: X has only 3 distinct rows" in result.format_table()


def test_every_fit_failing_raises_the_first_error():
    with pytest.raises(emix.EmixError, match="distinct rows"):
        select(np.array([[0.0, 1.0]] * 5), [2, 3], "diag")


@pytest.mark.parametrize("kwargs, message", [
    ({"criterion": "aicc"}, "criterion"),
    ({"convention": "r"}, "convention"),
    ({"n_components": []}, "empty"),
    ({"n_components": [0, 1]}, "n_components"),
    ({"covariance_types": ["full", "banded"]}, "covariance_type"),
    ({"warm_start": True}, "unknown option"),
])
def test_bad_arguments_are_named(kwargs, message):
    X, _ = load_faithful()
    with pytest.raises(emix.InvalidInputError, match=message):
        select(X, **{"n_components": [1, 2], **kwargs})


def test_bad_data_is_refused_before_any_fit():
    X, _ = load_faithful()
    X[3, 1] = np.nan
    with pytest.raises(emix.InvalidInputError, match="NaN"):
        select(X, [1, 2], "full")


def test_progress_reports_each_fit_in_order():
    X, _ = load_faithful()
    seen: list[FitProgress] = []
    select(X, [1, 2], ["full", "diag"], random_state=0, n_init=2, progress=seen.append)
    assert {p.n_fits for p in seen} == {4}
    finished = [(p.fit, p.n_components, p.covariance_type, p.em.restart) for p in seen
                if p.em.state != "running"]
    assert finished == [(1, 1, "full", 0), (1, 1, "full", 1), (2, 2, "full", 0),
                        (2, 2, "full", 1), (3, 1, "diag", 0), (3, 1, "diag", 1),
                        (4, 2, "diag", 0), (4, 2, "diag", 1)]


def test_the_winners_warnings_are_reissued_with_its_label():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    with pytest.warns(emix.ConvergenceWarning, match="^K=2 full: EM did not converge"):
        result = select(X, [2], "full", max_iter=1, tol=1e-12)
    assert result.best_candidate.state == "max_iter"
    assert result.best_candidate.warnings
