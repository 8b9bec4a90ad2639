"""The emix command, run in-process through main(argv): outputs, files,
exit statuses and messages of every subcommand."""

import importlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import emix
from emix.cli.main import main
from emix.datasets import load_faithful

cli = importlib.import_module("emix.cli.main")  # the module, not the function emix.cli.main


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run(argv, stdin=None, stderr=None):
    out, err = io.StringIO(), stderr or io.StringIO()
    code = main(argv, stdout=out, stderr=err,
                stdin=io.StringIO(stdin) if stdin is not None else None)
    return code, out.getvalue(), err.getvalue()


def ok(argv, **kwargs):
    code, out, err = run(argv, **kwargs)
    assert code == 0, err
    return out, err


@pytest.fixture
def faithful_csv(tmp_path):
    X, columns = load_faithful()
    path = tmp_path / "faithful.csv"
    np.savetxt(path, X, delimiter=",", header=",".join(columns), comments="", fmt="%.17g")
    return path


@pytest.fixture
def model_file(tmp_path, faithful_csv):
    path = tmp_path / "model.emix"
    ok(["fit", str(faithful_csv), "-k", "2", "--save", str(path), "--quiet"])
    return path


def faithful_frame():
    """Old Faithful with its column names, as the models fitted by the command expect."""
    import pandas as pd

    X, names = load_faithful()
    return pd.DataFrame(X, columns=names)


def table_rows(text):
    """Data rows of a printed component table: lines starting with a digit."""
    return [line.split() for line in text.splitlines() if line[:1].isdigit()]


# -- fit -------------------------------------------------------------------------------
def test_fit_without_a_file_fits_old_faithful():
    out, _ = ok(["fit"])
    assert "272 samples x 2 features (eruptions, waiting)" in out
    assert "converged" in out and "BIC" in out and "log-lik" in out
    # The classic two-component solution: about 35.6% short eruptions.
    components = sorted((float(row[1]), float(row[2]), float(row[3]))
                        for row in table_rows(out) if len(row) == 4)
    # mclust's maximum-likelihood solution (weights, mean eruptions, mean waiting)
    np.testing.assert_allclose(components, [(0.3559, 2.0364, 54.479), (0.6441, 4.2897, 79.968)],
                               atol=2e-3)


def test_fit_a_csv_file_matches_the_library(faithful_csv):
    out, _ = ok(["fit", str(faithful_csv), "-k", "3", "--covariance", "diag", "--seed", "4"])
    assert "3 components, covariance diag" in out
    assert out.count("covariance of component") == 3
    X, _ = load_faithful()
    model = emix.GaussianMixture(3, covariance_type="diag", random_state=4, tol=1e-6,
                                 max_iter=1000).fit(X)
    assert f"{model.bic(X):.4f}" in out


def test_fit_a_file_written_by_numpy_savetxt_with_a_header(tmp_path):
    X, _ = load_faithful()
    path = tmp_path / "saved.txt"
    np.savetxt(path, X, header="eruptions waiting")  # writes "# eruptions waiting"
    out, _ = ok(["fit", str(path), "--format", "json"])
    assert json.loads(out)["data"]["features"] == ["eruptions", "waiting"]
    assert json.loads(out)["data"]["n_samples"] == 272


def test_fit_a_headerless_tsv_file(tmp_path):
    path = tmp_path / "data.tsv"
    rng = np.random.default_rng(0)
    np.savetxt(path, rng.normal(size=(50, 3)), delimiter="\t")
    out, _ = ok(["fit", str(path), "-k", "1"])
    assert "column 1, column 2, column 3" in out


def test_selection_prints_the_table_the_winner_and_the_picture(tmp_path):
    picture = tmp_path / "sel.png"
    out, err = ok(["fit", "-k", "1..3", "--covariance", "all", "--plot", str(picture)])
    assert "model selection by BIC (lower is better" in out
    ranked = [row for row in table_rows(out) if len(row) == 10]
    assert len(ranked) == 12
    bics = [float(row[3]) for row in ranked]
    assert bics == sorted(bics)
    best_k, best_cov = ranked[0][1], ranked[0][2]
    assert f"best by BIC: K={best_k}, {best_cov} covariance" in out
    assert f"{best_k} components, covariance {best_cov}" in out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000
    assert f"picture written to {picture}" in err


def test_selection_with_mclust_convention_and_icl():
    out, _ = ok(["fit", "-k", "1,2", "--covariance", "full,diag", "--criterion", "icl",
                 "--convention", "mclust", "--format", "json"])
    record = json.loads(out)
    selection = record["selection"]
    assert selection["criterion"] == "icl" and selection["higher_is_better"]
    icls = [row["icl"] for row in selection["table"]]
    assert len(icls) == 4 and icls == sorted(icls, reverse=True)
    best = selection["best"]
    assert (record["model"]["n_components"], record["model"]["covariance_type"]) == (
        best["n_components"], best["covariance_type"])


