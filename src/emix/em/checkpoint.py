"""Checkpoints: the state of a fit, written atomically after every iteration,
from which a killed fit resumes and ends where an uninterrupted one would.

EM is deterministic given its parameters, so the state is small: the
current parameters, the convergence history, the collapse repairs so far,
the best run of the initialisations already finished, and the random
generator's state (later initialisations draw from it).  Resuming
recomputes one E-step from the saved parameters and carries on; every
later step is the one the uninterrupted fit took.

The file is a NumPy ``.npz`` archive of plain arrays plus one JSON text
(no pickle); it appears complete or not at all (written to a temporary file,
flushed to disk, renamed over the previous one).  A SHA-256 checksum of its
content (a member of its own) tells a damaged or edited file from a good
one, and every value read back is checked against the fit it resumes (shapes,
finite log-likelihoods, positive definite covariances, states, counts), so
a bad file is refused with the remedy, never resumed into a wrong fit.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import DegenerateComponentError, InvalidInputError, NumericalError
from ..families.base import Collapse
from ..families.gaussian import GaussianFamily, GaussianParams
from ..io.atomic import atomic_output, check_writable
from .monitor import CONVERGED, DIVERGED, MAX_ITER, RUNNING

FORMAT = "emix-checkpoint/2"
_PARAMS = ("weights", "means", "covariances", "cov_chol", "prec_chol")
_META, _CHECKSUM = "meta", "checksum"
#: The fingerprint's entries that describe the data rather than the settings.
_DATA_KEYS = ("data", "data digest")
_REASONS = ("vanished", "singular")
_ACTIONS = ("floored", "reseeded")


@dataclass
class RunState:
    """One EM run, between two iterations."""

    params: GaussianParams
    history: list[float]
    state: str
    decreases: list[tuple[int, float]]
    collapses: list[Collapse]
    reseeds_left: int
    floors: dict[int, np.ndarray]
    best_log_likelihood: float
    best_params: GaussianParams
    best_iteration: int


@dataclass
class FitState:
    """Where a fit stands: ``restart`` runs finished (their best in
    ``finished``), and the run of initialisation ``restart`` if it started."""

    restart: int
    finished: Any | None  # EMResult
    run: RunState | None


class Checkpoint:
    """A checkpoint file for one fit, identified by ``fingerprint`` (the
    settings, the data's shape and digest; see
    ``GaussianMixture._fingerprint``), restoring ``rng`` on resumption."""

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any],
                 rng: np.random.Generator):
        self.path = check_writable(path)  # refused now, not after the first iteration
        if self.path.exists() and not self.path.is_file():
            raise InvalidInputError(
                f"checkpoint {str(path)!r} is not a regular file (a device, a pipe or "
                "another special file): pass the path of a file")
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back
        self.rng = rng
        self._finished: Any | None = None

    # -- writing -------------------------------------------------------------------
    def save_run(self, restart: int, run: RunState) -> None:
        self._write(FitState(restart, self._finished, run))

    def save_finished(self, restarts_done: int, best: Any) -> None:
        self._finished = best
        self._write(FitState(restarts_done, best, None))

    def _write(self, state: FitState) -> None:
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "rng": self.rng.bit_generator.state,
            "restart": state.restart,
        }
        if state.finished is not None:
            result = state.finished
            _put_params(arrays, "finished_", result.params)
            meta["finished"] = {
                "log_likelihood": result.log_likelihood, "state": result.state,
                "history": result.history, "restart": result.restart,
                "collapses": [_collapse_record(c) for c in result.collapses],
                "decreases": result.decreases,
            }
        if state.run is not None:
            run = state.run
            _put_params(arrays, "run_", run.params)
            _put_params(arrays, "best_", run.best_params)
            for component, floor in run.floors.items():
                arrays[f"floor_{component}"] = np.asarray(floor)
            meta["run"] = {
                "history": run.history, "state": run.state, "decreases": run.decreases,
                "collapses": [_collapse_record(c) for c in run.collapses],
                "reseeds_left": run.reseeds_left, "floors": sorted(run.floors),
                "best_log_likelihood": run.best_log_likelihood,
                "best_iteration": run.best_iteration,
            }
        arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        arrays[_CHECKSUM] = np.frombuffer(_checksum(arrays).encode(), dtype=np.uint8)
        with atomic_output(self.path) as stream:
            np.savez(stream, **arrays)

    # -- reading -------------------------------------------------------------------
    def load(self) -> FitState | None:
        """The saved state (and the generator restored to it), or None when
        there is no checkpoint yet.  A checkpoint of another fit or of other
        data is an error (resuming it would silently mix two fits), and so is
        one that is damaged or holds values no fit can have."""
        if not self.path.exists():
            return None
        arrays, meta = self._read()
        if not isinstance(meta.get("fingerprint"), dict):
            raise self._unusable("it holds no description of its fit")
        self._check_same_fit(meta["fingerprint"])
        try:
            state = _Reader(self.fingerprint, arrays).state(meta)
            rng_state = meta.get("rng")
            if not isinstance(rng_state, dict) or rng_state.get("bit_generator") \
                    != type(self.rng.bit_generator).__name__:
                raise _Invalid("the random generator's state is not one of this fit's")
            try:
                self.rng.bit_generator.state = rng_state
            except (TypeError, ValueError, KeyError, OverflowError) as exc:
                raise _Invalid(f"the random generator's state is invalid ({exc})") from None
        except _Invalid as exc:
            raise self._unusable(f"it holds values that no fit of these settings can have "
                                 f"({exc}): it was damaged or edited") from None
        self._finished = state.finished
        return state

    def _read(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The archive's arrays (less the state and checksum) and its state,
        once the checksum shows the content is as written."""
        try:
            if self.path.stat().st_size > self._largest_size():
                raise self._unusable(
                    f"it is not an emix checkpoint (a file of {self.path.stat().st_size:,} "
                    f"bytes; this fit's checkpoints take at most {self._largest_size():,})",
                    ours=False)
            raw = self.path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(
                f"cannot read checkpoint {str(self.path)!r} ({exc.strerror or exc}); make it "
                "readable, or pass another checkpoint path.") from None
        if not raw:
            raise self._unusable("it is empty (0 bytes): it was truncated, or the disk was full")
        if _unpacked_size(raw) > 2 * len(raw) + 2**20:
            # np.savez stores its members: a file that unpacks to more than
            # its own size is no checkpoint, and could fill the memory.
            raise self._unusable("it is not an emix checkpoint (an archive that unpacks to "
                                 "far more than its size)", ours=False)
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except Exception:  # whatever bytes are there: any failure to parse them means the same
            raise self._unusable("it is not an emix checkpoint (not a readable NumPy archive: "
                                 "another kind of file, or a damaged one)", ours=False) from None
        if _META not in arrays:
            raise self._unusable("it is not an emix checkpoint (a NumPy archive without a "
                                 "fit's state)", ours=False)
        saved = arrays.pop(_CHECKSUM, None)
        if saved is None or saved.tobytes() != _checksum(arrays).encode():
            version = _format_of(arrays[_META])
            if version is not None and version != FORMAT:
                raise self._unusable(f"it was written by another version of emix (format "
                                     f"{version!r}, this one reads {FORMAT!r})")
            raise self._unusable("it is damaged: its content does not match its checksum "
                                 "(truncated, corrupted or edited)")
        try:
            meta = json.loads(arrays.pop(_META).tobytes().decode())
        except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
            meta = None
        if not isinstance(meta, dict):
            raise self._unusable("its state is not a JSON record")
        if meta.get("format") != FORMAT:
            raise self._unusable(f"it was written by another version of emix (format "
                                 f"{meta.get('format')!r}, this one reads {FORMAT!r})")
        return arrays, meta

    def _check_same_fit(self, saved: dict[str, Any]) -> None:
        now = self.fingerprint
        differences = sorted(key for key in set(saved) | set(now)
                             if key not in _DATA_KEYS and saved.get(key) != now.get(key))
        data_changed = any(saved.get(key) != now.get(key) for key in _DATA_KEYS)
        if not differences and not data_changed:
            return
        shown = [f"{key}: {saved.get(key)!r} there, {now.get(key)!r} now"
                 for key in differences[:4]]
        if data_changed:
            shown.append(_data_change(saved.get("data"), now.get("data")))
        raise InvalidInputError(
            f"checkpoint {str(self.path)!r} belongs to another fit ({'; '.join(shown)}); a fit "
            "resumes only with the same settings and data. Delete the checkpoint to fit "
            "afresh, or pass another checkpoint path.")

    def _largest_size(self) -> int:
        """A bound on this fit's checkpoint files: a few sets of parameters,
        floors and histories (generous: only what is far beyond it is read)."""
        fit = self.fingerprint
        components, features = int(fit["n_components"]), int(fit["data"][1])
        parameters = components * (features * features + features + 1)
        return 64 * 8 * parameters + 64 * (int(fit["max_iter"]) + 1) * int(fit["n_init"]) \
            + 2**22

    def _unusable(self, why: str, *, ours: bool = True) -> InvalidInputError:
        """The error for a file that cannot be resumed: a checkpoint of
        emix's may be deleted, any other file is only refused (it may be
        the user's data)."""
        remedy = ("Delete it to start the fit afresh, or pass another checkpoint path."
                  if ours else "If it is a damaged checkpoint of this fit, delete it to start "
                  "the fit afresh; otherwise pass another checkpoint path (this file is left "
                  "as it is).")
        return InvalidInputError(f"checkpoint {str(self.path)!r} cannot be resumed: {why}. "
                                 f"{remedy}")


