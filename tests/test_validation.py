import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse

from aepca.validation import check_features, check_n_components


@pytest.mark.parametrize(
    "X",
    [
        np.array([[True, False], [False, True]]),
        np.array([[1, 2], [3, 4]], dtype=np.int64),
        np.array([[1, 2], [3, 4]], dtype=np.uint8),
        np.array([[0.5, 2.0]], dtype=np.float16),
        [[1.0, 2.0], [3.0, 4.0]],
        pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5], "c": [True, False]}),
        pd.DataFrame({"a": pd.array([1, 2], dtype="Int64")}),
    ],
)
def test_accepts_numeric_input(X):
    out = check_features(X)
    assert out.dtype == np.float32 and out.ndim == 2 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.asarray(X, dtype=np.float64))


def test_returns_fortran_input_as_c_contiguous():
    X = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert check_features(X).flags.c_contiguous


BAD_FEATURES = [
    (np.array([["a", "b"]]), {}, r"expected a numeric array.*dtype <U1.*Convert"),
    (np.array([[1, None]], dtype=object), {}, r"dtype object"),
    (np.array([[1 + 2j]]), {}, r"expected real numbers.*\.real"),
    (pd.DataFrame({"a": [1.0], "city": ["Paris"]}), {}, r"non-numeric columns 'city'"),
    (pd.DataFrame({"z": [1j]}), {}, r"complex columns"),
    (np.arange(5.0), {}, r"1-D array of shape \(5,\).*reshape\(-1, 1\)"),
    (np.zeros((2, 3, 4)), {}, r"shape \(2, 3, 4\).*reshape\(len\(X\), -1\)"),
    (np.float64(3.0), {}, r"shape \(\)"),
    (np.zeros((0, 3)), {}, r"at least 1 row.*0 rows"),
    (np.zeros((2, 3)), {"min_rows": 5}, r"at least 5 rows.*2 rows.*more samples"),
    (np.zeros((2, 0)), {}, r"at least 1 feature"),
    (np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, np.nan]]), {},
     r"2 NaN \(missing\) values in columns 1, 2; 1 infinite value in columns 0\. Before fitting, impute the missing "
     r"values.*and replace the infinite values"),
    (pd.DataFrame({"h": [1.0, np.nan]}), {}, r"1 NaN \(missing\) value in columns 'h'\. Before fitting, impute.*rows\.$"),
    (np.array([[1.0, -np.inf]]), {}, r"1 infinite value in columns 1\. Before fitting, replace the infinite values.*"
                                     r"imputing fills missing values only\.$"),
    (np.array([[1.0, 1e30]]), {}, r"magnitude at most 1e\+15.*up to 1e\+30 in columns 1.*Rescale.*divide"),
    (np.array([[np.finfo(np.float64).max]]), {}, r"magnitude at most"),
    (np.array([[2**62]], dtype=np.int64), {}, r"magnitude at most"),
    (np.zeros((2, 5)), {"n_features": 784}, r"X has 5 features, but the model was fitted with 784"),
    ([[1.0, 2.0], [3.0]], {}, r"rectangular numeric array.*same length"),
    (sparse.csr_matrix(np.eye(2)), {}, r"dense array.*toarray"),
]


@pytest.mark.parametrize(("X", "kwargs", "match"), BAD_FEATURES)
def test_rejects_bad_input_with_one_line(X, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        check_features(X, **kwargs)
    assert "\n" not in str(info.value)


def test_message_names_the_value():
    with pytest.raises(ValueError, match=r"invalid value for codes.*codes.reshape\(-1, 1\)"):
        check_features(np.ones(3), name="codes")


def test_lists_first_few_columns_only():
    X = np.full((2, 20), np.nan)
    with pytest.raises(ValueError, match=r"columns 0, 1, 2, 3, 4 and 15 more"):
        check_features(X)


dtypes = st.sampled_from(["bool", "int8", "uint16", "int64", "float16", "float32", "float64", "complex64", "U2", "O"])


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(dtypes))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if dtype.kind == "O":
        return np.array(draw(st.lists(st.one_of(st.none(), st.floats(), st.text(max_size=2)), max_size=4)), dtype=object)
    elements = st.floats(width=32) if dtype == np.float32 else None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=80, deadline=None)
@given(arrays())
def test_property_clear_error_or_finite_float32(X):
    try:
        out = check_features(X)
    except ValueError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[0] >= 1
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    ("n_components", "n_features", "allow_equal", "expected"),
    [(1, 2, False, 1), (np.int64(3), 10, False, 3), (10, 10, True, 10)],
)
def test_n_components_valid(n_components, n_features, allow_equal, expected):
    result = check_n_components(n_components, n_features, allow_equal=allow_equal)
    assert result == expected and type(result) is int


@pytest.mark.parametrize(
    ("n_components", "n_features", "allow_equal", "match"),
    [
        (0, 10, False, r"1 <= n_components < n_features=10.*n_components=0.*between 1 and 9"),
        (10, 10, False, r"n_components=10"),
        (11, 10, True, r"1 <= n_components <= n_features=10.*between 1 and 10"),
        (2.0, 10, False, r"n_components=2\.0"),
        (True, 10, False, r"n_components=True"),
        ("3", 10, False, r"n_components='3'"),
        (1, 1, False, r"needs more features"),
    ],
)
def test_n_components_invalid(n_components, n_features, allow_equal, match):
    with pytest.raises(ValueError, match=match):
        check_n_components(n_components, n_features, allow_equal=allow_equal)
