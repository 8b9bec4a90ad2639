"""Checkpoints: a fit interrupted at any point and started again ends with the
parameters of an uninterrupted fit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emix import GaussianMixture
from emix.exceptions import InvalidInputError

from conftest import COVARIANCE_TYPES, blobs

pytestmark = pytest.mark.filterwarnings("ignore::emix.exceptions.ConvergenceWarning")


class Interrupt(Exception):
    pass


def _settings(covariance_type="full"):
    return {"n_components": 3, "covariance_type": covariance_type, "n_init": 3,
            "init_params": "random", "random_state": 5, "tol": 1e-8, "max_iter": 12}


def assert_identical(a, b):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_iter_ == b.n_iter_
    assert a.lower_bounds_ == b.lower_bounds_
    assert a.convergence_state_ == b.convergence_state_


@pytest.fixture(scope="module")
def X():
    return blobs(1500, 2, 3, seed=11)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("where", ["start", "middle", "end of a run"])
def test_an_interrupted_fit_resumes_to_the_same_result(X, tmp_path, covariance_type, where):
    reference = GaussianMixture(**_settings(covariance_type)).fit(X)
    path = tmp_path / "fit.ckpt"
    stopped = []

    def stop(progress):
        if ((where == "start" and progress.iteration == 0)
                or (where == "middle" and (progress.restart, progress.iteration) == (0, 4))
                or (where == "end of a run" and progress.restart == 1
                    and progress.state != "running")):
            stopped.append((progress.restart, progress.iteration))
            raise Interrupt

    with pytest.raises(Interrupt):
        GaussianMixture(**_settings(covariance_type)).fit(X, progress=stop, checkpoint=path)
    seen = []
    resumed = GaussianMixture(**_settings(covariance_type)).fit(
        X, checkpoint=path, progress=lambda p: seen.append((p.restart, p.iteration)))
    assert_identical(reference, resumed)
    assert seen[0] == stopped[0]  # it went on from where it stopped, not from the start


def test_a_finished_checkpoint_returns_the_result_without_refitting(X, tmp_path):
    path = tmp_path / "fit.ckpt"
    first = GaussianMixture(**_settings()).fit(X, checkpoint=path)
    calls = []
    again = GaussianMixture(**_settings()).fit(X, checkpoint=path, progress=calls.append)
    assert calls == []
    assert_identical(first, again)


def test_a_checkpoint_of_another_fit_is_refused(X, tmp_path):
    path = tmp_path / "fit.ckpt"
    GaussianMixture(**_settings()).fit(X, checkpoint=path)
    with pytest.raises(InvalidInputError, match=r"another fit \(n_components: 3 there, 4 now"):
        GaussianMixture(**{**_settings(), "n_components": 4}).fit(X, checkpoint=path)
    with pytest.raises(InvalidInputError, match=r"another fit .*data"):
        GaussianMixture(**_settings()).fit(X[:1000], checkpoint=path)
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInputError, match="is not an emix checkpoint"):
        GaussianMixture(**_settings()).fit(X, checkpoint=tmp_path / "junk")


_WORKER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from emix import GaussianMixture
    X = np.load(sys.argv[1])
    def slow(progress):
        print(progress.restart, progress.iteration, flush=True)
        time.sleep(0.02)
    GaussianMixture(3, n_init=2, init_params="random", random_state=2, tol=0,
                    max_iter=40).fit(X, progress=slow, checkpoint=sys.argv[2])
    print("done", flush=True)
""")


def test_a_fit_killed_with_sigkill_resumes_from_its_checkpoint(X, tmp_path):
    np.save(tmp_path / "X.npy", X)
    path = tmp_path / "fit.ckpt"
    reference = GaussianMixture(3, n_init=2, init_params="random", random_state=2, tol=0,
                                max_iter=40).fit(X)
    process = subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / "X.npy"),
                                str(path)], stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.split() == ["1", "7"]:  # second initialisation, mid-run
                os.kill(process.pid, signal.SIGKILL)
                break
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    seen = []
    resumed = GaussianMixture(3, n_init=2, init_params="random", random_state=2, tol=0,
                              max_iter=40).fit(X, checkpoint=path,
                                               progress=lambda p: seen.append(p.restart))
    assert seen and seen[0] == 1
    assert_identical(reference, resumed)


def test_an_unwritable_checkpoint_is_refused_before_fitting(X, tmp_path):
    calls = []
    with pytest.raises(InvalidInputError, match="cannot write"):
        GaussianMixture(**_settings()).fit(X, checkpoint=tmp_path / "missing" / "fit.ckpt",
                                           progress=calls.append)
    assert calls == []


@pytest.mark.parametrize("source", ["chunks", "dask"])
def test_checkpoints_work_for_data_read_in_pieces(X, tmp_path, source):
    if source == "dask":
        da = pytest.importorskip("dask.array")
        data = da.from_array(X, chunks=400)
    else:
        def data():
            return iter(np.array_split(X, 4))
    reference = GaussianMixture(**_settings()).fit(X)
    path = tmp_path / "fit.ckpt"

    def stop(progress):
        if (progress.restart, progress.iteration) == (0, 5):
            raise Interrupt

    with pytest.raises(Interrupt):
        GaussianMixture(**_settings()).fit(data, progress=stop, checkpoint=path)
    resumed = GaussianMixture(**_settings()).fit(data, checkpoint=path)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(resumed, name), getattr(reference, name),
                                   rtol=1e-10, atol=0)
    assert resumed.n_iter_ == reference.n_iter_
