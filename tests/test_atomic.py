"""Output files: complete or untouched, normal permissions, devices and pipes
written in place rather than replaced."""

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import emix
from emix.exceptions import InvalidInputError
from emix.io import atomic
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


# -- a full disk ---------------------------------------------------------------------------

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def assert_disk_full_reported(caught, target):
    message = str(caught.value)
    assert repr(str(target)) in message
    assert "the disk is full" in message and "free some space" in message


def test_a_full_disk_while_writing_names_the_target(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(emix.InvalidInputError, match="disk is full") as caught:
        with atomic_output(target) as stream:
            stream.write(b"new")
            no_space()  # what stream.write raises when the disk fills up
    assert_disk_full_reported(caught, target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_a_full_disk_when_flushing_names_the_target(tmp_path, monkeypatch, call):
    target = tmp_path / "out.bin"
    monkeypatch.setattr(os, call, no_space)
    with pytest.raises(emix.InvalidInputError, match="disk is full") as caught:
        with atomic_output(target) as stream:
            stream.write(b"new")
    monkeypatch.undo()
    assert_disk_full_reported(caught, target)
    assert os.listdir(tmp_path) == []


def test_a_full_disk_while_saving_a_model_names_the_file(tmp_path, monkeypatch):
    X = np.random.default_rng(0).normal(size=(30, 2))
    model = emix.GaussianMixture(2, random_state=0).fit(X)
    target = tmp_path / "model.emix"
    monkeypatch.setattr(np.lib.format, "write_array", no_space)
    with pytest.raises(emix.InvalidInputError, match="disk is full") as caught:
        emix.save(model, target)
    assert_disk_full_reported(caught, target)
    assert os.listdir(tmp_path) == []


def test_other_errors_of_the_block_pass_through_as_they_are(tmp_path):
    with pytest.raises(OSError, match="a reader went away") as caught:
        with atomic_output(tmp_path / "out.bin"):
            raise OSError(errno.EPIPE, "a reader went away")
    assert caught.value.errno == errno.EPIPE


# -- temporaries of writers killed outright -------------------------------------------------

WRITER = """
import sys, time
from emix.io.atomic import atomic_output

with atomic_output(sys.argv[1]) as stream:
    stream.write(b"half of a new file")
    stream.flush()
    print("writing", flush=True)
    time.sleep(600)
"""


def temporaries(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def test_the_temporary_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.emix"
    target.write_bytes(b"old")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        (left,) = temporaries(tmp_path)
    finally:
        writer.kill()  # SIGKILL: no finally clause of the writer runs
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert f".{writer.pid}." in left and left.endswith(".tmp.emix")
    assert target.read_bytes() == b"old"
    assert temporaries(tmp_path) == [left]  # it stays until the target is written again

    with atomic_output(target) as stream:
        stream.write(b"new")
    assert target.read_bytes() == b"new"
    assert temporaries(tmp_path) == []


def test_temporaries_are_named_by_their_writer_and_kept_while_it_runs(tmp_path):
    target = tmp_path / "table.csv"
    with atomic_output(target) as outer:
        (mine,) = temporaries(tmp_path)
        assert mine.startswith(f".table.csv.{atomic._HOST}.{os.getpid()}.")
        # A second writer of the same target (another thread) keeps the first's.
        with atomic_output(target) as inner:
            assert mine in temporaries(tmp_path) and len(temporaries(tmp_path)) == 2
            inner.write(b"inner")
        assert temporaries(tmp_path) == [mine]
        outer.write(b"outer")
    assert target.read_bytes() == b"outer" and temporaries(tmp_path) == []


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        dead = int(gone.stdout)
        host = atomic._HOST
        names = {
            f".out.csv.{host}.{dead}.0123456789ab.tmp.csv": False,  # its writer is gone
            f".out.csv.{host}.{sleeper.pid}.0123456789ab.tmp.csv": True,  # still running
            f".out.csv.{host}x.{dead}.0123456789ab.tmp.csv": True,  # another host's
            ".out.csv.0123456789ab.tmp.csv": True,  # an earlier emix's, recent
            f".other.csv.{host}.{dead}.0123456789ab.tmp.csv": True,  # another target's
            f".out.csv.{host}.{dead}.not-a-token.tmp.csv": True,  # not emix's name
        }
        aged = {f".out.csv.{host}x.1.ba9876543210.tmp.csv": False,
                ".out.csv.ba9876543210.tmp.csv": False}
        for name in [*names, *aged]:
            (tmp_path / name).write_text("half")
        old = time.time() - atomic.STALE_AFTER - 60
        for name in aged:
            os.utime(tmp_path / name, (old, old))
        write_table(tmp_path / "out.csv", np.array([[1.0]]), ["a"])
        kept = {name for name, keep in names.items() if keep}
        assert set(temporaries(tmp_path)) == kept
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("length", [200, 230, 251])
def test_every_name_a_file_may_have_can_be_written(tmp_path, length):
    # The temporary's name carries the target's, the host and the process:
    # for targets of 215-251 characters it had passed the 255 a name may
    # have, and the cleanup's second failure hid the error.
    target = tmp_path / ("a" * (length - 4) + ".csv")
    with atomic_output(target, text=True) as stream:
        stream.write("x\n")
    assert target.read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_name_too_long_for_any_file_is_an_error_naming_it(tmp_path):
    target = tmp_path / ("b" * 300 + ".emix")
    with pytest.raises(InvalidInputError, match=r"cannot write '.*bbbb\.emix'.*too long"):
        with atomic_output(target) as stream:
            stream.write(b"x")


def test_a_full_device_is_named_in_the_error(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with pytest.raises(InvalidInputError, match=r"cannot write '/dev/full': the disk is full"):
        with atomic_output("/dev/full", text=True) as stream:
            stream.write("x" * 100_000)
            stream.flush()
