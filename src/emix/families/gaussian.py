r"""Gaussian components: parameters, additive statistics, E-step and M-step.

The log-density of component k with mean :math:`\mu_k` and covariance
:math:`\Sigma_k = L_k L_k^T` (precision factor :math:`P_k = L_k^{-T}`) is

.. math::

    \log \mathcal N(x \mid \mu_k, \Sigma_k) = -\tfrac d2 \log 2\pi
        + \log |P_k| - \tfrac12 \lVert (x - \mu_k) P_k \rVert^2 ,

evaluated in log space, so that a point far from every component gets a
very negative but finite log-density instead of a density of 0.

The statistics of a pass are centred on the component means the E-step
used (the "shift"): :math:`N_k = \sum_i w_i r_{ik}`,
:math:`S^{(1)}_k = \sum_i w_i r_{ik} (x_i - \mu_k)` and
:math:`S^{(2)}_k = \sum_i w_i r_{ik} (x_i - \mu_k)(x_i - \mu_k)^T` (reduced to
the structure's shape).  They come from the whitened residuals that the
log-density needs anyway, and they add up over chunks, workers and files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import DegenerateComponentError, NumericalError
from ..execution.memory import default_chunk_rows
from . import _compiled
from .base import MStepReport
from .covariance import (
    COVARIANCE_MODELS,
    ROUNDING_MARGIN,
    CovarianceModel,
    SingularCovariance,
)

#: A component whose share of the total weight falls below this has vanished:
#: its mean would be a ratio of rounding errors.
VANISHED_FRACTION = 1e-12

#: A collapsed component that is kept gets this fraction of the healthy
#: components' pooled covariance added to its own ("floor"): it can no longer
#: shrink onto a point, the floor is on the scale of the clusters rather than
#: of the distances between them, and it moves with the data under affine
#: changes.
FLOOR_FRACTION = 1e-4

_LOG_2PI = math.log(2.0 * math.pi)
_EPS = float(np.finfo(np.float64).eps)

_NO_WEIGHTS = np.ones(1)

#: The quadratic-form E-step expands each log-density about the mixture's
#: centre, and its rounding is a few units of the unit roundoff times the
#: sum of its terms' magnitudes (measured on hostile data: at most 7.5 times
#: the bound of :meth:`CovarianceModel.quadratic_coefficients`, itself above
#: the true sum): QUADRATIC_ROUNDING_FACTOR.  Rows where that bound exceeds
#: QUADRATIC_ACCURACY times their log-density's magnitude (at least 1) get
#: their log-densities from residuals about each mean instead, in float64.
#: The terms grow with a row's distance from the centre in units of a
#: component's spread: outliers that a broad component owns, clusters far
#: from the centre, and in float32 tight clusters far apart (measured on
#: standardised data of 16-64 features and 4-32 tight components: float32
#: errors of 3e-4 to 1e-2 nats per row in the median and up to 4 nats,
#: float64 ones below 1e-8).  float64 asks 1e-9 (the errors measured on
#: clean data are 1e-12 to 1e-11), float32 2048 units of its rounding.
QUADRATIC_ROUNDING_FACTOR = 8.0
QUADRATIC_ACCURACY = {np.dtype(np.float64): 1e-9,
                      np.dtype(np.float32): 2048 * 0.5 * float(np.finfo(np.float32).eps)}
#: How precisely the E-step's per-sample log-likelihood is known, relative:
#: in float64 the quadratic form's accuracy (each row within 1e-9 of its
#: log-density, the NumPy path's within 1e-15), in float32 170 units of its
#: rounding (the quadratic form's rows within 2048, their errors of either
#: sign; the mean over rows measured within 6e-8 on standardised clusters
#: of 8-64 features and 4-32 components).
EVALUATION_ACCURACY = {np.dtype(np.float64): QUADRATIC_ACCURACY[np.dtype(np.float64)],
                       np.dtype(np.float32): 1e-5}
#: Units of rounding in :meth:`GaussianFamily.step_rounding`.
ROUNDING_ULPS = 64.0

#: A component whose log-density is this far below a row's largest adds
#: less than exp(-50) = 2e-22 to the row: its rounding cannot matter.
NEGLIGIBLE_LOG_RATIO = 50.0

#: Bytes of quadratic features held at once (rows x d^2 / 2), a part of the
#: L2 cache, so that the matrix product reads what was just written.
#: Measured on case C with the block loop compiled: float32 is 15% slower
#: with a quarter of this, float64 the same from 256 KB to 1 MB.
QUADRATIC_BLOCK_BYTES = 2**19
#: ... but at least this many rows, where d is so large that a block of that
#: size holds only a few dozen: each pass along a block's rows ends in
#: horizontal sums, and short passes spend their time there (measured on
#: case E, d = 64: 128 rows 19% faster than 64, 256 15%).
MIN_QUADRATIC_BLOCK_ROWS = 128


@dataclass(frozen=True, eq=False)
class GaussianParams:
    """Parameters of a Gaussian mixture, all components batched (axis 0 = K).

    ``covariances``, ``cov_chol`` and ``prec_chol`` have the shapes of the
    covariance structure (see :mod:`emix.families.covariance`).
    """

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    covariances: np.ndarray
    cov_chol: np.ndarray | None  # None where only posteriors are needed (prediction)
    prec_chol: np.ndarray
    _prepared: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]


@dataclass(frozen=True)
class QuadraticForm:
    """The quadratic-form E-step's inputs for one set of parameters and a
    dtype (see :meth:`CovarianceModel.quadratic_coefficients`)."""

    centre: np.ndarray  # (d,) the mixture's mean, float64
    theta: np.ndarray  # (K, P') in the data's dtype, zero-padded to a multiple of 4
    bounds: np.ndarray  # (3, K) float64
    tolerances: np.ndarray  # (3,) see flag_inexact_rows
    factor: np.ndarray  # (K, d, d) float64 precision factors


@dataclass(frozen=True, eq=False)
class GaussianStats:
    """Additive statistics of a pass, centred on the means in ``shift``.

    ``second`` has the covariance structure's shape ((K, d, d) for full,
    (d, d) for tied, (K, d) for diag, (K,) for spherical).
    """

    shift: np.ndarray  # (K, d): the means of the parameters the E-step used
    resp_weight: np.ndarray  # (K,)
    first: np.ndarray  # (K, d)
    second: np.ndarray
    log_likelihood: float
    total_weight: float
    n_samples: int

    def __post_init__(self) -> None:
        for name in ("resp_weight", "first", "second"):
            getattr(self, name).flags.writeable = False

    def __add__(self, other: GaussianStats) -> GaussianStats:
        if not isinstance(other, GaussianStats):
            return NotImplemented
        if other.shift is not self.shift and not np.array_equal(other.shift, self.shift):
            raise ValueError(
                "cannot add statistics centred on different means; re-centre "
                "one of them first (GaussianStats.recentred)"
            )
        return GaussianStats(
            shift=self.shift,
            resp_weight=self.resp_weight + other.resp_weight,
            first=self.first + other.first,
            second=self.second + other.second,
            log_likelihood=self.log_likelihood + other.log_likelihood,
            total_weight=self.total_weight + other.total_weight,
            n_samples=self.n_samples + other.n_samples,
        )

    def __radd__(self, other: Any) -> GaussianStats:
        if isinstance(other, int) and other == 0:  # so that sum() works
            return self
        return NotImplemented


#: Below these numbers of components row-wise work on the (rows, K)
#: responsibilities runs as one vectorised pass per column: numpy's
#: reduction along a short contiguous axis costs about 0.9 ms per 20,000
#: rows whatever K, a column pass 15 us (broadcasting gains 3x at K=2).
#: (Sums stop at 8 columns, where numpy's own sum is still sequential, so
#: the result is the same to the bit.)
_MAX_COLUMN_LOOP, _SUM_COLUMN_LOOP = 16, 8


def _row_reduce(ufunc: np.ufunc, a: np.ndarray, out: np.ndarray, max_columns: int
                ) -> np.ndarray:
    """``ufunc.reduce(a, axis=1)`` into ``out``, fast for few columns."""
    if a.shape[1] > max_columns:
        return ufunc.reduce(a, axis=1, out=out)
    np.copyto(out, a[:, 0])
    for k in range(1, a.shape[1]):
        ufunc(out, a[:, k], out=out)
    return out


def _with_each_row(ufunc: np.ufunc, a: np.ndarray, b: np.ndarray, *,
                   by_column: bool = False) -> None:
    """``a = ufunc(a, b)`` in place, ``b`` one value per row (or, with
    ``by_column``, per column); one pass per column when there are few."""
    if a.shape[1] > _SUM_COLUMN_LOOP:
        ufunc(a, b if by_column else b[:, None], out=a)
        return
    for k in range(a.shape[1]):
        ufunc(a[:, k], b[k] if by_column else b, out=a[:, k])


class GaussianFamily:
    """Gaussian mixture components under one covariance structure."""

    def __init__(self, covariance: str | CovarianceModel, reg_covar: float = 1e-6,
                 parameter_dtype: Any = np.float64, data_extent: float = 0.0):
        self.covariance = (
            COVARIANCE_MODELS[covariance] if isinstance(covariance, str) else covariance
        )
        self.reg_covar = float(reg_covar)
        #: The precision in which the fitted parameters are kept (the data's:
        #: float32 fits give float32 attributes).  EM runs on float64
        #: parameters (rounding them at every step would stall the means on
        #: float32's grid, as coarse as a spread at 1e7 spreads from the
        #: origin); the result is rounded once (:meth:`stored`).
        self.parameter_dtype = np.dtype(parameter_dtype)
        #: The sum of the data's squared column ranges: no component's
        #: variance and no move of a mean exceeds it, so its rounding bounds
        #: that of every covariance of a fit of those data (0 if unknown).
        self.data_extent = float(data_extent)

    @property
    def regularised(self) -> bool:
        """Whether the M-step adds to the covariances (then EM need not raise
        the plain likelihood at every step)."""
        return self.reg_covar > 0

    def evaluation_rounding(self, log_likelihood: float) -> float:
        """How precisely the E-step evaluates the per-sample log-likelihood
        ``log_likelihood`` of given parameters (EVALUATION_ACCURACY, relative;
        two runs within it of each other are a tie)."""
        return EVALUATION_ACCURACY[self.parameter_dtype] * (1.0 + abs(log_likelihood))

    def step_rounding(self, params: GaussianParams) -> float:
        """How far the rounding of an M-step (float64) alone may move the
        per-sample log-likelihood to ``params``: covariances round in their
        smallest directions in proportion to their correlations' condition
        number kappa, and their log-determinants and quadratic forms then
        move by about d kappa units of float64's rounding."""
        kappa = min(self.covariance.condition(params.covariances), 1.0 / _EPS)
        return ROUNDING_ULPS * 0.5 * _EPS * params.n_features * kappa

    # -- parameters ----------------------------------------------------------
    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Free parameters: weights (K - 1), means (K d) and covariances."""
        return (
            n_components - 1
            + n_components * n_features
            + self.covariance.n_parameters(n_components, n_features)
        )

    def make_params(self, weights: np.ndarray, means: np.ndarray,
                    covariances: np.ndarray) -> GaussianParams:
        """Parameters from weights, means and covariances (factored here).

        Raises :class:`~emix.exceptions.DegenerateComponentError`, with the
        ``reg_covar`` that would do as its remedy, when a covariance is not
        positive definite, and :class:`~emix.exceptions.NumericalError` when
        a value is not finite.
        """
        if not (np.isfinite(means).all() and np.isfinite(covariances).all()):
            raise NumericalError(
                "the M-step produced non-finite means or covariances; the data's "
                "scale is beyond floating point: rescale the columns"
            )
        try:
            cov_chol, prec_chol = self.covariance.factor(covariances)
        except SingularCovariance as exc:
            raise self._singular(covariances, exc.components) from None
        return GaussianParams(weights=np.asarray(weights, dtype=np.float64),
                              means=np.asarray(means, dtype=np.float64),
                              covariances=np.asarray(covariances, dtype=np.float64),
                              cov_chol=cov_chol, prec_chol=prec_chol)

    def stored(self, params: GaussianParams) -> GaussianParams:
        """``params`` as the fitted attributes hold them: rounded to
        ``parameter_dtype`` (the same object in float64), so that
        ``lower_bound_`` and every later prediction use the numbers stored.

        The weights, means and precision factors are rounded: a triangular
        factor with a positive diagonal stays one when rounded (covariances
        rounded to float32 need not stay positive definite), and the
        covariances follow from it.  Raises NumericalError when the dtype
        cannot hold them."""
        if self.parameter_dtype == np.float64:
            return params
        weights, means, prec_chol = (_rounded(array, self.parameter_dtype)
                                     for array in (params.weights, params.means,
                                                   params.prec_chol))
        if not (np.isfinite(means).all() and self.covariance.valid_factor(prec_chol)):
            raise self._beyond_range()
        cov_chol = self.covariance.cov_chol_from_prec_chol(prec_chol)
        covariances = self.covariance.covariances_from_cov_chol(cov_chol)
        if not (_fits_in(covariances, self.parameter_dtype)
                and _fits_in(self.covariance.precisions(prec_chol), self.parameter_dtype)):
            raise self._beyond_range()
        return GaussianParams(weights=weights, means=means, covariances=covariances,
                              cov_chol=cov_chol, prec_chol=prec_chol)

    def _shifted_form(self, params: GaussianParams) -> dict | None:
        """:meth:`CovarianceModel.shifted_form` of ``params``, once."""
        if "shifted" not in params._prepared:
            params._prepared["shifted"] = self.covariance.shifted_form(
                params.means, params.prec_chol, params.weights @ params.means)
        return params._prepared["shifted"]

    def _whitening_factor(self, params: GaussianParams) -> np.ndarray:
        """The precision factors as :meth:`CovarianceModel.whiten` takes them,
        once per parameters."""
        factor = params._prepared.get("factor")
        if factor is None:
            factor = params._prepared["factor"] = np.ascontiguousarray(
                self.covariance.fused_factor(params.prec_chol, *params.means.shape))
        return factor

    def _log_constants(self, params: GaussianParams) -> np.ndarray:
        """``log w_k + log |P_k| - d/2 log 2 pi``, (K,) float64, once per
        parameters."""
        const = params._prepared.get("const")
        if const is None:
            n_components, n_features = params.means.shape
            # A zero weight (a user's weights_init) means log 0: keep it finite.
            const = params._prepared["const"] = (
                np.log(np.maximum(params.weights, np.finfo(np.float64).tiny))
                + self.covariance.log_det_prec_chol(params.prec_chol, n_components, n_features)
                - 0.5 * n_features * _LOG_2PI
            )
        return const

    # -- E-step ----------------------------------------------------------------
    def _posterior(self, params: GaussianParams, X: np.ndarray, workspace: Any):
        """Responsibilities (m, K), log p(x) (m,), whitened residuals and their
        squared norms, in float64 workspace buffers.

        float32 rows are read as float64 too: in float32 the whitening of an
        ill-conditioned component rounds in proportion to the square root of
        its condition number (1e-3 nats of a row's log-density at 1e9, every
        digit at 1e15), and a far row's squared distance overflows."""
        m = X.shape[0]
        n_components, n_features = params.means.shape
        whitened = workspace.array("whitened", (m, n_components, n_features), np.float64)
        X = X.astype(np.float64, copy=False)
        form = self._shifted_form(params)
        if form is None or not self.covariance.whiten_shifted(X, form, whitened, workspace):
            self.covariance.whiten(X, params.means, self._whitening_factor(params), whitened,
                                   workspace)
        squared_norm = workspace.array("squared_norm", (m, n_components), np.float64)
        np.einsum("mkd,mkd->mk", whitened, whitened, out=squared_norm)
        resp = workspace.array("resp", (m, n_components), np.float64)
        np.multiply(squared_norm, -0.5, out=resp)
        _with_each_row(np.add, resp, self._log_constants(params), by_column=True)
        # log-sum-exp with the max-shift done by hand (much faster than
        # scipy's), then the exponentials in place.
        row_max = _row_reduce(np.maximum, resp, workspace.array("row_max", (m,), np.float64),
                              _MAX_COLUMN_LOOP)
        if not np.all(np.isfinite(row_max)):
            raise NumericalError(
                "a sample is so far from every component that its squared distance "
                "overflows; rescale the data (e.g. standardise each column) so that "
                "its range fits in floating point"
            )
        _with_each_row(np.subtract, resp, row_max)
        np.exp(resp, out=resp)
        row_sum = _row_reduce(np.add, resp, workspace.array("row_sum", (m,), np.float64),
                              _SUM_COLUMN_LOOP)
        _with_each_row(np.divide, resp, row_sum)
        log_norm = np.log(row_sum)
        log_norm += row_max
        return resp, log_norm, whitened, squared_norm

    def e_step(self, params: GaussianParams, X: np.ndarray, weights: np.ndarray | None,
               workspace: Any) -> GaussianStats:
        """Statistics of the rows ``X`` (frequency ``weights``) under ``params``."""
        compiled = _compiled.kernels()
        if compiled is not None:
            stats = self._compiled_e_step(compiled, params, X, weights, workspace)
            if stats is not None:
                return stats
        # The NumPy path's temporaries are (rows, K, d): a few thousand rows
        # at a time, whatever the chunk the caller hands over.
        n_rows = X.shape[0]
        step = default_chunk_rows(*params.means.shape, 8)
        if n_rows > step:
            return sum(self._numpy_e_step(params, X[start:start + step],
                                          None if weights is None
                                          else weights[start:start + step], workspace)
                       for start in range(0, n_rows, step))
        return self._numpy_e_step(params, X, weights, workspace)

    def _numpy_e_step(self, params: GaussianParams, X: np.ndarray,
                      weights: np.ndarray | None, workspace: Any) -> GaussianStats:
        resp, log_norm, whitened, squared_norm = self._posterior(params, X, workspace)
        log_likelihood = float(log_norm.sum() if weights is None else weights @ log_norm)
        return self._stats(params.means, whitened, squared_norm, resp, weights,
                           log_likelihood, params.cov_chol, workspace)

    def calls_blas(self, n_features: int) -> bool:
        """Whether the E-step calls BLAS: only without the compiled kernels
        (which do their own products), or for a structure they do not serve,
        or where they hand a chunk back to the NumPy path."""
        model = self.covariance
        fused = model.fused_kernel is not None and n_features <= model.fused_max_features
        return _compiled.kernels() is None or not (fused or model.quadratic_form)

    def _compiled_e_step(self, compiled: dict, params: GaussianParams, X: np.ndarray,
                         weights: np.ndarray | None, workspace: Any) -> GaussianStats | None:
        """:meth:`e_step` through the compiled kernels, or None where none
        serves: no kernel for this structure and width, a quadratic
        expansion that would lose digits, or a row beyond floating-point
        range (the NumPy path then explains or recovers)."""
        n_components, n_features = params.means.shape
        model = self.covariance
        const = self._log_constants(params)
        use_weights = weights is not None
        row_weights = np.asarray(weights, dtype=np.float64) if use_weights else _NO_WEIGHTS
        resp_weight = np.zeros(n_components)
        first = np.zeros((n_components, n_features))
        if model.fused_kernel is not None and n_features <= model.fused_max_features:
            factor = model.fused_factor(params.prec_chol, n_components, n_features)
            second = np.zeros(factor.shape)
            kernel, shape = model.fused_kernel, factor.shape
            if n_features == 1:  # a triangular factor is then a scale: the simpler kernel
                kernel, shape = "scaled", (n_components, 1)
            log_likelihood, out_of_range = compiled[kernel](
                X, row_weights, use_weights, params.means, factor.reshape(shape), const,
                resp_weight, first, second.reshape(shape))
            if out_of_range:
                return None
        elif model.quadratic_form:
            quadratic = self._quadratic_form(params, X.dtype, const)
            n_rows = X.shape[0]
            # Features (d^2 / 2 per row) and responsibilities only for a
            # block that stays in the cache.
            block = min(n_rows, max(MIN_QUADRATIC_BLOCK_ROWS, QUADRATIC_BLOCK_BYTES
                                    // (quadratic.theta.shape[1] * X.dtype.itemsize)))
            features = workspace.array("features", (quadratic.theta.shape[1] * block,),
                                       X.dtype)
            values = workspace.array("block_logits", (n_components * block,), X.dtype)
            padded = -(-n_features // 4) * 4  # the moments' 4 x 2 tiles
            second = np.zeros((n_components, padded, padded))
            log_likelihood, _ = compiled["quadratic_e_step"](
                X, quadratic.centre, quadratic.theta, quadratic.bounds, quadratic.tolerances,
                params.means, quadratic.factor, const, features, values,
                row_weights, use_weights,
                math.sqrt(np.finfo(X.dtype).tiny),  # see quadratic_e_step
                resp_weight, first, second)
            if math.isnan(log_likelihood):
                return None
            second = second[:, :n_features, :n_features]
        else:
            return None
        return GaussianStats(
            shift=params.means,
            resp_weight=resp_weight,
            first=first,
            second=model.fused_second(second),
            log_likelihood=float(log_likelihood),
            total_weight=float(X.shape[0] if weights is None else weights.sum()),
            n_samples=X.shape[0],
        )

    def _quadratic_form(self, params: GaussianParams, dtype: np.dtype,
                        const: np.ndarray) -> QuadraticForm:
        """What the quadratic-form E-step needs for ``params`` on data of
        ``dtype``, once per parameters."""
        key = ("quadratic", np.dtype(dtype).str)
        form = params._prepared.get(key)
        if form is None:
            n_components, n_features = params.means.shape
            centre = params.weights @ params.means
            theta, bounds = self.covariance.quadratic_coefficients(
                params.means, params.prec_chol, centre, const)
            # Zero columns up to a multiple of 4: the compiled product takes
            # the terms four at a time.
            padded = np.zeros((theta.shape[0], -(-theta.shape[1] // 4) * 4), dtype)
            padded[:, :theta.shape[1]] = theta
            form = params._prepared[key] = QuadraticForm(
                centre=centre, theta=padded, bounds=bounds,
                tolerances=np.array([
                    QUADRATIC_ROUNDING_FACTOR * 0.5 * float(np.finfo(dtype).eps),
                    QUADRATIC_ACCURACY[np.dtype(dtype)], NEGLIGIBLE_LOG_RATIO]),
                factor=np.ascontiguousarray(
                    self.covariance.fused_factor(params.prec_chol, n_components, n_features)))
        return form

    def assignment_stats(self, shift: np.ndarray, X: np.ndarray, weights: np.ndarray | None,
                         resp: np.ndarray, workspace: Any) -> GaussianStats:
        """Statistics of given responsibilities (m, K) about ``shift`` (K, d).

        Used to initialise from hard labels or random responsibilities.
        """
        m, n_features = X.shape
        n_components = shift.shape[0]
        rows = default_chunk_rows(n_components, n_features, 8)
        if m > rows:  # the (rows, K, d) residuals stay a few MB, as in the E-step
            return sum(self.assignment_stats(
                shift, X[start:start + rows], None if weights is None
                else weights[start:start + rows], resp[start:start + rows], workspace)
                for start in range(0, m, rows))
        # In float64 whatever X's dtype: the starting covariances must not
        # depend on the order in which float32 sums round (BLAS kernels,
        # blocks), and this runs once per initialisation.
        residual = workspace.array("whitened", (m, n_components, n_features), np.float64)
        np.subtract(X[:, None, :], shift[None], out=residual)
        squared_norm = workspace.array("squared_norm", (m, n_components), np.float64)
        np.einsum("mkd,mkd->mk", residual, residual, out=squared_norm)
        return self._stats(shift, residual, squared_norm, resp.astype(np.float64, copy=True),
                           weights, 0.0, None, workspace)

    def _stats(self, shift, residual, squared_norm, resp, weights, log_likelihood,
               cov_chol, workspace) -> GaussianStats:
        """Assemble statistics from residuals (whitened when ``cov_chol`` is
        given, else plain) and responsibilities, which are weighted in place.

        Everything is float64, for float32 data too: sums of float32
        products lose every direction in which a component's variance is
        below float32's rounding of its largest one (and whether the start
        of an ill-conditioned fit is positive definite then depends on the
        order of the sums)."""
        if weights is not None:
            resp *= weights.astype(resp.dtype, copy=False)[:, None]
        first = np.einsum("mk,mkd->kd", resp, residual).astype(np.float64, copy=False)
        second = self.covariance.whitened_second_moment(residual, squared_norm, resp,
                                                        workspace)
        if cov_chol is not None:
            first, second = self.covariance.unwhiten(first, second, cov_chol)
        return GaussianStats(
            shift=shift,
            resp_weight=resp.sum(axis=0, dtype=np.float64),
            first=first,
            second=second,
            log_likelihood=log_likelihood,
            total_weight=float(resp.shape[0] if weights is None else weights.sum()),
            n_samples=resp.shape[0],
        )

    def log_density(self, params: GaussianParams, X: np.ndarray, workspace: Any) -> np.ndarray:
        """log p(x_i) under the mixture, (m,), a fresh float64 array."""
        return self._posterior(params, X, workspace)[1].copy()

    def responsibilities(self, params: GaussianParams, X: np.ndarray,
                         workspace: Any) -> np.ndarray:
        """``p(z=k | x_i)``, (m, K), a fresh float64 array."""
        return self._posterior(params, X, workspace)[0].copy()

    # -- M-step ------------------------------------------------------------------
    def m_step(self, stats: GaussianStats, floors: dict[int, np.ndarray] | None = None
               ) -> tuple[GaussianParams, MStepReport]:
        """New parameters from statistics; collapsed components come back usable.

        A component has *vanished* when its share of the weight is below
        ``VANISHED_FRACTION`` (it keeps its mean and takes the data's
        covariance); it is *singular* when its covariance is singular to
        rounding in a direction in which the data vary (see
        :meth:`CovarianceModel.degenerate`) and then gets ``FLOOR_FRACTION``
        of the within-component covariance of the healthy components added.

        ``floors`` are the floors of earlier M-steps, keyed by component (-1
        for a shared covariance): a floor, once applied, stays, as a fixed
        regulariser of that component, so that the component cannot cycle
        between collapsing and being repaired.  Only collapses of components
        without a floor are reported; the caller's policy decides whether to
        keep the floor, split another component into it, or raise.
        """
        floors = floors or {}
        model = self.covariance
        resp_weight = stats.resp_weight
        total = float(resp_weight.sum())
        vanished = resp_weight <= VANISHED_FRACTION * total
        gone = [int(k) for k in np.flatnonzero(vanished)] if vanished.any() else []
        # Without a vanished component (the usual case) the weights serve as
        # they are: this runs every iteration, and small problems pay per call.
        safe_weight = np.where(vanished, 1.0, resp_weight) if gone else resp_weight
        kept_weight = np.where(vanished, 0.0, resp_weight) if gone else resp_weight
        delta = stats.first / safe_weight[:, None]
        if gone:
            delta[vanished] = 0.0
        means = stats.shift + delta
        empirical = model.empirical(safe_weight, delta, np.asarray(stats.second), total)
        total_cov = model.total_covariance(kept_weight, means, empirical)
        centre = kept_weight @ means / kept_weight.sum()
        degenerate = model.degenerate(empirical, means, delta, total_cov, centre)

        if gone:
            empirical = model.replace(empirical, gone, total_cov)  # no data left to estimate from
        if model.per_component:
            singular = ([int(k) for k in np.flatnonzero(degenerate & ~vanished)]
                        if degenerate.any() else [])
        else:
            singular = [-1] if degenerate[0] else []
        report = MStepReport(vanished=[k for k in gone if k not in floors],
                             singular=[k for k in singular if k not in floors])
        if report.collapsed:
            if model.per_component:
                healthy = ~(degenerate | vanished)
                healthy[[k for k in floors if k >= 0]] = False
            else:
                healthy = ~vanished
            reference = model.pooled(resp_weight, empirical, healthy)
            if reference is None or not _size(reference) > 0:
                reference = total_cov
            report.floor = FLOOR_FRACTION * reference
        for component, floor in {**{k: report.floor for k in report.singular},
                                 **floors}.items():
            empirical = model.add_floor(empirical, [component], floor)

        weights = np.maximum(resp_weight / total, np.finfo(np.float64).tiny)
        weights /= weights.sum()
        covariances = model.regularise(empirical, self.reg_covar)
        return self.make_params(weights, means, covariances), report

    def split(self, params: GaussianParams, *, donor: int, target: int) -> GaussianParams:
        """Give half of component ``donor`` to component ``target``.

        The target takes the donor's covariance and half its weight, with its
        mean one standard deviation away along the donor's principal axis.
        """
        model = self.covariance
        n_features = params.n_features
        own = params.covariances[donor:donor + 1] if model.per_component else params.covariances
        covariance = model.full_matrices(own, 1, n_features)[0]
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        means = params.means.copy()
        means[target] = means[donor] + np.sqrt(max(eigenvalues[-1], 0.0)) * eigenvectors[:, -1]
        weights = params.weights.copy()
        weights[donor] = weights[target] = 0.5 * params.weights[donor] + 0.5 * weights[target]
        weights /= weights.sum()
        covariances = params.covariances.copy()
        if model.per_component:
            covariances[target] = covariances[donor]
        return self.make_params(weights, means, covariances)

    def _beyond_range(self) -> NumericalError:
        """No setting helps parameters that the parameters' dtype cannot hold."""
        return NumericalError(
            f"the fitted parameters are beyond {self.parameter_dtype}'s range (a mean, or a "
            "variance or its inverse larger than its largest number or smaller than its "
            "least normal one): fit the data as float64 (X.astype(numpy.float64)), or "
            "rescale the columns")

    def _singular(self, covariances: np.ndarray, components: list[int]
                  ) -> DegenerateComponentError | NumericalError:
        """The error for covariances that are not positive definite, with a
        ``reg_covar`` that makes them so in its remedy.

        That value clears the most negative eigenvalue and, above it, the
        rounding of the largest variance of any component or of the data's
        extent (ROUNDING_MARGIN x d x eps of it: the sums' rounding in any
        direction, which another fit's order of summation could turn
        negative; with the extent it holds for the fit that follows the
        remedy too, whose components may take other variances), rounded up
        to one digit and at least ten times the current setting.  A value
        whose inverse the parameters' dtype cannot hold helps nothing: then
        the NumericalError that says so."""
        model = self.covariance
        n_features = covariances.shape[-1] if covariances.ndim > 1 else 1
        n_matrices = covariances.shape[0] if model.per_component else 1
        spectra = np.linalg.eigvalsh(model.full_matrices(covariances, n_matrices, n_features))
        failing = spectra[components] if model.per_component else spectra
        variance = float(np.max(np.abs(spectra)))
        largest = max(variance, self.data_extent)
        needed = (self.reg_covar + max(0.0, -float(failing[:, 0].min()))
                  + ROUNDING_MARGIN * n_features * _EPS * largest)
        if not math.isfinite(needed):
            return NumericalError(
                "a covariance is singular to rounding, and the data's squared spread "
                "overflows floating point, so no regularisation can be told that helps: rescale "
                "the columns (e.g. standardise them) and fit again")
        suggestion = max(_round_up(needed) if needed > 0 else 0.0, 10.0 * self.reg_covar)
        if self.reg_covar == 0:
            # Then a constant column's variance is the setting itself: at
            # least 1e-6 of the largest variance (or 1e-6, the default, when
            # the data are one point).
            suggestion = max(suggestion, _round_up(1e-6 * largest) if largest > 0 else 1e-6)
        limit = float(np.finfo(self.parameter_dtype).max)
        if max(variance, suggestion, 1.0 / suggestion) > limit:
            return self._beyond_range()
        which = ("the shared covariance" if not model.per_component
                 else f"component(s) {components}")
        setting = (f"reg_covar={self.reg_covar:g} is below the rounding level of "
                   f"variances as large as {largest:.3g}" if self.reg_covar > 0
                   else "reg_covar=0 adds nothing there")
        return DegenerateComponentError(
            f"the covariance of {which} is singular to rounding (not positive "
            "definite): the data have no variance in some direction (a constant or "
            f"collinear column, or all samples identical). {setting}: set "
            f"reg_covar={suggestion:.1g}, or drop the constant/collinear columns.",
            remedy={"reg_covar": suggestion})


def _round_up(value: float) -> float:
    """``value`` rounded up to one significant digit (9.98e-7 -> 1e-6, 1.2e-6
    -> 2e-6), so that the value printed is never below it."""
    exponent = math.floor(math.log10(value))
    digit = math.ceil(value / 10.0**exponent * (1 - 1e-12))
    return digit * 10.0**exponent


def _fits_in(array: np.ndarray, dtype: np.dtype) -> bool:
    """Whether ``array`` rounded to ``dtype`` stays finite."""
    return bool(np.abs(array).max(initial=0.0) <= float(np.finfo(dtype).max))


def _rounded(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` rounded to ``dtype``, held in float64."""
    with np.errstate(over="ignore"):
        return array.astype(dtype).astype(np.float64)


def _size(covariance: np.ndarray) -> float:
    """Sum of the variances held by a covariance of any structure."""
    return float(np.trace(covariance) if covariance.ndim == 2 else np.sum(covariance))
