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
flushed to disk, renamed over the previous one).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import InvalidInputError
from ..families.base import Collapse
from ..families.gaussian import GaussianParams
from ..io.atomic import atomic_output, check_writable

FORMAT = "emix-checkpoint/1"
_PARAMS = ("weights", "means", "covariances", "cov_chol", "prec_chol")


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
    settings and the data's shape), restoring ``rng`` on resumption."""

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any],
                 rng: np.random.Generator):
        self.path = check_writable(path)  # refused now, not after the first iteration
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back
        self.rng = rng
        self._finished: Any | None = None
        self._restart = 0

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
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with atomic_output(self.path) as stream:
            np.savez(stream, **arrays)

    # -- reading -------------------------------------------------------------------
    def load(self) -> FitState | None:
        """The saved state (and the generator restored to it), or None when
        there is no checkpoint yet.  A checkpoint of another fit is an error:
        resuming it would silently mix two fits."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise InvalidInputError(
                f"{str(self.path)!r} is not an emix checkpoint ({exc}); pass another "
                "checkpoint path, or delete the file to start afresh.") from None
        if meta.get("format") != FORMAT:
            raise InvalidInputError(
                f"{str(self.path)!r} is not an emix checkpoint of this version "
                f"(format {meta.get('format')!r}); delete it to start afresh.")
        saved = meta["fingerprint"]
        if saved != self.fingerprint:
            differences = sorted(key for key in set(saved) | set(self.fingerprint)
                                 if saved.get(key) != self.fingerprint.get(key))
            shown = "; ".join(f"{key}: {saved.get(key)!r} there, {self.fingerprint.get(key)!r} "
                              "now" for key in differences[:4])
            raise InvalidInputError(
                f"checkpoint {str(self.path)!r} belongs to another fit ({shown}); a fit "
                "resumes only with the same settings and data. Pass another checkpoint "
                "path, or delete the file to start afresh.")
        self.rng.bit_generator.state = meta["rng"]
        finished = None
        if "finished" in meta:
            from .engine import EMResult

            record = meta["finished"]
            finished = EMResult(
                params=_get_params(arrays, "finished_"),
                log_likelihood=record["log_likelihood"], state=record["state"],
                history=record["history"],
                collapses=[Collapse(*c) for c in record["collapses"]],
                decreases=[tuple(d) for d in record["decreases"]],
                restart=record["restart"])
        self._finished = finished
        run = None
        if "run" in meta:
            record = meta["run"]
            run = RunState(
                params=_get_params(arrays, "run_"), history=record["history"],
                state=record["state"], decreases=[tuple(d) for d in record["decreases"]],
                collapses=[Collapse(*c) for c in record["collapses"]],
                reseeds_left=record["reseeds_left"],
                floors={k: arrays[f"floor_{k}"] for k in record["floors"]},
                best_log_likelihood=record["best_log_likelihood"],
                best_params=_get_params(arrays, "best_"),
                best_iteration=record["best_iteration"])
        return FitState(meta["restart"], finished, run)


def _put_params(arrays: dict[str, np.ndarray], prefix: str, params: GaussianParams) -> None:
    for name in _PARAMS:
        value = getattr(params, name)
        if value is not None:
            arrays[prefix + name] = np.asarray(value)


def _get_params(arrays: dict[str, np.ndarray], prefix: str) -> GaussianParams:
    return GaussianParams(**{name: arrays.get(prefix + name) for name in _PARAMS})


def _collapse_record(collapse: Collapse) -> list[Any]:
    return [collapse.iteration, collapse.component, collapse.reason, collapse.action]
