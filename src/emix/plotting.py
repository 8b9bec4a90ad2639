"""Pictures of fitted mixtures: densities, clusters, EM traces and model selection.

matplotlib is an optional extra (``pip install 'emix[plot]'``).  It is imported
inside the functions, never when this module is imported, so that ``emix``
stays light for users who never draw anything.

Every function draws on the Axes (or Figure) it is given and returns it.  Only
when none is given does it create one with :mod:`matplotlib.pyplot`, so that a
notebook displays it; :func:`plot_fit` and :func:`figure_with_axes` create
pyplot-free :class:`~matplotlib.figure.Figure` objects for scripts and servers
without a display.  Nothing here ever calls ``plt.show()``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import as_float_array, check_sample_weight, feature_names_of
from .exceptions import InvalidInputError, not_fitted
from .families.covariance import COVARIANCE_MODELS
from .io.atomic import atomic_output
from .selection import COVARIANCE_ORDER, CRITERIA

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PALETTE",
    "figure_with_axes",
    "plot_clusters",
    "plot_density",
    "plot_fit",
    "plot_pairs",
    "plot_selection",
    "plot_trace",
    "save_figure",
]

#: The Okabe-Ito colour-blind-safe palette; component k is drawn in
#: ``PALETTE[k % 8]``.  Ordered so that the first colours contrast best on
#: white; black comes last because the mixture itself is drawn in black.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

#: The order in which selection curves are drawn (and coloured).
#: Picture formats by file extension.
PICTURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
_HISTOGRAM_COLOUR = "0.82"
_CONTOUR_COLOUR = "0.35"


# --------------------------------------------------------------------------- #
# matplotlib, imported lazily
# --------------------------------------------------------------------------- #
def _matplotlib() -> ModuleType:
    """The matplotlib module, or a clear error saying how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise InvalidInputError(
            "plotting needs matplotlib, which is not installed: "
            "pip install 'emix[plot]' (or pip install matplotlib)."
        ) from exc
    return matplotlib


def _pyplot() -> ModuleType:
    _matplotlib()
    import matplotlib.pyplot as plt

    return plt


def _new_axes() -> Axes:
    # pyplot only when the caller gave no Axes, so notebooks display the result.
    _, ax = _pyplot().subplots()
    return ax


def figure_with_axes(*, size: tuple[float, float] = (6.4, 4.8)) -> tuple[Figure, Axes]:
    """A pyplot-free Figure with one Axes, for scripts without a display.

    Parameters
    ----------
    size : (width, height) in inches

    Returns
    -------
    (Figure, Axes)
    """
    fig = _new_figure(size)
    return fig, fig.add_subplot()


def _new_figure(size: tuple[float, float]) -> Figure:
    _matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


# --------------------------------------------------------------------------- #
# Checks and model geometry
# --------------------------------------------------------------------------- #
def _check_fitted(model: Any) -> None:
    is_fitted = getattr(model, "__sklearn_is_fitted__", None)
    if is_fitted is not None and not is_fitted():
        raise not_fitted(
            f"This {type(model).__name__} instance is not fitted yet. Call 'fit' "
            "before plotting it."
        )


def _checked_data(model: Any, X: Any) -> np.ndarray:
    """X as a float64 (n, d) array with the model's number of features."""
    _check_fitted(model)
    data = as_float_array(X).astype(np.float64, copy=False)
    expected = int(model.n_features_in_)
    if data.shape[1] != expected:
        raise InvalidInputError(
            f"X has {data.shape[1]} features, but the model was fitted on {expected}; "
            "pass the same columns that were used to fit it."
        )
    return data


def _labels(model: Any, X: Any, data: np.ndarray) -> np.ndarray:
    # A data frame keeps its column names so the model can check them.
    source = X if feature_names_of(X) is not None else data
    return np.asarray(model.predict(source), dtype=np.intp)


def _feature_names(model: Any, X: Any, feature_names: Sequence[str] | None,
                   n_features: int) -> list[str]:
    """Explicit names, else the data frame's columns, else the model's, else
    ``feature 1``, ``feature 2``, ..."""
    if feature_names is not None:
        names = [str(name) for name in feature_names]
        if len(names) != n_features:
            raise InvalidInputError(
                f"feature_names has {len(names)} entries but the data have {n_features} "
                "features; give one name per column."
            )
        return names
    for found in (feature_names_of(X), getattr(model, "feature_names_in_", None)):
        if found is not None and len(found) == n_features:
            return [str(name) for name in found]
    return [f"feature {i + 1}" for i in range(n_features)]


