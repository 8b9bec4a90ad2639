"""Model files: ``emix.save`` / ``emix.load`` round trips exactly, and every
kind of bad file is refused with :class:`emix.ModelFileError` (never pickle)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import warnings
import zipfile

import numpy as np
import pytest

import emix
from emix import ComponentCollapseWarning, GaussianMixture, ModelFileError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


# -- data and models ----------------------------------------------------------------

def two_blobs(n_per_blob: int = 150, n_features: int = 2, seed: int = 0,
              dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(-3.0, 1.0, size=(n_per_blob, n_features)),
                   rng.normal(3.0, 0.7, size=(n_per_blob, n_features))])
    return X.astype(dtype)


def start_precisions(covariance_type: str, n_components: int, n_features: int) -> np.ndarray:
    if covariance_type == "full":
        return np.repeat(np.eye(n_features)[None], n_components, axis=0)
    if covariance_type == "tied":
        return np.eye(n_features)
    if covariance_type == "diag":
        return np.ones((n_components, n_features))
    return np.ones(n_components)


def fitted_model(covariance_type: str = "full", X: np.ndarray | None = None,
                 **options) -> GaussianMixture:
    X = two_blobs() if X is None else X
    n_features = np.asarray(X).shape[1]
    settings = dict(
        covariance_type=covariance_type, random_state=0, tol=1e-4, reg_covar=1e-5,
        max_iter=200, weights_init=np.array([0.4, 0.6]),
        means_init=np.array([[-2.0] * n_features, [2.0] * n_features]),
        precisions_init=start_precisions(covariance_type, 2, n_features),
    )
    settings.update(options)
    return GaussianMixture(2, **settings).fit(X)


def assert_same_params(original: GaussianMixture, loaded: GaussianMixture) -> None:
    expected, got = original.get_params(), loaded.get_params()
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            assert isinstance(got[name], np.ndarray), name
            assert np.array_equal(got[name], value), name
            assert got[name].dtype == value.dtype, name
        else:
            assert got[name] == value, name
            assert type(got[name]) is type(value), name


def assert_same_model(original: GaussianMixture, loaded: GaussianMixture) -> None:
    assert type(loaded) is type(original)
    for name in FITTED_ARRAYS:
        expected, got = getattr(original, name), getattr(loaded, name)
        assert isinstance(got, np.ndarray), name
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        assert np.array_equal(got, expected), name
    assert isinstance(loaded.lower_bounds_, list)
    assert loaded.lower_bounds_ == original.lower_bounds_
    assert all(type(v) is float for v in loaded.lower_bounds_)
    assert loaded.lower_bound_ == original.lower_bound_
    assert type(loaded.lower_bound_) is float
    assert loaded.n_iter_ == original.n_iter_
    assert type(loaded.n_iter_) is type(original.n_iter_)
    assert loaded.converged_ is original.converged_
    assert loaded.convergence_state_ == original.convergence_state_
    assert loaded.n_features_in_ == original.n_features_in_
    assert loaded.collapses_ == original.collapses_
    if hasattr(original, "feature_names_in_"):
        assert loaded.feature_names_in_.dtype == original.feature_names_in_.dtype
        assert np.array_equal(loaded.feature_names_in_, original.feature_names_in_)
    else:
        assert not hasattr(loaded, "feature_names_in_")
    assert_same_params(original, loaded)


# -- rewriting model files ----------------------------------------------------------

def read_members(path: pathlib.Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_members(path: pathlib.Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def rewrite(path: pathlib.Path, edit) -> None:
    """Rewrite a model file after ``edit(manifest, members)`` changed them."""
    members = read_members(path)
    manifest = json.loads(members["manifest.json"])
    edit(manifest, members)
    members["manifest.json"] = json.dumps(manifest).encode()
    write_members(path, members)


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture
def saved(tmp_path) -> tuple[GaussianMixture, pathlib.Path]:
    model = fitted_model("full")
    path = tmp_path / "model.npz"
    emix.save(model, path)
    return model, path


class TouchOnUnpickle:
    """An object whose unpickling creates ``marker``: a live pickle payload."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def pickle_payload(marker: pathlib.Path) -> bytes:
    payload = np.empty(2, dtype=object)
    payload[0] = TouchOnUnpickle(marker)
    payload[1] = 1.0
    return npy_bytes(payload, allow_pickle=True)


