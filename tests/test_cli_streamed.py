"""``emix fit --chunk-size`` and ``--scheduler``: the same model and
statistics as the in-memory fit, one chunk in memory at a time."""

from __future__ import annotations

import importlib
import io
import json
import re
import socket
import time

import numpy as np
import pytest

from emix.cli.main import main

streamed = importlib.import_module("emix.cli.streamed")


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def fitted(argv):
    code, out, err = run([*argv, "--format", "json", "-q"])
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(0, 1, (3000, 2)), rng.normal([4, 1], 0.5, (2000, 2))])
    weights = rng.integers(0, 3, X.shape[0])
    folder = tmp_path_factory.mktemp("streamed")
    np.save(folder / "X.npy", X)
    np.savetxt(folder / "X.csv", np.column_stack([X, weights]), delimiter=",",
               header="x,y,count", comments="", fmt="%.17g")
    return folder


def _same(a, b):
    for key in ("log_likelihood", "bic", "aic", "icl", "n_samples"):
        assert a["model"][key] == pytest.approx(b["model"][key], rel=1e-10), key
    assert a["model"]["n_iter"] == b["model"]["n_iter"]
    assert a["data"]["n_samples"] == b["data"]["n_samples"]


@pytest.mark.parametrize("name, options", [("X.npy", []), ("X.csv", ["--weights", "count"]),
                                           ("X.csv", ["--columns", "y,x"])])
def test_chunk_size_gives_the_in_memory_fit(files, name, options):
    argv = ["fit", str(files / name), "-k", "2", "--covariance", "diag", *options]
    _same(fitted(argv), fitted([*argv, "--chunk-size", "700"]))


def test_chunk_size_draws_a_sample_and_saves_the_model(files, tmp_path):
    pytest.importorskip("matplotlib")
    code, _, err = run(["fit", str(files / "X.npy"), "--chunk-size", "1000",
                        "--plot", str(tmp_path / "fit.png"), "--save", str(tmp_path / "m.emix")])
    assert code == 0, err
    assert (tmp_path / "fit.png").stat().st_size > 1000
    code, out, err = run(["show", str(tmp_path / "m.emix")])
    assert code == 0 and "2 components" in out


@pytest.mark.parametrize("argv, message", [
    (["fit", "-", "--chunk-size", "10"], "cannot read standard input"),
    (["fit", "--chunk-size", "10"], "read a FILE"),
])
def test_streamed_fits_explain_what_they_cannot_do(files, argv, message):
    code, _, err = run([part.format(npy=files / "X.npy") for part in argv])
    assert code == 2 and message in err and "Traceback" not in err


