"""Hostile model files: corrupted bytes, cut files, manifests declaring huge
or malformed arrays, zip bombs, deeply nested or overflowing JSON, and arrays
that contradict each other.  Each is refused with ModelFileError naming the
file (no other exception), or, where a corruption leaves a valid file (a
flipped bit in a timestamp), loads as exactly the saved model.  Seeded:
the same files every run."""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest

import emix
from emix import GaussianMixture, ModelFileError
from emix.cli.main import main
from emix.families.covariance import COVARIANCE_MODELS
from test_model_file import (
    assert_same_model,
    fitted_model,
    npy_array,
    npy_bytes,
    read_members,
    sha256_of,
    two_blobs,
    write_members,
)

SEED = 20250611
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# -- outcomes ------------------------------------------------------------------------------

def outcome(path, model, what) -> str:
    """'refused' or 'loaded' (then exactly ``model``); anything else fails."""
    try:
        loaded = emix.load(path)
    except ModelFileError as exc:
        assert str(path) in str(exc), f"{what}: the message does not name the file: {exc}"
        return "refused"
    except Exception as exc:  # the test's point: no other exception type
        pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
    try:
        assert_same_model(model, loaded)
    except AssertionError as exc:
        pytest.fail(f"{what} loaded as another model: {exc}")
    return "loaded"


def refused(path, match):
    with pytest.raises(ModelFileError, match=match) as caught:
        emix.load(path)
    assert str(path) in str(caught.value)
    return caught.value


# -- files ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A model with parameter arrays and feature names, and its file as
    this emix writes it (stored) and as earlier versions did (deflated)."""
    import pandas as pd

    X = pd.DataFrame(two_blobs(), columns=["height", "width"])
    model = fitted_model("full", X=X)
    directory = tmp_path_factory.mktemp("original")
    stored = directory / "stored.emix"
    emix.save(model, stored)
    deflated = directory / "deflated.emix"
    write_members(deflated, read_members(stored))
    return model, {"stored": stored.read_bytes(), "deflated": deflated.read_bytes()}


@pytest.fixture
def saved(tmp_path, original):
    model, files = original
    path = tmp_path / "model.emix"
    path.write_bytes(files["stored"])
    return model, path


def rewrite_manifest_text(path, edit) -> None:
    """Rewrite the manifest as text: ``edit(text) -> text``, for what
    json.dumps would not write (huge integers, Infinity)."""
    members = read_members(path)
    members["manifest.json"] = edit(json.dumps(json.loads(members["manifest.json"]))).encode()
    write_members(path, members)


def rewrite_manifest(path, edit) -> None:
    members = read_members(path)
    manifest = json.loads(members["manifest.json"])
    edit(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    write_members(path, members)


def replace_arrays(path, **arrays) -> None:
    """New contents for ``arrays/<name>``, with their checksums recomputed:
    only the consistency rules can tell."""
    members = read_members(path)
    manifest = json.loads(members["manifest.json"])
    for name, array in arrays.items():
        spec = manifest["arrays"][f"arrays/{name}"]
        array = np.ascontiguousarray(array, dtype=np.dtype(spec["dtype"]))
        assert list(array.shape) == spec["shape"], name
        members[f"arrays/{name}.npy"] = npy_bytes(array)
        spec["sha256"] = sha256_of(array)
    members["manifest.json"] = json.dumps(manifest).encode()
    write_members(path, members)


def central_entries(data: bytes):
    """(offset, name, fields) of each central directory entry of a zip
    without a comment."""
    (_, _, _, _, count, _, offset, _) = struct.unpack("<4s4H2LH", data[-22:])
    for _ in range(count):
        fields = struct.unpack("<4s6H3L5H2L", data[offset:offset + 46])
        name_length, extra_length, comment_length = fields[10:13]
        name = data[offset + 46:offset + 46 + name_length].decode()
        yield offset, name, fields
        offset += 46 + name_length + extra_length + comment_length


def patch_sizes(data: bytes, member: str, *, file_size=None, compress_size=None,
                crc=None) -> bytes:
    """The zip with the sizes (and CRC) recorded for ``member`` changed, in
    its central directory and its local header."""
    data = bytearray(data)
    for offset, name, fields in central_entries(bytes(data)):
        if name != member:
            continue
        local = fields[16]
        for at, value in ((16, crc), (20, compress_size), (24, file_size)):
            if value is not None:
                struct.pack_into("<L", data, offset + at, value)
                struct.pack_into("<L", data, local + at - 2, value)  # local header: 2 earlier
        return bytes(data)
    raise KeyError(member)


def deflated(chunk: bytes, repeats: int = 1) -> bytes:
    """A raw deflate stream of ``chunk`` repeated: full flushes make each
    copy of the compressed chunk independent, so gigabytes cost megabytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    return segment * repeats + b"\x03\x00"  # an empty final block


