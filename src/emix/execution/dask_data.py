"""Fits on Dask: the E-step runs on the workers, block by block, the
statistics are tree-summed there, and only their sum (a few kB) reaches the
client, which runs the M-step.

The data are ``persist``-ed once and stay on the workers across
iterations; each iteration is one ``compute()`` of a graph that sends the
parameters (one small task, shared by every block) and never gathers rows.
A worker lost mid-iteration costs only its tasks: Dask recomputes them (and
any persisted block it held, from the graph that made it: ``from_array``,
a file reader, a generator of blocks), so the fit ends with the same
parameters as an undisturbed one.  Blocks that were ``client.scatter``-ed
have no such graph; losing their worker fails the fit (with
:class:`ClusterError`) unless they were replicated.

A fit never waits forever on a cluster that can no longer run it: once the
cluster has no workers, or the client has lost its scheduler, for
:data:`LOST_CLUSTER_TIMEOUT` seconds (the Dask setting
``emix.lost-cluster-timeout``), it stops with :class:`ClusterError`.
(Dask itself would wait for workers forever unless the scheduler was
started with ``distributed.scheduler.no-workers-timeout``.)

Dask is optional (``emix[dask]``) and imported only here.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable
from functools import reduce
from typing import Any

import numpy as np

from ..exceptions import ClusterError, InvalidInputError
from .digest import RowDigest, combined, rows_per_group
from .memory import InMemoryData, default_task_rows
from .summary import ColumnSummary, RowSample
from .workspace import Workspace

#: Parts summed by one task of the tree reduction.
FAN_IN = 8

#: Seconds a computation on a distributed cluster waits, once the cluster has
#: no workers left or the client has lost the scheduler, for them to come back
#: before it stops with :class:`ClusterError`.  The Dask setting
#: ``emix.lost-cluster-timeout`` overrides it (``dask.config.set``, or the
#: environment: ``DASK_EMIX__LOST_CLUSTER_TIMEOUT=120``).
LOST_CLUSTER_TIMEOUT = 30.0

#: Seconds between two looks at the cluster while a computation runs (a
#: computation that ends sooner returns at once).
_POLL_SECONDS = 0.5

_worker_state = threading.local()


def _modules():
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise InvalidInputError(
            "fitting a Dask collection needs Dask: pip install 'emix[dask]'") from None
    return dask, da


class DaskData:
    """A Dask array's rows (and optional weights), persisted on the cluster."""

    def __init__(self, X: Any, weights: Any | None):
        dask, _ = _modules()
        self.n_threads = 1  # the workers' own threads run the blocks
        if weights is None:
            (self.X,) = dask.persist(X)
            self.weights = None
        else:
            self.X, self.weights = dask.persist(X, weights)
        self.n_samples, self.n_features = (int(n) for n in self.X.shape)
        self.dtype = np.dtype(self.X.dtype)
        self._starts = np.concatenate([[0], np.cumsum(self.X.chunks[0])[:-1]]).astype(int)
        self._survey()

    @classmethod
    def from_collection(cls, X: Any, sample_weight: Any = None, *,
                        chunk_rows: int | None = None) -> tuple[DaskData, np.ndarray | None]:
        """Checked and laid out for the fit: one block across all columns,
        ``chunk_rows`` rows per block if given, integers as float64.
        Returns the data and the feature names (a data frame's string
        column names, else None)."""
        _, da = _modules()
        names = None
        if hasattr(X, "to_dask_array"):  # a Dask DataFrame or Series
            columns = list(getattr(X, "columns", [getattr(X, "name", None)]))
            if columns and all(isinstance(c, str) for c in columns):
                names = np.asarray(columns, dtype=object)
            X = X.to_dask_array(lengths=True)
        if X.dtype.kind not in "biuf":
            raise InvalidInputError(
                f"X has dtype {X.dtype}, which is not numeric; pass numbers "
                "(convert with X.astype(float)).")
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        if X.ndim != 2:
            raise InvalidInputError(
                f"X must be 1-D (one feature) or 2-D (samples x features); got a Dask "
                f"array with {X.ndim} dimensions.")
        if any(np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise InvalidInputError(f"X has shape {X.shape}; pass at least one row and column.")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        X = X.rechunk({0: chunk_rows or X.chunks[0], 1: -1})
        weights = None
        if sample_weight is not None:
            if hasattr(sample_weight, "to_dask_array"):
                sample_weight = sample_weight.to_dask_array(lengths=True)
            weights = da.asarray(sample_weight).astype(np.float64)
            weights = weights.reshape(-1) if weights.ndim == 2 and 1 in weights.shape \
                else weights
            if weights.shape != (X.shape[0],):
                raise InvalidInputError(
                    f"sample_weight must have shape ({X.shape[0]},), one weight per sample "
                    f"of X; got shape {weights.shape}.")
            weights = weights.rechunk({0: X.chunks[0]})
        return cls(X, weights), names

    # -- graph building ------------------------------------------------------------
    def _blocks(self) -> list[tuple[Any, Any]]:
        rows = self.X.to_delayed().ravel()
        if self.weights is None:
            return [(block, None) for block in rows]
        return list(zip(rows, self.weights.to_delayed().ravel(), strict=True))

    def _tree_sum(self, parts: list[Any]) -> Any:
        import dask

        while len(parts) > 1:
            parts = [dask.delayed(_sum)(parts[i:i + FAN_IN]) for i in range(0, len(parts), FAN_IN)]
        return parts[0]

    def _map_sum(self, function: Callable, *shared: Any, per_block: list | None = None) -> Any:
        """``sum(function(*shared, X_block, w_block, *per_block[i]))``, computed
        on the cluster; ``shared`` travel once, as one task each."""
        import dask

        shared = [dask.delayed(value) for value in shared]
        call = dask.delayed(function)
        extra = per_block or [()] * len(self._starts)
        parts = [call(*shared, X, w, *more)
                 for (X, w), more in zip(self._blocks(), extra, strict=True)]
        (total,) = compute(self._tree_sum(parts))
        return total

    # -- the back-end interface ----------------------------------------------------
    def _survey(self) -> None:
        survey = self._map_sum(_block_survey, rows_per_group(self.n_features),
                               per_block=[(start,) for start in self._starts])
        if survey.bad_rows:
            raise InvalidInputError(
                f"X contains NaN or inf in {survey.bad_rows} row(s); EM needs finite numbers. "
                "Drop those rows first, e.g. X[da.isfinite(X).all(axis=1)].")
        if survey.bad_weights:
            raise InvalidInputError(
                f"sample_weight holds {survey.bad_weights} negative, NaN or inf weight(s); "
                "frequency weights must be finite and >= 0.")
        if survey.summary is None:
            raise InvalidInputError(
                "sample_weight is zero everywhere: at least one sample needs a positive "
                "weight for there to be anything to fit.")
        self.n_positive = survey.positive
        self._summary = survey.summary.result()
        self.digest = combined(survey.rows_digest, survey.weights_digest)
        # The blocks' weights are scaled by 2**weight_exponent in the E-step.
        self.weight_exponent = (0 if self.weights is None
                                 else -int(np.frexp(survey.largest_weight)[1]))

    def map_reduce(self, step: Callable[[np.ndarray, np.ndarray | None, Workspace], Any]) -> Any:
        return self._map_sum(_block_step, step, self.weight_exponent)

    def column_summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._summary

    def sample(self, max_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`InMemoryData.sample`; a large sample is drawn block by
        block on the workers (bottom-k, each block with its own seed from
        ``rng``) and merged, so at most ``max_rows`` rows per task reach the
        client."""
        exponent = self.weight_exponent
        if self.n_positive <= max_rows:
            sample = self._map_sum(_block_rows, exponent)
            return sample.rows, sample.weights
        seeds = rng.integers(2**63, size=len(self._starts))
        sample = self._map_sum(_block_sample, max_rows, exponent,
                               per_block=list(zip(self._starts, seeds, strict=True)))
        return sample.result()


# ------------------------------------------------------------- running on a cluster


def compute(*values: Any) -> tuple[Any, ...]:
    """``dask.compute(*values)``; on a distributed cluster, one that raises
    :class:`ClusterError` rather than wait forever or fail with Dask's own
    exceptions when the cluster loses what the computation needs."""
    import dask

    client = _distributed_client(values)
    if client is None:
        return dask.compute(*values)
    from distributed import wait

    limit = _lost_cluster_timeout()
    while True:
        futures = client.compute(list(values))
        lost_since = None
        while True:
            try:
                wait(futures, timeout=_POLL_SECONDS)
                break
            except TimeoutError:
                pass
            except Exception:  # the client's own failure; explained below
                break
            problem = _cluster_problem(client)
            if problem is None:
                lost_since = None
                continue
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since >= limit:
                if problem == "workers":
                    client.cancel(futures)
                raise ClusterError(_LOST[problem].format(address=_address(client),
                                                         limit=limit))
        try:
            if client.status == "running":
                return tuple(client.gather(futures))
            problem = "scheduler"  # the futures were cancelled with the connection
        except Exception as exc:
            problem = _problem_of(client, exc)
            if problem is None:
                raise
            if problem != "scheduler":
                raise ClusterError(_LOST[problem].format(address=_address(client),
                                                         limit=limit, error=exc)) from None
        # The connection to the scheduler dropped: the computation runs again
        # if it comes back within the limit (the graph recomputes everything).
        if not _reconnected(client, limit):
            raise ClusterError(_LOST["scheduler"].format(address=_address(client),
                                                         limit=limit))


def _reconnected(client: Any, limit: float) -> bool:
    """Whether ``client`` is connected to its scheduler again within
    ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while client.status != "running":
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


_LOST = {
    "workers": (
        "the Dask cluster at {address} has had no workers for {limit:g} s (none started, or "
        "they died or left), so the fit cannot go on. Start workers ('dask worker "
        "{address}') and run the fit again (with a checkpoint it resumes where it "
        "stopped), or wait longer for them with the Dask setting emix.lost-cluster-timeout "
        "(e.g. DASK_EMIX__LOST_CLUSTER_TIMEOUT=300)."),
    "scheduler": (
        "lost the connection to the Dask scheduler at {address} mid-computation, and it did "
        "not come back within {limit:g} s (the scheduler stopped, or the network failed). "
        "Start the scheduler and its workers again and run the fit again (with a checkpoint "
        "it resumes where it stopped)."),
    "scattered": (
        "the Dask cluster at {address} lost blocks of the data with a worker that died: they "
        "were scattered from the client (client.scatter), so Dask cannot compute them again. "
        "Give the fit data that the workers can read again: a Dask array made by a reader "
        "or da.from_array (for 'emix fit --scheduler', a .npy file the workers can read at "
        "the same path), or replicate scattered blocks (client.replicate)."),
    "killed": (
        "a task of the fit killed Dask workers one after another ({error}); this is most "
        "often a worker running out of memory: give the workers more memory, or use "
        "smaller blocks (chunk_size)."),
}


def require_workers(client: Any) -> None:
    """Waits, at most emix.lost-cluster-timeout, for the cluster of
    ``client`` to have a worker (before data are scattered to them)."""
    limit = _lost_cluster_timeout()
    try:
        client.wait_for_workers(1, timeout=limit)
    except TimeoutError:
        raise ClusterError(_LOST["workers"].format(address=_address(client),
                                                   limit=limit)) from None


def _distributed_client(values: tuple[Any, ...]) -> Any | None:
    """The distributed client that would run ``values``, if any."""
    import sys

    distributed = sys.modules.get("distributed")
    if distributed is None:  # not imported: no client can exist
        return None
    import dask

    scheduler = dask.base.get_scheduler(collections=list(values))
    client = getattr(scheduler, "__self__", None)
    return client if isinstance(client, distributed.Client) else None


def _lost_cluster_timeout() -> float:
    import dask
    from dask.utils import parse_timedelta

    value = dask.config.get("emix.lost-cluster-timeout", LOST_CLUSTER_TIMEOUT)
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (TypeError, ValueError, KeyError):
        seconds = None
    if seconds is None or not seconds >= 0:
        raise InvalidInputError(
            f"the Dask setting emix.lost-cluster-timeout is {value!r}; give seconds "
            "(a number >= 0) or a duration such as '2 minutes'.")
    return float(seconds)


def _cluster_problem(client: Any) -> str | None:
    """"scheduler" when the client is not connected to it, "workers" when
    the cluster has none, else None."""
    if client.status != "running":
        return "scheduler"
    try:
        return None if client.nthreads() else "workers"
    except OSError:
        return "scheduler"


def _problem_of(client: Any, error: Exception) -> str | None:
    """Which loss (a key of _LOST) ``error`` of a computation comes from, if any."""
    import distributed

    if _cluster_problem(client) == "scheduler":
        return "scheduler"
    if isinstance(error, distributed.KilledWorker):
        return "killed"
    if type(error).__name__ == "NoValidWorkerError":  # the scheduler's no-workers-timeout
        return "workers"
    if isinstance(error, distributed.client.FutureCancelledError):
        # Keys without a recipe (scattered data) are forgotten when their
        # last holder dies, and so are the tasks that needed them: "already
        # forgotten" while the computation ran, "lost dependencies" when it
        # was submitted after.
        if error.reason in ("already forgotten", "lost dependencies"):
            return "scattered"
        if error.reason == "scheduler-connection-lost":
            return "scheduler"
    return None


def _address(client: Any) -> str:
    return str(getattr(client.scheduler, "address", "?"))


# ------------------------------------------------------------ tasks on the workers


def _sum(parts: list[Any]) -> Any:
    return reduce(operator.add, parts)


def _scaled(weights: np.ndarray | None, exponent: int) -> np.ndarray | None:
    return None if weights is None else np.ldexp(weights, exponent)


def _block_step(step, exponent: int, X: np.ndarray, weights: np.ndarray | None) -> Any:
    """The E-step's statistics of one block, through the in-memory back-end
    (one thread: the worker's threads share the blocks); its workspace is
    kept per worker thread, so buffers are reused across tasks."""
    workspace = getattr(_worker_state, "workspace", None)
    if workspace is None:
        workspace = _worker_state.workspace = Workspace()
    data = InMemoryData(X, _scaled(weights, exponent),
                        chunk_rows=default_task_rows(X.shape[0]), workspace=workspace)
    return data.map_reduce(step)


class _Survey:
    """What one pass learns about the blocks; adds up (the data's digest in
    the tree too: see :mod:`emix.execution.digest`)."""

    def __init__(self, X: np.ndarray, weights: np.ndarray | None, start: int, group_rows: int):
        self.rows_digest = RowDigest.of(X, start, group_rows)
        self.weights_digest = (None if weights is None
                               else RowDigest.of(weights, start, rows_per_group(1)))
        finite = np.isfinite(X).all(axis=1)
        self.bad_rows = int(X.shape[0] - np.count_nonzero(finite))
        if weights is None:
            self.bad_weights = 0
            self.positive = X.shape[0]
            self.largest_weight = 1.0
        else:
            valid = np.isfinite(weights) & (weights >= 0)
            self.bad_weights = int(weights.size - np.count_nonzero(valid))
            self.positive = int(np.count_nonzero(weights > 0))
            self.largest_weight = float(weights[valid].max(initial=0.0))
        clean = finite & (True if weights is None else np.isfinite(weights))
        self.summary = ColumnSummary.of(X[clean], None if weights is None else weights[clean])

    def __add__(self, other: _Survey) -> _Survey:
        total = object.__new__(_Survey)
        total.rows_digest = self.rows_digest + other.rows_digest
        total.weights_digest = (None if self.weights_digest is None
                                else self.weights_digest + other.weights_digest)
        total.bad_rows = self.bad_rows + other.bad_rows
        total.bad_weights = self.bad_weights + other.bad_weights
        total.positive = self.positive + other.positive
        total.largest_weight = max(self.largest_weight, other.largest_weight)
        total.summary = (other.summary if self.summary is None
                         else self.summary + other.summary)
        return total


def _block_survey(group_rows: int, X: np.ndarray, weights: np.ndarray | None,
                  start: int) -> _Survey:
    return _Survey(X, weights, int(start), group_rows)


def _block_rows(exponent: int, X: np.ndarray, weights: np.ndarray | None) -> RowSample:
    """Every row of positive weight of a block (for a sample of all rows)."""
    if weights is not None:
        keep = weights > 0
        X, weights = X[keep], weights[keep]
    weights = np.ones(X.shape[0]) if weights is None else _scaled(weights, exponent)
    empty = np.zeros(0)
    return RowSample(empty, empty.astype(np.int64), X, weights, size=X.shape[0])


def _block_sample(max_rows: int, exponent: int, X: np.ndarray, weights: np.ndarray | None,
                  start: int, seed: int) -> RowSample:
    return RowSample.of(X, _scaled(weights, exponent), int(start), max_rows,
                        np.random.default_rng(int(seed)))


# ------------------------------------------------------------------- predictions


def map_rows(X: Any, function: Callable[[np.ndarray], np.ndarray], n_columns: int | None,
             dtype: np.dtype) -> Any:
    """``function`` applied to each block of rows of a Dask array, lazily:
    a Dask array of shape (n,) (``n_columns`` None) or (n, n_columns)."""
    _modules()
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    X = X.rechunk({1: -1})
    if n_columns is None:
        return X.map_blocks(function, drop_axis=1, dtype=dtype)
    return X.map_blocks(function, chunks=(X.chunks[0], (n_columns,)), dtype=dtype)
