"""Pictures of fitted mixtures: what is drawn must match the model."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # before pyplot: no display in tests

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

import emix  # noqa: E402
from emix import plotting  # noqa: E402
from emix.datasets import load_faithful  # noqa: E402
from emix.exceptions import InvalidInputError, NotFittedError  # noqa: E402
from emix.families.covariance import COVARIANCE_MODELS  # noqa: E402


# --------------------------------------------------------------------------- #
# Fixtures: small fitted models, shared by the module to keep it fast
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def faithful():
    X, names = load_faithful()
    return X, names, emix.GaussianMixture(3, random_state=0).fit(X)


@pytest.fixture(scope="module")
def one_dimensional():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2.0, 0.7, 300), rng.normal(2.5, 1.0, 200)])
    return X, emix.GaussianMixture(2, random_state=0).fit(X)


def _clusters(n_features: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([np.full(n_features, -3.0), np.full(n_features, 3.0)])
    labels = rng.integers(2, size=300)
    return centres[labels] + rng.normal(size=(300, n_features))


@pytest.fixture(scope="module")
def three_dimensional():
    X = _clusters(3, seed=1)
    return X, emix.GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)


@pytest.fixture
def axes():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def _ellipses(ax) -> list[Ellipse]:
    return [patch for patch in ax.patches if isinstance(patch, Ellipse)]


def _contour_sets(ax) -> list[ContourSet]:
    return [artist for artist in ax.get_children() if isinstance(artist, ContourSet)]


def _scatter_collections(ax) -> list[PathCollection]:
    return [c for c in ax.collections
            if isinstance(c, PathCollection) and not isinstance(c, ContourSet)]


def _integral(y: np.ndarray, x: np.ndarray) -> float:
    # the trapezoid rule, written out: np.trapezoid is numpy >= 2 only
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def _full(model, n_features):
    return COVARIANCE_MODELS[model.covariance_type].full_matrices(
        np.asarray(model.covariances_, float), model.n_components, n_features)


# --------------------------------------------------------------------------- #
# Palette and lazy import
# --------------------------------------------------------------------------- #
def test_palette_is_okabe_ito():
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
                 "#CC79A7", "#000000"}
    assert len(plotting.PALETTE) == 8
    assert set(plotting.PALETTE) == okabe_ito


def test_importing_plotting_does_not_import_matplotlib():
    code = "import emix.plotting, sys; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_missing_matplotlib_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(InvalidInputError, match=r"emix\[plot\]"):
        plotting.figure_with_axes()


# --------------------------------------------------------------------------- #
# plot_density
# --------------------------------------------------------------------------- #
def test_density_lines_sum_to_a_normalised_mixture(one_dimensional, axes):
    X, model = one_dimensional
    returned = plotting.plot_density(model, X, ax=axes)
    assert returned is axes

    labels = [line.get_label() for line in axes.lines]
    assert labels == ["component 1", "component 2", "mixture"]
    *components, mixture = axes.lines
    grid = mixture.get_xdata()
    component_sum = np.sum([line.get_ydata() for line in components], axis=0)
    assert np.allclose(mixture.get_ydata(), component_sum)
    assert _integral(mixture.get_ydata(), grid) == pytest.approx(1.0, abs=1e-3)

    # each component line is the weighted normal density of that component
    k = 0
    mean, var = model.means_[k, 0], _full(model, 1)[k, 0, 0]
    expected = model.weights_[k] * np.exp(-0.5 * (grid - mean) ** 2 / var) / np.sqrt(
        2 * np.pi * var)
    assert np.allclose(components[k].get_ydata(), expected)

    assert to_rgba(components[1].get_color()) == to_rgba(plotting.PALETTE[1])
    assert to_rgba(mixture.get_color()) == to_rgba("black")
    assert len(axes.patches) > 3  # the histogram's bars
    assert axes.get_xlabel() == "feature 1"
    assert axes.get_ylabel() == "density"
    assert axes.get_title()
    assert [t.get_text() for t in axes.get_legend().get_texts()] == labels


def test_density_of_one_feature_of_many(faithful, axes):
    X, names, model = faithful
    plotting.plot_density(model, X, ax=axes, feature=1, feature_name=names[1])
    mixture = axes.lines[-1]
    full = _full(model, 2)
    grid = mixture.get_xdata()
    expected = sum(w * np.exp(-0.5 * (grid - m) ** 2 / v) / np.sqrt(2 * np.pi * v)
                   for w, m, v in zip(model.weights_, model.means_[:, 1], full[:, 1, 1],
                                      strict=True))
    assert np.allclose(mixture.get_ydata(), expected)
    assert len(axes.lines) == model.n_components + 1
    assert axes.get_xlabel() == "waiting"
    low, high = axes.get_xlim()
    assert low < X[:, 1].min() and high > X[:, 1].max()


@pytest.mark.parametrize("covariance_type", ["tied", "diag", "spherical"])
def test_marginal_densities_of_every_structure_match_scipy(faithful, axes, covariance_type):
    """Independent of the full-matrix expansion: the variance of feature 1
    read straight from ``covariances_`` in each structure's own shape."""
    from scipy import stats

    X = faithful[0]
    model = emix.GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    plotting.plot_density(model, X, ax=axes, feature=1)
    variance = {"tied": lambda k: model.covariances_[1, 1],
                "diag": lambda k: model.covariances_[k, 1],
                "spherical": lambda k: model.covariances_[k]}[covariance_type]
    for k, line in enumerate(axes.lines[:2]):
        expected = model.weights_[k] * stats.norm.pdf(
            line.get_xdata(), model.means_[k, 1], np.sqrt(variance(k)))
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-10)