def raw_zip(members: dict[str, tuple[bytes, int, int, int]]) -> bytes:
    """A zip of already deflated members: name -> (data, uncompressed size,
    CRC, method); no checks, as a hostile writer would make it."""
    out, central = io.BytesIO(), []
    for name, (data, size, crc, method) in members.items():
        encoded = name.encode()
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc,
                              len(data), size, len(encoded), 0) + encoded + data)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21,
                                   crc, len(data), size, len(encoded), 0, 0, 0, 0, 0, offset)
                       + encoded)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()


def npy_header(shape, descr="<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue()


# -- corrupted bytes ----------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["stored", "deflated"])
def test_a_bit_flipped_anywhere_is_refused_or_harmless(tmp_path, original, layout):
    model, files = original
    data = files[layout]
    rng = np.random.default_rng(SEED)
    path = tmp_path / "flipped.emix"
    counts = {"refused": 0, "loaded": 0}
    for position, bit in enumerate(rng.integers(0, 8, size=len(data))):
        corrupted = bytearray(data)
        corrupted[position] ^= 1 << int(bit)
        path.write_bytes(corrupted)
        counts[outcome(path, model, f"bit {bit} of byte {position}")] += 1
    assert sum(counts.values()) == len(data) > 3000
    # Only bytes no reader uses (times, the local copies of the central
    # directory's fields) may change without the file being refused.
    assert counts["refused"] > 0.8 * len(data)


@pytest.mark.parametrize("layout", ["stored", "deflated"])
def test_garbled_bytes_are_refused_or_harmless(tmp_path, original, layout):
    model, files = original
    data = files[layout]
    rng = np.random.default_rng(SEED + 1)
    path = tmp_path / "garbled.emix"
    counts = {"refused": 0, "loaded": 0}
    for _ in range(300):
        start = int(rng.integers(0, len(data)))
        length = int(rng.integers(1, 17))
        corrupted = bytearray(data)
        corrupted[start:start + length] = rng.bytes(length)[:len(data) - start]
        path.write_bytes(corrupted)
        counts[outcome(path, model, f"{length} bytes at {start}")] += 1
    assert counts["refused"] > 250


@pytest.mark.parametrize("layout", ["stored", "deflated"])
def test_a_file_cut_at_any_length_is_refused(tmp_path, original, layout):
    model, files = original
    data = files[layout]
    path = tmp_path / "cut.emix"
    for length in range(len(data)):
        path.write_bytes(data[:length])
        assert outcome(path, model, f"the first {length} bytes") == "refused"


def test_a_file_with_bytes_appended_is_refused_or_harmless(tmp_path, original):
    model, files = original
    path = tmp_path / "longer.emix"
    rng = np.random.default_rng(SEED + 2)
    for size in (1, 22, 100, 5000):
        path.write_bytes(files["stored"] + rng.bytes(size))
        outcome(path, model, f"{size} bytes appended")


# -- declared shapes and dtypes -----------------------------------------------------------

BAD_SHAPES = [
    [2**40, 2**10],  # the review's MemoryError
    [2**17, 2**10],  # 1 GiB
    [2, 2**62],
    [-1, 2],
    [2, -2],
    [2.0, 2],
    [2.5, 2],
    [float("inf"), 2],  # written as Infinity
    [[2], [2]],
    ["2", "2"],
    [True, 2],
    [None, 2],
    [],
    [2],
    [2, 2, 2],
    [10**30, 2],
    "2,2",
    None,
    {"0": 2},
]


@pytest.mark.parametrize("shape", BAD_SHAPES, ids=[repr(s)[:24] for s in BAD_SHAPES])
def test_a_declared_shape_other_than_the_scalars_call_for_is_refused(saved, shape):
    _, path = saved
    rewrite_manifest(path, lambda m: m["arrays"]["arrays/means_"].update(shape=shape))
    started = time.perf_counter()
    refused(path, r"'arrays/means_' is (declared with shape|declared as|malformed)|"
                  r"entry for 'arrays/means_' is malformed|not valid JSON|never writes")
    assert time.perf_counter() - started < 1.0


def test_the_npy_header_must_agree_with_the_manifest(saved):
    _, path = saved
    members = read_members(path)
    means = npy_array(members["arrays/means_.npy"])
    # The review's file: the member's own header declares a huge array.
    members["arrays/means_.npy"] = npy_header((2**40, 2**10)) + means.tobytes()
    write_members(path, members)
    refused(path, r"'arrays/means_' is <f8 \(1099511627776, 1024\), but the manifest "
                  r"declares <f8 \(2, 2\)")
    members["arrays/means_.npy"] = npy_bytes(np.asfortranarray(means))
    write_members(path, members)
    refused(path, r"'arrays/means_' is <f8 \(2, 2\) \(Fortran order\)")


BAD_DTYPES = ["|O", "<c16", "<f2", "<U4", "V8", "f8,f8", "(2,)f8", "<M8[s]", 8, None,
              "<f8" * 1000]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=[repr(d)[:12] for d in BAD_DTYPES])
