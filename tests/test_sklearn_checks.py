"""scikit-learn's own estimator checks, run on emix's GaussianMixture."""

import pytest

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks

from emix import GaussianMixture

# emix reads 1-D input as n samples of one feature, as the seed's 1-D fits
# do; scikit-learn's check_fit1d demands an error instead.  The expected
# failure is strict (pyproject's xfail_strict), so this asserts that 1-D
# input keeps being accepted.
DELIBERATE = {"check_fit1d": "1-D input is one feature in emix, on purpose"}


@parametrize_with_checks(
    [
        GaussianMixture(),
        GaussianMixture(3, covariance_type="diag", random_state=0),
        GaussianMixture(2, covariance_type="tied", n_init=2, random_state=0),
        GaussianMixture(2, covariance_type="spherical", init_params="k-means++",
                        random_state=0),
    ],
    expected_failed_checks=lambda estimator: DELIBERATE,
)
def test_scikit_learn_estimator_checks(estimator, check, monkeypatch):
    # The array-API check (NumPy namespace, as the tags declare) only runs
    # with this set; SciPy read it at import time already, so only
    # scikit-learn's dispatch sees it.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)
