"""Model files: a versioned JSON manifest plus arrays, in one zip (``.npz``-
compatible) file.  Never pickle.

Layout of the zip::

    manifest.json           format, versions, estimator, parameters, scalars,
                            and for every array its dtype, shape and SHA-256
    arrays/<name>.npy       fitted arrays (weights_, means_, ...)
    params/<name>.npy       array-valued constructor parameters (means_init, ...)

Members are stored uncompressed (fitted parameters hardly compress), so an
array read from a file is never larger than the file; files whose members
are deflated (as earlier versions wrote them) are read as well.

A file is checked before any array is read: every array's dtype and shape
follow from the manifest's scalars (``n_components``, ``covariance_type``,
``n_features_in_``, ``n_iter_``), and the sizes the zip declares must be
those shapes' and fit in the file (:data:`MAX_EXPANSION`), so a hostile file
cannot make ``load`` allocate more than a small multiple of its own size.
Arrays are then streamed from the zip into their final place, checked
against their checksums on the way, without ``np.load`` (whose headers
could declare any shape) and so without unpickling anything.  Finally the
model must be consistent: finite values, weights summing to one, positive
definite covariances that agree with the precisions and their Cholesky
factors, the convergence record and the collapses of a real fit.  Anything
else is a :class:`~emix.exceptions.ModelFileError` naming the file.

Writes go to a temporary file in the same directory, which is then renamed
over the target: a crash leaves the old file or the new one, never half.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..em.monitor import CONVERGED, DIVERGED, MAX_ITER
from ..em.online import ONLINE
from ..exceptions import EmixError, ModelFileError
from ..families.base import Collapse
from ..families.covariance import COVARIANCE_MODELS, CovarianceModel, SingularCovariance
from .atomic import atomic_output

FORMAT = "emix.model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 1 << 20
_MAX_NPY_HEADER = 1 << 16
#: Longest integer in a manifest: no count or seed of a real model is near.
_MAX_JSON_DIGITS = 100

#: The arrays a file declares may together be at most this many times the
#: file's size (plus :data:`EXPANSION_SLACK`).  Stored members are never
#: larger than the file; deflated fitted parameters (earlier files) expand
#: less than 4 times, while a deflate bomb expands 1000 times.
MAX_EXPANSION = 32
EXPANSION_SLACK = 1 << 20
_READ_BLOCK = 1 << 20

_FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_",
                  "precisions_cholesky_", "lower_bounds_")
_STATES = (CONVERGED, MAX_ITER, DIVERGED, ONLINE)
_COLLAPSE_REASONS = ("vanished", "singular")
_COLLAPSE_ACTIONS = ("floored", "reseeded")
#: Parameter arrays are the user's: any boolean, integer or float dtype.
_NUMERIC_DTYPES = tuple(sorted({np.dtype(code).newbyteorder(order).str
                                for code in "?bhilqBHILQefd" for order in "<>"}))

#: What a zip member may go wrong with, besides the checks below: CRC and
#: header errors, corrupt deflate data, an end of file inside a member.
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
                ValueError, TypeError, KeyError, IndexError, struct.error, OverflowError,
                SyntaxError, RecursionError, NotImplementedError, RuntimeError)


def _estimator_classes() -> dict[str, type]:
    from ..mixture import GaussianMixture

    return {"GaussianMixture": GaussianMixture}


def save(model: Any, path: str | os.PathLike) -> Path:
    """Write a fitted model to ``path`` atomically; returns the path.

    Raises
    ------
    ModelFileError
        If ``model`` is not a fitted emix estimator, or its attributes were
        changed into a model that :func:`load` would refuse.
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
    path = Path(path)
    label = f"cannot save {str(path)!r}"

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
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise ModelFileError(f"{key} holds Python objects; only numeric arrays are saved.")
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
    # What load would refuse is refused now, while the model is at hand.
    model._check_settings()
    _expected_arrays(manifest, label)
    _check_consistent(model, label)
    try:
        text = json.dumps(manifest, indent=1, allow_nan=False)
    except ValueError:
        raise ModelFileError(f"{label}: the model's scalars are not finite.") from None

    with atomic_output(path) as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(MANIFEST, text)
            for key, array in arrays.items():
                with archive.open(f"{key}.npy", "w",
                                  force_zip64=array.nbytes > zipfile.ZIP64_LIMIT // 2) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(array),
                                              allow_pickle=False)
    return path