def test_frequency_weights_shape_the_histogram_and_the_scatter(faithful):
    X, _, model = faithful
    weights = np.where(np.arange(len(X)) % 3 == 0, 0.0, 2.0)
    figure = Figure()
    density = plotting.plot_density(model, X, ax=figure.add_subplot(1, 2, 1), feature=0,
                                    sample_weight=weights)
    heights = np.array([patch.get_height() for patch in density.patches])
    edges = np.array([patch.get_x() for patch in density.patches]
                     + [density.patches[-1].get_x() + density.patches[-1].get_width()])
    expected, _ = np.histogram(X[weights > 0, 0], bins=edges, density=True)
    np.testing.assert_allclose(heights, expected)
    clusters = plotting.plot_clusters(model, X, ax=figure.add_subplot(1, 2, 2),
                                      sample_weight=weights)
    (scatter,) = _scatter_collections(clusters)
    np.testing.assert_array_equal(scatter.get_offsets(), X[weights > 0])


def test_density_rejects_bad_feature_and_wrong_width(faithful, one_dimensional, axes):
    X, _, model = faithful
    with pytest.raises(InvalidInputError, match="feature"):
        plotting.plot_density(model, X, ax=axes, feature=2)
    X1, _ = one_dimensional
    with pytest.raises(InvalidInputError, match="features"):
        plotting.plot_density(model, X1, ax=axes)


def test_unfitted_model_is_refused(one_dimensional, axes):
    X, _ = one_dimensional
    with pytest.raises(NotFittedError):
        plotting.plot_density(emix.GaussianMixture(2), X, ax=axes)
    with pytest.raises(NotFittedError):
        plotting.plot_trace(emix.GaussianMixture(2), ax=axes)


# --------------------------------------------------------------------------- #
# plot_clusters
# --------------------------------------------------------------------------- #
def test_cluster_ellipses_match_the_covariances(faithful, axes):
    X, names, model = faithful
    plotting.plot_clusters(model, X, ax=axes, feature_names=names)
    K = model.n_components
    ellipses = _ellipses(axes)
    assert len(ellipses) == 2 * K

    full = _full(model, 2)
    for k in range(K):
        eigenvalues, _ = np.linalg.eigh(full[k])
        for n_sigma, ellipse in zip((1, 2), ellipses[2 * k: 2 * k + 2], strict=True):
            assert np.allclose(ellipse.center, model.means_[k])
            assert ellipse.width == pytest.approx(2 * n_sigma * np.sqrt(eigenvalues[1]))
            assert ellipse.height == pytest.approx(2 * n_sigma * np.sqrt(eigenvalues[0]))
            # the orientation: rebuilding the covariance from the ellipse gives it back
            theta = np.radians(ellipse.angle)
            rotation = np.array([[np.cos(theta), -np.sin(theta)],
                                 [np.sin(theta), np.cos(theta)]])
            semi_axes = np.diag([ellipse.width / 2, ellipse.height / 2]) / n_sigma
            rebuilt = rotation @ semi_axes**2 @ rotation.T
            assert np.allclose(rebuilt, full[k], rtol=1e-6, atol=1e-9)
            assert not ellipse.get_fill()
            assert to_rgba(ellipse.get_edgecolor())[:3] == to_rgba(plotting.PALETTE[k])[:3]
        assert ellipses[2 * k].get_linestyle() in ("-", "solid")
        assert ellipses[2 * k + 1].get_linestyle() in ("--", "dashed")


