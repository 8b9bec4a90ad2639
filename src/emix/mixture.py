"""``GaussianMixture``: scikit-learn's estimator, made not to fail.

The public API and semantics are scikit-learn's (``sklearn.mixture
.GaussianMixture``) so that code, pipelines and ``clone`` work unchanged.
Where emix differs on purpose:

- ``lower_bound_`` is the log-likelihood of the *returned* parameters
  (scikit-learn reports that of the parameters one M-step earlier), and
  ``lower_bounds_`` holds it after 0, 1, ..., ``n_iter_`` M-steps.
- Convergence is one of ``converged`` / ``max_iter`` / ``diverged``
  (``convergence_state_``); on divergence the best parameters seen are kept.
- ``fit`` takes frequency weights (``sample_weight``): a weight of 2 is the
  row twice, in initialisation, EM, ``score`` and the criteria.
- A collapsing component is floored, reseeded or reported as an error
  (``on_collapse``), never left to produce NaN; ``collapses_`` lists what
  happened.
- 1-D input is one feature; integer input becomes float64; float32 input
  gives float32 attributes and outputs: EM runs on float64 parameters, the
  result is rounded once and ``lower_bound_`` (``lower_bounds_[-1]``) is
  the log-likelihood of exactly the stored numbers; the compiled kernels'
  quadratic forms run in float32, everything else (residuals, moments, the
  NumPy path, scoring) in float64.
- The E-step runs over chunks of rows (``chunk_size``) on every core
  (``n_threads``), so memory does not grow with n_samples x n_components,
  and the result does not depend on the number of threads.
- ``'k-means++'`` and ``'random_from_data'`` start from the chosen centres
  with hard assignments of all rows (respectively the data's covariance),
  not from covariances equal to ``reg_covar``.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

import numpy as np

from . import _validation as check
from .em import online
from .em.checkpoint import Checkpoint
from .em.engine import COLLAPSE_POLICIES, Progress, run_restarts
from .em.init import INIT_METHODS, distinct_sample, initial_params
from .em.monitor import CONVERGED, DIVERGED
from .exceptions import (
    ComponentCollapseWarning,
    ConvergenceWarning,
    DataWarning,
    InvalidInputError,
    floating_point_guard,
    not_fitted,
)
from .execution.chunked import ChunkedData, memmap_source
from .execution.digest import data_digest
from .execution.memory import InMemoryData, default_chunk_rows, default_task_rows
from .execution.threads import available_cores, single_threaded_blas
from .execution.workspace import Workspace
from .families.covariance import COVARIANCE_MODELS
from .families.gaussian import GaussianFamily, GaussianParams
from .io.tables import iter_chunks

logger = logging.getLogger("emix")

_FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


class GaussianMixture:
    """Gaussian mixture model fitted by Expectation-Maximization.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        Structure of the covariances: one full matrix per component, one
        full matrix shared by all, one variance per feature and component,
        or one variance per component.
    tol : float, default=1e-3
        EM stops (``converged``) when the per-sample log-likelihood changes
        by less than this between two iterations.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, in the data's units.
    max_iter : int, default=100
        Most EM iterations (M-steps) per initialisation.
    n_init : int, default=1
        Initialisations to run; the fit with the highest log-likelihood wins.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How to start: k-means clustering, k-means++ seeds ('kmeans++' is
        accepted too), random responsibilities, or random rows as means.
    weights_init : array of shape (K,), optional
    means_init : array of shape (K, d), optional
    precisions_init : array, optional
        Initial precisions (inverse covariances) in the covariance
        structure's shape: (K, d, d) full, (d, d) tied, (K, d) diag, (K,)
        spherical.  Whatever is given replaces that part of ``init_params``.
    random_state : int, Generator, RandomState or None, default=None
        Seeds initialisation and :meth:`sample`; the same seed gives the same fit.
    warm_start : bool, default=False
        Start the next ``fit`` from the current parameters (``n_init`` is
        then 1).
    verbose : int, default=0
        1 logs each initialisation; 2 also logs every ``verbose_interval``
        iterations.  Messages go to the ``"emix"`` logger (to stderr if
        logging is not configured).
    verbose_interval : int, default=10
    on_collapse : {'floor', 'reseed', 'raise'}, default='floor'
        What to do when a component collapses (its weight vanishes, or its
        covariance becomes singular to rounding in a direction in which the
        data vary).  'floor' adds 1e-4 of the healthy components' pooled
        covariance to its own and keeps that floor for the rest of the fit (a
        component whose weight vanished keeps its mean and takes the data's
        covariance); 'reseed' splits a healthy component (the heaviest first,
        each once per M-step) in two along its principal axis and gives it
        one half, at most K times per initialisation, then falls back to
        'floor'; 'raise' stops with
        :class:`~emix.exceptions.DegenerateComponentError`.  Repairs are
        listed in ``collapses_`` and reported by a
        :class:`~emix.exceptions.ComponentCollapseWarning`.
    chunk_size : int, optional
        Rows per E-step chunk (the unit of work of a thread); by default
        at most 65,536 rows, and few enough that every thread gets a chunk
        of at least 16,384 rows when there are enough.  The E-step splits a
        chunk where its temporaries need it: they never exceed a few MB,
        whatever n.  For a file or memory map, the rows read at a time
        (default: 64 MB of them; the E-step then splits each as above); for
        a Dask array, the rows per block (default: its own blocks).
    n_threads : int, optional
        Threads that run the E-step's chunks concurrently; by default every
        core this process may use.  The result does not depend on it (the
        chunks' statistics are added in order).  Chunks that call BLAS run
        concurrently only with threadpoolctl installed (``emix[fast]``),
        which holds BLAS to one thread per call during the fit.

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, d)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        In the covariance structure's shape; ``precisions_cholesky_`` is
        upper triangular with ``precisions_ = P @ P.T``.
    converged_ : bool
    convergence_state_ : {'converged', 'max_iter', 'diverged'}
    n_iter_ : int
        M-steps of the best initialisation.
    lower_bound_ : float
        Per-sample (weighted mean) log-likelihood of the fitted parameters.
    lower_bounds_ : list of float
        The same after 0, 1, ..., ``n_iter_`` M-steps.
    collapses_ : list of Collapse
        Components repaired during the best initialisation.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` was a data frame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from emix import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-2, 1, 500), rng.normal(3, 0.5, 500)])
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> np.round(np.sort(gm.means_.ravel()), 1)
    array([-2. ,  3. ])
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full",
                 tol: float = 1e-3, reg_covar: float = 1e-6, max_iter: int = 100,
                 n_init: int = 1, init_params: str = "kmeans", weights_init: Any = None,
                 means_init: Any = None, precisions_init: Any = None, random_state: Any = None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 on_collapse: str = "floor", chunk_size: int | None = None,
                 n_threads: int | None = None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.on_collapse = on_collapse
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    # -- scikit-learn's estimator contract -----------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> GaussianMixture:
        """Set constructor parameters; unknown names raise."""
        valid = set(self._get_param_names())
        for name, value in params.items():
            if name not in valid:
                raise InvalidInputError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in
                    inspect.signature(type(self).__init__).parameters.items()}
        shown = []
        for name, value in self.get_params().items():
            default = defaults[name]
            if value is default or (not isinstance(value, np.ndarray)
                                    and not isinstance(default, np.ndarray)
                                    and _same(value, default)):
                continue
            shown.append(f"{name}={value!r}" if name != "n_components" else repr(value))
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so scikit-learn is importable here;
        # emix itself does not depend on it.
        from sklearn.utils import InputTags, Tags, TargetTags

        # one_d_array stays False: in scikit-learn it means "only 1-D input".
        return Tags(estimator_type="density_estimator",
                    target_tags=TargetTags(required=False), input_tags=InputTags())

    def __sklearn_is_fitted__(self) -> bool:
        return all(hasattr(self, name) for name in _FITTED)

    # -- fitting -----------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None, *,
            progress: Callable[[Progress], None] | None = None,
            checkpoint: str | os.PathLike | None = None) -> GaussianMixture:
        """Estimate the parameters by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples,)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights (>= 0, not all zero).
        progress : callable, optional
            Called with an :class:`~emix.em.engine.Progress` (initialisation i
            of n, iteration, per-sample log-likelihood, its change, elapsed
            seconds, state) after every iteration of every initialisation.
            emix itself never prints: this and the ``"emix"`` logger are how
            it reports.
        checkpoint : path, optional
            A file where the state of the fit is written (atomically) after
            every iteration.  A fit that was killed, started again with the
            same arguments and checkpoint, resumes where it stopped and ends
            with the same parameters as an uninterrupted fit; once the fit
            has finished, the file holds its result and a repeated call
            returns it without refitting.  A checkpoint written by a fit
            with other settings or other data (their digest) is refused.

        Returns
        -------
        self
        """
        settings = self._check_settings()
        with ExitStack() as opened:
            data, names = self._data_for_fit(X, sample_weight, settings, opened)
            return self._fit_data(data, names, settings, progress, checkpoint)

    def _fit_data(self, data: Any, names: np.ndarray | None, settings: dict[str, Any],
                  progress: Callable[[Progress], None] | None,
                  checkpoint_path: str | os.PathLike | None) -> GaussianMixture:
        n_components = settings["n_components"]
        self._check_sample_count(data.n_positive, n_components)
        # The columns' summary serves the warnings after the fit and, before
        # it, the scale of the data that bounds any covariance's rounding.
        low, high, variance = data.column_summary()
        with np.errstate(over="ignore"):  # data near float64's range: an infinite extent
            extent = float(np.sum((high - low) ** 2))
        family = GaussianFamily(settings["covariance_type"], settings["reg_covar"], data.dtype,
                                data_extent=extent)
        n_features = data.n_features
        user_init = self._check_initial_parameters(family, n_components, n_features)
        rng = check.check_random_state(self.random_state)

        continuing = bool(self.warm_start) and self.__sklearn_is_fitted__()
        if continuing:
            self._check_n_features(n_features)
            self._check_warm_start_shapes(family, n_components, n_features)
            start = self._fitted_params()

            def initialise(restart: int) -> GaussianParams:
                return start
        elif all(part is not None for part in user_init.values()):
            # Every parameter given: no method runs on the rows, so no sample
            # of them is drawn.
            start = initial_params(family, data, n_components, settings["init_params"], rng,
                                   None, **user_init)

            def initialise(restart: int) -> GaussianParams:
                return start
        else:
            distinct = distinct_sample(data, n_components, rng)

            def initialise(restart: int) -> GaussianParams:
                if self.verbose:
                    logger.info("initialisation %d of %d (%s)", restart + 1, n_init,
                                settings["init_params"])
                return initial_params(family, data, n_components, settings["init_params"],
                                      rng, distinct, **user_init)

        n_init = 1 if continuing else settings["n_init"]
        if self.verbose:
            _ensure_log_handler()
        log_progress = self.verbose >= 2

        def report(state: Progress) -> None:
            if log_progress:
                self._log_progress(state)
            if progress is not None:
                progress(state)

        with ExitStack() as threads, floating_point_guard():
            if settings["n_threads"] > 1:
                blas_limited = threads.enter_context(single_threaded_blas())
                if blas_limited or not family.calls_blas(n_features):
                    data.n_threads = settings["n_threads"]
            checkpoint = None
            if checkpoint_path is not None:
                checkpoint = Checkpoint(checkpoint_path, self._fingerprint(
                    settings, data, user_init, start if continuing else None), rng)
            result = run_restarts(family, data, initialise, n_init=n_init, checkpoint=checkpoint,
                                  tol=settings["tol"], max_iter=settings["max_iter"],
                                  on_collapse=settings["on_collapse"],
                                  callback=report if log_progress or progress else None)
            self._set_fitted(result, data.dtype, family, names, n_features)
            self._warn_about_features(low, high, variance)
        self._warn_about(result)
        return self

    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> GaussianMixture:
        """Update the fit with one batch of a stream seen once (online EM).

        Stepwise EM (Cappé & Moulines, 2009): a running average of the
        batches' statistics, with step sizes ``(t + STEP_OFFSET) ** -STEP_DECAY``
        (see :mod:`emix.em.online` for the schedule and what the fitted
        attributes mean); the first call initialises from its batch as
        ``fit`` would.  On stationary data the parameters approach the
        batch EM solution.
        """
        return online.partial_fit(self, X, sample_weight)

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then return the most probable component of each row."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def _check_settings(self) -> dict[str, Any]:
        return {
            "n_components": check.check_int("n_components", self.n_components, minimum=1),
            "covariance_type": check.check_choice("covariance_type", self.covariance_type,
                                                  COVARIANCE_MODELS),
            "tol": check.check_float("tol", self.tol),
            "reg_covar": check.check_float("reg_covar", self.reg_covar),
            "max_iter": check.check_int("max_iter", self.max_iter, minimum=1),
            "n_init": check.check_int("n_init", self.n_init, minimum=1),
            "init_params": check.check_choice("init_params", self.init_params, INIT_METHODS),
            "on_collapse": check.check_choice("on_collapse", self.on_collapse,
                                              COLLAPSE_POLICIES),
            "verbose": check.check_int("verbose", self.verbose, minimum=0),
            "verbose_interval": check.check_int("verbose_interval", self.verbose_interval,
                                                minimum=1),
            "chunk_size": (None if self.chunk_size is None
                           else check.check_int("chunk_size", self.chunk_size, minimum=1)),
            "n_threads": (available_cores() if self.n_threads is None
                          else check.check_int("n_threads", self.n_threads, minimum=1)),
        }

    def _check_warm_start_shapes(self, family: GaussianFamily, n_components: int,
                                 n_features: int, *, continuing: str = "warm_start=True",
                                 remedy: str = "Set warm_start=False to fit afresh.") -> None:
        """The settings must give the fitted model's shapes when a fit
        (``continuing``) goes on from it."""
        expected = family.covariance.shape(n_components, n_features)
        fitted = (np.shape(self.means_)[0], np.shape(self.covariances_))
        if fitted != (n_components, expected):
            raise InvalidInputError(
                f"{continuing} continues the fitted model ({fitted[0]} components, "
                f"covariances of shape {fitted[1]}), but the settings now ask for "
                f"n_components={n_components}, covariance_type={self.covariance_type!r}. "
                f"{remedy}"
            )

    def _fingerprint(self, settings: dict[str, Any], data: Any,
                     user_init: dict[str, np.ndarray | None],
                     start: GaussianParams | None) -> dict[str, Any]:
        """What identifies a fit for its checkpoint: the settings that change
        its result, the given starting values, the data's shape and a digest
        of the data (of their bytes, however they are read)."""
        kept = {key: value for key, value in settings.items()
                if key not in ("verbose", "verbose_interval", "n_threads")}
        arrays = [value for value in user_init.values() if value is not None]
        if start is not None:
            arrays += [start.weights, start.means, start.prec_chol]
        digest = hashlib.sha256()
        for array in arrays:
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        seed = self.random_state
        return {**kept,
                "random_state": int(seed) if isinstance(seed, (int, np.integer)) else None,
                "starting values": digest.hexdigest()[:16] if arrays else None,
                "data": [data.n_samples, data.n_features, str(data.dtype), data.n_positive],
                "data digest": data_digest(data)}

    @staticmethod
    def _check_sample_count(n_samples: int, n_components: int) -> None:
        """``n_samples``: rows with positive weight."""
        if n_samples < 2:
            raise InvalidInputError(
                f"n_samples={n_samples}: at least 2 samples (with positive weight) are "
                "needed to estimate a covariance; pass more data."
            )
        if n_samples < n_components:
            raise InvalidInputError(
                f"n_samples={n_samples} is fewer than n_components={n_components}: each "
                "component needs at least one sample. Lower n_components or pass more data."
            )

    def _data_for_fit(self, X: Any, sample_weight: Any, settings: dict[str, Any],
                      opened: ExitStack) -> tuple[Any, np.ndarray | None]:
        """The back-end that reads ``X``, and its feature names: in memory,
        chunk by chunk (files, memory maps, chunk sources) or on Dask."""
        chunk_size = settings["chunk_size"]
        if _is_dask_collection(X):
            from .execution.dask_data import DaskData

            return DaskData.from_collection(X, sample_weight, chunk_rows=chunk_size)
        if isinstance(X, (str, os.PathLike)):
            table = opened.enter_context(iter_chunks(X, chunk_rows=chunk_size))
            weights = self._weights_for_source(sample_weight)
            return ChunkedData(lambda: iter(table), sample_weight=weights,
                               label=repr(str(X))), None
        if isinstance(X, np.memmap):
            weights = check.check_sample_weight(sample_weight, X.shape[0])
            return ChunkedData(memmap_source(X, chunk_size), sample_weight=weights,
                               label="the memory map"), None
        if isinstance(X, Iterator):  # after the memory map: not the other sources
            raise InvalidInputError(
                f"X is a one-shot iterator ({type(X).__name__}): EM reads the data once per "
                "iteration, and an iterator can be read only once. Pass a function that "
                "returns a fresh iterator of chunks instead, e.g. fit(lambda: read_chunks())."
            )
        if _is_chunk_source(X):
            return ChunkedData(X, sample_weight=self._weights_for_source(sample_weight),
                               task_rows=chunk_size), None
        names = check.feature_names_of(X)
        X = check.as_float_array(X)
        weights = check.check_sample_weight(sample_weight, X.shape[0])
        exponent = 0
        if weights is not None:
            # The fit does not depend on the weights' scale; a power of two
            # brings them near 1 exactly, whatever their range (1e-320, 1e300).
            exponent = -int(np.frexp(weights.max())[1])
            weights = np.ldexp(weights, exponent)
        return InMemoryData(X, weights, chunk_rows=chunk_size or default_task_rows(
            X.shape[0], settings["n_threads"]),
            weight_exponent=exponent), names

    @staticmethod
    def _weights_for_source(sample_weight: Any) -> np.ndarray | None:
        """Weights given apart from a chunked source: checked here, matched
        to its rows by the source."""
        if sample_weight is None:
            return None
        weights = np.asarray(sample_weight)
        return check.check_sample_weight(weights, weights.reshape(-1).shape[0])

    def _check_initial_parameters(self, family: GaussianFamily, n_components: int,
                                  n_features: int) -> dict[str, np.ndarray | None]:
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = _user_array("weights_init", self.weights_init, (n_components,))
            if (weights < 0).any():
                first = int(np.flatnonzero(weights < 0)[0])
                raise InvalidInputError(
                    f"weights_init must be non-negative; got {weights[first]!r} for "
                    f"component {first}. Mixture weights are probabilities."
                )
            if abs(weights.sum() - 1.0) > 1e-6:
                raise InvalidInputError(
                    f"weights_init must sum to 1; got sum {weights.sum():.8g}. "
                    "Normalise it: w / w.sum()."
                )
            weights = weights / weights.sum()
        if self.means_init is not None:
            means = _user_array("means_init", self.means_init, (n_components, n_features))
        if self.precisions_init is not None:
            shape = family.covariance.shape(n_components, n_features)
            precisions = _user_array("precisions_init", self.precisions_init, shape)
        return {"weights_init": weights, "means_init": means, "precisions_init": precisions}

    def _set_parameters(self, params: GaussianParams, dtype: np.dtype,
                        family: GaussianFamily) -> None:
        """The parameter attributes, in the data's dtype."""
        self.weights_ = params.weights.astype(dtype)
        self.means_ = params.means.astype(dtype)
        self.covariances_ = params.covariances.astype(dtype)
        self.precisions_cholesky_ = params.prec_chol.astype(dtype)
        self.precisions_ = family.covariance.precisions(params.prec_chol).astype(dtype)

    def _set_fitted(self, result, dtype: np.dtype, family: GaussianFamily,
                    names: np.ndarray | None, n_features: int) -> None:
        self._set_parameters(result.params, dtype, family)
        self.convergence_state_ = result.state
        self.converged_ = result.state == CONVERGED
        self.n_iter_ = result.n_iter
        self.lower_bound_ = float(result.log_likelihood)
        self.lower_bounds_ = list(result.history)
        self.collapses_ = list(result.collapses)
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _warn_about(self, result) -> None:
        if result.state == DIVERGED:
            warnings.warn(
                f"EM diverged: the log-likelihood fell by more than rounding or "
                f"reg_covar can explain (decreases at iterations "
                f"{[i for i, _ in result.decreases][:5]}); the best parameters seen are "
                "returned. Try another random_state, a larger reg_covar or fewer components.",
                ConvergenceWarning, stacklevel=4)
        elif result.state != CONVERGED:
            change = (result.history[-1] - result.history[-2]
                      if len(result.history) > 1 else float("nan"))
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations (last change "
                f"of the log-likelihood {change:.3g}, tol={self.tol}). Increase max_iter "
                "or tol, or check the data for degenerate structure.",
                ConvergenceWarning, stacklevel=4)
        if result.collapses:
            shown = "; ".join(
                f"{'shared covariance' if c.component < 0 else f'component {c.component}'} "
                f"{c.reason} at iteration {c.iteration}, {c.action}"
                for c in result.collapses[:5])
            more = "" if len(result.collapses) <= 5 else f" (and {len(result.collapses) - 5} more)"
            warnings.warn(
                f"{len(result.collapses)} component collapse(s) repaired: {shown}{more}. "
                "See collapses_; fewer n_components or a larger reg_covar may fit the data better.",
                ComponentCollapseWarning, stacklevel=4)

    def _warn_about_features(self, low: np.ndarray, high: np.ndarray,
                             variance: np.ndarray) -> None:
        """Warn about columns without variance, or with less than reg_covar
        (from every row's minimum, maximum and variance per column)."""
        constant = np.flatnonzero(high == low)
        if constant.size:
            warnings.warn(
                f"feature(s) {constant.tolist()[:10]} are constant: their variance in every "
                f"component is reg_covar={self.reg_covar:g}. Drop them if they carry no "
                "information.", DataWarning, stacklevel=4)
        swamped = np.flatnonzero((high > low) & (variance < self.reg_covar))
        if swamped.size:
            warnings.warn(
                f"reg_covar={self.reg_covar:g} exceeds the variance of feature(s) "
                f"{swamped.tolist()[:10]} (smallest {variance[swamped].min():.3g}): the "
                "fitted covariances there reflect the regulariser, not the data. "
                "Standardise the data or lower reg_covar.", DataWarning, stacklevel=4)

    def _log_progress(self, progress: Progress) -> None:
        if progress.iteration % self.verbose_interval == 0 or progress.state != "running":
            logger.info("init %d/%d iteration %d: log-likelihood %.10g (change %.3g, %.2fs) %s",
                        progress.restart + 1, progress.n_restarts, progress.iteration,
                        progress.log_likelihood, progress.change, progress.elapsed,
                        progress.state)

    # -- using a fitted model --------------------------------------------------------
    def _fitted_params(self, *, with_factor: bool = True) -> GaussianParams:
        """Parameters rebuilt from the public attributes, so that a model with
        edited or loaded attributes uses exactly those.

        The E-step uses the stored ``precisions_cholesky_`` as they are (no
        factorisation per call); ``with_factor`` adds the matching covariance
        factor ``L = P^{-T}`` that fitting and sampling need, derived from
        ``P`` rather than from covariances that may have been rounded to
        float32.
        """
        self._check_is_fitted()
        model = COVARIANCE_MODELS[self.covariance_type]
        prec_chol = np.asarray(self.precisions_cholesky_, dtype=np.float64)
        cov_chol = None
        if with_factor:
            try:
                cov_chol = model.cov_chol_from_prec_chol(prec_chol)
            except np.linalg.LinAlgError:
                raise InvalidInputError(
                    "precisions_cholesky_ is singular; it must be an invertible "
                    "precision factor (refit the model rather than editing it)."
                ) from None
        return GaussianParams(weights=np.asarray(self.weights_, dtype=np.float64),
                              means=np.asarray(self.means_, dtype=np.float64),
                              covariances=np.asarray(self.covariances_, dtype=np.float64),
                              cov_chol=cov_chol, prec_chol=prec_chol)

    def _check_is_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise not_fitted(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _data_for_prediction(self, X: Any) -> tuple[GaussianFamily, GaussianParams, InMemoryData]:
        params = self._fitted_params(with_factor=False)
        family = GaussianFamily(self.covariance_type, self.reg_covar)
        self._check_feature_names(X)
        X = check.as_float_array(X)
        self._check_n_features(X.shape[1])
        # The E-step's temporaries are float64 whatever X's dtype.
        rows = self.chunk_size or default_chunk_rows(params.n_components, X.shape[1], 8)
        return family, params, InMemoryData(X, chunk_rows=rows)

    def _check_n_features(self, n_features: int) -> None:
        if n_features != self.n_features_in_:
            hint = ""
            if n_features == 1:
                hint = (" (1-D input is read as one feature per sample; "
                        "Reshape your data with X.reshape(1, -1) if it is a single sample)")
            raise InvalidInputError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input{hint}."
            )

    def _check_feature_names(self, X: Any) -> None:
        fitted = getattr(self, "feature_names_in_", None)
        given = check.feature_names_of(X)
        name = type(self).__name__
        if fitted is None and given is not None:
            warnings.warn(f"X has feature names, but {name} was fitted without feature names",
                          UserWarning, stacklevel=3)
        elif fitted is not None and given is None:
            warnings.warn(f"X does not have valid feature names, but {name} was fitted with "
                          "feature names", UserWarning, stacklevel=3)
        elif fitted is not None and (len(fitted) != len(given) or np.any(fitted != given)):
            raise InvalidInputError(
                "The feature names should match those that were passed during fit. "
                f"Fitted with {list(fitted)[:10]}, got {list(given)[:10]}."
            )

    def _predict_dask(self, X: Any, method: str, per_component: bool,
                      dtype: Any = None) -> Any:
        """``family.<method>`` on each block of a Dask collection, lazily, in
        ``dtype`` (by default X's)."""
        from .execution.dask_data import map_rows

        params = self._fitted_params(with_factor=False)
        family = GaussianFamily(self.covariance_type, self.reg_covar)
        self._check_feature_names(X)
        if hasattr(X, "to_dask_array"):
            X = X.to_dask_array(lengths=True)
        self._check_n_features(1 if X.ndim == 1 else X.shape[1])
        if dtype is None:
            dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        dtype = np.dtype(dtype)
        return map_rows(X, partial(_predict_block, family, params, method, dtype),
                        params.n_components if per_component else None, dtype)

    def _rows_of(self, X: Any, method: str, dtype: Any = None) -> np.ndarray:
        """``family.<method>`` of every row (computed in float64), in
        ``dtype``: by default X's, that of what is returned to the user."""
        family, params, data = self._data_for_prediction(X)
        width = () if method == "log_density" else (params.n_components,)
        out = np.empty((data.n_samples, *width), dtype=dtype or data.dtype)
        with floating_point_guard():
            data.map_rows(lambda chunk, ws: _in_dtype(
                getattr(family, method)(params, chunk, ws), out.dtype), out)
        return out

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-density ``log p(x_i)`` of each row, shape (n_samples,), in X's
        dtype (float32 input: a log-density beyond float32's range is
        -inf); a Dask array for a Dask collection."""
        if _is_dask_collection(X):
            return self._predict_dask(X, "log_density", per_component=False)
        return self._rows_of(X, "log_density")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each component, shape (n_samples, K); a
        Dask array for a Dask collection."""
        if _is_dask_collection(X):
            return self._predict_dask(X, "responsibilities", per_component=True)
        return self._rows_of(X, "responsibilities")

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each row, shape (n_samples,)."""
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Per-sample (weighted mean) log-likelihood of ``X``."""
        log_density = self._log_densities(X)
        weights = check.check_sample_weight(sample_weight, log_density.shape[0])
        if weights is None:
            return float(log_density.mean())
        return float(weights @ log_density / weights.sum())

    def _n_parameters(self) -> int:
        """Free parameters of the fitted model (for BIC and AIC)."""
        n_components, n_features = np.shape(self.means_)
        family = GaussianFamily(self.covariance_type, self.reg_covar)
        return family.n_parameters(n_components, n_features)

    def _log_densities(self, X: Any) -> np.ndarray:
        """The log-density of each row, float64 whatever X's dtype (a Dask
        collection is computed)."""
        if _is_dask_collection(X):
            return np.asarray(self._predict_dask(X, "log_density", per_component=False,
                                                 dtype=np.float64))
        return self._rows_of(X, "log_density", np.float64)

    def _total_log_likelihood(self, X: Any, sample_weight: Any) -> tuple[float, float]:
        log_density = self._log_densities(X)
        weights = check.check_sample_weight(sample_weight, log_density.shape[0])
        if weights is None:
            return float(log_density.sum()), float(log_density.shape[0])
        return float(weights @ log_density), float(weights.sum())

    def bic(self, X: Any, sample_weight: Any = None) -> float:
        """Bayesian information criterion, ``-2 log L + p log n``; lower is better."""
        log_likelihood, n = self._total_log_likelihood(X, sample_weight)
        return -2.0 * log_likelihood + self._n_parameters() * np.log(n)

    def aic(self, X: Any, sample_weight: Any = None) -> float:
        """Akaike information criterion, ``-2 log L + 2 p``; lower is better."""
        log_likelihood, _ = self._total_log_likelihood(X, sample_weight)
        return -2.0 * log_likelihood + 2.0 * self._n_parameters()

    def icl(self, X: Any, sample_weight: Any = None) -> float:
        """Integrated completed likelihood (Biernacki, Celeux & Govaert, 2000):
        BIC plus twice the cost of the most probable classification; lower is
        better.

        ``ICL = BIC - 2 sum_i w_i log max_k r_ik``, the paper's definition
        (the completed likelihood at the MAP labels) and R mclust's, which
        reports the negative (higher is better).  Some texts use the soft
        entropy ``-sum_k r_ik log r_ik`` instead; it penalises uncertain
        rows more and can rank models differently.
        """
        return self.bic(X, sample_weight) + 2.0 * self.classification_cost(X, sample_weight)

    def classification_cost(self, X: Any, sample_weight: Any = None) -> float:
        """``-sum_i w_i log max_k r_ik``, ICL's penalty: 0 when every row
        belongs surely to one component, at most ``n log K``."""
        resp = self.predict_proba(X).astype(np.float64)
        weights = check.check_sample_weight(sample_weight, resp.shape[0])
        cost = -np.log(resp.max(axis=1))
        return float(cost.sum() if weights is None else weights @ cost)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the fitted mixture.

        Returns ``(X, y)``: samples (n_samples, d), grouped by component, and
        the component each came from.  Uses ``random_state``, so an int seed
        gives the same draw each call (as scikit-learn).
        """
        params = self._fitted_params()
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise InvalidInputError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires at "
                "least one sample."
            )
        rng = check.check_random_state(self.random_state)
        counts = rng.multinomial(int(n_samples), params.weights / params.weights.sum())
        model = COVARIANCE_MODELS[self.covariance_type]
        draws = [model.draw(rng, params.means[k], params.cov_chol, k, int(count))
                 for k, count in enumerate(counts)]
        labels = np.repeat(np.arange(params.n_components), counts)
        return np.vstack(draws).astype(np.asarray(self.means_).dtype), labels


def _user_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be an array of numbers ({exc}).") from None
    if array.shape != shape:
        raise InvalidInputError(
            f"{name} must have shape {shape} for these data and settings; got {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(f"{name} contains NaN or inf; pass finite values.")
    return array


def _predict_block(family: GaussianFamily, params: GaussianParams, method: str,
                   dtype: np.dtype, X: np.ndarray) -> np.ndarray:
    """One block of a Dask prediction (module level, so that it pickles)."""
    X = check.as_float_array(X, dtype=dtype)
    with floating_point_guard():
        return _in_dtype(getattr(family, method)(params, X, Workspace()), dtype)


def _in_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float64 results in the data's dtype: float32 rounds a log-density
    beyond its range to -inf, which is no error."""
    with np.errstate(over="ignore"):
        return values.astype(dtype, copy=False)


def read_in_pieces(X: Any) -> bool:
    """Whether ``fit`` reads ``X`` a piece at a time (a file, a memory map,
    a chunk source or a Dask collection) rather than as one array."""
    return (_is_dask_collection(X) or _is_chunk_source(X)
            or isinstance(X, (str, os.PathLike, np.memmap, Iterator)))


def _is_chunk_source(X: Any) -> bool:
    """A function returning chunks (not an array-like that is also callable)."""
    return callable(X) and not hasattr(X, "__array__") and not hasattr(X, "shape")


def _is_dask_collection(X: Any) -> bool:
    """A Dask array or data frame, recognised without importing Dask."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "__dask_graph__")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


def _ensure_log_handler() -> None:
    """Make ``verbose`` visible when the application configured no logging."""
    root = logging.getLogger()
    if not logger.handlers and not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("emix: %(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