# -- round trips ----------------------------------------------------------------------

@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_is_exact(tmp_path, covariance_type):
    model = fitted_model(covariance_type)
    path = tmp_path / "model.npz"
    returned = emix.save(model, path)
    assert pathlib.Path(returned) == path
    loaded = emix.load(path)
    assert_same_model(model, loaded)
    X_new = two_blobs(40, seed=1) * 1.5
    expected_proba, got_proba = model.predict_proba(X_new), loaded.predict_proba(X_new)
    assert got_proba.dtype == expected_proba.dtype
    assert np.array_equal(got_proba, expected_proba)
    expected_density, got_density = model.score_samples(X_new), loaded.score_samples(X_new)
    assert got_density.dtype == expected_density.dtype
    assert np.array_equal(got_density, expected_density)
    assert np.array_equal(loaded.predict(X_new), model.predict(X_new))


def test_round_trip_with_default_parameters(tmp_path):
    model = GaussianMixture(2, random_state=0).fit(two_blobs())
    emix.save(model, tmp_path / "model.npz")
    loaded = emix.load(tmp_path / "model.npz")
    assert_same_model(model, loaded)
    assert loaded.means_init is None and loaded.precisions_init is None


def test_round_trip_accepts_string_path(tmp_path):
    model = fitted_model("diag")
    path = str(tmp_path / "model.npz")
    emix.save(model, path)
    assert_same_model(model, emix.load(path))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_float32(tmp_path, covariance_type):
    X = two_blobs(dtype=np.float32)
    model = fitted_model(covariance_type, X=X)
    for name in FITTED_ARRAYS:
        assert getattr(model, name).dtype == np.float32, name
    emix.save(model, tmp_path / "model.npz")
    loaded = emix.load(tmp_path / "model.npz")
    assert_same_model(model, loaded)
    for name in FITTED_ARRAYS:
        assert getattr(loaded, name).dtype == np.float32, name
    X_new = two_blobs(30, seed=2, dtype=np.float32)
    proba = loaded.predict_proba(X_new)
    assert proba.dtype == np.float32
    assert np.array_equal(proba, model.predict_proba(X_new))
    assert np.array_equal(loaded.score_samples(X_new), model.score_samples(X_new))


def ill_conditioned(n_features: int, dtype) -> np.ndarray:
    """Correlated features on scales from 1e-3 to 1e3, far from the origin:
    the rounding of float32 covariances and their factors is at its worst."""
    rng = np.random.default_rng(n_features)
    mixing = rng.normal(size=(n_features, n_features)) * np.logspace(-3, 3, n_features)
    X = rng.normal(size=(600, n_features)) @ mixing + 100.0
    X[:300] += 5.0
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fits_of_hard_data_round_trip(tmp_path, covariance_type, dtype):
    # The consistency checks' tolerances must pass every model emix fits.
    for n_features, n_components in ((1, 1), (2, 3), (5, 2), (12, 3)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emix.ConvergenceWarning)  # stopped is fine
            model = GaussianMixture(n_components, covariance_type=covariance_type,
                                    random_state=0, max_iter=40).fit(
                ill_conditioned(n_features, dtype))
        emix.save(model, tmp_path / "model.npz")
        assert_same_model(model, emix.load(tmp_path / "model.npz"))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("on_collapse", ["floor", "reseed"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_repaired_fits_round_trip(tmp_path, covariance_type, on_collapse, dtype):
    X = np.vstack([two_blobs(), np.tile([[10.0, 10.0]], (6, 1))]).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ComponentCollapseWarning)
        warnings.simplefilter("ignore", emix.ConvergenceWarning)
        model = GaussianMixture(4, covariance_type=covariance_type, random_state=0,
                                max_iter=50, on_collapse=on_collapse).fit(X)
    if covariance_type != "tied":  # a shared covariance does not collapse onto 6 rows
        assert model.collapses_, "the data were chosen to make a component collapse"
    emix.save(model, tmp_path / "model.npz")
    assert_same_model(model, emix.load(tmp_path / "model.npz"))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_unfinished_and_streamed_fits_round_trip(tmp_path, covariance_type):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emix.ConvergenceWarning)
        stopped = GaussianMixture(2, covariance_type=covariance_type, random_state=0,
                                  tol=0.0, max_iter=3).fit(two_blobs())
    assert stopped.convergence_state_ == "max_iter"
    streamed = GaussianMixture(2, covariance_type=covariance_type, random_state=0)
    for seed in range(3):
        streamed.partial_fit(two_blobs(seed=seed, dtype=np.float32))
    assert streamed.convergence_state_ == "online" and len(streamed.lower_bounds_) == 3
    for model in (stopped, streamed):
        emix.save(model, tmp_path / "model.npz")
        assert_same_model(model, emix.load(tmp_path / "model.npz"))


