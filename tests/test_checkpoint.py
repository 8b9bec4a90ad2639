"""Checkpoints: a fit interrupted at any point and started again ends with the
parameters of an uninterrupted fit."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emix import GaussianMixture
from emix.em.checkpoint import _checksum
from emix.exceptions import ComponentCollapseWarning, InvalidInputError

from conftest import COVARIANCE_TYPES, blobs, identity_precisions

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


# -- the data a checkpoint was written for ---------------------------------------------


def _other_data(X):
    """Data of X's shape that differ from it: one value by one ulp, or the rows' order."""
    nudged = X.copy()
    nudged[1234, 1] = np.nextafter(nudged[1234, 1], np.inf)
    swapped = X.copy()
    swapped[[10, 11]] = swapped[[11, 10]]
    return {"one value": nudged, "two rows swapped": swapped}


@pytest.mark.parametrize("change", ["one value", "two rows swapped"])
def test_a_finished_checkpoint_is_refused_for_other_data_of_the_same_shape(X, tmp_path, change):
    path = tmp_path / "day.ckpt"
    GaussianMixture(**_settings()).fit(X, checkpoint=path)
    calls = []
    with pytest.raises(InvalidInputError, match=r"day\.ckpt' belongs to another fit \(the data "
                       r"changed: the same shape, but other values.*Delete the checkpoint"):
        GaussianMixture(**_settings()).fit(_other_data(X)[change], checkpoint=path,
                                           progress=calls.append)
    assert calls == []


def test_a_killed_fit_is_not_resumed_on_other_data(X, tmp_path):
    path = tmp_path / "fit.ckpt"

    def stop(progress):
        if (progress.restart, progress.iteration) == (0, 4):
            raise Interrupt

    with pytest.raises(Interrupt):
        GaussianMixture(**_settings()).fit(X, progress=stop, checkpoint=path)
    with pytest.raises(InvalidInputError, match="the data changed: the same shape"):
        GaussianMixture(**_settings()).fit(_other_data(X)["one value"], checkpoint=path)
    # Refusing it left the checkpoint as it was: the right data resume it.
    seen = []
    resumed = GaussianMixture(**_settings()).fit(
        X, checkpoint=path, progress=lambda p: seen.append((p.restart, p.iteration)))
    assert seen[0] == (0, 4)
    assert_identical(GaussianMixture(**_settings()).fit(X), resumed)


def test_changed_weights_are_other_data(X, tmp_path):
    weights = np.random.default_rng(3).integers(1, 4, X.shape[0]).astype(float)
    path = tmp_path / "fit.ckpt"
    GaussianMixture(**_settings()).fit(X, sample_weight=weights, checkpoint=path)
    same_zeros = weights.copy()
    same_zeros[7] += 1
    with pytest.raises(InvalidInputError, match="the data changed: the same shape, but other "
                       "values, weights"):
        GaussianMixture(**_settings()).fit(X, sample_weight=same_zeros, checkpoint=path)
    one_zero = weights.copy()
    one_zero[7] = 0
    with pytest.raises(InvalidInputError, match="the weights changed: 1500 rows of positive "
                       "weight there, 1499 now"):
        GaussianMixture(**_settings()).fit(X, sample_weight=one_zero, checkpoint=path)
    # Weights of 1 everywhere are not the same data as no weights: refused too.
    with pytest.raises(InvalidInputError, match="the data changed"):
        GaussianMixture(**_settings()).fit(X, checkpoint=path)


@pytest.mark.parametrize("reader", ["chunks of another size", "memory map", "dask blocks",
                                    "two threads"])
def test_the_same_data_read_another_way_resume_the_fit(X, tmp_path, reader):
    """The data's digest depends on the rows only: not on the chunks, threads
    or blocks through which the fit reads them."""
    path = tmp_path / "fit.ckpt"

    def stop(progress):
        if (progress.restart, progress.iteration) == (1, 3):
            raise Interrupt

    with pytest.raises(Interrupt):
        GaussianMixture(**_settings(), n_threads=1).fit(
            lambda: iter(np.array_split(X, 4)), progress=stop, checkpoint=path)
    n_threads = 1
    if reader == "chunks of another size":
        data = lambda: iter(np.array_split(X, 7))  # noqa: E731
    elif reader == "memory map":
        np.save(tmp_path / "X.npy", X)
        data = np.load(tmp_path / "X.npy", mmap_mode="r")
    elif reader == "dask blocks":
        da = pytest.importorskip("dask.array")
        data = da.from_array(X, chunks=350)
    else:
        data, n_threads = X, 2
    seen = []
    resumed = GaussianMixture(**_settings(), n_threads=n_threads).fit(
        data, checkpoint=path, progress=lambda p: seen.append((p.restart, p.iteration)))
    assert seen[0] == (1, 3)
    reference = GaussianMixture(**_settings()).fit(X)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(resumed, name), getattr(reference, name),
                                   rtol=1e-10, atol=0)
    assert resumed.n_iter_ == reference.n_iter_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_fit_with_floored_components_resumes_bit_for_bit(tmp_path, covariance_type):
    """Floors, collapses and reseeds read back pass the checks as written."""
    rng = np.random.default_rng(12)
    X = np.vstack([rng.normal(size=(300, 2)), [[40.0, 40.0]]])
    if covariance_type == "tied":  # three points, repeated: the shared covariance collapses
        X = np.repeat(np.array([[0.0, 0.0], [5.0, 1.0], [2.0, 7.0]]), 20, axis=0)
        init = {"weights_init": np.full(3, 1 / 3), "means_init": X[::20] + 0.1,
                "precisions_init": np.eye(2)}
    else:
        init = {"weights_init": np.array([0.9, 0.1]),
                "means_init": np.array([[0.0, 0.0], [40.0, 40.0]]),
                "precisions_init": identity_precisions(covariance_type, 2, 2)}
    settings = {"n_components": len(init["weights_init"]), "covariance_type": covariance_type,
                "reg_covar": 0.0, "tol": 0.0, "max_iter": 6, **init}
    with pytest.warns(ComponentCollapseWarning):
        reference = GaussianMixture(**settings).fit(X)
    assert reference.collapses_
    path = tmp_path / "fit.ckpt"

    def stop(progress):
        if progress.iteration == 3:
            raise Interrupt

    with pytest.raises(Interrupt):  # after the collapse (iteration 1), before the warning
        GaussianMixture(**settings).fit(X, progress=stop, checkpoint=path)
    with pytest.warns(ComponentCollapseWarning):
        resumed = GaussianMixture(**settings).fit(X, checkpoint=path)
    assert_identical(reference, resumed)
    assert resumed.collapses_ == reference.collapses_


# -- damaged and edited checkpoints -------------------------------------------------------

_SMALL = {"n_components": 2, "n_init": 2, "init_params": "random", "random_state": 3,
          "tol": 0.0, "max_iter": 8}
_REFUSED = (r"checkpoint '.*case\.ckpt' cannot be resumed: {}.*[Dd]elete it to start the fit "
            r"afresh")


@pytest.fixture(scope="module")
def small_fit(tmp_path_factory):
    """Small data, their uninterrupted fit, and the bytes of a checkpoint
    written mid-way through the second initialisation (a finished run and a
    running one)."""
    X = blobs(200, 2, 2, seed=7)
    reference = GaussianMixture(**_SMALL).fit(X)
    path = tmp_path_factory.mktemp("damaged") / "good.ckpt"

    def stop(progress):
        if (progress.restart, progress.iteration) == (1, 3):
            raise Interrupt

    with pytest.raises(Interrupt):
        GaussianMixture(**_SMALL).fit(X, progress=stop, checkpoint=path)
    return X, reference, path.read_bytes()


def _resume(small_fit, tmp_path, content: bytes) -> str:
    """Resumes from ``content``: "refused" (with the clear error) or
    "resumed" (to the uninterrupted fit's result); anything else fails."""
    X, reference, _ = small_fit
    path = tmp_path / "case.ckpt"
    path.write_bytes(content)
    try:
        resumed = GaussianMixture(**_SMALL).fit(X, checkpoint=path)
    except InvalidInputError as exc:
        assert re.match(_REFUSED.format(""), str(exc)), str(exc)
        return "refused"
    assert_identical(reference, resumed)
    return "resumed"


def test_damaged_checkpoints_are_refused_or_resume_exactly(small_fit, tmp_path):
    good = small_fit[2]
    assert _resume(small_fit, tmp_path, good) == "resumed"
    rng = np.random.default_rng(2024)
    flips = []
    for bit in rng.choice(8 * len(good), size=250, replace=False):
        damaged = bytearray(good)
        damaged[bit // 8] ^= 1 << (bit % 8)
        flips.append(bytes(damaged))
    lengths = sorted({*range(0, len(good), 29), *range(len(good) - 20, len(good))})
    cases = flips + [good[:n] for n in lengths]
    outcomes = [_resume(small_fit, tmp_path, case) for case in cases]
    assert outcomes[len(flips):] == ["refused"] * len(lengths)  # every truncation
    assert outcomes.count("refused") > 0.8 * len(flips) + len(lengths)


def _rewritten(content: bytes, edit) -> bytes:
    """The checkpoint with ``edit(meta, arrays)`` applied and its checksum
    computed again, as a deliberate edit would."""
    with np.load(io.BytesIO(content)) as archive:
        arrays = {key: archive[key] for key in archive.files}
    del arrays["checksum"]
    meta = json.loads(arrays.pop("meta").tobytes())
    meta = edit(meta, arrays)
    text = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    arrays["meta"] = np.frombuffer(text, dtype=np.uint8)
    arrays["checksum"] = np.frombuffer(_checksum(arrays).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _set(where, key, value):
    def edit(meta, arrays):
        record = meta if where is None else meta[where]
        record[key] = value(record[key]) if callable(value) else value
        return meta
    return edit


def _array(name, change):
    def edit(meta, arrays):
        arrays[name] = change(arrays[name].copy())
        return meta
    return edit


def _scaled_diagonal(factor):
    def change(covariances):
        covariances[1] *= np.diag([1.0, factor])
        return covariances
    return change


def _without(name):
    def edit(meta, arrays):
        del arrays[name]
        return meta
    return edit


def _stopped(meta, arrays):
    """A run still "running" although it has used up max_iter."""
    meta["run"]["history"] = meta["run"]["history"][:1] * (_SMALL["max_iter"] + 1)
    return meta


def _replaced(meta_text):
    return lambda meta, arrays: meta_text


_EDITS = {
    "garbled JSON": (_replaced(b'{"format": "emix-checkpoint/2", "fing'),
                     "its state is not a JSON"),
    "not JSON text": (_replaced(b"\xff\xfe\x00binary"), "its state is not a JSON"),
    "a list, not a record": (_replaced(b"[1, 2, 3]"), "its state is not a JSON"),
    "old format": (_set(None, "format", "emix-checkpoint/1"), "another version of emix"),
    "no fingerprint": (_set(None, "fingerprint", None), "no description of its fit"),
    "NaN result": (_set("finished", "log_likelihood", float("nan")), "log_likelihood = nan"),
    "result not the last": (_set("finished", "log_likelihood", lambda v: v + 1),
                            "not the last of its history"),
    "NaN in a history": (_set("finished", "history", lambda h: [*h[:-2], float("nan"), h[-1]]),
                         "a log-likelihood of nan"),
    "text in a history": (_set("run", "history", lambda h: [*h[:-1], "high"]),
                          "a log-likelihood of 'high', not a number"),
    "too long a history": (_set("run", "history", lambda h: h[:1] * 12),
                           "a history of 12 log-likelihoods"),
    "empty history": (_set("run", "history", []), "a history of 0 log-likelihoods"),
    "unknown state": (_set("run", "state", "exploded"), "state = 'exploded'"),
    "finished result running": (_set("finished", "state", "running"), "state = 'running'"),
    "running past max_iter": (_stopped, "still running after max_iter=8"),
    "restart too large": (_set(None, "restart", 5), r"restart = 5 \(from 0 to 2\)"),
    "negative restart": (_set(None, "restart", -1), "restart = -1"),
    "restart as text": (_set(None, "restart", "1"), "restart = '1'"),
    "restart without result": (_set(None, "restart", 0), "0 initialisations finished, but a"),
    "result of a later restart": (_set("finished", "restart", 1), "restart = 1 \\(from 0 to 0"),
    "best iteration": (_set("run", "best_iteration", 99), "best_iteration = 99"),
    "best log-likelihood": (_set("run", "best_log_likelihood", lambda v: v - 1),
                            "the best log-likelihood .* is not that of iteration"),
    "reseeds": (_set("run", "reseeds_left", 7), "reseeds_left = 7"),
    "collapse component": (_set("run", "collapses", [[1, 9, "vanished", "floored"]]),
                           "a collapse \\[1, 9"),
    "collapse reason": (_set("run", "collapses", [[1, 0, "exploded", "floored"]]),
                        "a collapse"),
    "collapse iteration": (_set("finished", "collapses", [[50, 0, "singular", "floored"]]),
                           "a collapse \\[50"),
    "rising decrease": (_set("run", "decreases", [[1, 0.5]]), "a decrease of 0.5"),
    "decrease record": (_set("finished", "decreases", {"1": -1.0}), "decreases is not a list"),
    "floor without array": (_set("run", "floors", [0]), "no array 'floor_0'"),
    "floor of no component": (_set("run", "floors", [2]), r"floors of components \[2\]"),
    "run record": (_set(None, "run", [1, 2]), "the record 'run' is not a JSON object"),
    "negative weight": (_array("run_weights", lambda w: w * [-1, 3]), "not probabilities"),
    "weights not summing to 1": (_array("best_weights", lambda w: w * 2), "not probabilities"),
    "NaN mean": (_array("finished_means", lambda m: m * np.nan), "finished_means holds NaN"),
    "means of another shape": (_array("run_means", lambda m: m[:, :1]),
                               r"run_means of shape \(2, 1\)"),
    "float32 covariances": (_array("run_covariances", lambda c: c.astype(np.float32)),
                            "dtype float32"),
    "not positive definite": (_array("run_covariances", _scaled_diagonal(-1.0)),
                              "run_covariances that are not positive definite"),
    "negative precision factor": (_array("best_prec_chol", lambda p: -p),
                                  "best_prec_chol is not a precision factor"),
    "missing factor": (_without("run_prec_chol"), "no array 'run_prec_chol'"),
    "generator state": (_set(None, "rng", lambda s: {**s, "state": "?"}),
                        "the random generator's state is invalid"),
    "another generator": (_set(None, "rng", lambda s: {**s, "bit_generator": "MT19937"}),
                          "not one of this fit's"),
    "generator state out of range": (
        _set(None, "rng", lambda s: {**s, "state": {**s["state"], "state": -1}}),
        "the random generator's state is invalid"),
    "covariances not those of the factors": (
        _array("run_covariances", lambda c: 2 * c),
        "run_cov_chol and run_prec_chol that do not factor run_covariances"),
}


@pytest.mark.parametrize("edit", sorted(_EDITS))
def test_impossible_values_with_a_matching_checksum_are_refused(small_fit, tmp_path, edit):
    change, message = _EDITS[edit]
    X = small_fit[0]
    path = tmp_path / "case.ckpt"
    path.write_bytes(_rewritten(small_fit[2], change))
    calls = []
    with pytest.raises(InvalidInputError, match=_REFUSED.format(".*" + message)):
        GaussianMixture(**_SMALL).fit(X, checkpoint=path, progress=calls.append)
    assert calls == []  # nothing ran from the bad state


def test_an_edit_without_its_checksum_and_an_empty_file_are_refused(small_fit, tmp_path):
    good = small_fit[2]
    assert _resume(small_fit, tmp_path, _rewritten(good, lambda meta, arrays: meta)) == "resumed"
    with np.load(io.BytesIO(good)) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["run_means"] = arrays["run_means"] + 1e-9  # an edit, the checksum left as it was
    edited = io.BytesIO()
    np.savez(edited, **arrays)
    X, path = small_fit[0], tmp_path / "case.ckpt"
    cases = [(edited.getvalue(), "it is damaged: its content does not match its checksum"),
             (b"", r"it is empty \(0 bytes\)"),
             (b"PK\x03\x04 not really a zip", "it is not an emix checkpoint"),
             (_npz(other=np.zeros(3)), "it is not an emix checkpoint .a NumPy archive without")]
    for content, message in cases:
        path.write_bytes(content)
        with pytest.raises(InvalidInputError, match=_REFUSED.format(message)):
            GaussianMixture(**_SMALL).fit(X, checkpoint=path)


def _npz(**arrays) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def test_the_data_digest_adds_over_any_split_in_any_order():
    from emix.execution.digest import RowDigest, rows_per_group

    rng = np.random.default_rng(8)
    X = rng.normal(size=(10_000, 3))
    group = rows_per_group(3)
    whole = RowDigest.of(X, 0, group).hexdigest()
    for _ in range(5):
        cuts = np.sort(rng.choice(np.arange(1, X.shape[0]), size=12, replace=False))
        starts = np.concatenate([[0], cuts])
        parts = [RowDigest.of(part, int(start), group)
                 for part, start in zip(np.split(X, cuts), starts, strict=True)]
        shuffled = [parts[i] for i in rng.permutation(len(parts))]
        assert sum(shuffled[1:], shuffled[0]).hexdigest() == whole
    assert RowDigest.of(X[::-1], 0, group).hexdigest() != whole
    assert RowDigest.of(np.asfortranarray(X), 0, group).hexdigest() == whole
    assert RowDigest.of(X.astype(">f8"), 0, group).hexdigest() == whole  # values, not bytes


def test_a_diverged_result_keeps_its_falls_after_its_best(small_fit, tmp_path):
    """A diverged run's history ends at its best parameters, but its falls
    (why it stopped) come later: such a record is valid and resumes."""
    def diverged(meta, arrays):
        result = meta["finished"]
        result.update(state="diverged", history=result["history"][:3],
                      log_likelihood=result["history"][2], decreases=[[5, -0.25]])
        return meta

    X = small_fit[0]
    path = tmp_path / "case.ckpt"
    path.write_bytes(_rewritten(small_fit[2], diverged))
    seen = []
    GaussianMixture(**_SMALL).fit(X, checkpoint=path, progress=seen.append)
    assert (seen[0].restart, seen[0].iteration) == (1, 3)


@pytest.mark.parametrize("kind", ["device", "pipe", "directory"])
def test_a_checkpoint_path_that_is_no_regular_file_is_refused_at_once(X, tmp_path, kind):
    if kind == "device":
        path = "/dev/null"
    elif kind == "pipe":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    else:
        path = tmp_path
    with pytest.raises(InvalidInputError, match=r"is not a regular file|is a directory"):
        GaussianMixture(**_SMALL).fit(X, checkpoint=path)


def test_a_file_far_larger_than_a_checkpoint_is_not_read(X, tmp_path, monkeypatch):
    # Pointed at the data (or anything large) by mistake: refused from its
    # size, and not called damaged (nothing suggests deleting it).
    path = tmp_path / "data.bin"
    with open(path, "wb") as handle:
        handle.truncate(2**30)  # sparse: 1 GiB that takes no disk
    monkeypatch.setattr("pathlib.Path.read_bytes", lambda self: pytest.fail("read"))
    with pytest.raises(InvalidInputError, match=r"not an emix checkpoint \(a file of "
                                                r"1,073,741,824 bytes.*otherwise pass another"):
        GaussianMixture(**_SMALL).fit(X, checkpoint=path)


def test_an_archive_that_unpacks_to_far_more_than_its_size_is_refused(X, tmp_path):
    import zipfile

    path = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("meta.npy", b"\0" * 2**27)  # 128 MiB of zeros, a few hundred KB
    assert path.stat().st_size < 2**20
    with pytest.raises(InvalidInputError, match=r"unpacks to far more than its size"):
        GaussianMixture(**_SMALL).fit(X, checkpoint=path)