def test_a_fitted_array_of_another_dtype_is_refused(saved, dtype):
    _, path = saved
    rewrite_manifest(path, lambda m: m["arrays"]["arrays/covariances_"].update(dtype=dtype))
    refused(path, r"'arrays/covariances_' is declared as|entry for 'arrays/covariances_' is "
                  r"malformed")


def test_fitted_arrays_of_mixed_dtypes_are_refused(saved):
    _, path = saved
    members = read_members(path)
    means = npy_array(members["arrays/means_.npy"]).astype(np.float32)
    members["arrays/means_.npy"] = npy_bytes(means)
    manifest = json.loads(members["manifest.json"])
    manifest["arrays"]["arrays/means_"].update(dtype="<f4", sha256=sha256_of(means))
    members["manifest.json"] = json.dumps(manifest).encode()
    write_members(path, members)
    refused(path, r"the fitted arrays mix dtypes \(float32, float64\)")


def declare(manifest, *, n_components=None, n_features=None, n_iter=None) -> None:
    """New scalars, with every declared shape made to follow them: only the
    size of what they call for can refuse the file."""
    params, fitted = manifest["params"], manifest["fitted"]
    params["n_components"] = n_components or params["n_components"]
    fitted["n_features_in_"] = n_features or fitted["n_features_in_"]
    fitted["n_iter_"] = n_iter or fitted["n_iter_"]
    K, d = params["n_components"], fitted["n_features_in_"]
    covariance = list(COVARIANCE_MODELS[params["covariance_type"]].shape(K, d))
    shapes = {"weights_": [K], "means_": [K, d], "covariances_": covariance,
              "precisions_": covariance, "precisions_cholesky_": covariance,
              "lower_bounds_": [fitted["n_iter_"] + 1], "weights_init": [K],
              "means_init": [K, d], "precisions_init": covariance}
    for key, spec in manifest["arrays"].items():
        spec["shape"] = shapes[key.split("/")[1]]


@pytest.mark.parametrize("scalars", [{"n_components": 10**12}, {"n_features": 2**20},
                                     {"n_iter": 10**9}, {"n_components": 10**90},
                                     {"n_components": 2**32, "n_features": 2**32}])
def test_scalars_calling_for_more_than_the_file_holds_are_refused_unread(saved, scalars):
    _, path = saved
    rewrite_manifest(path, lambda m: declare(m, **scalars))
    started = time.perf_counter()
    refused(path, r"declares arrays of [\d,]+ bytes in a file of [\d,]+ bytes")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["params"].update(n_components=10**12), r"'arrays/weights_' is declared with "
                                                        r"shape \[2\]"),
    (lambda m: m["params"].update(n_components=0), r"n_components is 0; it must be an integer"),
    (lambda m: m["params"].update(n_components=True), r"n_components is True"),
    (lambda m: m["params"].update(n_components=2.0), r"n_components is 2\.0"),
    (lambda m: m["fitted"].update(n_iter_=-1), r"n_iter_ is -1"),
    (lambda m: m["fitted"].update(n_features_in_="2"), r"n_features_in_ is '2'"),
    (lambda m: m["params"].update(covariance_type="banana"), r"covariance_type 'banana'"),
    (lambda m: m["params"].update(covariance_type=["full"]), r"covariance_type \['full'\]"),
    (lambda m: m["fitted"].update(convergence_state_="done"), r"convergence_state_ 'done'"),
    (lambda m: m["params"].update(tol={"$array": "params/tol"}), r"parameter 'tol' refers"),
    (lambda m: m["params"].update(means_init={"$array": "arrays/means_"}),
     r"parameter 'means_init' refers"),
    (lambda m: m["arrays"].pop("arrays/precisions_"),
     r"fitted array 'arrays/precisions_' is missing"),
    (lambda m: m["arrays"].update(extra=m["arrays"]["arrays/means_"]),
     r"declares arrays emix does not write"),
    (lambda m: m["arrays"]["arrays/means_"].update(sha256="0" * 63), r"is malformed"),
    (lambda m: m.update(format_version=10**50), r"model format 1000000000"),
    (lambda m: m.update(arrays=[]), r"'arrays' is missing or malformed"),
])
def test_manifest_scalars_that_break_the_layout_are_refused(saved, edit, match):
    _, path = saved
    rewrite_manifest(path, edit)
    started = time.perf_counter()
    refused(path, match)
    assert time.perf_counter() - started < 1.0


