"""Hostile data sets (tests/hostile.py): every invariant, on both E-step paths,
one test per seed.

A failure's message is the case's report: its data and settings, each path's
outcome and each invariant it broke.  ``.venv/bin/python bench/hostile_sweep.py
--seed N --verbose`` prints the same report with more detail, and runs
thousands of seeds.
"""

import collections

import numpy as np
import pytest

import hostile

from conftest import E_STEP_PATHS, blobs

#: The seeds run in CI (each fits once per path, then is scored and
#: compared).  On the shared 2-core machine 400 seeds took 14 s when it was
#: quiet and 59 s at a load average of 7; 300 leave a margin under 60 s.
#: bench/hostile_sweep.py runs thousands.
SEEDS = range(300)
#: ... and seeds beyond them that once failed in the larger sweep: a remedy
#: too small for the fit that followed it (1012, 2217), a remedy float32
#: could not hold (424, 706, 1669, 2494), an extent beyond float64 (2681),
#: lower_bound_ 245 against a score of -41 (1991), tied restarts picked by
#: rounding (473, 493).
REGRESSION_SEEDS = (424, 473, 493, 706, 1012, 1669, 1991, 2217, 2494, 2681)


@pytest.mark.parametrize("seed", [*SEEDS, *REGRESSION_SEEDS])
def test_hostile_case_keeps_every_invariant(seed):
    # Both paths, and the two compared; with EMIX_NUMBA=0 the NumPy path alone.
    report = hostile.check_case(hostile.hostile_case(seed), tuple(E_STEP_PATHS))
    if report.failures:
        pytest.fail(report.summary(), pytrace=False)


def test_a_case_is_the_same_for_the_same_seed():
    first, again = hostile.hostile_case(7), hostile.hostile_case(7)
    assert first.description == again.description
    assert first.settings == again.settings
    np.testing.assert_array_equal(first.X, again.X)
    assert first.X.dtype == again.X.dtype
    assert (first.sample_weight is None) == (again.sample_weight is None)
    assert hostile.hostile_case(8).description != first.description


def test_the_seeds_cover_every_setting_and_knob():
    cases = [hostile.hostile_case(seed) for seed in SEEDS]
    settings = collections.Counter()
    for case in cases:
        settings.update({("covariance_type", case.settings["covariance_type"]),
                         ("init_params", case.settings["init_params"]),
                         ("reg_covar=0", case.settings["reg_covar"] == 0),
                         ("n_init>1", case.settings["n_init"] > 1)})
    for name in hostile.COVARIANCE_TYPES:
        assert settings[("covariance_type", name)] >= 30
    for name in hostile.INIT_PARAMS:
        assert settings[("init_params", name)] >= 30
    assert settings[("reg_covar=0", True)] >= 30
    assert settings[("n_init>1", True)] >= 30
    knobs = collections.Counter(knob for case in cases for knob in case.knobs)
    assert set(knobs) == set(hostile.KNOBS)
    assert min(knobs.values()) >= 20
    dtypes = collections.Counter(case.X.dtype.name for case in cases)
    assert dtypes["float32"] >= 20 and dtypes["int64"] >= 5
    # The compiled full and tied E-step changes method above 4 features.
    wide = sum(case.X.shape[1] > 4 and case.settings["covariance_type"] in ("full", "tied")
               for case in cases)
    assert wide >= 60
    # Invariants f and g need well-conditioned cases.
    assert sum(hostile.conditioning(case) is None for case in cases) >= 60


def _fit_of_blobs():
    X = blobs(500, 3, 2, seed=0)
    case = hostile.Case(seed=-1, X=X, sample_weight=None, labels=np.zeros(len(X), dtype=int),
                        settings={"n_components": 2, "random_state": 0}, knobs=(),
                        description="two blobs")
    return case, hostile.fit_case(case, "numpy")


def test_a_lower_bound_off_by_more_than_rounding_is_caught():
    case, fit = _fit_of_blobs()
    report = hostile.Report(case, None)
    hostile.check_fit(report, fit)
    assert report.failures == []
    fit.model.lower_bound_ += 1e-6 * (1 + abs(fit.model.lower_bound_))
    hostile.check_fit(report, fit)
    assert [f.category for f in report.failures] == [hostile.LOWER_BOUND_MISMATCH]


def test_fits_that_differ_beyond_rounding_are_caught():
    _, fit = _fit_of_blobs()
    other = hostile.Fit("numpy", model=hostile.as_float64_model(fit.model))
    assert hostile.paths_disagreement(fit, other) is None
    spread = np.sqrt(np.asarray(fit.model.covariances_).max())
    other.model.means_ = other.model.means_ + 1e-5 * spread
    assert "means_ differ" in hostile.paths_disagreement(fit, other)
    other.model.means_ = fit.model.means_[::-1]
    other.model.weights_ = fit.model.weights_[::-1]
    other.model.covariances_ = fit.model.covariances_[::-1]
    assert hostile.permuted_alike(fit.model, other.model)
    assert "weights_ differ" in hostile.paths_disagreement(fit, other)