def test_the_model_block_follows_the_convention_and_the_selection_table():
    ours = json.loads(ok(["fit", "--format", "json"])[0])["model"]
    theirs = json.loads(ok(["fit", "--convention", "mclust", "--format", "json"])[0])["model"]
    for name in ("bic", "aic", "icl"):
        assert theirs[name] == pytest.approx(-ours[name], rel=1e-12)
    out, _ = ok(["fit", "-k", "1..3", "--convention", "mclust"])
    best_bic = next(row for row in table_rows(out) if len(row) == 10)[3]
    block = next(line for line in out.splitlines() if line.startswith("BIC "))
    assert float(block.split()[1]) == pytest.approx(float(best_bic), abs=0.005)
    assert float(best_bic) < 0 and "(higher is better, mclust's sign)" in block


def test_fit_json_output_describes_the_model():
    record = json.loads(ok(["fit", "--format", "json"])[0])
    assert record["data"] == {"source": "Old Faithful (embedded)", "n_samples": 272,
                              "features": ["eruptions", "waiting"]}
    model = record["model"]
    assert model["n_components"] == 2 and model["convergence_state"] == "converged"
    assert sum(c["weight"] for c in model["components"]) == pytest.approx(1.0)
    assert np.array(model["components"][0]["covariance"]).shape == (2, 2)
    assert model["bic"] == pytest.approx(-2 * model["log_likelihood"]
                                         + model["n_parameters"] * np.log(272))
    assert "selection" not in record


def test_fit_options_reach_the_estimator(faithful_csv):
    out, _ = ok(["fit", str(faithful_csv), "--max-iter", "2", "--tol", "1e-12", "--n-init",
                 "2", "--format", "json"])
    record = json.loads(out)["model"]
    assert record["convergence_state"] == "max_iter" and record["n_iter"] == 2


def test_warnings_speak_of_options_and_number_components_from_1(tmp_path):
    path = tmp_path / "atoms.csv"
    path.write_text("x,y\n" + "0,0\n" * 5 + "1,3\n" * 5 + "4,1\n2,2\n")
    code, _, err = run(["fit", str(path), "-k", "3", "--max-iter", "1", "--tol", "1e-12"])
    assert code == 0
    lines = err.splitlines()
    collapse = next(line for line in lines if "collapse" in line)
    assert collapse.startswith("emix: warning: ") and "--reg-covar" in collapse
    assert "collapses_" not in collapse and "component 0" not in collapse
    warned = [line for line in lines if line.startswith("emix: warning: ")]
    assert len(warned) == 2
    assert not any(name in line for line in warned
                   for name in ("reg_covar", "max_iter", "n_components"))
    assert "floored. Fewer components (-k) or a larger --reg-covar" in collapse
    assert any("Increase --max-iter or --tol" in line for line in warned)
    assert any("in --max-iter 1 iterations" in line and ", --tol 1e-12)" in line
               for line in warned)


def test_reg_covar_reaches_the_estimator():
    small = json.loads(ok(["fit", "-k", "1", "--format", "json"])[0])["model"]
    large = json.loads(ok(["fit", "-k", "1", "--reg-covar", "2", "--format", "json"])[0])
    np.testing.assert_allclose(np.array(large["model"]["components"][0]["covariance"])
                               - np.array(small["components"][0]["covariance"]),
                               (2 - 1e-6) * np.eye(2), atol=1e-9)


def test_columns_and_weights(tmp_path):
    X, _ = load_faithful()
    counts = np.arange(X.shape[0]) % 3 + 1
    path = tmp_path / "weighted.csv"
    np.savetxt(path, np.column_stack([counts, X]), delimiter=",",
               header="count,eruptions,waiting", comments="", fmt="%.17g")
    weighted = json.loads(ok(["fit", str(path), "--weights", "count", "--format", "json"])[0])
    assert weighted["model"]["features"] == ["eruptions", "waiting"]
    repeated = emix.GaussianMixture(2, random_state=0, tol=1e-6).fit(
        np.repeat(X, counts, axis=0))
    np.testing.assert_allclose([c["weight"] for c in weighted["model"]["components"]],
                               repeated.weights_, rtol=1e-8)
    rows = np.repeat(X, counts, axis=0)
    assert weighted["model"]["n_samples"] == counts.sum() == len(rows)
    assert weighted["model"]["bic"] == pytest.approx(repeated.bic(rows), rel=1e-8)
    assert weighted["model"]["icl"] == pytest.approx(repeated.icl(rows), rel=1e-8)
    one = json.loads(ok(["fit", str(path), "--columns", "3", "-k", "1", "--format",
                         "json"])[0])
    assert one["model"]["features"] == ["waiting"]
    assert one["model"]["components"][0]["mean"] == [pytest.approx(X[:, 1].mean())]


