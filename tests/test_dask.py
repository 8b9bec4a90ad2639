"""Fits and predictions on Dask collections equal those in memory.

Same data, same initial parameters, same number of EM iterations (``tol=0``):
a fit of a Dask array or data frame must end with the in-memory fit's
parameters to rounding (relative 1e-10), whether the blocks run on Dask's
default local threaded scheduler or on a cluster of worker processes (one
``LocalCluster`` of 2 single-threaded worker processes, shared by the
module). Predictions on Dask input are lazy Dask arrays whose values equal
the in-memory ones.

The cluster's client is not made the global default: the tests on it run
inside ``client.as_current()``, and the others on Dask's default scheduler,
which the ``scheduler`` fixture checks.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask.array")
pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")
pytest.importorskip("pandas")

import dask
import dask.array as da
import dask.dataframe as dd
import dask.threaded
import pandas as pd
from distributed import Client, LocalCluster

from emix import GaussianMixture

from conftest import COVARIANCE_TYPES, blobs, fixed_init

pytestmark = pytest.mark.filterwarnings("ignore::emix.exceptions.ConvergenceWarning")

N_SAMPLES, N_FEATURES, N_COMPONENTS = 20_000, 3, 4
BLOCK_ROWS = 2_500
N_ITER = 8
RTOL = 1e-10
PARAMETERS = ("weights_", "means_", "covariances_", "precisions_cholesky_")
COLUMNS = ["a", "b", "c"]
SCHEDULERS = ("threads", "cluster")


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return blobs(N_SAMPLES, N_FEATURES, N_COMPONENTS, seed=5)


@pytest.fixture(scope="module")
def references(X):
    """The in-memory fit of each covariance type (8 iterations, fixed start)."""
    fits = {}
    for covariance_type in COVARIANCE_TYPES:
        fits[covariance_type] = model(X, covariance_type).fit(X)
        assert fits[covariance_type].n_iter_ == N_ITER
    return fits


def model(X: np.ndarray, covariance_type: str) -> GaussianMixture:
    return GaussianMixture(N_COMPONENTS, covariance_type=covariance_type, tol=0.0,
                           max_iter=N_ITER, **fixed_init(X, N_COMPONENTS, covariance_type))


@pytest.fixture(scope="module")
def cluster_client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


@pytest.fixture(params=SCHEDULERS)
def scheduler(request):
    """Runs the test on Dask's default (local threaded) scheduler, or on
    the module's cluster of 2 worker processes."""
    probe = [da.ones(2)]
    if request.param == "threads":
        # No client leaks from the module's cluster into these tests.
        assert dask.base.get_scheduler(collections=probe) is dask.threaded.get
        yield None
    else:
        client = request.getfixturevalue("cluster_client")
        with client.as_current():
            assert dask.base.get_scheduler(collections=probe) == client.get
            yield client


def assert_same_fit(fitted: GaussianMixture, reference: GaussianMixture) -> None:
    assert fitted.n_iter_ == reference.n_iter_
    for name in PARAMETERS:
        actual, expected = getattr(fitted, name), getattr(reference, name)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0, err_msg=name)
    np.testing.assert_allclose(fitted.lower_bounds_, reference.lower_bounds_, rtol=RTOL)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_dask_array(X, references, scheduler, covariance_type):
    fitted = model(X, covariance_type).fit(da.from_array(X, chunks=(BLOCK_ROWS, N_FEATURES)))
    assert_same_fit(fitted, references[covariance_type])
    assert not hasattr(fitted, "feature_names_in_")


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_dask_dataframe(X, references, scheduler, covariance_type):
    frame = dd.from_pandas(pd.DataFrame(X, columns=COLUMNS), npartitions=8)
    fitted = model(X, covariance_type).fit(frame)
    assert_same_fit(fitted, references[covariance_type])
    assert list(fitted.feature_names_in_) == COLUMNS


def test_fit_dask_array_of_one_block_and_uneven_blocks(X, references, scheduler):
    reference = references["full"]
    for chunks in [(N_SAMPLES, N_FEATURES), ((7_001, 10_999, 2_000), (1, 2))]:
        fitted = model(X, "full").fit(da.from_array(X, chunks=chunks))
        assert_same_fit(fitted, reference)


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_predictions_are_lazy_and_equal_in_memory(X, references, scheduler, covariance_type):
    fitted = references[covariance_type]
    X_dask = da.from_array(X, chunks=(BLOCK_ROWS, N_FEATURES))
    expected = {"predict_proba": fitted.predict_proba(X),
                "score_samples": fitted.score_samples(X),
                "predict": fitted.predict(X)}
    for method, want in expected.items():
        lazy = getattr(fitted, method)(X_dask)
        assert isinstance(lazy, da.Array), (method, type(lazy))
        assert lazy.shape == want.shape and lazy.dtype == want.dtype, method
        assert lazy.numblocks[0] == X_dask.numblocks[0], method
        got = lazy.compute()
        assert isinstance(got, np.ndarray)
        if method == "predict":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=0, err_msg=method)


def test_predictions_on_a_dask_dataframe(X, scheduler):
    frame = pd.DataFrame(X, columns=COLUMNS)
    fitted = model(X, "full").fit(frame)
    lazy = fitted.predict_proba(dd.from_pandas(frame, npartitions=4))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), fitted.predict_proba(frame), rtol=RTOL, atol=0)
    np.testing.assert_allclose(fitted.score_samples(dd.from_pandas(frame, npartitions=4))
                               .compute(), fitted.score_samples(frame), rtol=RTOL, atol=0)


def test_fit_with_dask_sample_weight(X, scheduler):
    weights = np.random.default_rng(2).integers(0, 4, size=N_SAMPLES).astype(float)
    reference = model(X, "full").fit(X, sample_weight=weights)
    fitted = model(X, "full").fit(da.from_array(X, chunks=(BLOCK_ROWS, N_FEATURES)),
                                  sample_weight=da.from_array(weights, chunks=3_000))
    assert_same_fit(fitted, reference)


def test_model_selection_over_a_dask_array(X, scheduler):
    from emix import select

    grid = {"n_components": [1, 2], "covariance_types": ["full", "spherical"],
            "random_state": 0, "max_iter": 20}
    reference = select(X, **grid)
    result = select(da.from_array(X, chunks=BLOCK_ROWS), **grid)
    assert result.n_samples == reference.n_samples
    for a, b in zip(reference.candidates, result.candidates, strict=True):
        for name in ("log_likelihood", "bic", "icl"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-10), name


def test_a_bad_lost_cluster_timeout_is_refused(X, cluster_client):
    from emix.exceptions import InvalidInputError

    with cluster_client.as_current(), dask.config.set({"emix.lost-cluster-timeout": "soon"}), \
            pytest.raises(InvalidInputError, match=r"emix\.lost-cluster-timeout is 'soon'; give "
                          "seconds"):
        model(X, "full").fit(da.from_array(X, chunks=BLOCK_ROWS))
