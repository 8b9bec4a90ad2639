"""Bad input gets a clear error naming the problem; odd but legal input works."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse

import emix
from emix import GaussianMixture, InvalidInputError, NotFittedError, NumericalError
from emix.exceptions import InvalidInputTypeError


def two_blobs(n_per_blob: int = 100, n_features: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(-3.0, 1.0, size=(n_per_blob, n_features)),
                      rng.normal(3.0, 0.8, size=(n_per_blob, n_features))])


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return two_blobs()


@pytest.fixture(scope="module")
def fitted(X) -> GaussianMixture:
    return GaussianMixture(2, random_state=0).fit(X)


# -- the data -------------------------------------------------------------------------

def test_nan_in_X_names_nan_and_the_row(X):
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(InvalidInputError, match=r"X contains NaN in 1 row\(s\) \(first at row 7\)"):
        GaussianMixture(2).fit(bad)


def test_inf_in_X_names_inf_and_the_row(X):
    bad = X.copy()
    bad[12, 0] = np.inf
    bad[40, 2] = -np.inf
    with pytest.raises(InvalidInputError,
                       match=r"X contains inf in 2 row\(s\) \(first at row 12\)"):
        GaussianMixture(2).fit(bad)


def test_nan_and_inf_in_X_are_both_named(X):
    bad = X.copy()
    bad[3, 0] = np.inf
    bad[5, 0] = np.nan
    with pytest.raises(InvalidInputError, match=r"NaN and inf in 2 row\(s\) \(first at row 3\)"):
        GaussianMixture(2).fit(bad)


def test_nan_in_X_at_prediction_names_the_row(fitted, X):
    bad = X[:10].copy()
    bad[4, 2] = np.nan
    with pytest.raises(InvalidInputError, match=r"NaN in 1 row\(s\) \(first at row 4\)"):
        fitted.predict(bad)


def test_three_dimensional_X():
    with pytest.raises(InvalidInputError, match=r"1-D .* or 2-D .*shape \(4, 2, 2\)"):
        GaussianMixture(1).fit(np.zeros((4, 2, 2)))


def test_empty_X():
    with pytest.raises(InvalidInputError, match=r"0 samples \(shape=\(0, 3\)\)"):
        GaussianMixture(1).fit(np.empty((0, 3)))


def test_X_without_columns():
    with pytest.raises(InvalidInputError, match=r"0 feature\(s\) \(shape=\(5, 0\)\)"):
        GaussianMixture(1).fit(np.empty((5, 0)))


def test_complex_X(X):
    with pytest.raises(ValueError, match="Complex data not supported"):
        GaussianMixture(2).fit(X + 1j)


def test_object_array_holding_a_dict():
    bad = np.array([[1.0, {"a": 1}], [2.0, 3.0], [4.0, 5.0]], dtype=object)
    with pytest.raises(TypeError, match=r"not numbers.*dict"):
        GaussianMixture(1).fit(bad)


def test_list_of_lists_with_a_string_column():
    bad = [[1.0, "red"], [2.0, "green"], [3.0, "blue"]]
    with pytest.raises(TypeError, match=r"not numbers.*'red'"):
        GaussianMixture(1).fit(bad)


def test_ragged_list_of_lists():
    with pytest.raises(InvalidInputError, match="cannot be read as a numeric array"):
        GaussianMixture(1).fit([[1.0, 2.0], [3.0], [4.0, 5.0]])


def test_datetime_X():
    days = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[D]")
    with pytest.raises(TypeError, match=r"dtype datetime64\[D\].*not numeric"):
        GaussianMixture(1).fit(days)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_X(fmt):
    with pytest.raises(TypeError, match="sparse"):
        GaussianMixture(2).fit(scipy.sparse.random(50, 3, density=0.5, format=fmt,
                                                   random_state=0))


def test_fewer_samples_than_components(X):
    with pytest.raises(InvalidInputError, match="n_samples=3 is fewer than n_components=5"):
        GaussianMixture(5).fit(X[:3])


def test_single_sample(X):
    with pytest.raises(InvalidInputError, match=r"n_samples=1: at least 2 samples"):
        GaussianMixture(1).fit(X[:1])


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_data_beyond_floating_point_gives_numerical_error(covariance_type):
    # Squares of 1e300 overflow: the fit cannot be done in float64 and must
    # say so (NumericalError asks to rescale), not fail with a bare IndexError.
    X = np.array([[1e300], [2e300], [-1e300], [0.0], [5e299], [-3e299]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only the exception is judged here
        with pytest.raises(NumericalError, match="Rescale the columns"):
            GaussianMixture(1, covariance_type=covariance_type).fit(X)


# -- sample weights -------------------------------------------------------------------

def test_negative_sample_weight(X):
    weights = np.ones(5)
    weights[2] = -1.0
    with pytest.raises(InvalidInputError, match=r"sample_weight must be non-negative.*index 2"):
        GaussianMixture(1).fit(X[:5], sample_weight=weights)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_sample_weight(X, bad):
    weights = np.ones(5)
    weights[3] = bad
    with pytest.raises(InvalidInputError,
                       match=r"sample_weight contains NaN or inf \(first at index 3\)"):
        GaussianMixture(1).fit(X[:5], sample_weight=weights)


def test_all_zero_sample_weight(X):
    with pytest.raises(InvalidInputError, match="sample_weight is zero everywhere"):
        GaussianMixture(1).fit(X[:5], sample_weight=np.zeros(5))


@pytest.mark.parametrize("length", [4, 7])
def test_sample_weight_of_wrong_length(X, length):
    with pytest.raises(InvalidInputError,
                       match=rf"sample_weight must have shape \(5,\).*got shape \({length},\)"):
        GaussianMixture(1).fit(X[:5], sample_weight=np.ones(length))


def test_sample_weight_of_wrong_length_at_scoring(fitted, X):
    with pytest.raises(InvalidInputError, match=r"sample_weight must have shape \(200,\)"):
        fitted.score(X, sample_weight=np.ones(3))


def test_only_one_row_with_positive_weight(X):
    weights = np.zeros(5)
    weights[1] = 3.0
    with pytest.raises(InvalidInputError, match=r"n_samples=1: .*positive weight"):
        GaussianMixture(1).fit(X[:5], sample_weight=weights)


def test_positive_weights_fewer_than_components(X):
    weights = np.array([1.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(InvalidInputError, match="n_samples=2 is fewer than n_components=3"):
        GaussianMixture(3).fit(X[:6], sample_weight=weights)


def test_callers_sample_weight_is_not_modified(X):
    weights = np.linspace(0.5, 2.0, X.shape[0])
    weights[::7] = 0.0
    before = weights.copy()
    model = GaussianMixture(2, random_state=0).fit(X, sample_weight=weights)
    model.score(X, sample_weight=weights)
    model.bic(X, sample_weight=weights)
    assert np.array_equal(weights, before)
    assert weights.dtype == np.float64
    assert weights.flags.writeable


# -- hyperparameters ------------------------------------------------------------------

INVALID_SETTINGS = [
    ("n_components", 0, r"n_components must be an int >= 1; got 0"),
    ("n_components", 1.5, r"n_components must be an int >= 1; got 1\.5 \(float\)"),
    ("n_components", True, r"n_components must be an int >= 1; got True \(bool\)"),
    ("covariance_type", "foo",
     r"covariance_type must be one of 'full', 'tied', 'diag', 'spherical'; got 'foo'"),
    ("tol", -1, r"tol must be a finite number >= 0.*got -1"),
    ("tol", float("nan"), r"tol must be a finite number >= 0.*got nan"),
    ("reg_covar", -1, r"reg_covar must be a finite number >= 0.*got -1"),
    ("reg_covar", float("nan"), r"reg_covar must be a finite number >= 0.*got nan"),
    ("max_iter", 0, r"max_iter must be an int >= 1; got 0"),
    ("n_init", 0, r"n_init must be an int >= 1; got 0"),
    ("init_params", "bad", r"init_params must be one of 'kmeans', .*got 'bad'"),
    ("on_collapse", "bad", r"on_collapse must be one of 'floor', 'reseed', 'raise'; got 'bad'"),
    ("verbose", -1, r"verbose must be an int >= 0; got -1"),
    ("verbose_interval", 0, r"verbose_interval must be an int >= 1; got 0"),
    ("chunk_size", 0, r"chunk_size must be an int >= 1; got 0"),
    ("random_state", -1, r"random_state must be a non-negative int"),
    ("random_state", "seed", r"random_state must be None, an int, .*got str"),
]


@pytest.mark.parametrize(("name", "value", "message"), INVALID_SETTINGS,
                         ids=[f"{name}={value!r}" for name, value, _ in INVALID_SETTINGS])
def test_invalid_hyperparameter(X, name, value, message):
    model = GaussianMixture(2).set_params(**{name: value})
    with pytest.raises(InvalidInputError, match=message):
        model.fit(X)
    assert not hasattr(model, "weights_")


def test_weights_init_not_summing_to_one(X):
    with pytest.raises(InvalidInputError, match=r"weights_init must .*sum to 1; got sum 0\.6"):
        GaussianMixture(2, weights_init=[0.3, 0.3]).fit(X)


def test_negative_weights_init_names_the_negative_value(X):
    # The weights sum to 1, so the message must name the negative entry,
    # not report "got sum 1" as if the sum were the problem.
    with pytest.raises(InvalidInputError, match=r"non-negative.*-0\.5"):
        GaussianMixture(2, weights_init=[1.5, -0.5]).fit(X)


def test_weights_init_of_wrong_shape(X):
    with pytest.raises(InvalidInputError, match=r"weights_init must have shape \(2,\).*got \(3,\)"):
        GaussianMixture(2, weights_init=[0.2, 0.3, 0.5]).fit(X)


def test_means_init_of_wrong_shape(X):
    with pytest.raises(InvalidInputError,
                       match=r"means_init must have shape \(2, 3\).*got \(2, 2\)"):
        GaussianMixture(2, means_init=np.zeros((2, 2))).fit(X)


def test_means_init_with_nan(X):
    means = np.array([[0.0, 0.0, np.nan], [1.0, 1.0, 1.0]])
    with pytest.raises(InvalidInputError, match="means_init contains NaN or inf"):
        GaussianMixture(2, means_init=means).fit(X)


def test_means_init_of_strings(X):
    with pytest.raises(InvalidInputError, match="means_init must be an array of numbers"):
        GaussianMixture(2, means_init=[["a", "b", "c"], ["d", "e", "f"]]).fit(X)


def test_precisions_init_of_wrong_shape(X):
    with pytest.raises(InvalidInputError,
                       match=r"precisions_init must have shape \(3, 3\).*got \(2, 3, 3\)"):
        GaussianMixture(2, covariance_type="tied",
                        precisions_init=np.repeat(np.eye(3)[None], 2, axis=0)).fit(X)


def test_full_precisions_init_with_a_negative_eigenvalue(X):
    precisions = np.repeat(np.eye(3)[None], 2, axis=0)
    precisions[1, :2, :2] = [[1.0, 2.0], [2.0, 1.0]]  # symmetric, eigenvalues 3 and -1
    assert np.linalg.eigvalsh(precisions[1]).min() < 0
    with pytest.raises(InvalidInputError,
                       match=r"precisions_init is not .*positive definite .*\(s\) \[1\]"):
        GaussianMixture(2, precisions_init=precisions).fit(X)


def test_diag_precisions_init_with_a_zero(X):
    precisions = np.ones((2, 3))
    precisions[0, 1] = 0.0
    with pytest.raises(InvalidInputError,
                       match=r"precisions_init is not .*positive definite .*\(s\) \[0\]"):
        GaussianMixture(2, covariance_type="diag", precisions_init=precisions).fit(X)


def test_non_symmetric_precisions_init(X):
    precisions = np.repeat(np.eye(3)[None], 2, axis=0)
    precisions[1, 0, 2] = 0.3  # positive definite part, but not symmetric
    with pytest.raises(InvalidInputError,
                       match=r"precisions_init is not symmetric .*component\(s\) \[1\]"):
        GaussianMixture(2, precisions_init=precisions).fit(X)


# -- using a model --------------------------------------------------------------------

@pytest.mark.parametrize("method", ["predict", "score_samples", "predict_proba", "score"])
def test_methods_before_fit_raise_not_fitted(X, method):
    with pytest.raises(NotFittedError, match=r"not fitted yet.*Call 'fit'"):
        getattr(GaussianMixture(2), method)(X)


def test_sample_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianMixture(2).sample(5)


def test_not_fitted_error_is_a_value_error_and_attribute_error():
    assert issubclass(emix.NotFittedError, ValueError)
    assert issubclass(emix.NotFittedError, AttributeError)


def test_predict_with_a_different_number_of_features(fitted, X):
    with pytest.raises(ValueError, match=r"X has 2 features, .*expecting 3 features"):
        fitted.predict(X[:, :2])


def test_predict_on_a_single_1d_sample_suggests_reshape(fitted):
    with pytest.raises(ValueError, match=r"X has 1 features.*Reshape your data"):
        fitted.predict(np.array([1.0, 2.0, 3.0]))


def test_predict_on_empty_X(fitted):
    with pytest.raises(InvalidInputError, match="0 samples"):
        fitted.predict(np.empty((0, 3)))


@pytest.mark.parametrize("n_samples", [0, -1, 1.5, True])
def test_invalid_sample_count(fitted, n_samples):
    with pytest.raises(InvalidInputError,
                       match=r"Invalid value for 'n_samples'.*at least one sample"):
        fitted.sample(n_samples)


# -- odd but legal input --------------------------------------------------------------

def test_one_dimensional_X_is_one_feature():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-4.0, 1.0, 150), rng.normal(4.0, 1.0, 150)])
    model = GaussianMixture(2, random_state=0).fit(x)
    assert model.n_features_in_ == 1
    assert model.means_.shape == (2, 1)
    assert np.allclose(np.sort(model.means_.ravel()), [-4.0, 4.0], atol=0.5)
    column = GaussianMixture(2, random_state=0).fit(x.reshape(-1, 1))
    assert np.array_equal(model.means_, column.means_)
    assert np.array_equal(model.predict(x), column.predict(x.reshape(-1, 1)))


def test_integer_X_gives_float64_attributes():
    rng = np.random.default_rng(2)
    X_int = np.vstack([rng.integers(0, 10, size=(100, 2)), rng.integers(40, 50, size=(100, 2))])
    model = GaussianMixture(2, random_state=0).fit(X_int)
    reference = GaussianMixture(2, random_state=0).fit(X_int.astype(np.float64))
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(model, name).dtype == np.float64, name
        assert np.array_equal(getattr(model, name), getattr(reference, name)), name
    assert model.predict_proba(X_int).dtype == np.float64


def test_float32_X_gives_float32_attributes_and_outputs(X):
    X32 = X.astype(np.float32)
    model = GaussianMixture(2, random_state=0).fit(X32)
    reference = GaussianMixture(2, random_state=0).fit(X32.astype(np.float64))
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(model, name).dtype == np.float32, name
        np.testing.assert_allclose(getattr(model, name), getattr(reference, name), rtol=1e-3,
                                   atol=1e-4, err_msg=name)
    proba = model.predict_proba(X32)
    density = model.score_samples(X32)
    assert proba.dtype == np.float32
    assert density.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(density, reference.score_samples(X32.astype(np.float64)),
                               rtol=1e-4, atol=1e-4)
    assert model.sample(10)[0].dtype == np.float32


def test_boolean_X_is_accepted():
    rng = np.random.default_rng(3)
    X_bool = rng.random((200, 2)) < np.array([0.3, 0.6])
    model = GaussianMixture(1, covariance_type="full", reg_covar=1e-6).fit(X_bool)
    X_float = X_bool.astype(np.float64)
    assert model.means_.dtype == np.float64
    np.testing.assert_allclose(model.means_[0], X_float.mean(axis=0), rtol=1e-12)
    expected_cov = np.cov(X_float, rowvar=False, bias=True) + 1e-6 * np.eye(2)
    np.testing.assert_allclose(model.covariances_[0], expected_cov, rtol=1e-9, atol=1e-12)
    assert model.predict(X_bool).shape == (200,)


def test_list_of_lists_X(X):
    from_list = GaussianMixture(2, random_state=0).fit(X.tolist())
    from_array = GaussianMixture(2, random_state=0).fit(X)
    assert from_list.n_features_in_ == 3
    assert np.array_equal(from_list.means_, from_array.means_)
    assert np.array_equal(from_list.predict(X.tolist()), from_array.predict(X))


def test_get_params_set_params_round_trip():
    means = np.zeros((3, 2))
    model = GaussianMixture(3, covariance_type="diag", tol=1e-5, means_init=means,
                            random_state=4, on_collapse="floor")
    params = model.get_params()
    assert params["n_components"] == 3 and params["covariance_type"] == "diag"
    assert params["means_init"] is means
    other = GaussianMixture()
    assert other.set_params(**params) is other
    assert other.get_params().keys() == params.keys()
    for name, value in params.items():
        assert other.get_params()[name] is value, name
    assert GaussianMixture(**params).get_params().keys() == params.keys()


def test_set_params_with_an_unknown_name():
    model = GaussianMixture(2)
    with pytest.raises(InvalidInputError, match=r"Invalid parameter 'n_clusters' for estimator"):
        model.set_params(n_clusters=3)
    assert not hasattr(model, "n_clusters")
    assert model.n_components == 2


def test_input_errors_are_also_builtin_errors():
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(InvalidInputTypeError, TypeError)


def test_precisions_init_from_a_numerical_inverse_is_accepted():
    # np.linalg.inv is symmetric only to rounding; that must not be refused.
    rng = np.random.default_rng(19)
    X = rng.normal(size=(300, 5))
    factors = rng.normal(size=(2, 5, 5))
    covariances = factors @ factors.transpose(0, 2, 1) + np.eye(5)
    precisions = np.linalg.inv(covariances)
    assert not np.array_equal(precisions, precisions.transpose(0, 2, 1))
    model = GaussianMixture(2, precisions_init=precisions, random_state=0).fit(X)
    assert model.converged_


def test_more_components_than_distinct_rows():
    X = np.repeat([[0.0, 1.0], [2.0, 3.0], [5.0, 1.0]], 10, axis=0)
    with pytest.raises(InvalidInputError, match=r"only 3 distinct rows .* n_components=4"):
        GaussianMixture(4).fit(X)


def test_zero_entry_in_weights_init_is_accepted():
    X = np.concatenate([np.linspace(-1, 1, 50), np.linspace(4, 6, 50)])
    model = GaussianMixture(3, weights_init=[0.5, 0.5, 0.0], means_init=[[0.0], [5.0], [2.5]],
                            random_state=0).fit(X)
    assert np.all(np.isfinite(model.means_))