def test_fit_reads_standard_input():
    X, _ = load_faithful()
    text = "eruptions,waiting\n" + "\n".join(f"{a},{b}" for a, b in X.tolist())
    out, _ = ok(["fit", "-", "--format", "json"], stdin=text)
    assert json.loads(out)["data"]["source"] == "standard input"
    assert json.loads(out)["model"] == json.loads(ok(["fit", "--format", "json"])[0])["model"]


def test_fit_reads_npy_and_parquet(tmp_path):
    X, _ = load_faithful()
    reference = json.loads(ok(["fit", "--format", "json"])[0])["model"]["components"]
    np.save(tmp_path / "data.npy", X)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"eruptions": X[:, 0], "waiting": X[:, 1]}),
                   tmp_path / "data.parquet")
    for name in ("data.npy", "data.parquet"):
        out, _ = ok(["fit", str(tmp_path / name), "--format", "json"])
        components = json.loads(out)["model"]["components"]
        for a, b in zip(components, reference, strict=True):
            np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-12)


# -- progress --------------------------------------------------------------------------
def test_progress_is_one_summary_line_when_not_a_terminal():
    _, err = ok(["fit", "-k", "1..2", "--covariance", "diag,full"])
    assert err.count("\n") == 1 and "\r" not in err
    assert err.startswith("emix: fitted 4 models in ") and "EM iterations" in err


def test_the_summary_counts_models_that_could_not_be_fitted(tmp_path):
    path = tmp_path / "three.csv"
    path.write_text("x\n0\n0\n1\n1\n5\n5\n")
    out, err = ok(["fit", str(path), "-k", "1..4"])
    assert err.splitlines()[-1].startswith("emix: fitted 3 models (1 could not be fitted) in ")
    assert "K=4 full failed: X has only 3 distinct rows" in out


def test_progress_is_a_live_line_on_a_terminal():
    terminal = Terminal()
    code, _, err = run(["fit", "-k", "2", "--tol", "1e-9", "--max-iter", "500"],
                       stderr=terminal)
    assert code == 0
    assert err.startswith("\rreading the Old Faithful data ...")
    assert "\r" in err and "iteration" in err and "log-lik/sample" in err
    assert err.rstrip("\n").splitlines()[-1].startswith("emix: fitted K=2 full: converged")


def test_quiet_and_verbose():
    _, err = ok(["fit", "--quiet"])
    assert err == ""
    _, err = ok(["fit", "-k", "1..2", "--verbose", "--tol", "1e-9", "--max-iter", "500"])
    lines = err.splitlines()
    assert len(lines) > 4
    assert any("model 2/2 (K=2 full)" in line and "converged" in line for line in lines)
    assert "\r" not in err


def test_library_progress_callback_sees_every_iteration():
    X, _ = load_faithful()
    seen = []
    model = emix.GaussianMixture(2, n_init=2, random_state=0).fit(X, progress=seen.append)
    assert {p.restart for p in seen} == {0, 1} and {p.n_restarts for p in seen} == {2}
    runs = [[p for p in seen if p.restart == r] for r in (0, 1)]
    for reports in runs:
        assert [p.iteration for p in reports] == list(range(len(reports)))
        assert [p.state for p in reports][-1] == "converged"
        assert {p.state for p in reports[:-1]} == {"running"}
        np.testing.assert_allclose([p.change for p in reports[1:]],
                                   np.diff([p.log_likelihood for p in reports]))
    assert model.lower_bounds_ in [[p.log_likelihood for p in reports] for reports in runs]


# -- model files: save, show, predict, sample, plot -------------------------------------
def test_show_prints_the_saved_model(model_file):
    out, _ = ok(["show", str(model_file)])
    assert "2 components, covariance full" in out and "eruptions" in out
    record = json.loads(ok(["show", str(model_file), "--format", "json"])[0])
    model = emix.load(model_file)
    assert record["features"] == ["eruptions", "waiting"]
    np.testing.assert_array_equal([c["weight"] for c in record["components"]], model.weights_)
    np.testing.assert_array_equal([c["mean"] for c in record["components"]], model.means_)


