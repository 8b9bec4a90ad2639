"""Model files: a versioned JSON manifest plus arrays, in one zip (``.npz``-
compatible) file.  Never pickle.

Layout of the zip::

    manifest.json           format, versions, estimator, parameters, scalars,
                            and for every array its dtype, shape and SHA-256
    arrays/<name>.npy       fitted arrays (weights_, means_, ...)
    params/<name>.npy       array-valued constructor parameters (means_init, ...)

Arrays are read with ``allow_pickle=False``, so a file carrying an object
array (a pickle payload) is refused before any of it is unpickled.  Every
array must match its declared dtype, shape and checksum, and the whole model
must be consistent (shapes, finite values, positive definite covariances),
otherwise :class:`~emix.exceptions.ModelFileError` says what is wrong.
Writes go to a temporary file in the same directory, which is then renamed
over the target: a crash leaves the old file or the new one, never half.
"""

from __future__ import annotations

import hashlib
import io
import json
import numbers
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import EmixError, ModelFileError
from .atomic import atomic_output

FORMAT = "emix.model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 1 << 20
_MAX_NPY_HEADER = 1 << 16

_FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_",
                  "precisions_cholesky_", "lower_bounds_")


def _estimator_classes() -> dict[str, type]:
    from ..mixture import GaussianMixture

    return {"GaussianMixture": GaussianMixture}


def save(model: Any, path: str | os.PathLike) -> Path:
    """Write a fitted model to ``path`` atomically; returns the path.

    Raises
    ------
    ModelFileError
        If ``model`` is not a fitted emix estimator.
    """
    classes = _estimator_classes()
    name = type(model).__name__
    if classes.get(name) is not type(model):
        raise ModelFileError(
            f"cannot save a {name}: emix model files hold emix estimators "
            f"({', '.join(classes)})."
        )
    if not model.__sklearn_is_fitted__():
        raise ModelFileError(f"this {name} is not fitted; call fit before save.")

    arrays: dict[str, np.ndarray] = {}
    params: dict[str, Any] = {}
    for key, value in model.get_params().items():
        if isinstance(value, (np.ndarray, list, tuple)):
            arrays[f"params/{key}"] = np.asarray(value)
            params[key] = {"$array": f"params/{key}"}
        elif key == "random_state" and not (value is None or _is_int(value)):
            warnings.warn(
                f"random_state of type {type(value).__name__} cannot be stored in a "
                "model file; it is saved as None.", UserWarning, stacklevel=2)
            params[key] = None
        else:
            params[key] = _json_scalar(value)
    for key in _FITTED_ARRAYS:
        arrays[f"arrays/{key}"] = np.asarray(getattr(model, key))
    fitted = {
        "converged_": bool(model.converged_),
        "convergence_state_": str(model.convergence_state_),
        "n_iter_": int(model.n_iter_),
        "lower_bound_": float(model.lower_bound_),
        "n_features_in_": int(model.n_features_in_),
        "feature_names_in_": (None if getattr(model, "feature_names_in_", None) is None
                              else [str(n) for n in model.feature_names_in_]),
        "collapses_": [[c.iteration, c.component, c.reason, c.action]
                       for c in model.collapses_],
    }
    from .. import __version__

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "emix_version": __version__,
        "estimator": name,
        "params": params,
        "fitted": fitted,
        "arrays": {key: {"dtype": array.dtype.str, "shape": list(array.shape),
                         "sha256": _digest(array)} for key, array in arrays.items()},
    }
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise ModelFileError(f"{key} holds Python objects; only numeric arrays are saved.")

    path = Path(path)
    with atomic_output(path) as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=1, allow_nan=False))
            for key, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(array),
                                          allow_pickle=False)
                archive.writestr(f"{key}.npy", buffer.getvalue())
    return path