def test_an_unreachable_scheduler_is_reported(files, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(streamed, "CONNECT_TIMEOUT", 1)
    code, _, err = run(["fit", str(files / "X.npy"), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "cannot reach a Dask scheduler" in err


def test_scheduler_gives_the_in_memory_fit(files):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        for name, options in (("X.npy", ["--chunk-size", "1200"]),
                              ("X.csv", ["--weights", "count", "--chunk-size", "900"])):
            argv = ["fit", str(files / name), "-k", "2", *options]
            local = fitted([a for a in argv if a not in ("--chunk-size", "1200", "900")])
            _same(local, fitted([*argv, "--scheduler", cluster.scheduler_address]))


def _interrupted_after_ten(monkeypatch, argv):
    """Runs the command ``argv``, stopped by Ctrl-C after its tenth M-step;
    returns the engine module and its own progress hook, put back."""
    emix_engine = importlib.import_module("emix.em.engine")
    original = emix_engine._notify

    def stop_at_ten(callback, restart, n_restarts, monitor, started):
        if monitor.n_iter == 10:
            raise KeyboardInterrupt
        original(callback, restart, n_restarts, monitor, started)

    monkeypatch.setattr(emix_engine, "_notify", stop_at_ten)
    with pytest.raises(KeyboardInterrupt):
        run(argv)
    monkeypatch.setattr(emix_engine, "_notify", original)
    return emix_engine, original


def test_checkpoint_resumes_a_stopped_fit(files, tmp_path, monkeypatch):
    """A fit stopped mid-way and run again with the same command ends as an
    uninterrupted one."""
    argv = ["fit", str(files / "X.npy"), "-k", "3", "--tol", "1e-12", "--max-iter", "40",
            "--checkpoint", str(tmp_path / "fit.ckpt")]
    whole = fitted([*argv[:-2], "--chunk-size", "800"])
    _interrupted_after_ten(monkeypatch, [*argv, "--chunk-size", "800"])
    resumed = fitted([*argv, "--chunk-size", "800"])
    assert resumed["model"]["n_iter"] == whole["model"]["n_iter"] > 10
    assert resumed["model"]["log_likelihood"] == whole["model"]["log_likelihood"]
    code, _, err = run(["fit", "-k", "1..2", "--checkpoint", str(tmp_path / "x.ckpt")])
    assert code == 2 and "one model" in err


def test_chunk_size_selects_among_models_as_in_memory(files, tmp_path):
    argv = ["fit", str(files / "X.csv"), "--weights", "count", "-k", "1..3",
            "--covariance", "full,spherical", "--criterion", "icl"]
    local, chunked = fitted(argv), fitted([*argv, "--chunk-size", "900"])
    _same(local, chunked)
    assert chunked["selection"]["best"] == local["selection"]["best"]
    for a, b in zip(local["selection"]["table"], chunked["selection"]["table"], strict=True):
        assert (a["rank"], a["n_components"], a["covariance_type"]) == \
            (b["rank"], b["n_components"], b["covariance_type"])
        assert b["icl"] == pytest.approx(a["icl"], rel=1e-10)
    pytest.importorskip("matplotlib")
    code, _, err = run([*argv, "--chunk-size", "900", "--plot", str(tmp_path / "s.png")])
    assert code == 0, err
    assert (tmp_path / "s.png").stat().st_size > 1000


# -- a checkpoint and the data it was written for -----------------------------------------


def test_checkpoint_of_yesterdays_data_is_refused_today(files, tmp_path):
    """A scheduled ``emix fit today.csv --checkpoint day.ckpt`` on refreshed
    data of the same shape must not print yesterday's model."""
    X = np.loadtxt(files / "X.csv", delimiter=",", skiprows=1)
    today = tmp_path / "today.csv"
    np.savetxt(today, X, delimiter=",", header="x,y,count", comments="", fmt="%.17g")
    argv = ["fit", str(today), "-k", "2", "--checkpoint", str(tmp_path / "day.ckpt")]
    yesterday = fitted(argv)
    X[17, 0] += 0.5
    np.savetxt(today, X, delimiter=",", header="x,y,count", comments="", fmt="%.17g")
    code, out, err = run([*argv, "-q"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "day.ckpt' belongs to another fit (the data changed: the same shape" in err
    assert "Delete the checkpoint" in err
    assert fitted([*argv[:-2], "--checkpoint", str(tmp_path / "new.ckpt")])["model"] \
        != yesterday["model"]


def test_checkpoint_resumes_with_another_chunk_size(files, tmp_path, monkeypatch):
    """The data's digest does not depend on the chunks: a fit stopped with
    --chunk-size 800 resumes with --chunk-size 700 (and in memory)."""
    argv = ["fit", str(files / "X.npy"), "-k", "3", "--tol", "1e-12", "--max-iter", "40",
            "--checkpoint", str(tmp_path / "fit.ckpt")]
    whole = fitted(argv[:-2])
    emix_engine, original = _interrupted_after_ten(monkeypatch, [*argv, "--chunk-size", "800"])
    resumed_at = []

    def record(callback, restart, n_restarts, monitor, started):
        resumed_at.append(monitor.n_iter)
        original(callback, restart, n_restarts, monitor, started)

    monkeypatch.setattr(emix_engine, "_notify", record)
    resumed = fitted([*argv, "--chunk-size", "700"])
    assert resumed_at[0] == 10
    assert resumed["model"]["n_iter"] == whole["model"]["n_iter"] > 10
    assert resumed["model"]["log_likelihood"] == pytest.approx(whole["model"]["log_likelihood"],
                                                               rel=1e-12)


# -- clusters that fail ------------------------------------------------------------------


@pytest.fixture
def process_cluster(tmp_path):
    """A scheduler and two workers (nanny and worker process each), separate
    processes on loopback, all killed at the end."""
    pytest.importorskip("distributed")
    from cluster_processes import ProcessCluster

    with ProcessCluster(tmp_path / "cluster") as processes:
        processes.start_scheduler()
        workers = [processes.add_worker(name) for name in ("w0", "w1")]
        from distributed import Client

        with Client(processes.address, timeout="60s", set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield processes, workers


def _kill_at_iteration(monkeypatch, iteration, kill):
    """Calls ``kill()`` once, when the fit has done ``iteration`` M-steps."""
    emix_engine = importlib.import_module("emix.em.engine")
    original = emix_engine._notify
    done = []

    def notify(callback, restart, n_restarts, monitor, started):
        if monitor.n_iter == iteration and not done:
            kill()
            done.append(time.monotonic())
        original(callback, restart, n_restarts, monitor, started)

    monkeypatch.setattr(emix_engine, "_notify", notify)
    return done


def _one_line_error(code, err):
    assert code == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("emix: error: "), err
    return err


def test_blocks_scattered_to_a_worker_that_dies_are_reported(files, process_cluster,
                                                             monkeypatch):
    from distributed import Client

    processes, workers = process_cluster

    def kill_a_holder():
        """Kills the worker (nanny included) holding the most blocks."""
        with Client(processes.address, timeout="30s", set_as_default=False) as client:
            info = client.scheduler_info()["workers"]
            held = client.has_what()
            name = info[max(held, key=lambda address: len(held[address]))]["name"]
            assert held and max(map(len, held.values())) > 0
        processes.kill_group(next(worker for worker in workers if worker.name == name))

    # A .csv is read here, a chunk at a time, and scattered to the workers.
    killed = _kill_at_iteration(monkeypatch, 3, kill_a_holder)
    code, _, err = run(["fit", str(files / "X.csv"), "--weights", "count", "-k", "2",
                        "--chunk-size", "500", "--max-iter", "50", "--tol", "1e-300",
                        "--scheduler", processes.address])
    assert killed, err
    # Dask may have copied blocks to the other worker before the kill: then
    # the fit ends and the statistics' pass after it finds the lost ones,
    # below the fit's progress line.
    progress, _, err = err.rpartition("emix: error: ")
    assert not progress or progress.startswith("emix: fitted K=2 full"), progress
    err = _one_line_error(code, "emix: error: " + err)
    assert f"the Dask cluster at {processes.address} lost blocks of the data" in err
    assert "scattered from the client" in err and "a .npy file the workers can read" in err


def test_a_scheduler_killed_mid_fit_is_reported_within_the_bound(files, process_cluster,
                                                                  monkeypatch):
    dask = pytest.importorskip("dask")
    processes, _ = process_cluster
    scheduler = processes.processes[0]
    killed = _kill_at_iteration(monkeypatch, 3, lambda: processes.kill_group(scheduler))
    limit = 2.0
    with dask.config.set({"emix.lost-cluster-timeout": limit}):
        code, _, err = run(["fit", str(files / "X.npy"), "-k", "2", "--chunk-size", "1000",
                            "--max-iter", "50", "--tol", "1e-300",
                            "--scheduler", processes.address])
    waited = time.monotonic() - killed[0]
    err = _one_line_error(code, err)
    assert f"lost the connection to the Dask scheduler at {processes.address}" in err
    assert "did not come back within 2 s" in err and "Start the scheduler" in err
    assert limit <= waited < limit + 5, waited


def test_addresses_without_a_scheduler_are_reported_within_the_timeout(files, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(streamed, "CONNECT_TIMEOUT", 1)
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host, port = silent.getsockname()
        for address, reason in [(f"tcp://{host}:{port}", "no answer within 1 s|Timed out"),
                                ("127.0.0.1", "missing port number"),
                                ("udp://127.0.0.1:9", "unknown address scheme")]:
            started = time.monotonic()
            code, _, err = run(["fit", str(files / "X.npy"), "--scheduler", address])
            err = _one_line_error(code, err)
            assert re.search(rf"cannot reach a Dask scheduler at '{re.escape(address)}' "
                             rf"\(({reason})", err), err
            assert "tcp://HOST:PORT" in err
            assert time.monotonic() - started < 10


def test_a_scheduler_without_workers_is_reported_within_the_bound(files, tmp_path):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    from cluster_processes import ProcessCluster

    with ProcessCluster(tmp_path / "cluster") as processes, \
            dask.config.set({"emix.lost-cluster-timeout": 1}):
        address = processes.start_scheduler()
        for name in ("X.csv", "X.npy"):  # scattered from here, or read by the workers
            started = time.monotonic()
            code, _, err = run(["fit", str(files / name), "--scheduler", address])
            err = _one_line_error(code, err)
            assert f"the Dask cluster at {address} has had no workers for 1 s" in err
            assert f"Start workers ('dask worker {address}')" in err
            assert time.monotonic() - started < 8