def test_predict_writes_labels_and_probabilities(tmp_path, model_file, faithful_csv):
    model = emix.load(model_file)
    X = faithful_frame()
    out, _ = ok(["predict", str(model_file), str(faithful_csv)])
    lines = out.splitlines()
    assert lines[0] == "component"
    np.testing.assert_array_equal([int(v) for v in lines[1:]], model.predict(X) + 1)

    target = tmp_path / "labels.csv"
    out, _ = ok(["predict", str(model_file), str(faithful_csv), "--proba", "-o", str(target)])
    assert out == ""
    written = np.loadtxt(target, delimiter=",", skiprows=1)
    assert target.read_text().splitlines()[0] == "component,p1,p2"
    np.testing.assert_allclose(written[:, 1:], model.predict_proba(X), rtol=1e-15)


def test_predict_streams_in_chunks_with_the_same_result(tmp_path, model_file, faithful_csv):
    whole, _ = ok(["predict", str(model_file), str(faithful_csv), "--proba"])
    chunked, _ = ok(["predict", str(model_file), str(faithful_csv), "--proba",
                     "--chunk-size", "7"])
    assert chunked == whole
    as_json, _ = ok(["predict", str(model_file), str(faithful_csv), "--chunk-size", "50",
                     "--format", "json"])
    labels = [int(line.split(",")[0]) for line in whole.splitlines()[1:]]
    assert [row["component"] for row in json.loads(as_json)] == labels


def test_predict_picks_the_model_columns_by_name(tmp_path, model_file):
    X, _ = load_faithful()
    path = tmp_path / "shuffled.csv"
    np.savetxt(path, np.column_stack([X[:, 1], np.ones(len(X)), X[:, 0]]), delimiter=",",
               header="waiting,other,eruptions", comments="", fmt="%.17g")
    out, _ = ok(["predict", str(model_file), str(path)])
    expected = emix.load(model_file).predict(faithful_frame()) + 1
    np.testing.assert_array_equal([int(v) for v in out.splitlines()[1:]], expected)


def test_sample_draws_reproducibly(tmp_path, model_file):
    out, _ = ok(["sample", str(model_file), "-n", "500", "--seed", "3"])
    assert out.splitlines()[0] == "eruptions,waiting,component"
    values = np.loadtxt(io.StringIO(out), delimiter=",", skiprows=1)
    assert values.shape == (500, 3) and set(values[:, 2]) == {1.0, 2.0}
    assert ok(["sample", str(model_file), "-n", "500", "--seed", "3"])[0] == out
    assert ok(["sample", str(model_file), "-n", "500", "--seed", "4"])[0] != out
    target = tmp_path / "draws.json"
    ok(["sample", str(model_file), "-n", "5", "-o", str(target)])
    rows = json.loads(target.read_text())
    assert len(rows) == 5 and set(rows[0]) == {"eruptions", "waiting", "component"}


def test_plot_draws_the_model_over_data(tmp_path, model_file, faithful_csv):
    picture = tmp_path / "fit.svg"
    _, err = ok(["plot", str(model_file), str(faithful_csv), "-o", str(picture)])
    assert f"picture written to {picture}" in err
    text = picture.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "eruptions" in text and "waiting" in text  # axis labels are text in the SVG
    trace = tmp_path / "trace.pdf"
    ok(["plot", str(model_file), str(faithful_csv), "--trace", "-o", str(trace)])
    assert trace.read_bytes()[:5] == b"%PDF-"


@pytest.fixture
def drawn(monkeypatch):
    """The figures the command saves, kept for inspection."""
    from emix import plotting

    figures = []
    original = plotting.save_figure

    def keep(figure, path):
        figures.append(figure)
        return original(figure, path)

    monkeypatch.setattr(plotting, "save_figure", keep)
    return figures


def test_fit_plot_draws_ellipses_for_each_component(tmp_path, drawn):
    ok(["fit", "-k", "3", "--plot", str(tmp_path / "fit.png")])
    from matplotlib.patches import Ellipse

    (axes,) = drawn[0].axes
    assert sum(isinstance(p, Ellipse) for p in axes.patches) == 6  # 1 and 2 sigma, K=3
    assert axes.get_xlabel() == "eruptions" and axes.get_ylabel() == "waiting"
    assert (tmp_path / "fit.png").stat().st_size > 10_000


def test_fit_plot_draws_the_weighted_data(tmp_path, drawn):
    X, _ = load_faithful()
    counts = np.where(np.arange(len(X)) % 4 == 0, 0, 1)
    path = tmp_path / "weighted.csv"
    np.savetxt(path, np.column_stack([X, counts]), delimiter=",",
               header="eruptions,waiting,count", comments="", fmt="%.17g")
    ok(["fit", str(path), "--weights", "count", "--plot", str(tmp_path / "w.png")])
    (axes,) = drawn[0].axes
    (scatter,) = [c for c in axes.collections if len(c.get_offsets()) > 10]
    np.testing.assert_array_equal(scatter.get_offsets(), X[counts > 0])