def _check_feature_index(feature: Any, n_features: int, name: str) -> int:
    if not isinstance(feature, (int, np.integer)) or not 0 <= feature < n_features:
        raise InvalidInputError(
            f"{name} must be a column index between 0 and {n_features - 1}; got {feature!r}."
        )
    return int(feature)


def full_covariances(model: Any) -> np.ndarray:
    """Every component's covariance as a (K, d, d) float64 array."""
    n_features = np.asarray(model.means_).shape[1]
    return COVARIANCE_MODELS[model.covariance_type].full_matrices(
        np.asarray(model.covariances_, dtype=np.float64), model.n_components, n_features)


def _component_colour(k: int) -> str:
    return PALETTE[k % len(PALETTE)]


def _normal_pdf_1d(x: np.ndarray, mean: float, variance: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mean) ** 2 / variance) / np.sqrt(2.0 * np.pi * variance)


def _normal_pdf_2d(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Bivariate normal density at ``points`` of shape (..., 2)."""
    centred = points - mean
    precision = np.linalg.inv(cov)
    mahalanobis = np.einsum("...i,ij,...j->...", centred, precision, centred)
    return np.exp(-0.5 * mahalanobis) / (2.0 * np.pi * np.sqrt(np.linalg.det(cov)))


def _ellipse_geometry(cov: np.ndarray) -> tuple[float, float, float]:
    """Width, height and angle (degrees) of the 1-sigma ellipse of a 2x2 covariance."""
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues = np.clip(eigenvalues, 0.0, None)  # rounding can make a tiny one negative
    major = eigenvectors[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    return 2.0 * float(np.sqrt(eigenvalues[1])), 2.0 * float(np.sqrt(eigenvalues[0])), angle


# --------------------------------------------------------------------------- #
# Density of one feature
# --------------------------------------------------------------------------- #
def plot_density(model: Any, X: Any, *, ax: Axes | None = None, feature: int = 0,
                 feature_name: str | None = None, bins: Any = "auto",
                 sample_weight: Any = None) -> Axes:
    """Histogram of one feature with each component's and the mixture's marginal density.

    Parameters
    ----------
    model : fitted GaussianMixture
    X : array-like of shape (n_samples, n_features), or (n_samples,) for one feature
    ax : Axes, optional
        Drawn on; a new pyplot Axes when None.
    feature : int
        Column of X to draw.
    feature_name : str, optional
        Axis label; defaults to the column's name or ``feature {feature + 1}``.
    bins : passed to :meth:`~matplotlib.axes.Axes.hist`
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights of the rows, as given to ``fit``: the histogram
        counts a row of weight 2 twice.

    Returns
    -------
    Axes
        With K lines labelled ``component k`` (weighted marginal densities)
        and one black line labelled ``mixture`` (their sum).
    """
    data = _checked_data(model, X)
    feature = _check_feature_index(feature, data.shape[1], "feature")
    name = feature_name or _feature_names(model, X, None, data.shape[1])[feature]
    ax = _new_axes() if ax is None else ax
    weights = check_sample_weight(sample_weight, data.shape[0])
    _draw_density(ax, model, data[:, feature], feature, full_covariances(model), bins,
                  weights)
    ax.set_xlabel(name)
    ax.set_ylabel("density")
    ax.set_title(f"{name}: mixture of {model.n_components} Gaussians")
    ax.legend(fontsize="small", frameon=False)
    return ax


def _draw_density(ax: Axes, model: Any, values: np.ndarray, feature: int,
                  full: np.ndarray, bins: Any, sample_weight: np.ndarray | None) -> None:
    weights = np.asarray(model.weights_, dtype=np.float64)
    means = np.asarray(model.means_, dtype=np.float64)[:, feature]
    variances = full[:, feature, feature]
    stds = np.sqrt(variances)

    if sample_weight is not None and isinstance(bins, str):
        # numpy's bin rules ("auto", ...) take no weights: bin the rows present.
        bins = np.histogram_bin_edges(values[sample_weight > 0], bins=bins)
    ax.hist(values, bins=bins, weights=sample_weight, density=True, color=_HISTOGRAM_COLOUR,
            edgecolor="white", linewidth=0.5)
    # The curves reach far enough for every component to integrate to ~1, but
    # the view stays on the data so a broad component does not squash it.
    low = min(values.min(), float(np.min(means - 6.0 * stds)))
    high = max(values.max(), float(np.max(means + 6.0 * stds)))
    grid = np.linspace(low, high, 1000)
    components = np.array([
        weight * _normal_pdf_1d(grid, mean, variance)
        for weight, mean, variance in zip(weights, means, variances, strict=True)
    ])
    # Components above the mixture: where they do not overlap they coincide with it.
    for k, curve in enumerate(components):
        ax.plot(grid, curve, color=_component_colour(k), linewidth=1.5, zorder=3,
                label=f"component {k + 1}")
    ax.plot(grid, components.sum(axis=0), color="black", linewidth=2.5, zorder=2,
            label="mixture")

    spread = values.max() - values.min()
    margin = 0.05 * spread if spread > 0 else max(float(stds.max()), 1.0)
    ax.set_xlim(values.min() - margin, values.max() + margin)


# --------------------------------------------------------------------------- #
# Clusters in two features
# --------------------------------------------------------------------------- #
def plot_clusters(model: Any, X: Any, *, ax: Axes | None = None,
                  features: tuple[int, int] = (0, 1),
                  feature_names: Sequence[str] | None = None, contours: bool = True,
                  sample_weight: Any = None) -> Axes:
    """Scatter of two features coloured by the predicted component.

    Each component gets its 1- and 2-sigma covariance ellipses (the 2-sigma one
    dashed) from the 2x2 marginal covariance, and its mean marked with an
    ``x``; with ``contours``, log-spaced contours of the two features' marginal
    mixture density are drawn beneath.

    Parameters
    ----------
    model : fitted GaussianMixture
    X : array-like of shape (n_samples, n_features)
        All the columns the model was fitted on (they are needed to predict).
    ax : Axes, optional
        Drawn on; a new pyplot Axes when None.
    features : (int, int)
        Columns for the horizontal and vertical axis.
    feature_names : sequence of str, optional
        One name per column of X; defaults to the data frame's columns or
        ``feature 1``, ``feature 2``, ...
    contours : bool
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights of the rows; rows of weight 0 are not drawn.

    Returns
    -------
    Axes
    """
    data = _checked_data(model, X)
    if data.shape[1] < 2:
        raise InvalidInputError(
            "plot_clusters needs at least two features; use plot_density for one.")
    pair = _check_feature_pair(features, data.shape[1])
    names = _feature_names(model, X, feature_names, data.shape[1])
    ax = _new_axes() if ax is None else ax
    _draw_clusters(ax, model, data, _labels(model, X, data), pair, full_covariances(model),
                   contours, check_sample_weight(sample_weight, data.shape[0]))
    ax.set_xlabel(names[pair[0]])
    ax.set_ylabel(names[pair[1]])
    ax.set_title(f"{model.n_components}-component Gaussian mixture "
                 f"({model.covariance_type} covariance)")
    _component_legend(ax, model.n_components)
    return ax


def _check_feature_pair(features: Any, n_features: int) -> tuple[int, int]:
    try:
        first, second = features
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"features must be a pair of column indices; got {features!r}.") from None
    pair = (_check_feature_index(first, n_features, "features[0]"),
            _check_feature_index(second, n_features, "features[1]"))
    if pair[0] == pair[1]:
        raise InvalidInputError(
            f"features must name two different columns; got {features!r}. "
            "Use plot_density for one feature.")
    return pair


def _draw_clusters(ax: Axes, model: Any, data: np.ndarray, labels: np.ndarray,
                   pair: tuple[int, int], full: np.ndarray, contours: bool,
                   sample_weight: np.ndarray | None) -> None:
    from matplotlib.patches import Ellipse

    index = np.asarray(pair)
    means = np.asarray(model.means_, dtype=np.float64)[:, index]
    covariances = full[:, index[:, None], index[None, :]]
    shown = slice(None) if sample_weight is None else sample_weight > 0
    points, labels = data[shown][:, index], labels[shown]

    if contours:
        _draw_density_contours(ax, model, points, means, covariances)

    colours = [_component_colour(int(label)) for label in labels]
    ax.scatter(points[:, 0], points[:, 1], c=colours, s=12, alpha=0.6, edgecolors="none",
               zorder=2)
    for k, (mean, cov) in enumerate(zip(means, covariances, strict=True)):
        width, height, angle = _ellipse_geometry(cov)
        for n_sigma, style in ((1, "solid"), (2, "dashed")):
            ax.add_patch(Ellipse(tuple(mean), width * n_sigma, height * n_sigma, angle=angle,
                                 fill=False, edgecolor=_component_colour(k), linewidth=1.5,
                                 linestyle=style, zorder=3))
    ax.plot(means[:, 0], means[:, 1], linestyle="none", marker="x", markersize=9,
            markeredgewidth=2.0, color="black", label="_means", zorder=4)


def _draw_density_contours(ax: Axes, model: Any, points: np.ndarray, means: np.ndarray,
                           covariances: np.ndarray) -> None:
    # The grid covers the data and every 2-sigma ellipse, so the tight limits
    # that contour() sets do not cut anything off.
    stds = np.sqrt(np.diagonal(covariances, axis1=1, axis2=2))
    low = np.minimum(points.min(axis=0), (means - 2.2 * stds).min(axis=0))
    high = np.maximum(points.max(axis=0), (means + 2.2 * stds).max(axis=0))
    margin = 0.05 * np.where(high > low, high - low, 1.0)
    low, high = low - margin, high + margin
    xs = np.linspace(low[0], high[0], 150)
    ys = np.linspace(low[1], high[1], 150)
    grid_x, grid_y = np.meshgrid(xs, ys)
    grid = np.stack([grid_x, grid_y], axis=-1)
    density = sum(weight * _normal_pdf_2d(grid, mean, cov) for weight, mean, cov
                  in zip(np.asarray(model.weights_, float), means, covariances, strict=True))
    peak = float(density.max())
    if not np.isfinite(peak) or peak <= 0.0:
        return
    levels = peak * np.geomspace(1e-3, 0.9, 7)
    ax.contour(grid_x, grid_y, density, levels=levels, colors=_CONTOUR_COLOUR,
               linewidths=0.7, alpha=0.7, zorder=1)


def _component_legend(ax: Axes, n_components: int) -> None:
    # Proxy handles: markers like the scatter's, without adding artists to the Axes.
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", marker="o", color=_component_colour(k),
                      label=f"component {k + 1}") for k in range(n_components)]
    ax.legend(handles=handles, fontsize="small", frameon=False)


# --------------------------------------------------------------------------- #
# All pairs
# --------------------------------------------------------------------------- #
def plot_pairs(model: Any, X: Any, *, fig: Figure | None = None,
               feature_names: Sequence[str] | None = None,
               sample_weight: Any = None) -> np.ndarray:
    """A d x d grid: densities on the diagonal, cluster scatters off it.

    Cell (i, j) shows feature j horizontally and feature i vertically, so
    x labels sit on the bottom row and y labels on the left column.

    Parameters
    ----------
    model : fitted GaussianMixture with at least two features
    X : array-like of shape (n_samples, n_features)
    fig : Figure, optional
        An empty Figure to draw on; a new pyplot Figure when None.
    feature_names : sequence of str, optional
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights, as for :func:`plot_density` and :func:`plot_clusters`.

    Returns
    -------
    numpy.ndarray of Axes, shape (d, d)
    """
    data = _checked_data(model, X)
    n_features = data.shape[1]
    if n_features < 2:
        raise InvalidInputError("plot_pairs needs at least two features; use plot_density.")
    names = _feature_names(model, X, feature_names, n_features)
    if fig is None:
        side = min(2.6 * n_features, 20.0)
        fig = _pyplot().figure(figsize=(side, side), layout="constrained")
    axes = np.asarray(fig.subplots(n_features, n_features, squeeze=False))
    labels = _labels(model, X, data)
    full = full_covariances(model)
    weights = check_sample_weight(sample_weight, data.shape[0])
    # A column shows one feature horizontally throughout, and so does a row
    # vertically (except on the diagonal, whose vertical axis is a density).
    for i in range(n_features):
        row_reference = axes[i, 1] if i == 0 else axes[i, 0]
        for j in range(n_features):
            if i != j:
                axes[i, j].sharex(axes[j, j])
                if axes[i, j] is not row_reference:
                    axes[i, j].sharey(row_reference)

    for i in range(n_features):
        for j in range(n_features):
            ax = axes[i, j]
            if i == j:
                _draw_density(ax, model, data[:, i], i, full, "auto", weights)
                ax.set_yticks([])  # the density scale matters less than the row's feature
            else:
                _draw_clusters(ax, model, data, labels, (j, i), full, False, weights)
            ax.tick_params(labelsize="x-small")
            if i == n_features - 1:
                ax.set_xlabel(names[j])
            if j == 0:
                ax.set_ylabel(names[i])
    # One legend for the whole grid, outside the cells so it hides no data.
    handles, texts = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncols=min(len(texts), 5),
               fontsize="small", frameon=False)
    fig.suptitle(f"{model.n_components}-component Gaussian mixture "
                 f"({model.covariance_type} covariance)")
    return axes


# --------------------------------------------------------------------------- #
# EM trace
# --------------------------------------------------------------------------- #
def plot_trace(model: Any, ax: Axes | None = None) -> Axes:
    """The per-sample log-likelihood after each EM iteration (``lower_bounds_``).

    Parameters
    ----------
    model : fitted GaussianMixture
    ax : Axes, optional
        Drawn on; a new pyplot Axes when None.

    Returns
    -------
    Axes
    """
    _check_fitted(model)
    _matplotlib()
    from matplotlib.ticker import MaxNLocator

    bounds = np.asarray(model.lower_bounds_, dtype=np.float64)
    ax = _new_axes() if ax is None else ax
    ax.plot(np.arange(bounds.size), bounds, marker="o", markersize=3, color=PALETTE[0],
            linewidth=1.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("log-likelihood per sample")
    n_iter = bounds.size - 1
    ax.set_title(f"EM trace: {model.convergence_state_} after {n_iter} "
                 f"iteration{'s' if n_iter != 1 else ''}")
    return ax


# --------------------------------------------------------------------------- #
# Model selection
# --------------------------------------------------------------------------- #
def plot_selection(result: Any, ax: Axes | None = None) -> Axes:
    """Selection curves: the criterion against K, one line per covariance type.

    Parameters
    ----------
    result : SelectionResult
        Read through ``criterion``, ``higher_is_better``, ``candidates`` (each
        with ``n_components``, ``covariance_type`` and one float per
        criterion, NaN for failed fits) and ``best_candidate``.
    ax : Axes, optional
        Drawn on; a new pyplot Axes when None.

    Returns
    -------
    Axes
        Failed fits are left out of the lines; the winner is marked with a
        hollow star and annotated.
    """
    criterion = str(result.criterion).lower()
    if criterion not in CRITERIA:
        raise InvalidInputError(
            f"result.criterion must be one of {list(CRITERIA)}; got {result.criterion!r}.")
    _matplotlib()
    ax = _new_axes() if ax is None else ax

    candidates = list(result.candidates)
    present = {c.covariance_type for c in candidates}
    for covariance_type in [t for t in COVARIANCE_ORDER if t in present]:
        # Colour by the fixed order so a type keeps its colour from plot to plot.
        position = COVARIANCE_ORDER.index(covariance_type)
        rows = sorted((int(c.n_components), float(getattr(c, criterion)))
                      for c in candidates if c.covariance_type == covariance_type)
        ks = np.array([k for k, _ in rows], dtype=np.float64)
        values = np.array([value for _, value in rows], dtype=np.float64)
        finite = np.isfinite(values)
        label = covariance_type if finite.any() else f"{covariance_type} (all fits failed)"
        ax.plot(ks[finite], values[finite], marker="o", markersize=5, linewidth=1.5,
                color=PALETTE[position % len(PALETTE)], label=label)

    try:
        best = result.best_candidate
    except (IndexError, ValueError):  # every fit failed: curves (if any) but no winner
        best = None
    best_value = float(getattr(best, criterion)) if best is not None else float("nan")
    if np.isfinite(best_value):
        text = f"best: K={int(best.n_components)}, {best.covariance_type}"
        ax.scatter([best.n_components], [best_value], s=320, marker="*", facecolors="none",
                   edgecolors="black", linewidths=1.5, zorder=4, label=text)
        # Away from the curves: the winner is the lowest point (or the highest).
        offset = (0, 14) if result.higher_is_better else (0, -20)
        ax.annotate(text, (best.n_components, best_value), xytext=offset,
                    textcoords="offset points", ha="center", fontsize="small")
        ax.margins(y=0.12)

    all_ks = sorted({int(c.n_components) for c in candidates})
    if 0 < len(all_ks) <= 15:
        ax.set_xticks(all_ks)
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    direction = "higher is better, mclust" if result.higher_is_better else "lower is better"
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion.upper()} ({direction})")
    ax.set_title(f"Model selection by {criterion.upper()}")
    ax.legend(fontsize="small", frameon=False)
    return ax


# --------------------------------------------------------------------------- #
# One picture of a fit, and saving
# --------------------------------------------------------------------------- #
def plot_fit(model: Any, X: Any, *, feature_names: Sequence[str] | None = None,
             fig: Figure | None = None, sample_weight: Any = None) -> Figure:
    """The natural picture of a fit: a density for one feature, clusters for
    two, a pairs grid for more.

    Parameters
    ----------
    model : fitted GaussianMixture
    X : array-like of shape (n_samples, n_features)
    feature_names : sequence of str, optional
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights, as for :func:`plot_density` and :func:`plot_clusters`.
    fig : Figure, optional
        An empty Figure to draw on; when None a pyplot-free Figure is created
        (no display needed), ready for :func:`save_figure`.

    Returns
    -------
    Figure
    """
    data = _checked_data(model, X)
    n_features = data.shape[1]
    names = _feature_names(model, X, feature_names, n_features)
    if fig is None:
        side = min(2.6 * n_features, 20.0)
        fig = _new_figure((6.4, 4.8) if n_features <= 2 else (side, side))
    if n_features == 1:
        plot_density(model, X, ax=fig.add_subplot(), feature_name=names[0],
                     sample_weight=sample_weight)
    elif n_features == 2:
        plot_clusters(model, X, ax=fig.add_subplot(), feature_names=names,
                      sample_weight=sample_weight)
    else:
        plot_pairs(model, X, fig=fig, feature_names=names, sample_weight=sample_weight)
    return fig


def plot_selection_and_fit(result: Any, X: Any, *, feature_names: Sequence[str] | None = None,
                           fig: Figure | None = None, sample_weight: Any = None) -> Figure:
    """Selection curves beside the picture of the winning fit.

    Parameters
    ----------
    result : SelectionResult from :func:`emix.selection.select`
    X : array-like of shape (n_samples, n_features), the data selected on
    feature_names : sequence of str, optional
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights, as for :func:`plot_density` and :func:`plot_clusters`.
    fig : Figure, optional
        An empty Figure to draw on; when None a pyplot-free Figure is created.

    Returns
    -------
    Figure
    """
    data = _checked_data(result.best, X)
    n_features = data.shape[1]
    fit_side = 4.8 if n_features <= 2 else min(2.4 * n_features, 16.0)
    if fig is None:
        fig = _new_figure((6.4 + fit_side * 1.25, max(4.8, fit_side)))
    left, right = fig.subfigures(1, 2, width_ratios=[6.4, fit_side * 1.25])
    plot_selection(result, ax=left.add_subplot())
    plot_fit(result.best, X, feature_names=feature_names, fig=right,
             sample_weight=sample_weight)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` as PNG (100 dpi), SVG or PDF, chosen by the extension.

    The file is written to a temporary name in the same directory and then
    renamed, so a reader never sees a half-written picture.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    target = Path(path)
    extension = target.suffix.lower()
    file_format = PICTURE_FORMATS.get(extension)
    if file_format is None:
        raise InvalidInputError(
            f"cannot save a figure as {extension or 'a file without an extension'!r} "
            f"({target.name}); supported extensions: {', '.join(PICTURE_FORMATS)}.")
    options: dict[str, Any] = {"format": file_format, "bbox_inches": "tight"}
    if file_format == "png":
        options["dpi"] = 100
    with atomic_output(target) as stream:
        fig.savefig(stream, **options)
    return target