def test_parameter_arrays_must_have_the_shapes_the_model_gives_them(saved):
    _, path = saved
    members = read_members(path)
    means_init = np.zeros((3, 2))
    members["params/means_init.npy"] = npy_bytes(means_init)
    manifest = json.loads(members["manifest.json"])
    manifest["arrays"]["params/means_init"].update(shape=[3, 2], sha256=sha256_of(means_init))
    members["manifest.json"] = json.dumps(manifest).encode()
    write_members(path, members)
    refused(path, r"'params/means_init' is declared with shape \[3, 2\].* call for \[2, 2\]")


# -- zip bombs -----------------------------------------------------------------------------

@pytest.mark.parametrize("member, sizes, match", [
    ("arrays/means_.npy", ("file_size", "compress_size"),
     r"'arrays/means_' is larger than its declared shape"),
    ("arrays/means_.npy", ("file_size",), r"'arrays/means_' is stored with two different sizes"),
    ("manifest.json", ("file_size", "compress_size"), r"manifest is implausibly large"),
    ("manifest.json", ("compress_size",), r"manifest.json is stored with two different sizes"),
])
def test_a_stored_member_declaring_a_huge_size_is_refused(saved, member, sizes, match):
    _, path = saved
    path.write_bytes(patch_sizes(path.read_bytes(), member,
                                 **dict.fromkeys(sizes, 0xFFFFFFF0)))
    refused(path, match)


def test_a_deflated_member_declaring_a_huge_size_is_refused(tmp_path, original):
    _, files = original
    path = tmp_path / "bomb.emix"
    path.write_bytes(patch_sizes(files["deflated"], "arrays/covariances_.npy",
                                 file_size=0xFFFFFFF0))
    refused(path, r"'arrays/covariances_' is larger than its declared shape")
    path.write_bytes(patch_sizes(files["deflated"], "arrays/covariances_.npy",
                                 compress_size=0xFFFFFFF0))
    refused(path, r"compressed size larger than its content needs")


def test_a_member_shorter_than_it_declares_is_refused(tmp_path, original):
    _, files = original
    members = read_members_from(files["deflated"])
    content = members["arrays/covariances_.npy"]
    path = tmp_path / "short.emix"
    write_members(path, {**members, "arrays/covariances_.npy": content[:-8]})
    # The sizes say the whole array is there; the data (and its CRC) say not.
    path.write_bytes(patch_sizes(path.read_bytes(), "arrays/covariances_.npy",
                                 file_size=len(content)))
    refused(path, r"'arrays/covariances_' ends early")


def test_a_member_longer_than_it_declares_is_refused(tmp_path, original):
    model, files = original
    members = read_members_from(files["deflated"])
    content = members["arrays/covariances_.npy"]
    # A deflate stream of the member and then 16 MiB of zeros, declaring only
    # the member: zipfile would stop at the declared size; the compressed
    # size gives the stream away before anything is inflated.
    bomb = deflated(content + bytes(1 << 20), 16)
    entries = {name: (deflated(data), len(data), zlib.crc32(data), 8)
               for name, data in members.items()}
    entries["arrays/covariances_.npy"] = (bomb, len(content), zlib.crc32(content), 8)
    path = tmp_path / "longer.emix"
    path.write_bytes(raw_zip(entries))
    refused(path, r"'arrays/covariances_' declares a compressed size larger")
    # Control: the same zip writer with the honest member loads the model.
    entries["arrays/covariances_.npy"] = (deflated(content), len(content),
                                          zlib.crc32(content), 8)
    path.write_bytes(raw_zip(entries))
    assert_same_model(model, emix.load(path))


