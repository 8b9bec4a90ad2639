"""The emix command, run in-process through main(argv)."""

import io

import numpy as np
import pytest

from emix.cli.main import main
from emix.datasets import load_faithful


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_fit_without_a_file_fits_old_faithful():
    code, out, err = run(["fit"])
    assert code == 0, err
    assert "272 samples x 2 features (eruptions, waiting)" in out
    assert "converged" in out and "BIC" in out and "log-lik" in out
    # The classic two-component solution: about 35.6% short eruptions.
    weights = sorted(float(line.split()[1]) for line in out.splitlines()
                     if line[:1].isdigit() and len(line.split()) == 4)
    np.testing.assert_allclose(weights, [0.356, 0.644], atol=0.002)
    assert "54.48" in out and "79.97" in out  # mean waiting times


def test_fit_a_csv_file(tmp_path):
    X, columns = load_faithful()
    path = tmp_path / "data.csv"
    np.savetxt(path, X, delimiter=",", header=",".join(columns), comments="")
    code, out, err = run(["fit", str(path), "-k", "3", "--covariance", "diag"])
    assert code == 0, err
    assert "3 components, covariance diag" in out
    assert out.count("covariance of component") == 3


def test_fit_a_headerless_tsv_file(tmp_path):
    path = tmp_path / "data.tsv"
    rng = np.random.default_rng(0)
    np.savetxt(path, rng.normal(size=(50, 3)), delimiter="\t")
    code, out, _ = run(["fit", str(path), "-k", "1"])
    assert code == 0
    assert "column 1, column 2, column 3" in out


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "is empty"),
    ("a,b\n1,x\n2,3\n", "column 'b' is not numeric (row 1 holds 'x')"),
    ("a,b\n1,2\n3,nan\n", "contains NaN"),
    ("a,b\n", "has a header but no data rows"),
    ("a,b\n1,2\n3\n", "row 2 has 1 columns, expected 2"),
])
def test_bad_files_give_one_line_and_status_2(tmp_path, content, message):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    code, out, err = run(["fit", str(path)])
    assert code == 2 and out == ""
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["fit", "--covariance", "banana"], "invalid choice: 'banana'"),
    (["fit", "-k", "0"], "expected a positive integer, got 0"),
    (["fit", "-k", "two"], "expected a positive integer, got 'two'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_options_give_one_line_and_status_2(argv, message):
    code, _, err = run(argv)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_help_and_version():
    code, out, _ = run([])
    assert code == 2 and "fit" in out
    code, _, _ = run(["--version"])
    assert code == 0
    code, _, _ = run(["fit", "--help"])
    assert code == 0