def test_plot_takes_a_weights_column(tmp_path, model_file, drawn):
    X, _ = load_faithful()
    counts = np.where(np.arange(len(X)) % 5 == 0, 0, 3)
    path = tmp_path / "weighted.csv"
    np.savetxt(path, np.column_stack([counts, X[:, 1], X[:, 0]]), delimiter=",",
               header="count,waiting,eruptions", comments="", fmt="%.17g")
    ok(["plot", str(model_file), str(path), "--weights", "count", "-o", str(tmp_path / "p.png")])
    (axes,) = drawn[0].axes
    (scatter,) = [c for c in axes.collections if len(c.get_offsets()) > 10]
    np.testing.assert_array_equal(scatter.get_offsets(), X[counts > 0])


def test_demo_compares_true_and_estimated_parameters(tmp_path, drawn):
    picture = tmp_path / "demo.png"
    out, _ = ok(["demo", "--plot", str(picture)])
    (axes,) = drawn[0].axes
    labels = [line.get_label() for line in axes.get_lines()]
    assert labels == ["component 1", "component 2", "mixture", "true mixture"]
    fitted, truth = axes.get_lines()[2], axes.get_lines()[3]
    at_truth = np.interp(truth.get_xdata(), fitted.get_xdata(), fitted.get_ydata())
    assert np.max(np.abs(at_truth - truth.get_ydata())) < 0.02 < np.max(truth.get_ydata())
    assert "20000 samples" in out
    rows = {line.split()[0] + " " + line.split()[1]: line.split()[2:]
            for line in out.splitlines() if line.startswith(("weight", "mean", "sd"))}
    assert set(rows) == {"weight 1", "weight 2", "mean 1", "mean 2", "sd 1", "sd 2"}
    for name, (true, estimated, difference, in_se) in rows.items():
        assert float(estimated) - float(true) == pytest.approx(float(difference), abs=2e-4)
        assert abs(float(in_se)) < 4, name
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_demo_without_a_picture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok(["demo", "-n", "2000", "--plot", "", "--quiet"])
    assert list(tmp_path.iterdir()) == []


# -- errors ----------------------------------------------------------------------------
def one_line_error(argv, message, stdin=None):
    code, out, err = run(argv, stdin=stdin)
    assert code == 2, err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return out


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "empty"),
    ("a,b\n1,x\n2,3\n", "'b'"),
    ("a,b\n1,2\n3,nan\n", "missing"),
    ("a,b\n", "no data rows"),
    ("a,b\n1,2\n3\n", "columns"),
])
def test_bad_files_give_one_line_and_status_2(tmp_path, content, message):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    assert one_line_error(["fit", str(path)], message) == ""


