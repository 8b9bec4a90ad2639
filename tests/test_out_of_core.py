"""Fits that read the data a chunk at a time (chunk sources, memory maps,
.npy / Parquet / CSV files) equal the in-memory fit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emix import GaussianMixture
from emix.exceptions import InvalidInputError
from emix.execution.chunked import ChunkedData
from emix.execution.memory import InMemoryData
from emix.execution.summary import RowSample

from conftest import COVARIANCE_TYPES, blobs, fixed_init

# The fits run a fixed number of iterations (tol=0), so that sources compare
# iteration by iteration; that they stop at max_iter is expected.
pytestmark = pytest.mark.filterwarnings("ignore::emix.exceptions.ConvergenceWarning")

N, D, K = 3000, 3, 3
EXACT = 1e-10


@pytest.fixture(scope="module")
def data():
    X, labels = blobs(N, D, K, seed=7, return_labels=True)
    weights = np.random.default_rng(1).integers(0, 4, size=N).astype(float)
    return X, labels, weights


def _model(covariance_type, X, labels, **extra):
    return GaussianMixture(K, covariance_type=covariance_type, tol=0.0, max_iter=15,
                           **fixed_init(X, K, covariance_type, labels=labels), **extra)


def assert_same_fit(a, b, rtol=EXACT):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        x, y = getattr(a, name), getattr(b, name)
        scale = np.abs(x).max()
        assert np.abs(x - y).max() <= rtol * scale, (name, np.abs(x - y).max() / scale)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol, atol=0)


def _chunks_of(X, rows, weights=None):
    def source():
        for start in range(0, X.shape[0], rows):
            if weights is None:
                yield X[start:start + rows]
            else:
                yield X[start:start + rows], weights[start:start + rows]
    return source


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_every_source_gives_the_in_memory_fit(covariance_type, data, tmp_path):
    X, labels, _ = data
    reference = _model(covariance_type, X, labels).fit(X)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    sources = {
        "chunk source": _chunks_of(X, 700),
        "memmap": mapped,
        ".npy path": tmp_path / "X.npy",
    }
    for what, source in sources.items():
        fitted = _model(covariance_type, X, labels, chunk_size=500).fit(source)
        assert_same_fit(reference, fitted), what


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parquet_and_csv_files_give_the_in_memory_fit(covariance_type, data, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, labels, _ = data
    reference = _model(covariance_type, X, labels).fit(X)
    table = pa.table({f"x{j}": X[:, j] for j in range(D)})
    pq.write_table(table, tmp_path / "X.parquet", row_group_size=1000)
    np.savetxt(tmp_path / "X.csv", X, delimiter=",", header="a,b,c", comments="",
               fmt="%.17g")
    for path in (tmp_path / "X.parquet", tmp_path / "X.csv"):
        fitted = _model(covariance_type, X, labels, chunk_size=400).fit(str(path))
        assert_same_fit(reference, fitted), path


def test_weights_carried_by_the_chunks_or_given_apart(data):
    X, labels, weights = data
    reference = _model("full", X, labels).fit(X, sample_weight=weights)
    carried = _model("full", X, labels).fit(_chunks_of(X, 640, weights))
    apart = _model("full", X, labels).fit(_chunks_of(X, 640), sample_weight=weights)
    assert_same_fit(reference, carried)
    assert_same_fit(reference, apart)


def test_initialisation_from_all_rows_matches_in_memory(data):
    """With at most SAMPLE_ROWS rows the initialisation sees every row, in
    order, and spends no randomness on sampling: k-means inits coincide."""
    X, _, weights = data
    reference = GaussianMixture(K, random_state=3, max_iter=10).fit(X, sample_weight=weights)
    chunked = GaussianMixture(K, random_state=3, max_iter=10).fit(_chunks_of(X, 999, weights))
    assert_same_fit(reference, chunked)


def test_sample_is_uniform_and_bounded():
    """Bottom-k over chunks: each row equally likely, never above the bound."""
    X = np.arange(1000.0)[:, None]
    data = ChunkedData(_chunks_of(X, 77))
    counts = np.zeros(1000)
    rng = np.random.default_rng(0)
    for _ in range(400):
        rows, w = data.sample(50, rng)
        assert rows.shape == (50, 1) and np.all(np.diff(rows[:, 0]) > 0)
        assert np.all(w == 1)
        counts[rows[:, 0].astype(int)] += 1
    # Each row is drawn with probability 0.05: 20 expected in 400 samples.
    assert abs(counts.mean() - 20) < 1e-9
    chi2 = ((counts - 20) ** 2 / 20).sum()
    assert 850 < chi2 < 1150  # chi-square with 999 degrees of freedom, about +-5 sigma


def test_sample_skips_rows_of_zero_weight():
    X = np.arange(200.0)[:, None]
    weights = np.where(np.arange(200) % 2 == 0, 0.0, 3.0)
    sample = RowSample.of(X, weights, 0, 30, np.random.default_rng(1))
    rows, w = sample.result()
    assert rows.shape == (30, 1) and np.all(rows[:, 0] % 2 == 1) and np.all(w == 3.0)


def test_column_summary_matches_in_memory(data):
    X, _, weights = data
    chunked = ChunkedData(_chunks_of(X, 333, weights)).column_summary()
    in_memory = InMemoryData(X, weights, chunk_rows=512).column_summary()
    for a, b in zip(chunked, in_memory, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    low, high, variance = in_memory
    kept = X[weights > 0]
    np.testing.assert_allclose(variance, np.cov(kept.T, aweights=weights[weights > 0],
                                                ddof=0).diagonal(), rtol=1e-12)
    np.testing.assert_array_equal(low, kept.min(axis=0))
    np.testing.assert_array_equal(high, kept.max(axis=0))


def test_a_generator_is_rejected_with_a_remedy(data):
    X = data[0]
    with pytest.raises(InvalidInputError, match=r"one-shot iterator.*fresh iterator"):
        GaussianMixture(2).fit(x for x in np.array_split(X, 3))


def test_a_source_that_runs_dry_is_reported(data):
    X = data[0]
    chunks = iter(np.array_split(X, 3))
    with pytest.raises(InvalidInputError, match="same rows every time"):
        GaussianMixture(2, max_iter=3).fit(lambda: chunks)


def test_bad_chunks_are_named(data):
    X = data[0]
    bad = X[:100].copy()
    bad[5, 1] = np.nan

    with pytest.raises(InvalidInputError, match=r"chunk 2 of the chunk source contains NaN"):
        GaussianMixture(2).fit(lambda: iter([X[:100], bad]))
    with pytest.raises(InvalidInputError, match=r"chunk 2 .* has 2 columns"):
        GaussianMixture(2).fit(lambda: iter([X[:100], X[:100, :2]]))
    with pytest.raises(InvalidInputError, match="not an iterable of chunks"):
        GaussianMixture(2).fit(lambda: 3)
    with pytest.raises(InvalidInputError, match="sample_weight has 10 weights"):
        GaussianMixture(2).fit(lambda: iter([X[:100]]), sample_weight=np.ones(10))
    with pytest.raises(InvalidInputError, match="gave no rows"):
        GaussianMixture(2).fit(lambda: iter([]))


_PASS_OVER_MAP = """
import sys
import numpy as np
from test_out_of_core import _resident_bytes_of
from emix.execution.chunked import memmap_source
mapped = np.load(sys.argv[1], mmap_mode="r")
before = _resident_bytes_of(sys.argv[1])
for _ in memmap_source(mapped, rows=25_000)():
    pass
