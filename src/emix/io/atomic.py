"""Output files that are either complete or untouched.

Every file emix writes (model files, tables, pictures) goes through
:func:`atomic_output`: a hidden temporary file in the target's directory,
flushed to disk, then renamed over the target, so a crash or an error never
leaves half a file and an existing file survives a failed run.  A target
that exists but is not a regular file (``/dev/null``, ``/dev/stdout``, a
named pipe) is written directly instead: renaming over it would replace the
device or pipe with a plain file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..exceptions import InvalidInputError


def check_writable(path: str | os.PathLike) -> Path:
    """Refuse, with a remedy, a path that cannot be written; before a long
    computation rather than after it."""
    path = Path(path)
    directory = path.parent
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
    newlines written as given."""
    path = check_writable(path)
    mode, options = ("w", {"encoding": "utf-8", "newline": ""}) if text else ("wb", {})
    if _is_special(path):  # following links: /dev/stdout names a pipe or a terminal
        # Errors while writing (a reader that closed a pipe) are the caller's
        # to see as they are; only failing to open is reported here.
        with _reported(path):
            stream = open(path, mode, **options)
        with stream:
            yield stream
        return
    # Through a symbolic link to the file it names: renaming over the link
    # would replace the link and leave its target as it was.
    path = Path(os.path.realpath(path))
    # The suffix keeps the extension, for writers that look at it; open()
    # rather than mkstemp, so a new file gets the usual permissions.
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}"
    try:
        with _reported(path):
            stream = open(temporary, mode.replace("w", "x"), **options)
        with stream:
            yield stream
            with _reported(path):
                stream.flush()
                os.fsync(stream.fileno())
        with _reported(path):
            if path.exists():
                os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _reported(path: Path) -> Iterator[None]:
    """An operating-system error, named by the user's path (not the
    temporary file's) with what to do about it."""
    try:
        yield
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def _is_special(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)