def test_a_non_numeric_column_is_named_and_can_be_left_out(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("name,x,y\nann,1,2\nbob,3,5\ncy,2,2\ndee,8,9\n")
    one_line_error(["fit", str(path), "-k", "1"], "'name'")
    ok(["fit", str(path), "-k", "1", "--columns", "x,y"])
    one_line_error(["fit", str(path), "--columns", "x,z"], "'z'")


@pytest.mark.parametrize("argv, message", [
    (["fit", "--covariance", "banana"], "unknown covariance type 'banana'"),
    (["fit", "-k", "0"], "expected a number of components such as 3, 1..8 or 2,4,6; got '0'"),
    (["fit", "-k", "two"], "got 'two'"),
    (["fit", "-k", "5..2"], "got '5..2'"),
    (["fit", "--seed", "-5"], "--seed: expected a non-negative integer, got '-5'"),
    (["fit", "--seed", "1e400"], "--seed: expected a non-negative integer"),
    (["fit", "--tol", "1e400"], "--tol: expected a positive number"),
    (["fit", "--criterion", "aicc"], "invalid choice: 'aicc'"),
    (["fit", "--format", "xml"], "invalid choice: 'xml'"),
    (["fit", "--tol", "-1"], "expected a positive number"),
    (["fit", "--plot", "picture.gif"], "must end in .png, .svg, .pdf"),
    (["fit", "--plot", "no/such/dir/x.png"], "no such directory"),
    (["fit", "--columns", "a"], "need a FILE"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["sample", "model.emix"], "required: -n"),
])
def test_bad_options_give_one_line_and_status_2(argv, message):
    one_line_error(argv, message)


def test_a_model_file_of_the_wrong_kind(tmp_path, faithful_csv):
    one_line_error(["show", str(faithful_csv)], "not an emix model file")
    one_line_error(["show", str(tmp_path)], "is a directory, not a model file")
    one_line_error(["predict", str(tmp_path / "none.emix"), str(faithful_csv)], "no model file")


def test_errors_speak_of_options_too(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i * i % 7}\n" for i in range(5)))
    one_line_error(["fit", str(path), "-k", "6"], "fewer than -k 6")


def test_samples_of_a_model_without_names_can_be_predicted(tmp_path):
    X, _ = load_faithful()
    model = tmp_path / "plain.emix"
    emix.save(emix.GaussianMixture(2, random_state=0).fit(X), model)
    drawn, _ = ok(["sample", str(model), "-n", "20"])
    assert drawn.startswith("column 1,column 2,component")
    out, _ = ok(["predict", str(model), "-"], stdin=drawn)
    assert len(out.splitlines()) == 21


def test_a_model_from_a_file_without_header_predicts_by_position(tmp_path):
    X, _ = load_faithful()
    np.save(tmp_path / "data.npy", X)
    model = tmp_path / "m.emix"
    ok(["fit", str(tmp_path / "data.npy"), "--save", str(model), "-q"])
    assert getattr(emix.load(model), "feature_names_in_", None) is None
    named = tmp_path / "named.csv"
    np.savetxt(named, X, delimiter=",", header="a,b", comments="", fmt="%.17g")
    out, _ = ok(["predict", str(model), str(named)])
    assert len(out.splitlines()) == 273
    assert ok(["sample", str(model), "-n", "1"])[0].startswith("column 1,column 2,component")


def test_a_live_line_is_cleared_before_an_error(tmp_path):
    terminal = Terminal()
    code, _, err = run(["fit", str(tmp_path / "missing.csv")], stderr=terminal)
    assert code == 2
    assert err.splitlines()[-1].lstrip("\r ").startswith("emix: error: no such file")
    assert "...emix" not in err


def test_predict_needs_the_models_columns(tmp_path, model_file):
    path = tmp_path / "three.csv"
    np.savetxt(path, np.ones((4, 3)), delimiter=",")
    one_line_error(["predict", str(model_file), str(path)],
                   "has 3 columns (column 1, column 2, column 3) but the model was fitted "
                   "on 2 (eruptions, waiting)")
    one_line_error(["predict", str(model_file), str(path), "--columns", "2"],
                   "--columns selects 1 column (column 2) but the model was fitted on 2")
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("a,waiting\n1,2\n3,4\n")
    one_line_error(["predict", str(model_file), str(renamed)], "lacks the column(s) 'eruptions'")
    ok(["predict", str(model_file), str(renamed), "--columns", "a,waiting"])
    one_line_error(["plot", str(model_file), str(renamed), "-o", str(tmp_path / "x.png")],
                   "lacks the column(s) 'eruptions'")


def test_outputs_are_checked_before_the_work(tmp_path, model_file, faithful_csv):
    one_line_error(["fit", "--save", str(tmp_path / "no" / "m.emix")], "no such directory")
    one_line_error(["fit", "--save", str(tmp_path)], "it is a directory")
    data = faithful_csv.read_bytes()
    one_line_error(["fit", str(faithful_csv), "--save", str(faithful_csv)], "is an input")
    one_line_error(["predict", str(model_file), str(faithful_csv), "-o", str(faithful_csv)],
                   "is an input")
    one_line_error(["sample", str(model_file), "-n", "2", "-o", str(model_file)], "is an input")
    assert faithful_csv.read_bytes() == data and emix.load(model_file).n_components == 2
    one_line_error(["sample", str(model_file), "-n", "2", "-o", str(tmp_path / "x.parquet")],
                   "csv or .json")
    one_line_error(["fit", "--save", str(tmp_path / "same"), "--plot", str(tmp_path / "same")],
                   "must end in")
    one_line_error(["fit", "--save", str(tmp_path / "a.png"), "--plot", str(tmp_path / "a.png")],
                   "--plot and --save both write")
    one_line_error(["fit", "--save", ""], "--save needs a file name")
    one_line_error(["fit", "--save", str(faithful_csv / "m.emix")], "is a file, not a directory")
    assert not (tmp_path / "a.png").exists()


def test_a_feature_named_component_does_not_clash_with_the_labels(tmp_path):
    path = tmp_path / "c.csv"
    rng = np.random.default_rng(0)
    np.savetxt(path, rng.normal(size=(40, 2)), delimiter=",", header="component,y",
               comments="")
    model = tmp_path / "c.emix"
    ok(["fit", str(path), "-k", "1", "--save", str(model), "-q"])
    rows = json.loads(ok(["sample", str(model), "-n", "3", "--format", "json"])[0])
    assert set(rows[0]) == {"component", "y", "_component"}


def test_an_unwritable_output_leaves_no_file(tmp_path, model_file):
    one_line_error(["sample", str(model_file), "-n", "3", "-o", str(tmp_path / "no" / "x.csv")],
                   "no")
    assert not (tmp_path / "no").exists()


def test_a_closed_pipe_ends_the_command_quietly(model_file):
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    err = io.StringIO()
    code = main(["sample", str(model_file), "-n", "100000"], stdout=ClosedPipe(), stderr=err)
    assert code == 0 and err.getvalue() == ""


def test_help_on_each_command_has_examples():
    code, out, _ = run([])
    assert code == 2 and "fit" in out
    assert run(["--version"])[0] == 0
    for command in ("fit", "predict", "sample", "show", "plot", "demo"):
        code, out, _ = run([command, "--help"])
        assert code == 0 and "examples:" in out and f"emix {command}" in out


def test_a_genuine_bug_exits_1_with_a_traceback(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli._COMMANDS, "fit", broken)
    monkeypatch.setattr("sys.argv", ["emix", "fit"])
    with pytest.raises(SystemExit) as exit_info:
        cli.entry_point()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error (a bug)" in err


# -- hostile input and interrupts, through the command -----------------------------------

#: The console script, next to the interpreter running the tests.
EMIX = str(Path(sys.executable).with_name("emix"))

BOM_ROWS = b"\xef\xbb\xbf1,2\n3,4\n5,6\n7,8\n"


def command(argv, *, stdin=None, feed=None, address_space=2 << 30, timeout=120):
    """Run ``argv`` in a process of its own that may map at most
    ``address_space`` bytes (BLAS on one thread, whose buffers would count);
    ``feed`` is written to its standard input as it reads.  Returns (status,
    stdout, stderr)."""
    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen(argv, stdin=stdin if feed is None else subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=limited, env=environment)

    def write():
        try:
            for chunk in feed:
                child.stdin.write(chunk)
            child.stdin.close()
        except OSError:  # the command stopped reading: what the tests want
            pass

    writer = threading.Thread(target=write) if feed is not None else None
    if writer is not None:
        writer.start()
    timer = threading.Timer(timeout, child.kill)
    timer.start()
    out, err = child.stdout.read(), child.stderr.read()
    child.wait()
    timer.cancel()
    if writer is not None:
        writer.join()
    return child.returncode, out.decode(), err.decode()


def test_a_byte_order_mark_on_standard_input_is_not_a_row():
    code, out, err = run(["fit", "-", "-k", "1", "--format", "json"],
                         stdin=BOM_ROWS.decode("utf-8"))
    assert code == 0, err
    assert json.loads(out)["data"]["n_samples"] == 4
    code, out, err = command([EMIX, "fit", "-", "-k", "1", "--format", "json"],
                             feed=[BOM_ROWS])
    assert code == 0, err
    assert json.loads(out)["data"] == {"source": "standard input", "n_samples": 4,
                                       "features": ["column 1", "column 2"]}


def test_pairs_that_may_be_decimal_commas_are_fitted_with_a_warning():
    code, out, err = run(["fit", "-", "-k", "1", "--format", "json"],
                         stdin="1,5\n2,25\n3,75\n4,5\n5,125\n")
    assert code == 0, err
    assert json.loads(out)["data"]["features"] == ["column 1", "column 2"]
    warning = [line for line in err.splitlines() if "ambiguous" in line]
    assert len(warning) == 1 and warning[0].startswith(
        "emix: warning: standard input is ambiguous: it was read as 2 columns")
    assert "tr , . < FILE" in warning[0] and "add a header line" in warning[0]
    code, _, err = run(["fit", "-", "-k", "1"], stdin="x,y\n1,5\n2,25\n3,75\n4,5\n")
    assert code == 0 and "ambiguous" not in err


def test_text_without_line_breaks_is_refused_in_bounded_memory(tmp_path):
    # 3 GiB on one line, to a process that may map 2 GiB: it must stop reading.
    megabyte = b"1" * 2**20
    started = time.monotonic()
    code, _, err = command([EMIX, "fit", "-"], feed=(megabyte for _ in range(3 << 10)))
    assert code == 2, err
    assert err == ("emix: error: standard input has a line longer than 16,777,216 characters, "
                   "the most a text table's row may hold: is it text at all? Rows must end in "
                   "line breaks; save a table this wide as .npy or Parquet\n")
    assert time.monotonic() - started < 60
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    (tmp_path / "zero").symlink_to("/dev/zero")
    with open("/dev/zero", "rb") as zero:
        runs = [command([EMIX, "fit", "-"], stdin=zero)] + [
            command([EMIX, "fit", str(tmp_path / name)]) for name in ("zero.csv", "zero")]
    for (code, _, err), label in zip(runs, ["standard input", f"'{tmp_path}/zero.csv'",
                                            f"'{tmp_path}/zero'"], strict=True):
        assert code == 2, err
        assert err.startswith(f"emix: error: {label} is not a text file; supported formats")
        assert err.count("\n") == 1


def test_parquet_beyond_float64_and_damaged_in_the_command(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "ids.parquet"
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"x": rng.normal(size=50),
                             "id": pa.array(2**62 + np.arange(50), pa.int64())}), path)
    code, out, err = run(["fit", str(path), "-k", "1", "--format", "json"])
    assert code == 0, err
    assert json.loads(out)["data"]["n_samples"] == 50
    assert f"emix: warning: '{path}': column 'id' holds integers beyond 2**53 (first at data " \
           "row 1: 4611686018427387904)" in err and "Traceback" not in err
    whole = path.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(whole[:-100])
    one_line_error(["fit", str(tmp_path / "cut.parquet")], "is not a valid Parquet file")