def test_cluster_scatter_follows_predict(faithful, axes):
    X, names, model = faithful
    plotting.plot_clusters(model, X, ax=axes, feature_names=names)
    scatters = _scatter_collections(axes)
    assert len(scatters) == 1
    (scatter,) = scatters
    assert np.allclose(scatter.get_offsets(), X)
    labels = model.predict(X)
    expected = np.array([to_rgba(plotting.PALETTE[label])[:3] for label in labels])
    assert np.allclose(scatter.get_facecolors()[:, :3], expected)
    assert len(np.unique(labels)) == model.n_components  # the check is not vacuous

    assert axes.get_xlabel() == "eruptions"
    assert axes.get_ylabel() == "waiting"
    assert axes.get_title()
    legend_texts = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend_texts == [f"component {k + 1}" for k in range(model.n_components)]
    means = [line for line in axes.lines if line.get_marker() == "x"]
    assert len(means) == 1
    assert np.allclose(np.column_stack(means[0].get_data()), model.means_)


def test_cluster_contours_only_when_asked(faithful):
    X, _, model = faithful
    fig, (with_contours, without) = plt.subplots(1, 2)
    try:
        plotting.plot_clusters(model, X, ax=with_contours)
        plotting.plot_clusters(model, X, ax=without, contours=False)
        (contours,) = _contour_sets(with_contours)
        levels = np.asarray(contours.levels)
        assert levels.size >= 3
        ratios = levels[1:] / levels[:-1]
        assert np.allclose(ratios, ratios[0])  # log-spaced
        assert _contour_sets(without) == []
        assert with_contours.get_xlabel() == "feature 1"
        assert with_contours.get_ylabel() == "feature 2"
        # the view covers all the data either way
        for ax in (with_contours, without):
            x_low, x_high = ax.get_xlim()
            y_low, y_high = ax.get_ylim()
            assert x_low <= X[:, 0].min() and x_high >= X[:, 0].max()
            assert y_low <= X[:, 1].min() and y_high >= X[:, 1].max()
    finally:
        plt.close(fig)


def test_clusters_need_two_distinct_features(faithful, one_dimensional, axes):
    X, _, model = faithful
    with pytest.raises(InvalidInputError, match="different"):
        plotting.plot_clusters(model, X, ax=axes, features=(1, 1))
    with pytest.raises(InvalidInputError, match="one name per column"):
        plotting.plot_clusters(model, X, ax=axes, feature_names=["only one"])
    X1, model1 = one_dimensional
    with pytest.raises(InvalidInputError, match="two features"):
        plotting.plot_clusters(model1, X1, ax=axes)


# --------------------------------------------------------------------------- #
# plot_pairs and plot_fit
# --------------------------------------------------------------------------- #
def test_pairs_grid(three_dimensional):
    X, model = three_dimensional
    K = model.n_components
    fig = Figure()
    axes = plotting.plot_pairs(model, X, fig=fig, feature_names=["a", "b", "c"])
    assert isinstance(axes, np.ndarray)
    assert axes.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            ax = axes[i, j]
            if i == j:
                assert len(ax.lines) == K + 1
                assert _ellipses(ax) == []
            else:
                assert len(_ellipses(ax)) == 2 * K
                assert _contour_sets(ax) == []
                assert np.allclose(_scatter_collections(ax)[0].get_offsets(), X[:, [j, i]])
    assert [ax.get_xlabel() for ax in axes[-1]] == ["a", "b", "c"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["a", "b", "c"]
    assert all(ax.get_legend() is None for ax in axes.flat)  # one legend for the grid
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "component 1", "component 2", "mixture"]
    # a column shows one feature horizontally, a row one feature vertically
    assert axes[0, 1].get_xlim() == axes[1, 1].get_xlim() == axes[2, 1].get_xlim()
    assert axes[2, 0].get_ylim() == axes[2, 1].get_ylim()