def zeros_member(header: bytes, nbytes: int, *, checked: bool) -> tuple[bytes, int, int, int]:
    """A deflated member of ``header`` and ``nbytes`` zeros (with its CRC
    when ``checked``: gigabytes would take seconds)."""
    block = 1 << 20
    body = deflated(header)[:-2]
    if nbytes >= block:
        body += deflated(bytes(block), nbytes // block)[:-2]
    body += deflated(bytes(nbytes % block))
    crc = zlib.crc32(header)
    if checked:
        for _ in range(nbytes // block):
            crc = zlib.crc32(bytes(block), crc)
        crc = zlib.crc32(bytes(nbytes % block), crc)
    return body, len(header) + nbytes, crc if checked else 0, 8


def zeros_digest(nbytes: int) -> str:
    digest = hashlib.sha256()
    block = bytes(1 << 20)
    for start in range(0, nbytes, len(block)):
        digest.update(block[:min(len(block), nbytes - start)])
    return digest.hexdigest()


BOMB_PADDING = (1 << 20) - 4096


def scaled_bomb(n_features: int, padding: int = 0) -> bytes:
    """A 'full' model of 2 components and ``n_features`` features whose
    manifest is consistent and whose members are deflated zeros: every
    array is as large as the scalars say, the file is small (but for
    ``padding`` bytes of stored manifest).  Checksums are right for arrays
    of less than 64 MiB."""
    covariance = (2, n_features, n_features)
    shapes = {"arrays/weights_": (2,), "arrays/means_": (2, n_features),
              "arrays/covariances_": covariance, "arrays/precisions_": covariance,
              "arrays/precisions_cholesky_": covariance, "arrays/lower_bounds_": (3,)}
    manifest = {
        "format": "emix.model", "format_version": 1, "emix_version": "0.1.0",
        "estimator": "GaussianMixture",
        "params": {"n_components": 2, "covariance_type": "full"},
        "fitted": {"converged_": True, "convergence_state_": "converged", "n_iter_": 2,
                   "lower_bound_": 0.0, "n_features_in_": n_features,
                   "feature_names_in_": None, "collapses_": []},
        "arrays": {},
        "padding": " " * padding,
    }
    members = {}
    for key, shape in shapes.items():
        nbytes = 8 * int(np.prod(shape))
        checked = nbytes < 64 << 20
        manifest["arrays"][key] = {"dtype": "<f8", "shape": list(shape),
                                   "sha256": zeros_digest(nbytes) if checked else "0" * 64}
        members[f"{key}.npy"] = zeros_member(npy_header(shape), nbytes, checked=checked)
    text = json.dumps(manifest).encode()
    return raw_zip({"manifest.json": (text, len(text), zlib.crc32(text), 0), **members})


def test_a_deflate_bomb_of_a_consistent_manifest_is_refused_unread(tmp_path):
    path = tmp_path / "bomb.emix"
    path.write_bytes(scaled_bomb(2048))  # 3 arrays of 64 MiB in a small file
    assert path.stat().st_size < 1 << 20
    started = time.perf_counter()
    refused(path, r"declares arrays of 201,[\d,]+ bytes in a file of [\d,]+ bytes")
    assert time.perf_counter() - started < 1.0


def test_a_deflate_bomb_within_the_limit_inflates_no_further_than_declared(tmp_path):
    # A megabyte of manifest lets 3 arrays of 8 MiB through the size limit:
    # they are read (zeros, with the right checksums), and the model is then
    # refused for its weights.
    path = tmp_path / "bomb.emix"
    path.write_bytes(scaled_bomb(724, padding=BOMB_PADDING))
    refused(path, r"weights_ are not a probability vector")


def read_members_from(data: bytes) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_encrypted_or_unknown_compression_is_refused(tmp_path, original):
    _, files = original
    path = tmp_path / "odd.emix"
    data = bytearray(files["stored"])
    for offset, name, _ in central_entries(bytes(data)):
        if name == "arrays/means_.npy":
            struct.pack_into("<H", data, offset + 8, 1)  # flags: encrypted
    path.write_bytes(data)
    refused(path, r"'arrays/means_' is encrypted")
    data = bytearray(files["stored"])
    for offset, name, _ in central_entries(bytes(data)):
        if name == "arrays/means_.npy":
            struct.pack_into("<H", data, offset + 10, 14)  # method: LZMA
    path.write_bytes(data)
    refused(path, r"'arrays/means_' is compressed with method 14")


def test_peak_memory_and_time_of_hostile_files_stay_small(tmp_path, original):
    """In a fresh interpreter, whose high-water mark (VmHWM: ru_maxrss would
    include the parent's) starts at its own imports."""
    _, files = original
    members = read_members_from(files["stored"])
    manifest = json.loads(members["manifest.json"])
    shape = [2**17, 2**10]  # 1 GiB of float64, as the review's file declared
    manifest["arrays"]["arrays/means_"]["shape"] = shape
    members["manifest.json"] = json.dumps(manifest).encode()
    entries = {name: (deflated(data), len(data), zlib.crc32(data), 8)
               for name, data in members.items()}
    entries["arrays/means_.npy"] = zeros_member(npy_header(shape), 2**30, checked=False)
    hostile = {"declared shape": raw_zip(entries),
               "consistent bomb, 3 GiB": scaled_bomb(8192),
               "bomb within the limit": scaled_bomb(724, padding=BOMB_PADDING)}
    paths = []
    for index, (what, data) in enumerate(hostile.items()):
        path = tmp_path / f"hostile{index}.emix"
        path.write_bytes(data)
        paths.append((what, str(path), len(data)))
    assert all(size < 6 << 20 for _, _, size in paths)
    script = textwrap.dedent("""
        import json, sys, time
        import emix

        def high_water_mark():
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024

        baseline = high_water_mark()
        report = []
        for what, path, _ in json.loads(sys.argv[1]):
            started = time.perf_counter()
            try:
                emix.load(path)
                result = "loaded"
            except emix.ModelFileError as exc:
                result = str(exc)
            report.append([what, result, time.perf_counter() - started])
        print(json.dumps({"growth": high_water_mark() - baseline, "report": report}))
    """)
    completed = subprocess.run([sys.executable, "-c", script, json.dumps(paths)],
                               capture_output=True, text=True, timeout=120, check=True)
    measured = json.loads(completed.stdout)
    for what, result, seconds in measured["report"]:
        assert result != "loaded", what
        assert seconds < 1.5, (what, seconds)
    assert "declared with shape [131072, 1024]" in measured["report"][0][1]
    assert "declares arrays of" in measured["report"][1][1]
    assert "weights_ are not a probability vector" in measured["report"][2][1]
    assert measured["growth"] < 200 << 20, measured


# -- JSON ----------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [100_000, 900])
def test_deeply_nested_manifests_are_refused(saved, original, depth):
    _, path = saved
    rewrite_manifest_text(path, lambda text: "[" * depth + "]" * depth)
    refused(path, r"nested too deeply|format is not 'emix\.model'")
    path.write_bytes(original[1]["stored"])
    rewrite_manifest_text(path, lambda text: text.replace(
        '"tol": 0.0001', '"tol": ' + "[" * depth + "]" * depth))
    refused(path, r"nested too deeply|describes an invalid model: tol")


@pytest.mark.parametrize("field", ["n_components", "n_iter_", "random_state", "format_version",
                                   "n_features_in_", "lower_bound_"])
@pytest.mark.parametrize("digits", [5000, 101])
def test_huge_integers_in_the_manifest_are_refused(saved, field, digits):
    _, path = saved
    pattern = rf'"{field}": -?[\d.e-]+'
    assert re.search(pattern, json.dumps(json.loads(read_members(path)["manifest.json"])))
    rewrite_manifest_text(path, lambda text: re.sub(pattern, f'"{field}": ' + "1" * digits,
                                                    text, count=1))
    refused(path, rf"an integer of {digits} digits")


def test_large_integers_within_the_limit_still_meet_the_rules(saved):
    _, path = saved
    rewrite_manifest(path, lambda m: m["fitted"].update(lower_bound_=10**99))
    refused(path, r"lower_bound_ is not the last of lower_bounds_")


@pytest.mark.parametrize("number", ["1e999", "-1e400", "NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_the_manifest_are_refused(saved, number):
    model, path = saved
    rewrite_manifest_text(path, lambda text: text.replace(
        f'"lower_bound_": {model.lower_bound_!r}', f'"lower_bound_": {number}'))
    refused(path, r"the manifest holds .*which emix never writes")


@pytest.mark.parametrize("text", [b"\xff\xfe{}", b'{"format": "\\ud800"}', b"{" * 10, b""])
def test_manifests_that_are_not_json_are_refused(saved, text):
    _, path = saved
    members = read_members(path)
    members["manifest.json"] = text
    write_members(path, members)
    refused(path, r"the manifest is not valid JSON")


# -- contradictory arrays ------------------------------------------------------------------

_FITTED_FILES: dict[tuple[str, str], tuple[GaussianMixture, bytes]] = {}


def fitted_file(covariance_type: str, dtype: str, directory) -> tuple[GaussianMixture, bytes]:
    """A fitted model of 3 features and its file, fitted once per session."""
    key = (covariance_type, dtype)
    if key not in _FITTED_FILES:
        model = fitted_model(covariance_type, X=two_blobs(n_features=3, dtype=np.dtype(dtype)),
                             means_init=None, precisions_init=None)
        emix.save(model, directory / "model.emix")
        _FITTED_FILES[key] = model, (directory / "model.emix").read_bytes()
    return _FITTED_FILES[key]


ALL_FITS = [(c, d) for c in COVARIANCE_TYPES for d in ("float64", "float32")]
MATRIX_FITS = [(c, d) for c, d in ALL_FITS if c in ("full", "tied")]


def fit_id(fit):
    return "-".join(fit)


@pytest.fixture(params=ALL_FITS, ids=fit_id)
def consistent(request, tmp_path):
    return consistent_writer(request.param, tmp_path)


@pytest.fixture(params=MATRIX_FITS, ids=fit_id)
def consistent_matrices(request, tmp_path):
    return consistent_writer(request.param, tmp_path)


def consistent_writer(fit, tmp_path):
    """The fitted model, its file, and a writer of prec_chol P with the
    covariances and precisions that agree with P, so that only the rule
    under test can catch an edit."""
    model, data = fitted_file(*fit, tmp_path)
    path = tmp_path / "model.emix"
    path.write_bytes(data)
    structure = COVARIANCE_MODELS[model.covariance_type]
    assert emix.load(path).covariance_type == model.covariance_type  # control

    def write(prec_chol, **others):
        prec_chol = np.asarray(prec_chol, dtype=np.float64)
        cov_chol = structure.cov_chol_from_prec_chol(prec_chol)
        arrays = {"precisions_cholesky_": prec_chol,
                  "precisions_": structure.precisions(prec_chol),
                  "covariances_": structure.precisions(cov_chol)}
        replace_arrays(path, **{**arrays, **others})

    return model, path, structure, write


def test_the_writer_of_agreeing_arrays_agrees(consistent):
    # Control: rewriting P, S and the precisions from P keeps a valid file.
    model, path, _, write = consistent
    write(model.precisions_cholesky_)
    loaded = emix.load(path)
    np.testing.assert_allclose(loaded.covariances_, model.covariances_, rtol=1e-4)


def test_prec_chol_that_contradicts_the_covariances_is_refused(consistent):
    model, path, structure, write = consistent
    prec_chol = model.precisions_cholesky_.astype(np.float64)
    covariances = structure.precisions(structure.cov_chol_from_prec_chol(prec_chol))
    write(prec_chol * 1.01, covariances_=covariances)
    refused(path, r"precisions_cholesky_ does not factor the inverse of covariances_")


def test_precisions_that_are_not_prec_chol_squared_are_refused(consistent):
    model, path, structure, write = consistent
    prec_chol = model.precisions_cholesky_.astype(np.float64)
    write(prec_chol, precisions_=structure.precisions(prec_chol) * (1 + 1e-3))
    refused(path, r"precisions_ is not the precision that precisions_cholesky_ factors")


def test_prec_chol_with_a_negative_diagonal_is_refused(consistent):
    # Same P P^T, same covariances: only the sign convention breaks.
    model, path, _, write = consistent
    prec_chol = model.precisions_cholesky_.astype(np.float64).copy()
    prec_chol[..., 0] *= -1
    write(prec_chol)
    refused(path, r"precisions_cholesky_ is not (upper triangular with a positive "
                  r"diagonal|positive)")


def test_prec_chol_that_is_not_upper_triangular_is_refused(consistent_matrices):
    model, path, _, write = consistent_matrices
    prec_chol = model.precisions_cholesky_.astype(np.float64).copy()
    prec_chol[..., 1, 0] = 0.25 * prec_chol[..., 0, 0]
    write(prec_chol)
    refused(path, r"precisions_cholesky_ is not upper triangular")


def test_asymmetric_covariances_are_refused(consistent_matrices):
    model, path, _, write = consistent_matrices
    covariances = model.covariances_.astype(np.float64).copy()
    covariances[..., 0, 1] += 1e-3 * covariances[..., 0, 0]
    write(model.precisions_cholesky_, covariances_=covariances)
    refused(path, r"covariances_ are not symmetric")


def test_covariances_that_are_not_positive_definite_are_refused(consistent):
    model, path, _, write = consistent
    write(model.precisions_cholesky_, covariances_=-model.covariances_)
    # float32 covariances may be indefinite by rounding alone: they are
    # refused for not matching the precision factors.
    refused(path, r"covariances of components \[.*\] are not positive definite"
            if model.covariances_.dtype == np.float64
            else r"precisions_cholesky_ does not factor the inverse of covariances_")


def test_weights_that_are_not_probabilities_are_refused(consistent):
    model, path, _, _ = consistent
    weights = model.weights_.astype(np.float64)
    for bad in (weights * 0.5, np.array([1.25, -0.25]), weights + 1e-3):
        replace_arrays(path, weights_=bad)
        refused(path, r"weights_ are not a probability vector")


@pytest.mark.parametrize("name", ["means_", "covariances_", "precisions_cholesky_",
                                  "lower_bounds_"])
def test_non_finite_arrays_are_refused(consistent, name):
    model, path, _, _ = consistent
    array = np.asarray(getattr(model, name), dtype=np.float64).copy()
    array.flat[-1] = np.nan
    replace_arrays(path, **{name: array})
    refused(path, rf"{name} contains NaN or inf")


FITTED_EDITS = [
    (lambda m, f: f.update(lower_bound_=m.lower_bounds_[0]),
     r"lower_bound_ is not the last of lower_bounds_"),
    (lambda m, f: f.update(lower_bound_=m.lower_bound_ + 1e-9),
     r"lower_bound_ is not the last of lower_bounds_"),
    (lambda m, f: f.update(n_iter_=m.n_iter_ + 1), r"call for \[\d+\]"),
    (lambda m, f: f.update(converged_=False),
     r"converged_=False contradicts convergence_state_='converged'"),
    (lambda m, f: f.update(convergence_state_="max_iter"),
     r"converged_=True contradicts convergence_state_='max_iter'"),
    (lambda m, f: f.update(converged_=1), r"converged_ is missing or not a bool"),
    (lambda m, f: f.update(feature_names_in_=["a", "b"]),
     r"feature_names_in_ has 2 names for 3 features"),
    (lambda m, f: f.update(feature_names_in_=[1, 2, 3]),
     r"feature_names_in_ is not a list of strings"),
    (lambda m, f: f.update(feature_names_in_="abc"), r"feature_names_in_ is not a list"),
    (lambda m, f: f.update(collapses_=[[1, 2, "vanished", "floored"]]), r"collapses_ holds"),
    (lambda m, f: f.update(collapses_=[[0, 0, "vanished", "floored"]]), r"collapses_ holds"),
    (lambda m, f: f.update(collapses_=[[m.n_iter_ + 1, 0, "vanished", "floored"]]),
     r"iterations run from 1 to \d+"),
    (lambda m, f: f.update(collapses_=[[1, 0, "exploded", "floored"]]), r"reasons are"),
    (lambda m, f: f.update(collapses_=[[1, 0, "vanished", "ignored"]]), r"actions"),
    (lambda m, f: f.update(collapses_=[[1.0, 0, "vanished", "floored"]]),
     r"not an \[iteration, component, reason, action\] record"),
    (lambda m, f: f.update(collapses_=[[1, 0, "vanished"]]), r"not an \[iteration"),
    (lambda m, f: f.update(collapses_=[{"iteration": 1}]), r"not an \[iteration"),
    (lambda m, f: f.update(collapses_="none"), r"collapses_ is missing or not a list"),
]


@pytest.mark.parametrize("edit, match", FITTED_EDITS)
def test_fitted_scalars_that_contradict_the_fit_are_refused(consistent, edit, match):
    model, path, _, _ = consistent
    assert model.convergence_state_ == "converged" and model.n_iter_ >= 2  # as edited
    rewrite_manifest(path, lambda m: edit(model, m["fitted"]))
    refused(path, match)


def test_a_collapse_record_the_rules_allow_loads(consistent):
    # Control for the collapse edits: the shared covariance (-1) of 'tied'.
    model, path, structure, _ = consistent
    component = 0 if structure.per_component else -1
    rewrite_manifest(path, lambda m: m["fitted"].update(
        collapses_=[[model.n_iter_, component, "singular", "floored"]]))
    assert emix.load(path).collapses_[0].component == component
    if structure.per_component:
        rewrite_manifest(path, lambda m: m["fitted"].update(
            collapses_=[[1, -1, "singular", "floored"]]))
        refused(path, r"components from 0 to 1")


# -- the command ---------------------------------------------------------------------------

@pytest.fixture
def corrupted_files(tmp_path, original):
    _, files = original
    data = files["deflated"]
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("arrays/covariances_.npy")
    flipped = bytearray(data)
    # The first deflate block's type set to the reserved 3: zlib.error before.
    flipped[info.header_offset + 30 + len(info.filename)] |= 0b110
    made = {"flipped": bytes(flipped), "cut": data[:-40]}
    paths = {}
    method = bytearray(files["stored"])
    for offset, name, _ in central_entries(bytes(method)):
        if name == "arrays/means_.npy":
            struct.pack_into("<H", method, offset + 10, 99)  # NotImplementedError before
    made["method"] = bytes(method)
    for name, content in made.items():
        paths[name] = tmp_path / f"{name}.emix"
        paths[name].write_bytes(content)
    edits = {"nested": lambda text: "[" * 100_000 + "]" * 100_000,  # RecursionError before
             "huge": lambda text: re.sub(r'"n_components": \d+',  # ValueError before
                                         '"n_components": ' + "9" * 5000, text)}
    for name, edit in edits.items():
        paths[name] = tmp_path / f"{name}.emix"
        paths[name].write_bytes(files["stored"])
        rewrite_manifest_text(paths[name], edit)
    return paths


@pytest.mark.parametrize("command", [["show"], ["show", "--format", "json"], ["sample", "-n", "3"],
                                     ["predict", "DATA"], ["plot", "DATA", "-o", "OUT"]])
def test_the_command_reports_a_corrupt_model_file_in_one_line(tmp_path, corrupted_files,
                                                              command):
    data = tmp_path / "data.csv"
    np.savetxt(data, two_blobs(5), delimiter=",", header="height,width", comments="")
    for name, path in corrupted_files.items():
        out, err = io.StringIO(), io.StringIO()
        argv = [command[0], str(path),
                *[{"DATA": str(data), "OUT": str(tmp_path / "p.png")}.get(a, a)
                  for a in command[1:]]]
        code = main(argv, stdout=out, stderr=err)
        lines = err.getvalue().splitlines()
        assert code == 2, (name, err.getvalue())
        assert len(lines) == 1 and lines[0].startswith("emix: error: "), (name, lines)
        assert str(path) in lines[0] and "internal error" not in lines[0]
        assert out.getvalue() == ""
        assert not (tmp_path / "p.png").exists()

