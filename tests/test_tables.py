"""Reading and writing numeric tables: round trips, selection, streaming, errors."""

from __future__ import annotations

import io
import json
import os
import threading
import warnings

import numpy as np
import pytest

from emix.exceptions import DataWarning, InvalidInputError
from emix.io import tables
from emix.io.tables import (
    Table,
    TableWriter,
    iter_chunks,
    output_format,
    read_data,
    read_table,
    write_table,
)

NAMES = ["alpha", "beta gamma", "delta,quoted", "w"]


def awkward_values(n_rows: int = 200, seed: int = 0) -> np.ndarray:
    """Floats that a careless writer would not bring back bit for bit."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=1e3, size=(n_rows, len(NAMES)))
    X[:, 1] = rng.standard_cauchy(n_rows) * 10.0 ** rng.integers(-300, 300, n_rows)
    X[:12, 2] = [0.1, 1 / 3, -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 1e16, 1e22,
                 2.0 ** 53 + 2, 123456789.0, -7.0, 1.7976931348623157e308]
    X[:, 3] = rng.integers(1, 5, n_rows)  # whole numbers, written as integers
    return X


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(InvalidInputError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, name", [("csv", "t.csv"), ("tsv", "t.tsv"), ("csv", "t.txt")])
def test_write_then_read_gives_the_same_bits_and_names(tmp_path, fmt, name):
    X = awkward_values()
    path = tmp_path / name
    write_table(path, X, NAMES, fmt=fmt)
    table = read_data(path)
    assert table.names == NAMES
    assert same_bits(table.X, X)
    assert table.weights is None and table.X.dtype == np.float64
    assert table.X.flags.c_contiguous


def test_integers_are_written_as_integers_and_floats_exactly(tmp_path):
    out = io.StringIO()
    write_table("-", np.array([[1, -2], [3, 40]]), ["a", "b"], stdout=out)
    assert out.getvalue() == "a,b\n1,-2\n3,40\n"
    out = io.StringIO()
    write_table(None, np.array([[0.1, 2.0, -0.0, 1e16]]), ["a", "b", "c", "d"], stdout=out)
    assert out.getvalue() == "a,b,c,d\n0.1,2,-0,1e+16\n"
    out = io.StringIO()
    write_table("-", np.array([True, False]), ["flag"], fmt="tsv", stdout=out)
    assert out.getvalue() == "flag\n1\n0\n"


def test_json_is_a_list_of_row_objects(tmp_path):
    X = awkward_values(50)
    path = tmp_path / "t.json"
    write_table(path, X, NAMES, fmt=None)  # inferred from the extension
    rows = json.loads(path.read_text())
    assert len(rows) == 50 and list(rows[0]) == NAMES
    back = np.array([[row[name] for name in NAMES] for row in rows], dtype=np.float64)
    assert same_bits(back, X)
    out = io.StringIO()
    write_table("-", np.array([[np.nan, np.inf, 1.5]]), ["a", "b", "c"], fmt="json",
                stdout=out)
    assert json.loads(out.getvalue()) == [{"a": None, "b": None, "c": 1.5}]
    out = io.StringIO()
    write_table("-", np.empty((0, 2)), ["a", "b"], fmt="json", stdout=out)
    assert json.loads(out.getvalue()) == []


def test_json_refuses_duplicate_names():
    assert "appears twice" in error_of(TableWriter, "-", ["a", "a"], "json")


@pytest.mark.parametrize("path, fmt, expected", [
    ("out.json", None, "json"), ("out.JSON", None, "json"), ("out.tsv", None, "tsv"),
    ("out.csv", None, "csv"), ("out", None, "csv"), ("-", None, "csv"), (None, None, "csv"),
    ("out.json", "csv", "csv"), ("-", "JSON", "json"),
])
def test_output_format(path, fmt, expected):
    assert output_format(path, fmt) == expected


def test_output_format_refuses_unknown_formats():
    assert "choose one of csv, tsv, json" in error_of(output_format, "x.csv", "xlsx")


def test_npy_and_parquet_give_the_same_table_as_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X = awkward_values()
    write_table(tmp_path / "t.csv", X, NAMES)
    from_csv = read_data(tmp_path / "t.csv")
    np.save(tmp_path / "t.npy", X)
    from_npy = read_data(str(tmp_path / "t.npy"))
    assert same_bits(from_npy.X, from_csv.X)
    assert from_npy.names == ["column 1", "column 2", "column 3", "column 4"]
    columns = {name: X[:, j] for j, name in enumerate(NAMES)}
    columns["w"] = X[:, 3].astype(np.int32)  # integer columns are numbers too
    pq.write_table(pa.table(columns), tmp_path / "t.parquet")
    from_parquet = read_data(tmp_path / "t.parquet")
    assert from_parquet.names == NAMES and same_bits(from_parquet.X, from_csv.X)
    pq.write_table(pa.table(columns), tmp_path / "t.pq")
    assert same_bits(read_data(tmp_path / "t.pq").X, from_csv.X)


def test_npy_of_one_dimension_is_one_column(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(5, dtype=np.int16))
    table = read_data(tmp_path / "v.npy")
    assert table.names == ["column 1"] and table.X.shape == (5, 1)
    assert table.X.dtype == np.float64 and table.X[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_binary_formats_are_recognised_by_content_under_other_extensions(tmp_path):
    X = awkward_values(20)
    with open(tmp_path / "data.bin", "wb") as f:
        np.save(f, X)
    assert same_bits(read_data(tmp_path / "data.bin").X, X)


# -- text dialects -----------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "a,b\n1,2\n3,4\n",
    "a\tb\n1\t2\n3\t4\n",
    "a;b\n1;2\n3;4\n",
    "a b\n1  2\n3 4\n",
    "\ufeffa,b\r\n1,2\r\n\r\n3,4",  # byte-order mark, CRLF, a blank line, no final newline
    '"a","b"\n"1","2"\n3,4\n',  # quoted cells
    ' a , b \n 1 , 2 \n3,4\n',
])
def test_text_dialects(tmp_path, text):
    table = read_data(write(tmp_path, "t.csv", text))
    assert table.names == ["a", "b"]
    assert table.X.tolist() == [[1, 2], [3, 4]]


def test_headerless_text_gets_numbered_names(tmp_path):
    table = read_data(write(tmp_path, "t.dat", "1 2 3\n4 5 6\n"))
    assert table.names == ["column 1", "column 2", "column 3"]
    assert table.X.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize("text", [
    '"","a","b"\n"r1",1,2\n"r2",3,4\n',  # R's write.csv
    "rownames,a,b\nr1,1,2\nr2,3,4\n",
    '"a" "b"\n"r1" 1 2\n"r2" 3 4\n',  # R's write.table: no header cell for row names
])
def test_r_row_names_are_dropped(tmp_path, text):
    table = read_data(write(tmp_path, "t.csv", text))
    assert table.names == ["a", "b"] and table.X.tolist() == [[1, 2], [3, 4]]


def test_standard_input():
    table = read_data("-", stdin=io.StringIO("x,y\n1,2\n3.5,-4\n"))
    assert table.names == ["x", "y"] and table.X.tolist() == [[1, 2], [3.5, -4]]


def test_read_table_still_returns_array_and_names(tmp_path):
    X, names = read_table(write(tmp_path, "t.csv", "a,b\n1,2\n"))
    assert names == ["a", "b"] and X.tolist() == [[1, 2]]


# -- selection ---------------------------------------------------------------------------

TEXT = "id,x,y,label,count\n1,0.5,1.5,cat,2\n2,2.5,3.5,dog,1\n3,4.5,5.5,cat,3\n"


def test_columns_by_name_and_by_position_in_the_order_given(tmp_path):
    path = write(tmp_path, "t.csv", TEXT)
    by_name = read_data(path, columns=["y", "x"])
    by_position = read_data(path, columns=["3", "2"])
    assert by_name.names == by_position.names == ["y", "x"]
    assert by_name.X.tolist() == by_position.X.tolist() == [[1.5, 0.5], [3.5, 2.5],
                                                            [5.5, 4.5]]


def test_a_name_wins_over_a_position(tmp_path):
    path = write(tmp_path, "t.csv", "2,x\n10,20\n")  # a column named "2"
    assert read_data(path, columns=["2"]).X.tolist() == [[10]]


def test_a_non_numeric_column_left_out_is_never_parsed(tmp_path):
    path = write(tmp_path, "t.csv", TEXT)
    assert read_data(path, columns=["x", "y", "count"]).X.shape == (3, 3)
    message = error_of(read_data, path)
    assert "column 'label' is not numeric" in message
    assert "(row 1 holds 'cat')" in message and "--columns" in message


def test_weights_are_taken_out_of_the_data(tmp_path):
    path = write(tmp_path, "t.csv", TEXT)
    table = read_data(path, columns=["x", "y"], weights="count")
    assert isinstance(table, Table)
    assert table.names == ["x", "y"] and table.X.tolist() == [[0.5, 1.5], [2.5, 3.5],
                                                               [4.5, 5.5]]
    assert table.weights.tolist() == [2, 1, 3] and table.X.flags.c_contiguous
    everything_else = read_data(write(tmp_path, "n.csv", "x,w,y\n1,2,3\n"), weights="2")
    assert everything_else.names == ["x", "y"] and everything_else.weights.tolist() == [2]


@pytest.mark.parametrize("kwargs, words", [
    ({"columns": ["x", "nope"]}, r"has no column 'nope'.*'id', 'x', 'y', 'label', 'count'"),
    ({"columns": ["lable"]}, "did you mean 'label'"),
    ({"columns": ["9"]}, "column position 9 is out of range.*5 columns"),
    ({"columns": ["x", "2"]}, "column 'x' is selected twice"),
    ({"columns": []}, "selection is empty"),
    ({"columns": ["x", "count"], "weights": "count"}, "both as data and as the weights"),
    ({"columns": ["x"], "weights": "zz"}, "has no column 'zz'"),
])
def test_bad_selections(tmp_path, kwargs, words):
    path = write(tmp_path, "t.csv", TEXT)
    with pytest.raises(InvalidInputError, match=words):
        read_data(path, **kwargs)


def test_negative_weights_are_refused(tmp_path):
    path = write(tmp_path, "t.csv", "x,w\n1,1\n2,-1\n")
    message = error_of(read_data, path, weights="w")
    assert "negative weight" in message and "data row 2" in message


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("", "is empty"),
    ("\n  \n", "is empty"),
    ("a,b\n", "has a header but no data rows"),
    ("a,b\n1,x\n2,3\n", r"column 'b' is not numeric \(row 1 holds 'x'\); drop it with --columns"),
    ("a,b\n1,2\n3,4\n5,6,7\n", "data row 3 has 3 columns, expected 2 like the header"),
    ("1,2\n3\n", "data row 2 has 1 columns, expected 2 like data row 1"),
    ("a,b\n1,2\n3,\n", r"column 'b' contains NaN or missing values \(first at data row 2, ''\);"
                       " remove or impute those rows"),
    ("a,b\n1,2\n3,NA\n", "column 'b' contains NaN or missing values .first at data row 2, 'NA'"),
    ("a,b\n1,nan\n3,NA\n", "missing values .first at data row 1, 'nan'"),
    ("a,b\n1,2\n3,4\n-inf,4\n", "column 'a' contains infinite values .first at data row 3"),
    ("a,b\n1,2\n1e999,4\n", "infinite values .first at data row 2, '1e999'"),
    ("a;b\n1,5;2\n", "decimal commas are not supported"),
])
def test_bad_text(tmp_path, text, words):
    path = write(tmp_path, "t.csv", text)
    with pytest.raises(InvalidInputError, match=words) as info:
        read_data(path)
    assert "\n" not in str(info.value)
    assert f"'{path}'" in str(info.value)


def test_missing_file_and_directory(tmp_path):
    assert error_of(read_data, str(tmp_path / "x.csv")) == f"no such file: '{tmp_path}/x.csv'"
    assert "is a directory" in error_of(read_data, tmp_path)


def test_binary_files_name_the_supported_formats(tmp_path):
    (tmp_path / "t.xlsx").write_bytes(b"PK\x03\x04\x00\x00binary\xff\xfe")
    message = error_of(read_data, tmp_path / "t.xlsx")
    assert "not a text file" in message and ".csv" in message and ".parquet" in message
    (tmp_path / "t.csv").write_bytes(b"a,b\n1,2\n\xff\xfe,3\n")
    assert "not a UTF-8 text file" in error_of(read_data, tmp_path / "t.csv")


def test_bad_npy_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    assert "pickled" in error_of(read_data, tmp_path / "obj.npy")
    (tmp_path / "pickle.npy").write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94.")
    assert "pickled data), which emix never loads" in error_of(read_data,
                                                                tmp_path / "pickle.npy")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x09\x00garbage")
    assert "not a valid .npy file" in error_of(read_data, tmp_path / "bad.npy")
    np.save(tmp_path / "rec.npy", np.zeros(3, dtype=[("a", float), ("b", int)]))
    assert "structured array (fields a, b)" in error_of(read_data, tmp_path / "rec.npy")
    np.save(tmp_path / "str.npy", np.array(["1", "2"]))
    assert "not real numbers" in error_of(read_data, tmp_path / "str.npy")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    assert "3-dimensional" in error_of(read_data, tmp_path / "cube.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 2)))
    assert "is empty" in error_of(read_data, tmp_path / "empty.npy")
    X = np.ones((5, 2))
    X[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", X)
    assert "column 'column 2' contains NaN or missing values (first at data row 4" in error_of(
        read_data, tmp_path / "nan.npy")
    assert read_data(tmp_path / "nan.npy", columns=["1"]).X.shape == (5, 1)


def test_bad_parquet_files(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0], "name": ["a", "b", "c"],
                             "y": [1.0, None, 3.0]}), tmp_path / "t.parquet")
    path = tmp_path / "t.parquet"
    assert read_data(path, columns=["x"]).X.tolist() == [[1], [2], [3]]
    message = error_of(read_data, path, columns=["x", "name"])
    assert "column 'name' is not numeric (Parquet type string)" in message
    message = error_of(read_data, path, columns=["y"])
    assert "column 'y' contains NaN or missing values (first at data row 2" in message
    (tmp_path / "fake.parquet").write_text("a,b\n1,2\n")
    assert "not a valid Parquet file" in error_of(read_data, tmp_path / "fake.parquet")


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert error_of(read_data, tmp_path / "t.parquet") == (
        "reading Parquet needs pyarrow: pip install 'emix[parquet]'")


# -- streaming ---------------------------------------------------------------------------


def test_chunks_of_csv_npy_and_parquet_add_up_to_the_table(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X = awkward_values(103)
    write_table(tmp_path / "t.csv", X, NAMES)
    np.save(tmp_path / "t.npy", X)
    pq.write_table(pa.table({name: X[:, j] for j, name in enumerate(NAMES)}),
                   tmp_path / "t.parquet")
    for name, columns in [("t.csv", ["w", "alpha"]), ("t.npy", ["4", "1"]),
                          ("t.parquet", ["w", "1"])]:
        chunks = iter_chunks(tmp_path / name, chunk_rows=10, columns=columns)
        parts = list(chunks)
        assert [len(part) for part in parts] == [10] * 10 + [3], name
        assert all(part.dtype == np.float64 and part.shape[1] == 2 for part in parts)
        assert same_bits(np.concatenate(parts), read_data(tmp_path / name, columns=columns).X)
        assert same_bits(np.concatenate(parts), X[:, [3, 0]])
        assert len(chunks.names) == 2
        assert same_bits(np.concatenate(list(chunks)), X[:, [3, 0]]), "a second pass"
        chunks.close()
    assert iter_chunks(tmp_path / "t.csv", chunk_rows=5).names == NAMES


def test_chunks_from_standard_input_are_read_once():
    chunks = iter_chunks("-", chunk_rows=2, stdin=io.StringIO("a,b\n1,2\n3,4\n5,6\n"))
    assert chunks.names == ["a", "b"]
    assert [part.tolist() for part in chunks] == [[[1, 2], [3, 4]], [[5, 6]]]
    assert "only once" in error_of(iter, chunks)


def test_chunks_are_read_lazily_and_count_rows_across_chunks(tmp_path):
    lines = ["x,y"] + [f"{i},{i * 2}" for i in range(1, 26)] + ["26,oops"]
    chunks = iter_chunks(write(tmp_path, "t.csv", "\n".join(lines) + "\n"), chunk_rows=10)
    iterator = iter(chunks)
    assert next(iterator)[:, 0].tolist() == list(range(1, 11))
    assert next(iterator)[-1].tolist() == [20, 40]
    with pytest.raises(InvalidInputError, match=r"column 'y' is not numeric \(row 26 holds"):
        next(iterator)


def test_a_stdin_stream_is_consumed_a_chunk_at_a_time():
    class Counting(io.StringIO):
        lines_read = 0

        def __next__(self):
            Counting.lines_read += 1
            return super().__next__()

    stream = Counting("a\n" + "".join(f"{i}\n" for i in range(1000)))
    iterator = iter(iter_chunks("-", chunk_rows=10, stdin=stream))
    next(iterator)
    assert Counting.lines_read < 30


def test_chunks_check_the_header_at_once(tmp_path):
    assert "has a header but no data rows" in error_of(
        iter_chunks, write(tmp_path, "t.csv", "a,b\n"), chunk_rows=5)
    assert "has no column 'c'" in error_of(
        iter_chunks, write(tmp_path, "u.csv", "a,b\n1,2\n"), chunk_rows=5, columns=["c"])
    assert "positive integer" in error_of(
        iter_chunks, tmp_path / "u.csv", chunk_rows=0)


def test_a_late_nan_in_npy_is_found_in_its_chunk(tmp_path):
    X = np.ones((30, 2))
    X[27, 0] = np.inf
    np.save(tmp_path / "t.npy", X)
    iterator = iter(iter_chunks(tmp_path / "t.npy", chunk_rows=10))
    assert next(iterator).shape == (10, 2) and next(iterator).shape == (10, 2)
    with pytest.raises(InvalidInputError, match=r"infinite values .first at data row 28"):
        next(iterator)


# -- writing atomically ------------------------------------------------------------------


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("precious\n")
    with pytest.raises(RuntimeError, match="midway"), TableWriter(target, ["a"]) as writer:
        writer.write(np.arange(3.0))
        raise RuntimeError("midway")
    assert target.read_text() == "precious\n"
    assert os.listdir(tmp_path) == ["out.csv"]
    with pytest.raises(InvalidInputError, match="shape"):
        write_table(target, np.ones((2, 3)), ["a", "b"])
    assert target.read_text() == "precious\n" and os.listdir(tmp_path) == ["out.csv"]


def test_a_streamed_write_replaces_the_file_on_success(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with TableWriter(target, ["a", "b"], None) as writer:
        writer.write(np.array([[1, 2]]))
        assert target.read_text() == "old"  # not until the block ends
        writer.write(np.array([[3.5, 4]]))
        writer.write(np.empty((0, 2)))
    assert json.loads(target.read_text()) == [{"a": 1, "b": 2}, {"a": 3.5, "b": 4}]
    assert sorted(os.listdir(tmp_path)) == ["out.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~current_umask() or os.name == "nt"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_streaming_to_standard_output():
    out = io.StringIO()
    with TableWriter("-", ["a"], "csv", stdout=out) as writer:
        writer.write(np.array([[1.5]]))
        writer.write(np.array([2.5]))
    assert out.getvalue() == "a\n1.5\n2.5\n"


def test_output_directory_must_exist(tmp_path):
    message = error_of(write_table, tmp_path / "no" / "x.csv", np.ones((1, 1)), ["a"])
    assert f"no such directory '{tmp_path}/no'" in message
    assert not (tmp_path / "no").exists()
    assert "is a directory" in error_of(write_table, tmp_path, np.ones((1, 1)), ["a"])


def test_writing_non_numbers_is_refused(tmp_path):
    assert "numeric" in error_of(write_table, tmp_path / "x.csv", np.array([["a"]]), ["a"])
    assert os.listdir(tmp_path) == []


def test_a_delimiter_ending_every_line_adds_no_column(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("a,b,\n1,2,\n3,4,\n")
    table = read_data(path)
    assert table.names == ["a", "b"]
    np.testing.assert_array_equal(table.X, [[1.0, 2.0], [3.0, 4.0]])


def test_a_column_named_by_a_non_ascii_digit_is_just_an_unknown_name(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidInputError, match="has no column '²'"):
        read_data(path, columns=["²"])


# -- hostile input -----------------------------------------------------------------------

ROWS = "1,2\n3,4\n5,6\n7,8\n"


def without_warnings(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call(*args, **kwargs)


@pytest.mark.parametrize("stdin", [
    io.StringIO("\ufeff" + ROWS),  # text given as text
    io.StringIO("\ufeff\n" + ROWS),  # a byte-order mark on a line of its own
], ids=["text", "own-line"])
def test_a_byte_order_mark_on_standard_input_is_dropped(stdin):
    with pytest.warns(DataWarning):  # headerless pairs of integers: see below
        table = read_data("-", stdin=stdin)
    assert table.names == ["column 1", "column 2"]
    assert table.X.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]


def test_standard_input_with_a_descriptor_is_decoded_as_files_are(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,2\r3,4\n")  # BOM, CRLF and a lone CR
    with path.open(encoding="latin-1") as stdin:  # its bytes are read, not its latin-1 text
        table = read_data("-", stdin=stdin)
    assert table.names == ["a", "b"] and table.X.tolist() == [[1, 2], [3, 4]]
    assert read_data(path).X.tolist() == table.X.tolist()


@pytest.mark.parametrize("text, rows", [
    ("a,b\r1,2\r3,4\r", [[1, 2], [3, 4]]),
    ("a,b\r\n1,2\n3,4\r5,6\r\n7,8", [[1, 2], [3, 4], [5, 6], [7, 8]]),
])
def test_carriage_returns_end_lines_alone_or_mixed(tmp_path, text, rows):
    path = write(tmp_path, "t.csv", text)
    assert read_data(path).X.tolist() == rows
    with path.open(encoding="utf-8") as stdin:
        assert read_data("-", stdin=stdin).X.tolist() == rows


def test_headerless_pairs_of_integers_are_ambiguous_with_decimal_commas(tmp_path):
    path = write(tmp_path, "t.csv", "1,5\n2,25\n3,75\n4,05\n")
    with pytest.warns(DataWarning, match=r"'.*t.csv' is ambiguous: it was read as 2 columns.*"
                                         r"decimal commas \(1,5 for 1.5\).*tr , \. < FILE.*"
                                         r"decimal=','.*add a header line"):
        table = read_data(path)
    assert table.X.tolist() == [[1, 5], [2, 25], [3, 75], [4, 5]]
    # A header says how many columns there are; other rows rule decimals out.
    assert without_warnings(read_data, write(tmp_path, "h.csv", "x,y\n1,5\n2,25\n")).X.shape \
        == (2, 2)
    for text in ("1,5\n2.5,3\n", "1,5,7\n2,3,4\n", "1;5\n2;25\n", "1,5\n2,1e3\n"):
        assert without_warnings(read_data, write(tmp_path, "o.csv", text)).X.shape[0] == 2


def test_the_ambiguity_is_told_once_over_several_passes(tmp_path):
    chunks = iter_chunks(write(tmp_path, "t.csv", "1,5\n2,25\n3,75\n"), chunk_rows=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [len(part) for part in chunks] == [2, 1]
        assert [len(part) for part in chunks] == [2, 1]
    assert [type(w.message) for w in caught] == [DataWarning]


def test_one_column_of_decimal_commas_with_a_whole_number_says_so(tmp_path):
    message = error_of(read_data, write(tmp_path, "t.csv", "1,5\n2\n3,75\n"))
    assert "data row 2 has 1 columns, expected 2 like data row 1 (if the commas are decimal " \
           "commas, convert them to points first (tr , . < FILE" in message
    message = error_of(read_data, write(tmp_path, "u.csv", "x\n1,5\n2,25\n"))
    assert "decimal commas are not supported: write 1.5, not 1,5; convert them" in message


def test_a_line_longer_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "LINE_LIMIT", 100)
    assert read_data(write(tmp_path, "ok.csv", "a\n" + "1\n" * 10 + "2" * 99 + "\n")).X.shape \
        == (11, 1)
    for name, text in [("head.csv", "1" * 150), ("row.csv", "a,b\n1,2\n" + "3," * 60 + "\n")]:
        message = error_of(read_data, write(tmp_path, name, text))
        assert message.startswith(f"'{tmp_path / name}' has a line longer than 100 characters")
        assert "save a table this wide as .npy or Parquet" in message
    assert "standard input has a line longer than 100" in error_of(
        read_data, "-", stdin=io.StringIO("a\n" + "1" * 101))


def test_devices_and_pipes_are_read_once_as_they_come(tmp_path):
    # /dev/zero as text is tested in a process of its own (test_cli): before
    # the line limit, reading it filled the memory.
    (tmp_path / "zero.npy").symlink_to("/dev/zero")
    assert "is not a regular file (it is a pipe or a device)" in error_of(
        read_data, tmp_path / "zero.npy")
    fifo = tmp_path / "fifo"  # as <(command) gives: no extension, read once
    os.mkfifo(fifo)
    lines = "a,b\n" + "".join(f"{i},{2 * i}\n" for i in range(20_000))

    read = threading.Event()

    def writer():
        with open(fifo, "w") as f:
            f.write(lines)
        if not read.wait(20):  # a reader that opens the pipe again would wait for ever
            open(fifo, "w").close()

    thread = threading.Thread(target=writer)
    thread.start()
    chunks = iter_chunks(fifo, chunk_rows=5000)
    assert chunks.names == ["a", "b"]
    data = np.concatenate(list(chunks))
    read.set()
    thread.join()
    assert data[:, 0].tolist() == list(range(20_000)), "no row lost to a second opening"
    assert "can be read only once" in error_of(iter, chunks)


def test_nul_bytes_and_other_encodings_are_named(tmp_path):
    for content in (b"a,b\n1,2\n3,\x004\n", b"\x00a,b\n1,2\n"):
        (tmp_path / "nul.csv").write_bytes(content)
        assert "holds NUL bytes" in error_of(read_data, tmp_path / "nul.csv")
    (tmp_path / "u16.csv").write_bytes("a,b\n1,2\n".encode("utf-16"))
    assert "(it is UTF-16, Excel's \"Unicode text\"); save it as UTF-8 (iconv -f UTF-16" in \
        error_of(read_data, tmp_path / "u16.csv")
    (tmp_path / "latin.csv").write_bytes("größe,b\n1,2\n".encode("latin-1"))
    assert "not a UTF-8 text file (it holds the byte 0xf6); save it as UTF-8 (iconv -f " \
           "LATIN1" in error_of(read_data, tmp_path / "latin.csv")


def test_a_quoted_header_cell_across_lines_is_refused(tmp_path):
    message = error_of(read_data, write(tmp_path, "t.csv", '"a\nb",c\n1,2\n'))
    assert "a quoted cell of the first line spans lines" in message


def test_a_name_given_to_two_columns_is_chosen_by_position(tmp_path):
    path = write(tmp_path, "t.csv", "a,a,b\n1,2,3\n")
    assert read_data(path).X.tolist() == [[1, 2, 3]]
    assert read_data(path, columns=["2"]).X.tolist() == [[2]]
    assert "has 2 columns named 'a' (at positions 1, 2); choose one by its 1-based position" \
        in error_of(read_data, path, columns=["a"])


def test_a_npy_name_on_something_else_is_not_called_a_pickle(tmp_path):
    (tmp_path / "t.npy").write_text("a,b\n1,2\n")
    assert "is not a .npy file (those begin with the bytes \\x93NUMPY)" in error_of(
        read_data, tmp_path / "t.npy")


def test_parquet_integers_beyond_2_53_are_rounded_with_a_warning(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    big = [1, 2**53, 2**53 + 1, -(2**63), 2**60 + 1]
    pq.write_table(pa.table({"i": pa.array(big, pa.int64()),
                             "u": pa.array([2**64 - 1, 0, 1, 2, 3], pa.uint64()),
                             "small": pa.array([1, 2, 3, 4, 5], pa.int64())}),
                   tmp_path / "t.parquet")
    with pytest.warns(DataWarning) as caught:
        table = read_data(tmp_path / "t.parquet")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "column 'i' holds integers beyond 2**53 (first at data row 3: 9007199254740993)" \
           in messages[0] and "nearest float64 (9007199254740992.0)" in messages[0]
    assert "column 'u' holds integers beyond 2**53 (first at data row 1: " \
           "18446744073709551615)" in messages[1]
    assert table.X[:, 0].tolist() == [float(v) for v in big]
    assert table.X[:, 1].tolist() == [2.0**64, 0, 1, 2, 3]
    without_warnings(read_data, tmp_path / "t.parquet", columns=["small"])


def test_damaged_parquet_files_and_unreadable_columns_are_input_errors(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": np.arange(1000.0), "s": pa.array([{"a": 1}] * 1000),
                             "l": pa.array([[1.0]] * 1000)}), path)
    for column, kind in (("s", "struct<a: int64>"), ("l", "list<element: double>")):
        assert f"column {column!r} is not numeric (Parquet type {kind})" in error_of(
            read_data, path, columns=[column])
    whole = path.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(whole[:len(whole) // 2])
    message = error_of(read_data, tmp_path / "cut.parquet")
    assert "cut.parquet' is not a valid Parquet file (" in message
    assert "if it was cut short (an interrupted copy or download), copy or write it again" \
        in message
    damaged = bytearray(whole)
    damaged[4:40] = bytes(b ^ 0xFF for b in damaged[4:40])  # the first page's header
    (tmp_path / "damaged.parquet").write_bytes(bytes(damaged))
    message = error_of(read_data, tmp_path / "damaged.parquet", columns=["x"])
    assert "damaged.parquet': reading the column(s) 'x' from data row 1 on failed (" in message
    assert "the file is damaged" in message
    pq.write_table(pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["a", "a"]),
                   tmp_path / "twice.parquet")
    assert "has 2 columns named 'a', which pyarrow reads by name" in error_of(
        read_data, tmp_path / "twice.parquet", columns=["2"])


def test_a_wide_table_is_parsed_in_blocks_of_bounded_cells(tmp_path):
    import tracemalloc

    X = np.random.default_rng(0).normal(size=(300, 4000))
    path = tmp_path / "wide.csv"
    np.savetxt(path, X, delimiter=",", fmt="%.17g")
    tracemalloc.start()
    try:
        table = read_data(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert same_bits(table.X, X)
    # The table is 9.6 MB as floats; parsed in one block of 300 rows, its
    # 1.2 million cells of text peaked at 158 MiB (41 MiB now).
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_a_closed_standard_input_is_named(monkeypatch):
    monkeypatch.setattr("sys.stdin", None)  # what Python sets when descriptor 0 is closed
    assert error_of(read_data, "-") == "standard input is closed: there is nothing to read"