def test_running_out_of_memory_is_one_line_with_a_remedy(monkeypatch):
    def too_large(*args, **kwargs):
        raise MemoryError("Unable to allocate 6.71 GiB for an array with shape "
                          "(1, 30000, 30000) and data type float64")

    monkeypatch.setattr(cli.GaussianMixture, "fit", too_large)
    one_line_error(["fit"], "emix: error: not enough memory (Unable to allocate 6.71 GiB for an "
                            "array with shape (1, 30000, 30000) and data type float64); fit "
                            "fewer columns (--columns), a covariance with fewer parameters "
                            "(--covariance diag)")


def interrupted(argv, delays):
    """Run the command once per delay and send it SIGINT that long after
    NumPy starts to load.  Python's own start-up, before emix's first line
    runs, is not emix's to guard: the delays count from a moment well after
    emix.__main__ installed its handler (the import of NumPy, as the
    interpreter reports it with PYTHONPROFILEIMPORTTIME)."""
    environment = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    outcomes = []
    for delay in delays:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=environment)
        before = []
        for line in child.stderr:
            before.append(line)
            if b"numpy" in line:
                break
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        _, rest = child.communicate(timeout=120)
        err = b"".join([*before, rest]).decode()
        err = "".join(line for line in err.splitlines(keepends=True)
                      if not line.startswith("import time:"))
        outcomes.append((delay, child.returncode, err))
    return outcomes


