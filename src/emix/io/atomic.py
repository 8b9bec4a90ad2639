"""Output files that are either complete or untouched.

Every file emix writes (model files, tables, pictures) goes through
:func:`atomic_output`: a hidden temporary file in the target's directory,
flushed to disk, then renamed over the target, so a crash or an error never
leaves half a file and an existing file survives a failed run.  A target
that exists but is not a regular file (``/dev/null``, ``/dev/stdout``, a
named pipe) is written directly instead: renaming over it would replace the
device or pipe with a plain file.

A writer killed outright (SIGKILL, power loss) cannot remove its temporary
file, so the name of each one carries the writer's host and process id:
the next write of the same target removes the temporaries whose writer, on
this host, is gone, and any of that target's temporaries older than
:data:`STALE_AFTER` seconds (a writer on another host sharing the directory,
or a process id since reused).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..exceptions import InvalidInputError

#: A temporary file of a target untouched for this long (a day) belongs to a
#: writer that is gone, wherever it ran.
STALE_AFTER = 24 * 3600.0

#: Errors that mean the output does not fit where it is written.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: The most bytes of a file's name (Linux and macOS file systems alike).
NAME_MAX = 255

#: This host in temporary names: a process id means something only on the
#: host that issued it.  Short, so that long target names still fit.
_HOST = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:16]


def check_writable(path: str | os.PathLike) -> Path:
    """Refuse, with a remedy, a path that cannot be written; before a long
    computation rather than after it."""
    path = Path(path)
    directory = path.parent
    if any(len(part.encode(errors="surrogateescape")) > NAME_MAX for part in path.parts):
        raise InvalidInputError(
            f"cannot write {str(path)!r}: a name in it is too long (more than {NAME_MAX} "
            "bytes, the most a file system allows); give a shorter name")
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError(
            f"cannot write {str(path)!r}: {str(directory)!r} is a file, not a directory")
    if not directory.is_dir():
        raise InvalidInputError(
            f"cannot write {str(path)!r}: no such directory {str(directory)!r}; create it first")
    if path.is_dir():
        raise InvalidInputError(f"cannot write {str(path)!r}: it is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInputError(f"cannot write {str(path)!r}: permission denied (read-only)")
    if not _is_special(path) and not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidInputError(
            f"cannot write {str(path)!r}: no permission to create files in {str(directory)!r}")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, text: bool = False) -> Iterator[IO]:
    """Open ``path`` for writing; the file appears, complete, only when the
    block ends without an exception.  ``text`` opens it as UTF-8 text with
    newlines written as given.

    A full disk, while the block writes or when the file is flushed, raises
    :class:`~emix.exceptions.InvalidInputError` naming ``path``.
    """
    path = check_writable(path)
    mode, options = ("w", {"encoding": "utf-8", "newline": ""}) if text else ("wb", {})
    if _is_special(path):  # following links: /dev/stdout names a pipe or a terminal
        # Errors while writing (a reader that closed a pipe) are the caller's
        # to see as they are; only failing to open is reported here.
        with _reported(path):
            stream = open(path, mode, **options)
        try:
            with stream:
                yield stream
        except OSError as exc:
            if exc.errno in _NO_SPACE:  # /dev/full, a full pipe's file system
                raise _write_error(path, exc) from None
            raise
        return
    # Through a symbolic link to the file it names: renaming over the link
    # would replace the link and leave its target as it was.
    user_path, path = path, Path(os.path.realpath(path))
    _remove_stale_temporaries(path)
    # The suffix keeps the extension, for writers that look at it; open()
    # rather than mkstemp, so a new file gets the usual permissions.
    temporary = path.parent / (f".{_temporary_stem(path)}.{_HOST}.{os.getpid()}."
                               f"{secrets.token_hex(6)}.tmp{path.suffix}")
    try:
        with _reported(user_path):
            stream = open(temporary, mode.replace("w", "x"), **options)
        try:
            with stream:
                yield stream
                with _reported(user_path):
                    stream.flush()
                    os.fsync(stream.fileno())
        except OSError as exc:
            # The block's own writes fail here when the disk fills up: the
            # caller's error would name neither the file nor the remedy.
            if exc.errno in _NO_SPACE:
                raise _write_error(user_path, exc) from None
            raise
        with _reported(user_path):
            if path.exists():
                os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
            os.replace(temporary, path)
    finally:
        # Best effort: an error here would hide the one that ended the block.
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _temporary_stem(path: Path) -> str:
    """The target's name as its temporary files carry it: shortened (its
    start and a digest of the whole) where the temporary's name would
    exceed the 255 bytes a file name may have, so that every name the
    target may have can be written."""
    fixed = len(f"..{_HOST}.{2**22}.{'0' * 12}.tmp{path.suffix}".encode())
    room = NAME_MAX - fixed
    name = path.name
    if len(name.encode()) <= room:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    start = name.encode()[:max(0, room - len(digest) - 1)].decode(errors="ignore")
    return f"{start}~{digest}"


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files that writers of ``path`` left behind and
    will never finish (see the module's notes).  Best effort: one that cannot
    be examined or removed stays."""
    pattern = re.compile(
        rf"\.{re.escape(_temporary_stem(path))}\.(?:(?P<host>[A-Za-z0-9-]*)\.(?P<pid>\d+)\.)?"
        rf"[0-9a-f]{{12}}\.tmp{re.escape(path.suffix)}")
    now = time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            stale = (now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER
                     or (match["host"] == _HOST and not _running(int(match["pid"]))))
            if stale:
                os.unlink(entry.path)
        except OSError:
            continue


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts until
    its parent reaps it)."""
    if pid == os.getpid():
        return True
    if pid <= 0:  # 0 would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # beyond any process id
        return False
    return True


@contextlib.contextmanager
def _reported(path: Path) -> Iterator[None]:
    """An operating-system error, named by the user's path (not the
    temporary file's) with what to do about it."""
    try:
        yield
    except OSError as exc:
        raise _write_error(path, exc) from None


def _write_error(path: Path, exc: OSError) -> InvalidInputError:
    if exc.errno in _NO_SPACE:
        kept = (f" (the existing {path.name} is unchanged)"
                if path.is_file() and not _is_special(path) else "")
        return InvalidInputError(
            f"cannot write {str(path)!r}: the disk is full ({exc.strerror or exc}); free "
            f"some space on it or write elsewhere{kept}")
    return InvalidInputError(f"cannot write {str(path)!r}: {exc.strerror or exc}")


def _is_special(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)