def test_plot_fit_picks_the_picture_by_dimension(one_dimensional, faithful):
    X1, model1 = one_dimensional
    fig = plotting.plot_fit(model1, X1)
    assert isinstance(fig, Figure)
    assert fig not in [plt.figure(n) for n in plt.get_fignums()]  # pyplot-free
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 3

    X2, names, model2 = faithful
    fig = plotting.plot_fit(model2, X2, feature_names=names)
    assert len(fig.axes) == 1
    assert len(_ellipses(fig.axes[0])) == 2 * model2.n_components
    assert fig.axes[0].get_xlabel() == "eruptions"

    X4 = _clusters(4, seed=2)
    model4 = emix.GaussianMixture(2, covariance_type="spherical", random_state=0).fit(X4)
    fig = plotting.plot_fit(model4, X4)
    assert len(fig.axes) == 16


# --------------------------------------------------------------------------- #
# plot_trace
# --------------------------------------------------------------------------- #
def test_trace_draws_lower_bounds(faithful, axes):
    _, _, model = faithful
    plotting.plot_trace(model, ax=axes)
    (line,) = axes.lines
    assert len(line.get_xdata()) == model.n_iter_ + 1
    assert np.array_equal(line.get_xdata(), np.arange(model.n_iter_ + 1))
    assert np.allclose(line.get_ydata(), model.lower_bounds_)
    assert line.get_marker() not in (None, "None", "")
    assert axes.get_xlabel() == "iteration"
    assert axes.get_ylabel() == "log-likelihood per sample"
    assert model.convergence_state_ in axes.get_title()


def test_trace_creates_axes_when_none_given(faithful):
    _, _, model = faithful
    ax = plotting.plot_trace(model)
    try:
        assert len(ax.lines) == 1
    finally:
        plt.close(ax.figure)


# --------------------------------------------------------------------------- #
# plot_selection
# --------------------------------------------------------------------------- #
@dataclass
class Candidate:
    n_components: int
    covariance_type: str
    bic: float
    aic: float
    icl: float
    error: str | None = None


def _selection_result(higher_is_better: bool = False):
    rows = {
        ("full", 1): 900.0, ("full", 2): 700.0, ("full", 3): 650.0, ("full", 4): 680.0,
        ("diag", 1): 950.0, ("diag", 2): float("nan"), ("diag", 3): 720.0,
        ("diag", 4): 730.0,
        ("spherical", 1): 990.0, ("spherical", 2): 800.0, ("spherical", 3): 760.0,
        ("spherical", 4): 770.0,
    }
    # listed out of order on purpose: the plot sorts by K and orders the types
    candidates = [Candidate(k, cov, value, value - 20, value + 30,
                            None if np.isfinite(value) else "collapsed")
                  for (cov, k), value in reversed(rows.items())]
    best = next(c for c in candidates if (c.covariance_type, c.n_components) == ("full", 3))
    return SimpleNamespace(criterion="bic", higher_is_better=higher_is_better,
                           candidates=candidates, best_candidate=best), rows


def test_selection_curves(axes):
    result, rows = _selection_result()
    plotting.plot_selection(result, ax=axes)
    assert [line.get_label() for line in axes.lines] == ["full", "diag", "spherical"]
    for line in axes.lines:
        cov = line.get_label()
        ks = [k for (c, k), v in rows.items() if c == cov and np.isfinite(v)]
        assert list(line.get_xdata()) == ks
        assert list(line.get_ydata()) == [rows[cov, k] for k in ks]
    diag = axes.lines[1]
    assert 2 not in list(diag.get_xdata())  # the failed fit is skipped
    colours = {to_rgba(line.get_color()) for line in axes.lines}
    assert len(colours) == 3

    (winner,) = _scatter_collections(axes)
    assert np.allclose(winner.get_offsets(), [[3, 650.0]])
    annotations = [child.get_text() for child in axes.texts]
    assert any("best: K=3, full" in text for text in annotations)

    assert axes.get_ylabel() == "BIC (lower is better)"
    assert axes.get_xlabel() == "number of components K"
    assert list(axes.get_xticks()) == [1, 2, 3, 4]
    assert axes.get_legend() is not None


