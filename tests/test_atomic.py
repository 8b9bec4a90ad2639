"""Output files: complete or untouched, normal permissions, devices and pipes
written in place rather than replaced."""

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

import emix
from emix.io.atomic import atomic_output, check_writable
from emix.io.tables import write_table


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as stream:
        stream.write(b"new, half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_new_files_get_the_usual_mode_and_replaced_files_keep_theirs(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    X = np.random.default_rng(0).normal(size=(30, 2))
    model = emix.GaussianMixture(2, random_state=0).fit(X)
    path = emix.save(model, tmp_path / "model.emix")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)
    emix.save(model, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_devices_are_written_in_place_not_replaced():
    with atomic_output("/dev/null") as stream:
        stream.write(b"discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_link_to_a_pipe_is_written_through(tmp_path):
    """/dev/stdout is such a link (to /proc/self/fd/1, itself a link to a pipe)."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    link = tmp_path / "stdout"
    link.symlink_to(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    write_table(link, np.array([[3.0]]), ["a"])
    reader.join(timeout=10)
    assert received == ["a\n3\n"] and link.is_symlink()


def test_a_named_pipe_receives_the_data_and_stays_a_pipe(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    write_table(pipe, np.array([[1.5, 2.0]]), ["a", "b"])
    reader.join(timeout=10)
    assert received == ["a,b\n1.5,2\n"]
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_unwritable_places_are_refused_with_the_users_path(tmp_path):
    with pytest.raises(emix.InvalidInputError, match="no such directory"):
        check_writable(tmp_path / "missing" / "x.csv")
    with pytest.raises(emix.InvalidInputError, match="it is a directory"):
        check_writable(tmp_path)


def test_a_symbolic_link_is_followed_not_replaced(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    write_table(link, np.array([[1.0]]), ["a"])
    assert link.is_symlink() and target.read_text() == "a\n1\n"


def test_a_read_only_file_is_refused_not_replaced(tmp_path, monkeypatch):
    target = tmp_path / "locked.csv"
    target.write_text("keep")
    # Permission bits do not bind root, so the check is fed what a user sees.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == target
                        else real_access(path, mode))
    with pytest.raises(emix.InvalidInputError, match="read-only"):
        write_table(target, np.array([[1.0]]), ["a"])
    assert target.read_text() == "keep"