def load(path: str | os.PathLike) -> Any:
    """Read a model written by :func:`save`.

    Raises
    ------
    ModelFileError
        If the file is missing, not an emix model, truncated, corrupt,
        tampered with, from a newer format, carries a pickle payload,
        declares arrays its own scalars do not call for, or describes an
        inconsistent model.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a directory, not a model file.")
    if not path.is_file():
        raise ModelFileError(f"no model file at {str(path)!r}.")
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise ModelFileError(f"{path} could not be read: {exc.strerror or exc}.") from None
    with stream:
        try:
            archive = zipfile.ZipFile(stream)
        except _READ_ERRORS as exc:
            raise ModelFileError(
                f"{path} is not an emix model file (not a valid zip archive: "
                f"{_clipped(str(exc), 120)}); it may be truncated, corrupt or of another kind."
            ) from None
        # From here on every error is the file's: a bit flipped or a byte cut
        # off reaches zipfile, zlib or numpy as any of _READ_ERRORS.
        try:
            with archive:
                manifest = _read_manifest(archive, path)
                expected = _expected_arrays(manifest, str(path))
                infos = _check_members(archive, expected, os.fstat(stream.fileno()).st_size,
                                       path)
                arrays = {key: _read_array(archive, infos[key], key, *expected[key],
                                           manifest["arrays"][key]["sha256"], path)
                          for key in expected}
        except ModelFileError:
            raise
        except _READ_ERRORS as exc:
            raise _corrupt(path, exc) from None
    return _build(manifest, arrays, path)


def _corrupt(path: Path, exc: BaseException, what: str = "") -> ModelFileError:
    detail = f"{type(exc).__name__}: {_clipped(str(exc), 200)}" if str(exc) else type(exc).__name__
    return ModelFileError(
        f"{path}{what} is truncated or corrupt ({detail}); save the model again or use "
        "another copy."
    )


# -- the manifest ------------------------------------------------------------------------

def _read_manifest(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise ModelFileError(
            f"{path} has no {MANIFEST}: it is not an emix model file (a plain .npz or "
            "another program's archive?)."
        ) from None
    _check_member(info, path, MANIFEST)
    if info.file_size > _MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{path}: its manifest is implausibly large; refused.")
    try:
        with archive.open(info) as member:
            data = member.read(_MAX_MANIFEST_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _corrupt(path, exc, "'s manifest") from None
    manifest = _parse_json(data, path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an emix model file (format is not {FORMAT!r}).")
    version = manifest.get("format_version")
    if not _is_int(version) or version < 1:
        raise ModelFileError(f"{path}: invalid format_version {_shown(version)}.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in model format {version} by emix "
            f"{_shown(manifest.get('emix_version'))}; this emix reads format "
            f"{FORMAT_VERSION}. Upgrade emix to load it."
        )
    for key, kind in (("estimator", str), ("params", dict), ("fitted", dict), ("arrays", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ModelFileError(f"{path}: the manifest's {key!r} is missing or malformed.")
    return manifest


def _parse_json(data: bytes, path: Path) -> Any:
    """The manifest, refusing what emix never writes: NaN or infinite
    numbers, integers of more than :data:`_MAX_JSON_DIGITS` digits, lone
    surrogates, nesting deeper than the interpreter's recursion limit."""

    def refuse(what: str) -> ModelFileError:
        return ModelFileError(f"{path}: the manifest holds {what}, which emix never writes; "
                              "the file is corrupt or was altered.")

    def parse_int(digits: str) -> int:
        if len(digits) > _MAX_JSON_DIGITS:
            raise refuse(f"an integer of {len(digits)} digits")
        return int(digits)

    def parse_float(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise refuse(f"the number {text[:20]!r} (beyond floating point's range)")
        return value

    def parse_constant(name: str) -> float:
        raise refuse(name)

    try:
        manifest = json.loads(data.decode("utf-8"), parse_int=parse_int,
                              parse_float=parse_float, parse_constant=parse_constant)
        json.dumps(manifest, ensure_ascii=False).encode("utf-8")  # no lone surrogates
    except ModelFileError:
        raise
    except RecursionError:
        raise ModelFileError(f"{path}: the manifest is nested too deeply; refused.") from None
    except ValueError as exc:  # UnicodeError and JSONDecodeError among them
        raise ModelFileError(
            f"{path}: the manifest is not valid JSON ({_clipped(str(exc), 120)})."
        ) from None
    return manifest


def _expected_arrays(manifest: dict[str, Any], label: str
                     ) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every array the manifest's scalars call for, with its shape and the
    dtype declared for it, before any array is read.  The manifest must
    declare exactly those arrays, with those shapes and with dtypes emix
    writes for them."""
    params, fitted = manifest["params"], manifest["fitted"]
    n_components = _count(params, "n_components", 1, label)
    covariance_type = params.get("covariance_type")
    if not isinstance(covariance_type, str) or covariance_type not in COVARIANCE_MODELS:
        raise ModelFileError(f"{label}: covariance_type {_shown(covariance_type)} is not one "
                             f"of {', '.join(map(repr, COVARIANCE_MODELS))}.")
    n_features = _count(fitted, "n_features_in_", 1, label)
    state = fitted.get("convergence_state_")
    if not isinstance(state, str) or state not in _STATES:
        raise ModelFileError(f"{label}: convergence_state_ {_shown(state)} is not one of "
                             f"{', '.join(map(repr, _STATES))}.")
    n_iter = _count(fitted, "n_iter_", 1 if state == ONLINE else 0, label)
    covariance_shape = COVARIANCE_MODELS[covariance_type].shape(n_components, n_features)
    floats, bounds = ("<f8", ">f8", "<f4", ">f4"), ("<f8", ">f8")
    # A batch fit records the initial parameters' log-likelihood too; a
    # stream records one per batch (emix.em.online).
    expected = {
        "arrays/weights_": ((n_components,), floats),
        "arrays/means_": ((n_components, n_features), floats),
        "arrays/covariances_": (covariance_shape, floats),
        "arrays/precisions_": (covariance_shape, floats),
        "arrays/precisions_cholesky_": (covariance_shape, floats),
        "arrays/lower_bounds_": ((n_iter if state == ONLINE else n_iter + 1,), bounds),
    }
    initial = {"weights_init": (n_components,), "means_init": (n_components, n_features),
               "precisions_init": covariance_shape}
    for key, value in params.items():
        if isinstance(value, dict):
            if key not in initial or value != {"$array": f"params/{key}"}:
                raise ModelFileError(f"{label}: parameter {key!r} refers to an array emix "
                                     "does not write.")
            expected[f"params/{key}"] = (initial[key], _NUMERIC_DTYPES)

    declared = manifest["arrays"]
    unknown = sorted(set(declared) - set(expected), key=str)
    if unknown:
        raise ModelFileError(f"{label}: the manifest declares arrays emix does not write "
                             f"({_shown(unknown[:3])}); the file was altered.")
    for key, (shape, dtypes) in expected.items():
        spec = declared.get(key)
        if spec is None:
            what = "fitted array" if key.startswith("arrays/") else "parameter array"
            raise ModelFileError(f"{label}: the {what} {key!r} is missing from the manifest.")
        if not (isinstance(spec, dict) and isinstance(spec.get("dtype"), str)
                and isinstance(spec.get("shape"), list)
                and isinstance(spec.get("sha256"), str)
                and re.fullmatch(r"[0-9a-f]{64}", spec["sha256"])):
            raise ModelFileError(f"{label}: the manifest entry for {key!r} is malformed.")
        if spec["dtype"] not in dtypes:
            raise ModelFileError(
                f"{label}: {key!r} is declared as {spec['dtype'][:20]}; it must be one of "
                f"{', '.join(dtypes[:4])}{', ...' if len(dtypes) > 4 else ''}: model files "
                "hold only numeric arrays (object arrays would need pickle, which emix "
                "refuses)."
            )
        if not (all(type(n) is int for n in spec["shape"]) and tuple(spec["shape"]) == shape):
            raise ModelFileError(
                f"{label}: {key!r} is declared with shape {_shown(spec['shape'])}, but "
                f"n_components={n_components}, n_features_in_={n_features}, "
                f"covariance_type={covariance_type!r} and n_iter_={n_iter} call for "
                f"{list(shape)}; the file was altered."
            )
    fitted_dtypes = {np.dtype(declared[f"arrays/{key}"]["dtype"]).name
                     for key in _FITTED_ARRAYS[:-1]}
    if len(fitted_dtypes) > 1:
        raise ModelFileError(f"{label}: the fitted arrays mix dtypes "
                             f"({', '.join(sorted(fitted_dtypes))}); emix writes one.")
    return {key: (shape, declared[key]["dtype"]) for key, (shape, _) in expected.items()}


def _count(section: dict[str, Any], key: str, minimum: int, label: str) -> int:
    value = section.get(key)
    if not _is_int(value) or value < minimum:
        raise ModelFileError(f"{label}: {key} is {_shown(value)}; it must be an integer "
                             f">= {minimum}.")
    return int(value)


# -- the zip members ---------------------------------------------------------------------

def _check_member(info: zipfile.ZipInfo, path: Path, name: str) -> None:
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{path}: {name} is encrypted; emix never writes that.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFileError(f"{path}: {name} is compressed with method {info.compress_type}, "
                             "which emix does not write; the file is corrupt or altered.")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ModelFileError(f"{path}: {name} is stored with two different sizes; the file "
                             "is corrupt or altered.")
    # Deflate never makes data more than a little larger.
    if info.compress_size > info.file_size + (info.file_size >> 10) + 64:
        raise ModelFileError(f"{path}: {name} declares a compressed size larger than its "
                             "content needs; the file is corrupt or altered.")


def _check_members(archive: zipfile.ZipFile,
                   expected: dict[str, tuple[tuple[int, ...], str]], file_size: int,
                   path: Path) -> dict[str, zipfile.ZipInfo]:
    """The zip's members, exactly the declared ones, each of the size its
    shape needs, together no larger than the file allows."""
    names = archive.namelist()
    if len(names) != len(set(names)):
        raise ModelFileError(f"{path} holds two members of the same name; it was altered.")
    extra = sorted(set(names) - {MANIFEST} - {f"{key}.npy" for key in expected})
    if extra:
        raise ModelFileError(
            f"{path} holds members the manifest does not declare ({_shown(extra[:3])}); "
            "it was altered after it was written."
        )
    needed = {key: math.prod(shape) * np.dtype(dtype).itemsize
              for key, (shape, dtype) in expected.items()}
    limit = MAX_EXPANSION * file_size + EXPANSION_SLACK
    if sum(needed.values()) > limit:
        raise ModelFileError(
            f"{path} declares arrays of {sum(needed.values()):,} bytes in a file of "
            f"{file_size:,} bytes; refused (a corrupt or hostile file)."
        )
    infos = {}
    for key in expected:
        try:
            info = archive.getinfo(f"{key}.npy")
        except KeyError:
            raise ModelFileError(f"{path}: the array {key!r} is missing.") from None
        _check_member(info, path, repr(key))
        if info.file_size > needed[key] + _MAX_NPY_HEADER:
            raise ModelFileError(f"{path}: {key!r} is larger than its declared shape; refused.")
        if info.file_size < needed[key]:
            raise ModelFileError(f"{path}: {key!r} is smaller than its declared shape: the "
                                 "file is truncated or corrupt.")
        infos[key] = info
    members = archive.infolist()
    if sum(info.compress_size for info in members) > file_size:
        raise ModelFileError(f"{path}: its members overlap or run past its end; the file is "
                             "corrupt or hostile.")
    if sum(info.file_size for info in members) > limit:
        raise ModelFileError(f"{path}: its members expand to more than {MAX_EXPANSION} times "
                             "the file's size; refused (a zip bomb?).")
    return infos


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
                shape: tuple[int, ...], dtype_name: str, sha256: str, path: Path) -> np.ndarray:
    """The array of one member, read in blocks straight into its place and
    hashed on the way (no second copy)."""
    dtype = np.dtype(dtype_name)
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(member, max_header_size=_MAX_NPY_HEADER)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(member, max_header_size=_MAX_NPY_HEADER)
        else:
            raise ModelFileError(f"{path}: {key!r} is in .npy format {version}, which emix "
                                 "does not write.")
        found_shape, fortran_order, found_dtype = header
        if found_dtype.hasobject:
            raise ModelFileError(
                f"{path}: {key!r} is a pickled object array; emix never unpickles model "
                "files, so the file is refused (no code in it was run)."
            )
        if found_shape != shape or found_dtype != dtype or fortran_order:
            raise ModelFileError(
                f"{path}: {key!r} is {found_dtype.str} {found_shape}"
                f"{' (Fortran order)' if fortran_order else ''}, but the manifest declares "
                f"{dtype.str} {shape}; the file was altered."
            )
        array = np.empty(shape, dtype)
        view = memoryview(array).cast("B")
        digest = hashlib.sha256()
        done = 0
        while done < view.nbytes:
            count = member.readinto(view[done:done + _READ_BLOCK])
            if not count:
                raise ModelFileError(f"{path}: {key!r} ends early: the file is truncated or "
                                     "corrupt.")
            digest.update(view[done:done + count])
            done += count
        if member.read(1):
            raise ModelFileError(f"{path}: {key!r} holds more data than its shape; the file "
                                 "was altered.")
    if digest.hexdigest() != sha256:
        raise ModelFileError(
            f"{path}: the checksum of {key!r} does not match the manifest; the file is "
            "corrupt or was tampered with."
        )
    return array


# -- the model -----------------------------------------------------------------------------

def _build(manifest: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> Any:
    classes = _estimator_classes()
    cls = classes.get(manifest["estimator"])
    if cls is None:
        raise ModelFileError(
            f"{path} holds a {_shown(manifest['estimator'])}, which this emix cannot load "
            f"(it knows {', '.join(classes)})."
        )
    params = {key: arrays[value["$array"]] if isinstance(value, dict) else value
              for key, value in manifest["params"].items()}
    fitted = manifest["fitted"]
    try:
        model = cls(**params)
        model._check_settings()
        for key in _FITTED_ARRAYS:
            setattr(model, key, arrays[f"arrays/{key}"])
        model.lower_bounds_ = [float(v) for v in model.lower_bounds_]
        model.converged_ = _typed(fitted, "converged_", bool, path)
        model.convergence_state_ = fitted["convergence_state_"]
        model.n_iter_ = fitted["n_iter_"]
        model.lower_bound_ = float(_typed(fitted, "lower_bound_", numbers.Real, path))
        model.n_features_in_ = fitted["n_features_in_"]
        names = fitted.get("feature_names_in_")
        if names is not None:
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise ModelFileError(f"{path}: feature_names_in_ is not a list of strings.")
            model.feature_names_in_ = np.asarray(names, dtype=object)
        model.collapses_ = [_collapse(record, path) for record in
                            _typed(fitted, "collapses_", list, path)]
        _check_consistent(model, str(path))
    except ModelFileError:
        raise
    except (EmixError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
        raise ModelFileError(f"{path} describes an invalid model: {_clipped(str(exc), 300)}"
                             ) from None
    return model


def _collapse(record: Any, path: Path) -> Collapse:
    if not (isinstance(record, list) and len(record) == 4
            and [type(v) for v in record] == [int, int, str, str]):
        raise ModelFileError(f"{path}: collapses_ holds {_shown(record)}, not an [iteration, "
                             "component, reason, action] record.")
    return Collapse(*record)


def _check_consistent(model: Any, label: str) -> None:
    """The rules every model emix fits obeys, within the rounding of its
    dtype: a file breaking one describes no fit (and would predict other
    things than ``emix show`` prints)."""
    structure = COVARIANCE_MODELS[model.covariance_type]
    n_components, n_features = np.shape(model.means_)
    for key in _FITTED_ARRAYS:
        if not np.all(np.isfinite(getattr(model, key))):
            raise ModelFileError(f"{label}: {key} contains NaN or inf.")
    eps = float(np.finfo(np.asarray(model.weights_).dtype).eps)

    weights = np.asarray(model.weights_, dtype=np.float64)
    if (weights < 0).any() or abs(math.fsum(weights) - 1.0) > 16 * (n_components + 1) * eps:
        raise ModelFileError(f"{label}: weights_ are not a probability vector (non-negative, "
                             f"summing to 1; the sum is {math.fsum(weights)!r}).")

    covariances = np.asarray(model.covariances_, dtype=np.float64)
    precisions = np.asarray(model.precisions_, dtype=np.float64)
    prec_chol = np.asarray(model.precisions_cholesky_, dtype=np.float64)
    tolerance = 16 * (n_features + 1) * eps
    matrices = _is_matrix(structure)
    if matrices:
        diagonal = np.diagonal(prec_chol, axis1=-2, axis2=-1)
        if np.tril(prec_chol, -1).any() or not (diagonal > 0).all():
            raise ModelFileError(f"{label}: precisions_cholesky_ is not upper triangular "
                                 "with a positive diagonal.")
        transposed = np.swapaxes(covariances, -1, -2)
        if not (np.abs(covariances - transposed)
                <= tolerance * np.maximum(np.abs(covariances), np.abs(transposed))).all():
            raise ModelFileError(f"{label}: covariances_ are not symmetric.")
    elif not (prec_chol > 0).all():
        raise ModelFileError(f"{label}: precisions_cholesky_ is not positive.")
    # The model is its precision factors (valid above, and matched with the
    # covariances below); float32 covariances of an ill-conditioned fit,
    # rounded from positive definite ones, need not stay positive definite.
    if np.asarray(model.covariances_).dtype == np.float64:
        try:
            structure.factor(covariances)
        except SingularCovariance as exc:
            raise ModelFileError(
                f"{label}: the covariances of components {exc.components} are not "
                "positive definite."
            ) from None
    with np.errstate(all="ignore"):
        if not (np.abs(precisions - structure.precisions(prec_chol))
                <= tolerance * structure.precisions(np.abs(prec_chol))).all():
            raise ModelFileError(f"{label}: precisions_ is not the precision that "
                                 "precisions_cholesky_ factors (P P^T).")
        # P^T S P is the identity when S is P's covariance.  The bound is the
        # first-order effect of rounding S, P and the factorisation, entry by
        # entry: |P|^T |L| |L|^T |P|, with L = P^-T the covariance factor.
        try:
            cov_chol = structure.cov_chol_from_prec_chol(prec_chol)
        except np.linalg.LinAlgError:
            raise ModelFileError(f"{label}: precisions_cholesky_ is singular.") from None
        residual = _whitened(structure, covariances, prec_chol) - (
            np.eye(n_features) if matrices else 1.0)
        scale = _whitened(structure, structure.precisions(np.abs(cov_chol)), np.abs(prec_chol))
        if not (np.abs(residual) <= tolerance * scale).all():
            raise ModelFileError(
                f"{label}: precisions_cholesky_ does not factor the inverse of covariances_ "
                "(predictions would not follow the covariances shown)."
            )

    state, n_iter, bounds = model.convergence_state_, model.n_iter_, model.lower_bounds_
    if model.converged_ is not (state == CONVERGED):
        raise ModelFileError(f"{label}: converged_={model.converged_} contradicts "
                             f"convergence_state_={state!r}.")
    if len(bounds) != (n_iter if state == ONLINE else n_iter + 1):
        raise ModelFileError(f"{label}: lower_bounds_ has {len(bounds)} entries for "
                             f"n_iter_={n_iter}.")
    # Even after divergence, when the best parameters are returned with the
    # history that led to them (emix.em.engine.run_em).
    if not bounds or model.lower_bound_ != bounds[-1]:
        raise ModelFileError(f"{label}: lower_bound_ is not the last of lower_bounds_.")

    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) != n_features:
        raise ModelFileError(f"{label}: feature_names_in_ has {len(names)} names for "
                             f"{n_features} features.")

    # A diverged fit returns the repairs that led to the parameters it
    # returns (emix.em.engine.run_em); files written before that kept those
    # of the whole run.
    last = model.max_iter if state == DIVERGED else n_iter
    lowest = 0 if structure.per_component else -1  # -1: the shared covariance
    for event in model.collapses_:
        if not (1 <= event.iteration <= last and lowest <= event.component < n_components
                and event.reason in _COLLAPSE_REASONS and event.action in _COLLAPSE_ACTIONS):
            raise ModelFileError(
                f"{label}: collapses_ holds {_shown(event)}: iterations run from 1 to {last}, "
                f"components from {lowest} to {n_components - 1}, reasons are "
                f"{_COLLAPSE_REASONS} and actions {_COLLAPSE_ACTIONS}."
            )


def _is_matrix(structure: CovarianceModel) -> bool:
    """Whether the structure holds (d, d) matrices, rather than scales of
    the features (diag, spherical).  Probed with d = 3 and K = 2, which no
    scale structure's shape can end with."""
    return structure.shape(2, 3)[-2:] == (3, 3)


def _whitened(structure: CovarianceModel, covariances: np.ndarray,
              prec_chol: np.ndarray) -> np.ndarray:
    """``P^T S P`` for each component, in the structure's shape."""
    if _is_matrix(structure):
        return np.swapaxes(prec_chol, -1, -2) @ covariances @ prec_chol
    return covariances * prec_chol**2


def _typed(fitted: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    value = fitted.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ModelFileError(f"{path}: {key} is missing or not a {kind.__name__}.")
    return value


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def _shown(value: Any) -> str:
    """A value from a file, as a message may quote it."""
    return _clipped(repr(value), 60)


def _clipped(text: str, most: int) -> str:
    """A hostile file's values, and so the errors about them, can be
    megabytes long."""
    return text if len(text) <= most else text[:most - 3] + "..."


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