def test_selection_mclust_convention_and_other_criterion(axes):
    result, rows = _selection_result(higher_is_better=True)
    result.criterion = "icl"
    plotting.plot_selection(result, ax=axes)
    assert axes.get_ylabel() == "ICL (higher is better, mclust)"
    assert list(axes.lines[0].get_ydata()) == [rows["full", k] + 30 for k in (1, 2, 3, 4)]


def test_selection_curves_of_a_real_selection(faithful, axes):
    X = faithful[0]
    result = emix.select(X, [1, 2, 3], ["full", "spherical"], random_state=0)
    plotting.plot_selection(result, ax=axes)
    curves = {line.get_label(): line for line in axes.lines if line.get_label() in
              ("full", "spherical")}
    for cov, line in curves.items():
        expected = [c.bic for c in result.candidates if c.covariance_type == cov]
        np.testing.assert_allclose(line.get_ydata(), expected)
    assert len(curves) == 2 and "BIC (lower is better)" == axes.get_ylabel()


def test_selection_without_a_winner(axes):
    class AllFailed:
        criterion = "aic"
        higher_is_better = False
        candidates = (Candidate(1, "full", np.nan, np.nan, np.nan, "singular"),
                      Candidate(2, "full", np.nan, np.nan, np.nan, "singular"))

        @property
        def best_candidate(self):
            return [][0]  # what a ranking with no fitted candidate gives

    plotting.plot_selection(AllFailed(), ax=axes)
    (line,) = axes.lines
    assert line.get_label() == "full (all fits failed)"
    assert len(line.get_xdata()) == 0
    assert _scatter_collections(axes) == []


def test_selection_rejects_unknown_criterion(axes):
    result, _ = _selection_result()
    result.criterion = "likelihood"
    with pytest.raises(InvalidInputError, match="criterion"):
        plotting.plot_selection(result, ax=axes)


# --------------------------------------------------------------------------- #
# save_figure
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def small_figure(faithful):
    X, names, model = faithful
    fig, ax = plotting.figure_with_axes(size=(4, 3))
    plotting.plot_clusters(model, X, ax=ax, feature_names=names, contours=False)
    return fig


def test_figure_with_axes_is_pyplot_free():
    fig, ax = plotting.figure_with_axes(size=(5.0, 3.0))
    assert isinstance(fig, Figure)
    assert fig.axes == [ax]
    assert tuple(fig.get_size_inches()) == (5.0, 3.0)
    assert fig not in [plt.figure(n) for n in plt.get_fignums()]


def test_save_png_svg_pdf(small_figure, tmp_path):
    png = plotting.save_figure(small_figure, tmp_path / "clusters.png")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5000

    svg = plotting.save_figure(small_figure, str(tmp_path / "clusters.svg"))
    text = svg.read_text(encoding="utf-8")
    assert "<svg" in text
    assert ET.fromstring(text.encode("utf-8")).tag.endswith("svg")

    pdf = plotting.save_figure(small_figure, tmp_path / "clusters.PDF")
    assert pdf.read_bytes().startswith(b"%PDF")

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clusters.PDF", "clusters.png", "clusters.svg"]


def test_save_replaces_an_existing_file(small_figure, tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    plotting.save_figure(small_figure, target)
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_save_rejects_unknown_extension_and_missing_directory(small_figure, tmp_path):
    with pytest.raises(InvalidInputError, match=r"\.jpg.*\.png, \.svg, \.pdf"):
        plotting.save_figure(small_figure, tmp_path / "plot.jpg")
    missing = tmp_path / "no" / "such"
    with pytest.raises(InvalidInputError, match="no such directory") as error:
        plotting.save_figure(small_figure, missing / "plot.png")
    assert str(missing) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_no_temporary_file(tmp_path):
    class Broken:
        def savefig(self, stream, **options):
            stream.write(b"partial")
            raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError, match="renderer failed"):
        plotting.save_figure(Broken(), tmp_path / "plot.svg")
    assert list(tmp_path.iterdir()) == []