print(before, _resident_bytes_of(sys.argv[1]))
"""


def test_a_pass_over_a_memmap_leaves_it_unresident(tmp_path):
    """A pass over a memory map leaves no more of it resident than a chunk
    (in a fresh process: in one that ran a Dask cluster, even a new map's
    pages were resident before anything read them)."""
    n, d = 400_000, 16  # 51 MB
    np.save(tmp_path / "big.npy", np.ones((n, d)))
    result = subprocess.run([sys.executable, "-c", _PASS_OVER_MAP, str(tmp_path / "big.npy")],
                            capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parent)
    before, after = (int(v) for v in result.stdout.split())
    assert after - before < 4 * 25_000 * d * 8, (before, after)


def _resident_bytes_of(path) -> int:
    """Resident bytes of this process's mappings of ``path`` (/proc/self/smaps)."""
    total = 0
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if len(fields) >= 6 and "-" in fields[0]:
                inside = fields[-1] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


@pytest.mark.parametrize("mode", ["r+", "c"])
def test_a_changed_memmap_is_fitted_as_changed(tmp_path, mode):
    """Rows read from a map are the map's, also where they differ from the
    file (a copy-on-write map) or were written just before the fit."""
    from emix.execution.chunked import memmap_source

    X = blobs(500, 2, 2, seed=3)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode=mode)
    mapped[:10] += 100.0
    read = np.concatenate(list(memmap_source(mapped, rows=64)()))
    np.testing.assert_array_equal(read, np.asarray(mapped))


def test_model_selection_over_a_source_equals_in_memory(data, tmp_path):
    from emix import select

    X, _, weights = data
    np.save(tmp_path / "X.npy", X)
    grid = {"n_components": [1, 2, 3], "covariance_types": ["full", "diag"],
            "random_state": 0, "criterion": "icl"}
    reference = select(X, sample_weight=weights, **grid)
    for source in (tmp_path / "X.npy", _chunks_of(X, 800)):
        result = select(source, sample_weight=weights, **grid)
        assert result.n_samples == reference.n_samples
        for a, b in zip(reference.candidates, result.candidates, strict=True):
            assert (a.n_components, a.covariance_type) == (b.n_components, b.covariance_type)
            for name in ("log_likelihood", "bic", "aic", "icl"):
                assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-10), name
        assert result.best_candidate.label == reference.best_candidate.label