def test_a_diverged_fit_round_trips_with_the_collapses_of_its_whole_run(tmp_path):
    # What run_em returns on divergence: the best parameters, the history up
    # to them, and every collapse of the run (here: later than the best).
    X = np.vstack([two_blobs(), np.tile([[10.0, 10.0]], (6, 1))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ComponentCollapseWarning)
        model = GaussianMixture(4, covariance_type="diag", random_state=0, max_iter=50).fit(X)
    assert min(c.iteration for c in model.collapses_) >= 1
    model.convergence_state_, model.converged_ = "diverged", False
    model.n_iter_, model.lower_bounds_ = 0, model.lower_bounds_[:1]
    model.lower_bound_ = model.lower_bounds_[-1]
    emix.save(model, tmp_path / "model.npz")
    assert_same_model(model, emix.load(tmp_path / "model.npz"))


def test_new_files_store_their_members_uncompressed(saved):
    # So that no member can be larger than the file (see load's size limit).
    _, path = saved
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    assert {info.compress_type for info in infos} == {zipfile.ZIP_STORED}
    assert all(info.file_size == info.compress_size for info in infos)
    assert sum(info.file_size for info in infos) < path.stat().st_size


def test_round_trip_feature_names_from_data_frame(tmp_path):
    import pandas as pd

    X = pd.DataFrame(two_blobs(n_features=3), columns=["height", "width", "depth"])
    model = fitted_model("tied", X=X)
    assert list(model.feature_names_in_) == ["height", "width", "depth"]
    emix.save(model, tmp_path / "model.npz")
    loaded = emix.load(tmp_path / "model.npz")
    assert_same_model(model, loaded)
    assert list(loaded.feature_names_in_) == ["height", "width", "depth"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names match: no feature-name warning
        proba = loaded.predict_proba(X.iloc[:20])
    assert np.array_equal(proba, model.predict_proba(X.iloc[:20]))


def test_round_trip_keeps_collapses(tmp_path):
    X = np.vstack([two_blobs(), np.tile([[10.0, 10.0]], (6, 1))])
    with pytest.warns(ComponentCollapseWarning):
        model = GaussianMixture(4, covariance_type="diag", random_state=0,
                                max_iter=50).fit(X)
    assert model.collapses_, "the data were chosen to make a component collapse"
    emix.save(model, tmp_path / "model.npz")
    loaded = emix.load(tmp_path / "model.npz")
    assert_same_model(model, loaded)


def test_rewriting_an_unchanged_file_still_loads(saved):
    # Control for the tampering tests below: the rewrite itself is harmless.
    model, path = saved
    write_members(path, read_members(path))
    assert_same_model(model, emix.load(path))


# -- save refuses ---------------------------------------------------------------------

def test_save_refuses_unfitted_model(tmp_path):
    with pytest.raises(ModelFileError, match="not fitted"):
        emix.save(GaussianMixture(2), tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()


@pytest.mark.parametrize("thing", [{"weights_": [1.0]}, np.zeros(3), "model"])
def test_save_refuses_non_emix_objects(tmp_path, thing):
    with pytest.raises(ModelFileError, match="cannot save a"):
        emix.save(thing, tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()


def test_save_refuses_a_model_edited_into_one_load_would_refuse(tmp_path):
    path = tmp_path / "model.npz"
    model = fitted_model("full")
    model.weights_ = model.weights_ * 0.5
    with pytest.raises(ModelFileError, match=r"cannot save '.*model\.npz': weights_ are not a "
                                             r"probability vector"):
        emix.save(model, path)
    model = fitted_model("full")
    model.set_params(means_init=np.zeros((3, 2)))
    with pytest.raises(ModelFileError, match=r"'params/means_init' is declared with shape "
                                             r"\[3, 2\].*call for \[2, 2\]"):
        emix.save(model, path)
    model = fitted_model("tied")
    model.precisions_cholesky_ = model.precisions_cholesky_ * 1.01
    with pytest.raises(ModelFileError, match=r"precisions_ is not the precision that "
                                             r"precisions_cholesky_ factors"):
        emix.save(model, path)
    assert not path.exists()


def test_save_refuses_scikit_learn_model_of_the_same_name(tmp_path):
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    model = SklearnGaussianMixture(2, random_state=0).fit(two_blobs())
    with pytest.raises(ModelFileError, match="cannot save a GaussianMixture"):
        emix.save(model, tmp_path / "model.npz")


# -- load refuses ---------------------------------------------------------------------

def test_load_missing_path(tmp_path):
    with pytest.raises(ModelFileError, match="no model file at"):
        emix.load(tmp_path / "absent.npz")


def test_load_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory, not a model file"):
        emix.load(tmp_path)


@pytest.mark.parametrize("cut", ["half", "last 30 bytes"])
def test_load_truncated_file(saved, cut):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if cut == "half" else data[:-30])
    with pytest.raises(ModelFileError, match="truncated"):
        emix.load(path)


def test_load_random_bytes(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError, match=r"not an emix model file.*not a valid zip"):
        emix.load(path)


def test_load_plain_npz(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, weights_=np.array([0.5, 0.5]), means_=np.zeros((2, 2)))
    with pytest.raises(ModelFileError, match=r"no manifest\.json"):
        emix.load(path)


def test_load_json_text_file(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "emix.model", "format_version": 1}))
    with pytest.raises(ModelFileError, match=r"not an emix model file.*not a valid zip"):
        emix.load(path)


def test_load_manifest_of_another_format(saved):
    _, path = saved
    rewrite(path, lambda manifest, members: manifest.update(format="other.model"))
    with pytest.raises(ModelFileError, match=r"format is not 'emix\.model'"):
        emix.load(path)


def test_load_tampered_array_fails_checksum(saved):
    _, path = saved
    members = read_members(path)
    means = npy_array(members["arrays/means_.npy"]).copy()
    means[0, 0] += 0.25  # same dtype and shape, different bytes
    members["arrays/means_.npy"] = npy_bytes(means)
    write_members(path, members)  # the original manifest is kept
    with pytest.raises(ModelFileError, match=r"checksum of 'arrays/means_' does not match"):
        emix.load(path)


def test_load_newer_format_version(saved):
    _, path = saved
    rewrite(path, lambda manifest, members: manifest.update(
        format_version=manifest["format_version"] + 1))
    with pytest.raises(ModelFileError, match=r"model format 2 .*Upgrade emix"):
        emix.load(path)


def test_load_weights_not_summing_to_one(saved):
    _, path = saved

    def halve_weights(manifest, members):
        weights = npy_array(members["arrays/weights_.npy"]) * 0.5  # sums to 0.5
        members["arrays/weights_.npy"] = npy_bytes(weights)
        manifest["arrays"]["arrays/weights_"]["sha256"] = sha256_of(weights)

    rewrite(path, halve_weights)
    with pytest.raises(ModelFileError, match="weights_ are not a probability vector"):
        emix.load(path)


def test_load_extra_undeclared_member(saved):
    _, path = saved
    members = read_members(path)
    members["arrays/extra.npy"] = npy_bytes(np.zeros(3))
    write_members(path, members)
    with pytest.raises(ModelFileError, match=r"members the manifest does not declare.*extra"):
        emix.load(path)


def test_load_missing_declared_member(saved):
    _, path = saved
    members = read_members(path)
    del members["arrays/covariances_.npy"]
    write_members(path, members)
    with pytest.raises(ModelFileError, match=r"array 'arrays/covariances_' is missing"):
        emix.load(path)


# -- pickle payloads ------------------------------------------------------------------

def test_pickle_payload_is_live(tmp_path):
    # Control: the payload used below does run code when unpickled.
    marker = tmp_path / "control-marker"
    np.load(io.BytesIO(pickle_payload(marker)), allow_pickle=True)
    assert marker.exists()


def test_load_refuses_pickle_disguised_as_float_array(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "pwned"
    members = read_members(path)
    manifest = json.loads(members["manifest.json"])
    assert manifest["arrays"]["arrays/weights_"]["dtype"] == "<f8"
    members["arrays/weights_.npy"] = pickle_payload(marker)
    write_members(path, members)
    with pytest.raises(ModelFileError, match="pickle"):
        emix.load(path)
    assert not marker.exists()


def test_load_refuses_manifest_declaring_object_dtype(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "pwned"

    def declare_object_array(manifest, members):
        manifest["arrays"]["arrays/weights_"]["dtype"] = "|O"
        members["arrays/weights_.npy"] = pickle_payload(marker)

    rewrite(path, declare_object_array)
    with pytest.raises(ModelFileError, match=r"declared as \|O.*only numeric arrays"):
        emix.load(path)
    assert not marker.exists()


# -- atomic writes --------------------------------------------------------------------

def test_failed_save_leaves_old_file_and_no_temporaries(tmp_path, monkeypatch):
    first = fitted_model("full")
    path = tmp_path / "model.npz"
    emix.save(first, path)
    before = path.read_bytes()

    second = fitted_model("spherical", X=two_blobs(seed=5))
    real_write_array = np.lib.format.write_array
    calls = []

    def failing_write_array(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk full (simulated)")
        return real_write_array(*args, **kwargs)

    # model_file.py calls np.lib.format.write_array through the module attribute.
    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    with pytest.raises(OSError, match="disk full"):
        emix.save(second, path)
    monkeypatch.undo()

    assert len(calls) == 2, "the failure must happen in the middle of the write"
    assert path.read_bytes() == before
    assert_same_model(first, emix.load(path))
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_save_over_existing_file_replaces_it(tmp_path):
    path = tmp_path / "model.npz"
    emix.save(fitted_model("full"), path)
    second = fitted_model("diag", X=two_blobs(seed=3))
    emix.save(second, path)
    assert_same_model(second, emix.load(path))
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("online", [False, True])
def test_float32_model_of_ill_conditioned_data_round_trips(tmp_path, covariance_type, online):
    # Correlation 1 - 5e-9: the float32 covariances_, rounded from positive
    # definite ones, are indefinite; the model is its precision factors,
    # and save had refused it.
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 2000))
    X = np.column_stack([1e3 * z1, 1e3 * z1 + 0.1 * z2]).astype(np.float32)
    model = GaussianMixture(2, covariance_type=covariance_type, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if online:
            for batch in np.array_split(X, 4):
                model.partial_fit(batch)
        else:
            model.fit(X)
    covariances = np.asarray(model.covariances_, dtype=np.float64).reshape(-1, 2, 2)
    assert np.linalg.eigvalsh(covariances)[:, 0].min() < 0
    path = tmp_path / "model.emix"
    emix.save(model, path)
    loaded = emix.load(path)
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