def _unpacked_size(raw: bytes) -> int:
    """The total size that the zip archive ``raw`` declares for its members
    (0 when it is no zip archive: np.load then says what it is)."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return 0


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the members' names, dtypes, shapes and bytes (not of the
    archive's layout, which NumPy and zipfile own)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _format_of(meta: np.ndarray) -> str | None:
    """The format a state claims, if it can be read at all."""
    try:
        record = json.loads(meta.tobytes().decode())
    except ValueError:
        return None
    version = record.get("format") if isinstance(record, dict) else None
    return version if isinstance(version, str) else None


def _data_change(saved: Any, now: Any) -> str:
    if isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now) == 4:
        if saved[:3] != now[:3]:
            return (f"the data changed: {saved[0]} x {saved[1]} {saved[2]} rows there, "
                    f"{now[0]} x {now[1]} {now[2]} now")
        if saved[3] != now[3]:
            return (f"the weights changed: {saved[3]} rows of positive weight there, "
                    f"{now[3]} now")
    return ("the data changed: the same shape, but other values, weights or order of rows "
            "than the checkpoint was written for")


class _Invalid(Exception):
    """Internal: a value read back that no fit of these settings can have."""


class _Reader:
    """Builds the saved state from a checkpoint's arrays and record, checking
    every value against the fit's settings (raising :class:`_Invalid`)."""

    def __init__(self, fingerprint: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.n_components = int(fingerprint["n_components"])
        self.n_features = int(fingerprint["data"][1])
        self.max_iter = int(fingerprint["max_iter"])
        self.n_init = int(fingerprint["n_init"])
        self.family = GaussianFamily(fingerprint["covariance_type"],
                                     float(fingerprint["reg_covar"]))
        model = self.family.covariance
        shape = model.shape(self.n_components, self.n_features)
        self.covariance_shape = shape
        self.floor_shape = shape[1:] if model.per_component else shape
        # -1 is the shared covariance of "tied" (whose components can still vanish).
        self.components = range(0 if model.per_component else -1, self.n_components)

    def state(self, meta: dict[str, Any]) -> FitState:
        restart = _integer(meta, "restart", 0, self.n_init)
        # As written: a best result once an initialisation has finished, and
        # a run unless all of them have.
        if ("finished" in meta) != (restart > 0):
            raise _Invalid(f"{restart} initialisations finished, but "
                           f"{'a' if 'finished' in meta else 'no'} best result of them")
        if ("run" in meta) and restart == self.n_init:
            raise _Invalid(f"a run of initialisation {restart + 1} of {self.n_init}")
        if "run" not in meta and restart == 0:
            raise _Invalid("neither a run nor a result")
        finished = (self.result(_record(meta, "finished"), restart) if "finished" in meta
                    else None)
        run = self.run(_record(meta, "run")) if "run" in meta else None
        return FitState(restart, finished, run)

    def result(self, record: dict[str, Any], restarts_done: int) -> Any:
        from .engine import EMResult

        state = _choice(record, "state", (CONVERGED, MAX_ITER, DIVERGED))
        history = self.history(record, state, finite=True)
        log_likelihood = _number(record, "log_likelihood")
        if log_likelihood != history[-1]:
            raise _Invalid(f"the result's log-likelihood {log_likelihood!r} is not the last "
                           f"of its history ({history[-1]!r})")
        n_iter = len(history) - 1
        return EMResult(params=self.params("finished_"), log_likelihood=log_likelihood,
                        state=state, history=history,
                        collapses=self.collapses(record, n_iter),
                        # A diverged run's history ends at its best parameters,
                        # and its falls after them are kept (why it stopped).
                        decreases=self.decreases(record, self.max_iter),
                        restart=_integer(record, "restart", 0, restarts_done - 1))

    def run(self, record: dict[str, Any]) -> RunState:
        state = _choice(record, "state", (RUNNING, CONVERGED, MAX_ITER, DIVERGED))
        # A run that diverged on a non-finite log-likelihood saved it last.
        history = self.history(record, state, finite=state != DIVERGED)
        n_iter = len(history) - 1
        if state == RUNNING and n_iter >= self.max_iter:
            raise _Invalid(f"a run still running after max_iter={self.max_iter} iterations")
        best_iteration = _integer(record, "best_iteration", 0, n_iter)
        best = _number(record, "best_log_likelihood")
        if best != history[best_iteration]:
            raise _Invalid(f"the best log-likelihood {best!r} is not that of iteration "
                           f"{best_iteration} ({history[best_iteration]!r})")
        floors = record.get("floors")
        if not isinstance(floors, list) or len(set(map(repr, floors))) != len(floors) \
                or not all(_is_int(k) and k in self.components for k in floors):
            raise _Invalid(f"floors of components {floors!r}")
        return RunState(
            params=self.params("run_"), history=history, state=state,
            decreases=self.decreases(record, n_iter),
            collapses=self.collapses(record, n_iter),
            reseeds_left=_integer(record, "reseeds_left", 0, self.n_components),
            floors={k: self.array(f"floor_{k}", self.floor_shape) for k in floors},
            best_log_likelihood=best, best_params=self.params("best_"),
            best_iteration=best_iteration)

    def history(self, record: dict[str, Any], state: str, *, finite: bool) -> list[float]:
        history = record.get("history")
        if not isinstance(history, list) or not 1 <= len(history) <= self.max_iter + 1:
            raise _Invalid(f"a history of {len(history) if isinstance(history, list) else 0} "
                           f"log-likelihoods (1 to max_iter + 1 = {self.max_iter + 1})")
        values = [_as_float(value, "a log-likelihood") for value in history]
        bad = [value for value in (values if finite else values[:-1])
               if not math.isfinite(value)]
        if bad:
            raise _Invalid(f"a log-likelihood of {bad[0]!r} in a {state} run's history")
        return values

    def decreases(self, record: dict[str, Any], last: int) -> list[tuple[int, float]]:
        """Falls of the log-likelihood, each at an iteration up to ``last``."""
        items = record.get("decreases")
        if not isinstance(items, list):
            raise _Invalid("the record of decreases is not a list")
        decreases = []
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and _is_int(item[0])
                    and 1 <= item[0] <= last):
                raise _Invalid(f"a decrease {item!r}")
            change = _as_float(item[1], "a decrease")
            if not (math.isfinite(change) and change < 0):
                raise _Invalid(f"a decrease of {change!r}")
            decreases.append((item[0], change))
        return decreases

    def collapses(self, record: dict[str, Any], n_iter: int) -> list[Collapse]:
        items = record.get("collapses")
        if not isinstance(items, list):
            raise _Invalid("the record of collapses is not a list")
        collapses = []
        for item in items:
            if not (isinstance(item, list) and len(item) == 4 and _is_int(item[0])
                    and 1 <= item[0] <= n_iter and _is_int(item[1])
                    and item[1] in self.components and item[2] in _REASONS
                    and item[3] in _ACTIONS):
                raise _Invalid(f"a collapse {item!r}")
            collapses.append(Collapse(*item))
        return collapses

    def params(self, prefix: str) -> GaussianParams:
        K, d = self.n_components, self.n_features
        weights = self.array(prefix + "weights", (K,))
        if (weights < 0).any() or abs(weights.sum() - 1.0) > 1e-6:
            raise _Invalid(f"weights {weights} that are not probabilities")
        means = self.array(prefix + "means", (K, d))
        covariances = self.array(prefix + "covariances", self.covariance_shape)
        try:
            factored = self.family.make_params(weights, means, covariances)
        except (DegenerateComponentError, NumericalError):
            raise _Invalid(f"{prefix}covariances that are not positive definite") from None
        # The saved factors, not the new ones: the fit resumes bit for bit.
        cov_chol = self.array(prefix + "cov_chol", np.shape(factored.cov_chol))
        prec_chol = self.array(prefix + "prec_chol", np.shape(factored.prec_chol))
        model = self.family.covariance
        if not model.valid_factor(prec_chol):
            raise _Invalid(f"{prefix}prec_chol is not a precision factor (its diagonal must "
                           "be positive)")
        # Factors of these covariances, to rounding: L L^T is the covariance
        # to a few units of float64's (whatever the conditioning), and
        # P^-T is L to the conditioning of P times that.
        scale = float(np.abs(covariances).max())
        if not (np.abs(model.covariances_from_cov_chol(cov_chol) - covariances).max()
                <= 1e-10 * scale
                and np.abs(model.cov_chol_from_prec_chol(prec_chol) - cov_chol).max()
                <= 1e-6 * float(np.abs(cov_chol).max())):
            raise _Invalid(f"{prefix}cov_chol and {prefix}prec_chol that do not factor "
                           f"{prefix}covariances")
        return GaussianParams(weights=weights, means=means, covariances=covariances,
                              cov_chol=cov_chol, prec_chol=prec_chol)

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        array = self.arrays.get(name)
        if array is None:
            raise _Invalid(f"no array {name!r}")
        if array.dtype != np.float64 or array.shape != tuple(shape):
            raise _Invalid(f"{name} of shape {array.shape} and dtype {array.dtype} "
                           f"(this fit's: {tuple(shape)}, float64)")
        if not np.isfinite(array).all():
            raise _Invalid(f"{name} holds NaN or inf")
        return array


def _record(meta: dict[str, Any], key: str) -> dict[str, Any]:
    record = meta[key]
    if not isinstance(record, dict):
        raise _Invalid(f"the record {key!r} is not a JSON object")
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(record: dict[str, Any], key: str, low: int, high: int) -> int:
    value = record.get(key)
    if not _is_int(value) or not low <= value <= high:
        raise _Invalid(f"{key} = {value!r} (from {low} to {high})")
    return value


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{what} of {value!r}, not a number")
    return float(value)


def _number(record: dict[str, Any], key: str) -> float:
    value = _as_float(record.get(key), key)
    if not math.isfinite(value):
        raise _Invalid(f"{key} = {value!r}")
    return value


def _choice(record: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = record.get(key)
    if value not in allowed:
        raise _Invalid(f"{key} = {value!r} (one of {', '.join(allowed)})")
    return value


def _put_params(arrays: dict[str, np.ndarray], prefix: str, params: GaussianParams) -> None:
    for name in _PARAMS:
        value = getattr(params, name)
        if value is not None:
            arrays[prefix + name] = np.asarray(value)


def _collapse_record(collapse: Collapse) -> list[Any]:
    return [collapse.iteration, collapse.component, collapse.reason, collapse.action]