def load(path: str | os.PathLike) -> Any:
    """Read a model written by :func:`save`.

    Raises
    ------
    ModelFileError
        If the file is missing, not an emix model, truncated, tampered with,
        from a newer format, carries a pickle payload, or describes an
        inconsistent model.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a directory, not a model file.")
    if not path.is_file():
        raise ModelFileError(f"no model file at {str(path)!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = _read_manifest(archive, path)
            arrays = {key: _read_array(archive, key, spec, path)
                      for key, spec in manifest["arrays"].items()}
            declared = {MANIFEST} | {f"{key}.npy" for key in manifest["arrays"]}
            extra = sorted(set(archive.namelist()) - declared)
            if extra:
                raise ModelFileError(
                    f"{path} holds members the manifest does not declare ({extra[:3]}); "
                    "it was altered after it was written."
                )
    except zipfile.BadZipFile as exc:
        raise ModelFileError(
            f"{path} is not an emix model file (not a valid zip archive: {exc}); it may "
            "be truncated or of another kind."
        ) from None
    except (OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise ModelFileError(f"{path} could not be read: {exc}.") from None
    return _build(manifest, arrays, path)


def _read_manifest(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise ModelFileError(
            f"{path} has no {MANIFEST}: it is not an emix model file (a plain .npz or "
            "another program's archive?)."
        ) from None
    if info.file_size > _MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{path}: its manifest is implausibly large; refused.")
    try:
        manifest = json.loads(archive.read(MANIFEST).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the manifest is not valid JSON ({exc}).") from None
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path}: the manifest is corrupt ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an emix model file (format is not {FORMAT!r}).")
    version = manifest.get("format_version")
    if not _is_int(version) or version < 1:
        raise ModelFileError(f"{path}: invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in model format {version} by emix "
            f"{manifest.get('emix_version')}; this emix reads format {FORMAT_VERSION}. "
            "Upgrade emix to load it."
        )
    for key, kind in (("estimator", str), ("params", dict), ("fitted", dict), ("arrays", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ModelFileError(f"{path}: the manifest's {key!r} is missing or malformed.")
    return manifest


def _read_array(archive: zipfile.ZipFile, key: str, spec: Any, path: Path) -> np.ndarray:
    if not (isinstance(spec, dict) and isinstance(spec.get("dtype"), str)
            and isinstance(spec.get("shape"), list) and isinstance(spec.get("sha256"), str)):
        raise ModelFileError(f"{path}: the manifest entry for {key!r} is malformed.")
    try:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(n) for n in spec["shape"])
    except (TypeError, ValueError):
        raise ModelFileError(f"{path}: {key!r} has an invalid dtype or shape.") from None
    if dtype.hasobject or dtype.kind not in "biuf" or any(n < 0 for n in shape):
        raise ModelFileError(
            f"{path}: {key!r} is declared as {spec['dtype']}; model files hold only "
            "numeric arrays (object arrays would need pickle, which emix refuses)."
        )
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError:
        raise ModelFileError(f"{path}: the array {key!r} is missing.") from None
    if info.file_size > dtype.itemsize * int(np.prod(shape)) + _MAX_NPY_HEADER:
        raise ModelFileError(f"{path}: {key!r} is larger than its declared shape; refused.")
    try:
        with archive.open(info) as member:
            array = np.lib.format.read_array(member, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ModelFileError(
                f"{path}: {key!r} is a pickled object array; emix never unpickles model "
                "files, so the file is refused (no code in it was run)."
            ) from None
        raise ModelFileError(f"{path}: {key!r} is corrupt ({exc}).") from None
    except (EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: {key!r} is truncated or corrupt ({exc}).") from None
    if array.dtype != dtype or array.shape != shape:
        raise ModelFileError(
            f"{path}: {key!r} is {array.dtype.str} {array.shape}, but the manifest declares "
            f"{dtype.str} {shape}; the file was altered."
        )
    if _digest(array) != spec["sha256"]:
        raise ModelFileError(
            f"{path}: the checksum of {key!r} does not match the manifest; the file is "
            "corrupt or was tampered with."
        )
    return array


def _build(manifest: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> Any:
    classes = _estimator_classes()
    cls = classes.get(manifest["estimator"])
    if cls is None:
        raise ModelFileError(
            f"{path} holds a {manifest['estimator']!r}, which this emix cannot load "
            f"(it knows {', '.join(classes)})."
        )
    params = {}
    for key, value in manifest["params"].items():
        if isinstance(value, dict):
            reference = value.get("$array")
            if reference not in arrays:
                raise ModelFileError(f"{path}: parameter {key!r} refers to a missing array.")
            value = arrays[reference]
        params[key] = value
    fitted = manifest["fitted"]
    try:
        model = cls(**params)
        model._check_settings()
        for key in _FITTED_ARRAYS:
            array = arrays.get(f"arrays/{key}")
            if array is None:
                raise ModelFileError(f"{path}: the fitted array {key!r} is missing.")
            setattr(model, key, array)
        model.lower_bounds_ = [float(v) for v in model.lower_bounds_]
        model.converged_ = _typed(fitted, "converged_", bool, path)
        model.convergence_state_ = _typed(fitted, "convergence_state_", str, path)
        model.n_iter_ = _typed(fitted, "n_iter_", int, path)
        model.lower_bound_ = float(_typed(fitted, "lower_bound_", numbers.Real, path))
        model.n_features_in_ = _typed(fitted, "n_features_in_", int, path)
        names = fitted.get("feature_names_in_")
        if names is not None:
            model.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)
        from ..families.base import Collapse

        model.collapses_ = [Collapse(int(i), int(k), str(r), str(a))
                            for i, k, r, a in fitted.get("collapses_", [])]
        _check_consistent(model, path)
    except ModelFileError:
        raise
    except (EmixError, TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path} describes an invalid model: {exc}") from None
    return model


def _check_consistent(model: Any, path: Path) -> None:
    from ..families.covariance import COVARIANCE_MODELS, SingularCovariance
    from ..families.gaussian import GaussianFamily

    weights, means = model.weights_, model.means_
    if weights.ndim != 1 or means.ndim != 2 or means.shape[0] != weights.shape[0]:
        raise ModelFileError(f"{path}: weights_ and means_ have inconsistent shapes.")
    n_components, n_features = means.shape
    if n_components != model.n_components or n_features != model.n_features_in_:
        raise ModelFileError(f"{path}: the arrays do not match n_components/n_features_in_.")
    expected = COVARIANCE_MODELS[model.covariance_type].shape(n_components, n_features)
    for key in ("covariances_", "precisions_", "precisions_cholesky_"):
        if getattr(model, key).shape != expected:
            raise ModelFileError(f"{path}: {key} has shape {getattr(model, key).shape}, "
                                 f"expected {expected} for covariance_type "
                                 f"{model.covariance_type!r}.")
    for key in _FITTED_ARRAYS:
        if not np.all(np.isfinite(getattr(model, key))):
            raise ModelFileError(f"{path}: {key} contains NaN or inf.")
    if (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-5:
        raise ModelFileError(f"{path}: weights_ are not a probability vector.")
    try:
        GaussianFamily(model.covariance_type).make_params(
            weights.astype(np.float64), means.astype(np.float64),
            model.covariances_.astype(np.float64))
    except SingularCovariance as exc:
        raise ModelFileError(
            f"{path}: the covariances of components {exc.components} are not positive "
            "definite."
        ) from None


def _typed(fitted: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    value = fitted.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelFileError(f"{path}: {key} is missing or not a {kind.__name__}.")
    return value


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _is_int(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool)


def _json_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if _is_int(value):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise ModelFileError(f"cannot store a parameter of type {type(value).__name__}.")
