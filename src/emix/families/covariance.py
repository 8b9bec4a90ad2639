"""Covariance structures of a Gaussian mixture as strategy objects.

A strategy owns everything that depends on the covariance structure: the
shapes of the parameters, whitening of residuals, the moments in whitened
coordinates, the M-step's covariance estimate and its Cholesky factors.  All
components are held as batched arrays with a leading axis K; "tied" simply
has no such axis.  The rest of the code resolves ``covariance_type`` once, in
:data:`COVARIANCE_MODELS`, and never branches on its name.

Notation (row vectors, as the data): the covariance of component k is
``Sigma_k = L_k L_k^T`` with ``L_k`` lower triangular, and its precision
factor is ``P_k = L_k^{-T}`` (upper triangular, scikit-learn's
``precisions_cholesky_``), so the whitened residual ``y = (x - mu_k) P_k`` has
identity covariance and ``x - mu_k = y L_k^T``.

Shapes by type (K components, d features):

============  ==============  =====================================
type          covariances     precisions_cholesky
============  ==============  =====================================
full          (K, d, d)       (K, d, d), upper triangular
tied          (d, d)          (d, d), upper triangular
diag          (K, d)          (K, d), ``1 / sqrt(variances)``
spherical     (K,)            (K,), ``1 / sqrt(variance)``
============  ==============  =====================================
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

#: A variance is indistinguishable from zero when it is below the rounding
#: level of the numbers it came from, widened by this margin: the residuals
#: are computed about the mixture's centre (eps x distance from it), and
#: second moments cancel the mean's move (eps x the largest variance and the
#: squared move).
ROUNDING_MARGIN = 1e3

#: Rows at most this far from the mixture's centre, in units of the smallest
#: spread of any component, are whitened by one product about the centre
#: (:meth:`CovarianceModel.whiten_shifted`): its rounding, eps times the
#: distance in those units, is then below 1e-10 of a whitened coordinate.
SHIFTED_LIMIT = 1e5

#: A column is constant when its variance is below (this x eps x its
#: magnitude)^2: the rounding of a mean of equal numbers.
CONSTANT_MARGIN = 64.0

#: Directions whose eigenvalue in the data's correlation matrix falls below
#: this are collinear columns: the data have no variance there, and neither
#: can any component, so they are no collapse.
COLLINEAR = 1e-10

_EPS = float(np.finfo(np.float64).eps)


class SingularCovariance(Exception):
    """Internal: the covariances of ``components`` are not positive definite."""

    def __init__(self, components: list[int]):
        super().__init__(components)
        self.components = components


class CovarianceModel:
    """Base class: the operations the E- and M-steps need from a structure."""

    name: ClassVar[str]
    #: Whether each component has its own covariance (False for "tied").
    per_component: ClassVar[bool] = True
    #: The compiled E-step kernel that serves this structure (see
    #: :mod:`emix.families._compiled`), and up to how many features it beats
    #: the NumPy path.
    fused_kernel: ClassVar[str | None] = None
    fused_max_features: ClassVar[int] = 0
    #: Whether the compiled quadratic-form E-step serves this structure
    #: beyond ``fused_max_features`` (see :meth:`quadratic_coefficients`).
    quadratic_form: ClassVar[bool] = False

    # -- shapes and counts -------------------------------------------------
    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def n_parameters(self, n_components: int, n_features: int) -> int:
        raise NotImplementedError

    # -- E-step ------------------------------------------------------------
    def whiten(self, X: np.ndarray, means: np.ndarray, factor: np.ndarray, out: np.ndarray,
               workspace: Any) -> None:
        """Write the whitened residuals ``(x_i - mu_k) P_k`` into out (m, K, d),
        all float64; ``factor`` is :meth:`fused_factor` of the precision
        factors.

        The residuals are taken about each component's own mean: they are
        exact to rounding whatever the data's distance from the origin or from
        the other components (a product ``x P`` taken first would carry the
        rounding of ``|x| |P|``)."""
        residual = self._residual_buffer(out, workspace)
        np.subtract(X[:, None, :], means[None], out=residual)
        self._whiten_residuals(residual, factor, out)

    def shifted_form(self, means: np.ndarray, prec_chol: np.ndarray,
                     centre: np.ndarray) -> dict[str, Any] | None:
        """What :meth:`whiten_shifted` needs, once per parameters; None where
        the residuals about each mean cost no more (no correlations)."""
        return None

    def whiten_shifted(self, X: np.ndarray, form: dict[str, Any], out: np.ndarray,
                       workspace: Any) -> bool:
        """:meth:`whiten` as ``x' P_k - m_k P_k`` with x' = x - centre and
        m_k = mu_k - centre: one matrix product for all components (2.3x
        faster than a product per component at d = 16, K = 8).  Its rounding
        is about eps |x'| |P_k| in each whitened coordinate, so it is used
        only while every row's distance from the centre, in units of the
        smallest spread of any component, is below SHIFTED_LIMIT (the
        log-densities then lose less than 1e-10); returns False, with
        nothing written, otherwise."""
        centred = workspace.array("centred", X.shape, np.float64)
        np.subtract(X, form["centre"], out=centred)
        distance = np.sqrt(np.einsum("md,md->m", centred, centred).max(initial=0.0))
        if not distance * form["scale"] <= SHIFTED_LIMIT:
            return False
        self._whiten_centred(centred, form, out)
        return True

    def _whiten_centred(self, centred: np.ndarray, form: dict[str, Any],
                        out: np.ndarray) -> None:
        raise NotImplementedError

    def _residual_buffer(self, out: np.ndarray, workspace: Any) -> np.ndarray:
        """Where :meth:`whiten` puts the residuals before whitening them."""
        return workspace.array("residual", out.shape, out.dtype)

    def _whiten_residuals(self, residual: np.ndarray, factor: np.ndarray,
                          out: np.ndarray) -> None:
        """out = residual (m, K, d) times each component's ``fused_factor``."""
        raise NotImplementedError

    def log_det_prec_chol(self, prec_chol: np.ndarray, n_components: int,
                          n_features: int) -> np.ndarray:
        """``log |P_k|`` = half the log-determinant of each precision, (K,)."""
        raise NotImplementedError

    def whitened_second_moment(self, Y: np.ndarray, sq: np.ndarray, rw: np.ndarray,
                               workspace: Any) -> np.ndarray:
        """``sum_i rw_ik y_ik y_ik^T`` in the structure's shape (float64)."""
        raise NotImplementedError

    def unwhiten(self, first: np.ndarray, second: np.ndarray,
                 cov_chol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whitened moments back to data coordinates (about each mean)."""
        raise NotImplementedError

    def fused_factor(self, prec_chol: np.ndarray, n_components: int,
                     n_features: int) -> np.ndarray:
        """The precision factor as the fused kernel takes it: one per
        component, (K, d) scales or (K, d, d) triangles."""
        raise NotImplementedError

    def fused_second(self, second: np.ndarray) -> np.ndarray:
        """The kernel's per-component second moments, (K, d) or the upper
        triangles of (K, d, d), in the structure's shape."""
        raise NotImplementedError

    def quadratic_coefficients(self, means: np.ndarray, prec_chol: np.ndarray,
                               shift: np.ndarray, const: np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
        """The log-densities as one linear map of quadratic features.

        With x' = x - shift and m_k = mu_k - shift, ``log N_k(x) + const_k``
        is ``-1/2 x'^T A_k x' + x'^T A_k m_k + const_k - 1/2 m_k^T A_k m_k``
        (A_k the precision): linear in the features x'_a x'_b (a <= b), x'
        and 1 (:func:`emix.families._numba_kernels.quadratic_features`).
        Returns those coefficients, (K, d (d + 1) / 2 + d + 1), and bounds
        (3, K) on the magnitude of the terms at a row x': at most
        ``a_k |x'|^2 + b_k |x'| + c_k``, with a_k half the largest absolute
        row sum of A_k, b_k the norm of A_k m_k and c_k the constant's
        magnitude; the expansion's rounding is proportional to that sum
        (:func:`emix.families._numba_kernels.flag_inexact_rows`)."""
        n_components, n_features = means.shape
        precisions = np.broadcast_to(self.precisions(prec_chol),
                                     (n_components, n_features, n_features))
        offsets = means - shift
        pulled = np.einsum("kij,kj->ki", precisions, offsets)
        spread = np.einsum("ki,ki->k", offsets, pulled)
        rows, columns = np.triu_indices(n_features)
        quadratic = precisions[:, rows, columns] * np.where(rows == columns, -0.5, -1.0)
        constant = const - 0.5 * spread
        theta = np.concatenate([quadratic, pulled, constant[:, None]], axis=1)
        bounds = np.stack([0.5 * np.abs(precisions).sum(axis=2).max(axis=1),
                           np.linalg.norm(pulled, axis=1), np.abs(constant)])
        return theta, bounds

    # -- M-step ------------------------------------------------------------
    def empirical(self, resp_weight: np.ndarray, delta: np.ndarray, second: np.ndarray,
                  total: float) -> np.ndarray:
        """Unregularised covariance from moments about the old means.

        ``delta = first / N`` is the move of each mean; ``second`` the
        centred second moment about the old mean, so the covariance about
        the new mean is ``second / N - delta delta^T``.  The subtraction only
        cancels the (small) move of the mean, never the data's offset.
        """
        raise NotImplementedError

    def total_covariance(self, resp_weight: np.ndarray, means: np.ndarray,
                         empirical: np.ndarray) -> np.ndarray:
        """The data's covariance (law of total variance), one component's shape."""
        raise NotImplementedError

    def degenerate(self, empirical: np.ndarray, means: np.ndarray, delta: np.ndarray,
                   total: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Which covariances are singular to rounding, (K,) bool (one entry for
        "tied").

        Judged in the data's frame: each feature standardised by the data's
        own standard deviation, constant and collinear directions left out (a
        constant column is no collapse).  There a covariance is degenerate
        when its smallest variance is at the rounding level of the numbers it
        was computed from: ``(m eps)^2 |mu - centre|^2 + m eps (largest
        variance + |delta|^2)`` with m = ROUNDING_MARGIN and ``centre`` the
        mixture's mean.  Far-apart clusters are not compared with each other,
        and an offset common to all the data does not count.
        """
        raise NotImplementedError

    def pooled(self, resp_weight: np.ndarray, empirical: np.ndarray,
               healthy: np.ndarray) -> np.ndarray | None:
        """The within-component covariance pooled over the ``healthy``
        components, one component's shape (None for "tied", whose one
        covariance is the thing that collapsed)."""
        weights = resp_weight * healthy
        if not weights.sum() > 0:
            return None
        return np.tensordot(weights / weights.sum(), empirical, axes=1)

    def add_floor(self, empirical: np.ndarray, components: list[int],
                  floor: np.ndarray) -> np.ndarray:
        """``empirical`` with ``floor`` added to the given components."""
        out = empirical.copy()
        out[components] += floor
        return out

    def replace(self, empirical: np.ndarray, components: list[int],
                value: np.ndarray) -> np.ndarray:
        """``empirical`` with the given components' covariance set to ``value``."""
        out = empirical.copy()
        out[components] = value
        return out

    def regularise(self, empirical: np.ndarray, reg_covar: float) -> np.ndarray:
        raise NotImplementedError

    def factor(self, covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(L, P)``: covariance Cholesky factors and precision factors.

        Raises :class:`SingularCovariance` naming the components that are not
        positive definite.
        """
        raise NotImplementedError

    # -- conversions ---------------------------------------------------------
    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def cov_chol_from_prec_chol(self, prec_chol: np.ndarray) -> np.ndarray:
        """``L = P^{-T}``: the covariance factor matching a precision factor
        exactly, without factoring (possibly rounded) covariances again."""
        return np.swapaxes(np.linalg.inv(prec_chol), -1, -2)

    def covariances_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`precisions`; raises SingularCovariance if one is
        not positive definite."""
        raise NotImplementedError

    def covariances_from_cov_chol(self, cov_chol: np.ndarray) -> np.ndarray:
        """``L L^T``, the covariances of covariance factors."""
        return cov_chol @ np.swapaxes(cov_chol, -1, -2)

    def condition(self, covariances: np.ndarray) -> float:
        """The largest condition number of the components' correlation
        matrices: how much rounding the factorisations and whitening amplify
        (both are invariant to the columns' scales).  1 for structures
        without correlations."""
        return 1.0

    def valid_factor(self, prec_chol: np.ndarray) -> bool:
        """Whether ``prec_chol`` is a usable precision factor: finite, with a
        positive diagonal whose inverse is finite."""
        diagonal = np.diagonal(prec_chol, axis1=-2, axis2=-1)
        with np.errstate(divide="ignore"):
            return bool(np.isfinite(prec_chol).all() and (diagonal > 0).all()
                        and np.isfinite(1.0 / diagonal).all())

    def full_matrices(self, covariances: np.ndarray, n_components: int,
                      n_features: int) -> np.ndarray:
        """Each component's covariance as a (K, d, d) matrix."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, mean: np.ndarray, cov_chol: np.ndarray,
             component: int, n: int) -> np.ndarray:
        """n samples of component ``component``."""
        z = rng.standard_normal((n, mean.shape[0]))
        return mean + self._scale_noise(z, cov_chol, component)

    def _scale_noise(self, z, cov_chol, k):
        raise NotImplementedError


def _whitened_first(Y: np.ndarray, rw: np.ndarray) -> np.ndarray:
    return np.einsum("mk,mkd->kd", rw, Y)


def _cholesky_factors(covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched lower Cholesky factors and ``P = L^{-T}`` of (K, d, d) matrices.

    LAPACK's potrf and trtri are called directly: scipy.linalg's checking
    wrappers cost more than the factorisations themselves at small d, and
    this runs in every M-step."""
    if covariances.shape[-1] == 1:
        # 1 x 1 matrices: the factors are sqrt(c) and 1 / sqrt(c), as
        # LAPACK computes them, without a call per component.
        variances = covariances[:, 0, 0]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            cov_chol = np.sqrt(covariances)
            prec_chol = 1.0 / cov_chol
        failed = ~((variances > 0) & np.isfinite(prec_chol[:, 0, 0]))
        if failed.any():
            raise SingularCovariance([int(k) for k in np.flatnonzero(failed)])
        return cov_chol, prec_chol
    cov_chol = np.empty_like(covariances)
    prec_chol = np.empty_like(covariances)
    failed = []
    for k, cov in enumerate(covariances):
        chol, info = lapack.dpotrf(cov, lower=1, clean=1)
        if info == 0:
            inverse, info = lapack.dtrtri(chol, lower=1)
        if info != 0:
            failed.append(k)
            continue
        cov_chol[k] = chol
        prec_chol[k] = inverse.T
    # Factors of finite positive definite matrices are finite unless an
    # inverse overflows: find which only then.
    if not failed and not np.isfinite(prec_chol).all():
        failed = [int(k) for k in np.flatnonzero(~np.isfinite(prec_chol).all(axis=(1, 2)))]
    if failed:
        raise SingularCovariance(sorted(failed))
    return cov_chol, prec_chol


def _rounding_level(offsets: np.ndarray, delta: np.ndarray, scale: np.ndarray,
                    largest: np.ndarray) -> np.ndarray:
    """The variance below which a standardised variance is rounding noise;
    ``offsets`` are the means' distances from the mixture's centre."""
    location = ((offsets / scale) ** 2).sum(axis=-1)
    move = ((delta / scale) ** 2).sum(axis=-1)
    margin = ROUNDING_MARGIN * _EPS
    return margin**2 * location + margin * (largest + move)


def _varying_features(variance: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Features whose variance in the data exceeds the rounding level of
    their values (the others are constant columns)."""
    magnitude = np.abs(means).max(axis=0)
    return variance > (CONSTANT_MARGIN * _EPS * magnitude) ** 2


#: The last data frame computed: (total covariance, varying features, frame).
#: The total covariance is the data's own, the same in every M-step of a fit
#: to rounding, so its eigendecomposition need not be redone each time.
_last_frame: tuple | None = None


def _data_frame(total: np.ndarray, means: np.ndarray):
    """(varying features, their scales, a basis of the directions in which
    the data vary, in standardised units), or None when no feature varies."""
    global _last_frame
    varying = _varying_features(np.diagonal(total), means)
    cached = _last_frame
    if (cached is not None and cached[0].shape == total.shape
            and (cached[1] == varying).all()
            and np.abs(cached[0] - total).max() <= 1e-12 * np.abs(total).max()):
        return cached[2]
    frame = None
    if varying.any():
        scale = np.sqrt(np.diagonal(total)[varying])
        correlation = total[np.ix_(varying, varying)] / np.outer(scale, scale)
        eigenvalues, eigenvectors = np.linalg.eigh(correlation)
        keep = eigenvalues > COLLINEAR * eigenvalues[-1]
        frame = (varying, scale, eigenvectors[:, keep] / scale[:, None])
    _last_frame = (total.copy(), varying, frame)
    return frame


def _degenerate_matrices(matrices: np.ndarray, means: np.ndarray, delta: np.ndarray,
                         total: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """:meth:`CovarianceModel.degenerate` for (K', d, d) matrices; K' = 1
    judges one shared matrix against every component's location."""
    frame = _data_frame(total, means)
    if frame is None:
        return np.zeros(matrices.shape[0], dtype=bool)
    varying, scale, basis = frame
    offsets = means - centre
    if not varying.all():  # constant columns left out (the usual case has none)
        matrices = matrices[:, varying][:, :, varying]
        offsets, delta = offsets[:, varying], delta[:, varying]
    projected = basis.T @ matrices @ basis
    # One direction (the 1-D case): the matrices are their eigenvalues.
    spectrum = projected[:, 0] if projected.shape[-1] == 1 else np.linalg.eigvalsh(projected)
    level = _rounding_level(offsets, delta, scale,
                            spectrum[:, -1] if matrices.shape[0] > 1 else spectrum[0, -1])
    if matrices.shape[0] == 1:
        level = np.atleast_1d(level.max())
    return spectrum[:, 0] <= level


def _correlation_condition(matrices: np.ndarray) -> float:
    """:meth:`CovarianceModel.condition` of (K, d, d) covariances."""
    if matrices.shape[-1] == 1:  # every iteration of a 1-D fit: skip the work
        return 1.0
    scale = np.sqrt(np.einsum("kii->ki", matrices))
    correlations = matrices / (scale[:, :, None] * scale[:, None, :])
    spectra = np.linalg.eigvalsh(correlations)
    with np.errstate(divide="ignore"):
        return float(np.max(spectra[:, -1] / np.maximum(spectra[:, 0], 0.0)))


def _mirror_upper(matrices: np.ndarray) -> np.ndarray:
    """Symmetric matrices from their upper triangles (the lower is ignored)."""
    if matrices.shape[-1] == 1:  # nothing below the diagonal
        return matrices
    return np.where(_strictly_lower(matrices.shape[-1]), np.swapaxes(matrices, -1, -2),
                    matrices)


@functools.lru_cache(maxsize=64)
def _strictly_lower(n_features: int) -> np.ndarray:
    # Cached: this runs in every E-step, where np.triu's own mask costs more
    # than the mirroring.
    mask = np.tri(n_features, k=-1, dtype=bool)
    mask.flags.writeable = False
    return mask


def _symmetrise(matrices: np.ndarray) -> np.ndarray:
    return 0.5 * (matrices + np.swapaxes(matrices, -1, -2))


class FullCovariance(CovarianceModel):
    """Each component has its own full covariance matrix."""

    name = "full"
    fused_kernel = "triangular"
    fused_max_features = 4
    quadratic_form = True

    def shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def _whiten_residuals(self, residual, factor, out):
        for k in range(factor.shape[0]):
            np.matmul(residual[:, k], factor[k], out=out[:, k])

    def shifted_form(self, means, prec_chol, centre):
        n_components, n_features = means.shape
        # All components' whitening in one (d, K*d) matrix.
        stacked = np.ascontiguousarray(
            prec_chol.transpose(1, 0, 2).reshape(n_features, n_components * n_features))
        return {"centre": centre, "stacked": stacked,
                "offset": np.einsum("ki,kij->kj", means - centre, prec_chol).reshape(-1),
                "scale": float(np.sqrt(np.einsum("kij,kij->k", prec_chol, prec_chol).max()))}

    def _whiten_centred(self, centred, form, out):
        flat = out.reshape(centred.shape[0], -1)
        np.matmul(centred, form["stacked"], out=flat)
        flat -= form["offset"]

    def log_det_prec_chol(self, prec_chol, n_components, n_features):
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)

    def whitened_second_moment(self, Y, sq, rw, workspace):
        weighted = workspace.array("weighted", Y.shape, Y.dtype)
        np.multiply(Y, rw[:, :, None], out=weighted)
        # (K, d, m) @ (K, m, d): one BLAS product per component, no copies.
        second = np.matmul(weighted.transpose(1, 2, 0), Y.transpose(1, 0, 2))
        return second.astype(np.float64, copy=False)

    def unwhiten(self, first, second, cov_chol):
        first = np.einsum("kij,kj->ki", cov_chol, first)
        second = cov_chol @ second @ np.swapaxes(cov_chol, 1, 2)
        return first, second

    def fused_factor(self, prec_chol, n_components, n_features):
        return prec_chol

    def fused_second(self, second):
        return _mirror_upper(second)

    def condition(self, covariances):
        return _correlation_condition(covariances)

    def empirical(self, resp_weight, delta, second, total):
        covariances = second / resp_weight[:, None, None]
        covariances -= delta[:, :, None] * delta[:, None, :]
        return _symmetrise(covariances)

    def total_covariance(self, resp_weight, means, empirical):
        fractions = resp_weight / resp_weight.sum()
        spread = means - fractions @ means
        n_features = means.shape[1]
        within = (fractions @ empirical.reshape(len(fractions), -1)).reshape(n_features, -1)
        between = (spread * fractions[:, None]).T @ spread
        return _symmetrise(within + between)

    def degenerate(self, empirical, means, delta, total, centre):
        return _degenerate_matrices(empirical, means, delta, total, centre)

    def regularise(self, empirical, reg_covar):
        out = empirical.copy()
        diagonal = np.einsum("kii->ki", out)
        diagonal += reg_covar
        return out

    def factor(self, covariances):
        return _cholesky_factors(covariances)

    def precisions(self, prec_chol):
        return prec_chol @ np.swapaxes(prec_chol, 1, 2)

    def covariances_from_precisions(self, precisions):
        return _invert_spd(precisions)

    def full_matrices(self, covariances, n_components, n_features):
        return covariances.copy()

    def _scale_noise(self, z, cov_chol, k):
        return z @ cov_chol[k].T


class TiedCovariance(CovarianceModel):
    """All components share one full covariance matrix."""

    name = "tied"
    per_component = False
    fused_kernel = "triangular"
    fused_max_features = 4
    quadratic_form = True

    def shape(self, n_components, n_features):
        return (n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def _whiten_residuals(self, residual, factor, out):
        n_features = residual.shape[2]
        np.matmul(residual.reshape(-1, n_features), factor[0],
                  out=out.reshape(-1, n_features))

    def shifted_form(self, means, prec_chol, centre):
        return {"centre": centre, "prec_chol": prec_chol,
                "offset": (means - centre) @ prec_chol,
                "scale": float(np.sqrt(np.einsum("ij,ij->", prec_chol, prec_chol)))}

    def _whiten_centred(self, centred, form, out):
        projected = centred @ form["prec_chol"]
        np.subtract(projected[:, None, :], form["offset"][None, :, :], out=out)

    def log_det_prec_chol(self, prec_chol, n_components, n_features):
        return np.full(n_components, np.log(np.diagonal(prec_chol)).sum())

    def whitened_second_moment(self, Y, sq, rw, workspace):
        weighted = workspace.array("weighted", Y.shape, Y.dtype)
        np.multiply(Y, rw[:, :, None], out=weighted)
        n_features = Y.shape[2]
        second = weighted.reshape(-1, n_features).T @ Y.reshape(-1, n_features)
        return second.astype(np.float64, copy=False)

    def unwhiten(self, first, second, cov_chol):
        return first @ cov_chol.T, cov_chol @ second @ cov_chol.T

    def fused_factor(self, prec_chol, n_components, n_features):
        return np.ascontiguousarray(np.broadcast_to(prec_chol, (n_components, *prec_chol.shape)))

    def fused_second(self, second):
        return _mirror_upper(second.sum(axis=0))

    def condition(self, covariances):
        return _correlation_condition(covariances[None])

    def empirical(self, resp_weight, delta, second, total):
        moved = np.einsum("k,ki,kj->ij", resp_weight, delta, delta)
        return _symmetrise((second - moved) / total)

    def total_covariance(self, resp_weight, means, empirical):
        fractions = resp_weight / resp_weight.sum()
        spread = means - fractions @ means
        between = np.einsum("k,ki,kj->ij", fractions, spread, spread)
        return _symmetrise(empirical + between)

    def degenerate(self, empirical, means, delta, total, centre):
        return _degenerate_matrices(empirical[None], means, delta, total, centre)

    def pooled(self, resp_weight, empirical, healthy):
        return None

    def add_floor(self, empirical, components, floor):
        return empirical + floor

    def replace(self, empirical, components, value):
        return empirical  # one shared covariance: nothing belongs to k alone

    def regularise(self, empirical, reg_covar):
        return empirical + reg_covar * np.eye(empirical.shape[0])

    def factor(self, covariances):
        cov_chol, prec_chol = _cholesky_factors(covariances[None])
        return cov_chol[0], prec_chol[0]

    def precisions(self, prec_chol):
        return prec_chol @ prec_chol.T

    def covariances_from_precisions(self, precisions):
        return _invert_spd(precisions[None])[0]

    def full_matrices(self, covariances, n_components, n_features):
        return np.broadcast_to(covariances, (n_components, n_features, n_features)).copy()

    def _scale_noise(self, z, cov_chol, k):
        return z @ cov_chol.T


class _ScaleModel(CovarianceModel):
    """Structures without correlations, where the covariance factor is a
    plain scale: one per feature (diag) or one per component (spherical).
    ``prec_chol.reshape(K, -1)`` broadcasts against (K, d) in both."""

    fused_kernel = "scaled"
    fused_max_features = 2**31

    def _residual_buffer(self, out, workspace):
        return out  # scaled in place

    def _whiten_residuals(self, residual, factor, out):
        np.multiply(residual, factor, out=out)

    def unwhiten(self, first, second, cov_chol):
        return first * cov_chol.reshape(first.shape[0], -1), second * cov_chol**2

    def regularise(self, empirical, reg_covar):
        return empirical + reg_covar

    def factor(self, covariances):
        bad = ~(np.isfinite(covariances) & (covariances > 0))
        _raise_for_rows(bad)
        scale = np.sqrt(covariances)
        prec_chol = 1.0 / scale
        _raise_for_rows(~np.isfinite(prec_chol))
        return scale, prec_chol

    def precisions(self, prec_chol):
        return prec_chol**2

    def cov_chol_from_prec_chol(self, prec_chol):
        return 1.0 / prec_chol

    def covariances_from_cov_chol(self, cov_chol):
        return cov_chol**2

    def valid_factor(self, prec_chol):
        with np.errstate(divide="ignore"):
            return bool(np.isfinite(prec_chol).all() and (prec_chol > 0).all()
                        and np.isfinite(1.0 / prec_chol).all())

    def covariances_from_precisions(self, precisions):
        _raise_for_rows(~(np.isfinite(precisions) & (precisions > 0)))
        return 1.0 / precisions

    def _scale_noise(self, z, cov_chol, k):
        return z * cov_chol[k]


class DiagCovariance(_ScaleModel):
    """Each component has its own variance per feature (no correlations)."""

    name = "diag"

    def shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def log_det_prec_chol(self, prec_chol, n_components, n_features):
        return np.log(prec_chol).sum(axis=1)

    def fused_factor(self, prec_chol, n_components, n_features):
        return prec_chol

    def fused_second(self, second):
        return second

    def whitened_second_moment(self, Y, sq, rw, workspace):
        squared = workspace.array("weighted", Y.shape, Y.dtype)
        np.multiply(Y, Y, out=squared)
        return np.einsum("mk,mkd->kd", rw, squared).astype(np.float64, copy=False)

    def empirical(self, resp_weight, delta, second, total):
        return np.maximum(second / resp_weight[:, None] - delta**2, 0.0)

    def total_covariance(self, resp_weight, means, empirical):
        fractions = resp_weight / resp_weight.sum()
        spread = means - fractions @ means
        return fractions @ (empirical + spread**2)

    def degenerate(self, empirical, means, delta, total, centre):
        varying = _varying_features(total, means)
        if not varying.any():
            return np.zeros(empirical.shape[0], dtype=bool)
        scale = np.sqrt(total[varying])
        standardised = empirical[:, varying] / scale**2
        level = _rounding_level((means - centre)[:, varying], delta[:, varying], scale,
                                standardised.max(axis=1))
        return standardised.min(axis=1) <= level

    def full_matrices(self, covariances, n_components, n_features):
        return np.stack([np.diag(v) for v in covariances])


class SphericalCovariance(_ScaleModel):
    """Each component has one variance shared by all features."""

    name = "spherical"

    def shape(self, n_components, n_features):
        return (n_components,)

    def n_parameters(self, n_components, n_features):
        return n_components

    def log_det_prec_chol(self, prec_chol, n_components, n_features):
        return n_features * np.log(prec_chol)

    def fused_factor(self, prec_chol, n_components, n_features):
        return np.repeat(prec_chol[:, None], n_features, axis=1)

    def fused_second(self, second):
        return second.sum(axis=1)

    def whitened_second_moment(self, Y, sq, rw, workspace):
        return np.einsum("mk,mk->k", rw, sq).astype(np.float64, copy=False)

    def empirical(self, resp_weight, delta, second, total):
        n_features = delta.shape[1]
        moved = np.einsum("kd,kd->k", delta, delta)
        return np.maximum((second / resp_weight - moved) / n_features, 0.0)

    def total_covariance(self, resp_weight, means, empirical):
        fractions = resp_weight / resp_weight.sum()
        spread = means - fractions @ means
        return fractions @ (empirical + np.einsum("kd,kd->k", spread, spread) / means.shape[1])

    def degenerate(self, empirical, means, delta, total, centre):
        if not total > (CONSTANT_MARGIN * _EPS * np.abs(means).max()) ** 2:
            return np.zeros(empirical.shape[0], dtype=bool)  # the data are one point
        scale = np.full(means.shape[1], np.sqrt(total))
        standardised = empirical / total
        return standardised <= _rounding_level(means - centre, delta, scale, standardised)

    def full_matrices(self, covariances, n_components, n_features):
        return covariances[:, None, None] * np.eye(n_features)


def _raise_for_rows(bad: np.ndarray) -> None:
    """Raise SingularCovariance naming the components (rows) with a bad entry."""
    if bad.any():
        rows = bad.reshape(bad.shape[0], -1).any(axis=1)
        raise SingularCovariance([int(k) for k in np.flatnonzero(rows)])


def _invert_spd(precisions: np.ndarray) -> np.ndarray:
    """Covariances from (K, d, d) symmetric positive definite precisions."""
    failed = []
    covariances = np.empty_like(precisions)
    identity = np.eye(precisions.shape[-1])
    for k, precision in enumerate(precisions):
        # Inverses computed in floating point are symmetric only to rounding.
        if np.abs(precision - precision.T).max() > 1e-10 * np.abs(precision).max():
            failed.append(k)
            continue
        try:
            chol = linalg.cholesky(0.5 * (precision + precision.T), lower=True,
                                   check_finite=False)
        except linalg.LinAlgError:
            failed.append(k)
            continue
        inverse_chol = linalg.solve_triangular(chol, identity, lower=True,
                                               check_finite=False)
        covariances[k] = inverse_chol.T @ inverse_chol
    if failed:
        raise SingularCovariance(failed)
    return _symmetrise(covariances)


#: The registry through which ``covariance_type`` is resolved, once.
COVARIANCE_MODELS: dict[str, CovarianceModel] = {
    model.name: model
    for model in (FullCovariance(), TiedCovariance(), DiagCovariance(), SphericalCovariance())
}