@pytest.mark.parametrize("argv", [[EMIX, "fit", "-q"], [sys.executable, "-m", "emix", "fit",
                                                        "-q"]], ids=["script", "python -m"])
def test_ctrl_c_at_any_moment_is_one_line_and_status_130(argv):
    for delay, code, err in interrupted(argv, [0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5]):
        assert "Traceback" not in err and "Exception ignored" not in err, (delay, err)
        if delay <= 0.1:  # SciPy and the rest of emix are still loading
            assert code == 130, (delay, code, err)
        # After the command: finished first (0), or killed by the signal in the
        # interpreter's last moments, after Python restored the default action
        # (the shell reports 130 for it too).
        assert (code, err) in ((130, "\nemix: interrupted\n"), (0, ""), (-signal.SIGINT, "")), \
            (delay, code, err)


def test_an_interrupt_dropped_in_a_callback_still_ends_the_command(monkeypatch, capsys):
    class InterruptedInDel:
        def __del__(self):
            raise KeyboardInterrupt  # as Ctrl-C in numba's ctypes callbacks: printed, dropped

    def slow_command(*args, **kwargs):
        InterruptedInDel()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return 0

    handler, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    monkeypatch.setitem(cli._COMMANDS, "fit", slow_command)
    monkeypatch.setattr("sys.argv", ["emix", "fit"])
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        cli.entry_point()
    assert exit_info.value.code == 130 and time.monotonic() - started < 5
    assert capsys.readouterr().err == "\nemix: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook is hook


def test_a_checkpoint_is_no_output_of_the_same_command_nor_its_input(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n" + "\n".join(f"{i % 7},{i % 5}" for i in range(40)) + "\n")
    one_line_error(["fit", "-q", "--checkpoint", str(tmp_path / "c"), "--save",
                    str(tmp_path / "c")], "--save and --checkpoint both write")
    one_line_error(["fit", str(data), "-q", "--checkpoint", str(data)],
                   "is an input of this command")
    assert data.read_text().startswith("a,b\n")


def test_a_range_of_components_too_long_to_fit_is_refused_at_once():
    one_line_error(["fit", "-q", "-k", "1..99999999999999999999"],
                   "asks for 1e+20 models; at most 1000")
