"""Reading rows of a memory-mapped file without keeping them resident.

Pages of a map stay in the process, and count in its resident memory, after
they are read: one pass over a 4 GB map leaves 4 GB resident.
:func:`copy_rows` reads the rows of a file-backed map with ``pread`` into
fresh memory instead (the page cache still serves them), and falls back to
copying out of the map and ``madvise(MADV_DONTNEED)``, which drops the pages
from the process only, for maps it cannot read that way.  (That fall-back is
best effort: measured in a process that had run a Dask cluster, some pages
stayed.)
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import numpy as np

_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
_PAGE = mmap.PAGESIZE
_libc = None


def can_release(array: np.ndarray) -> bool:
    """Whether :func:`release_pages` may drop ``array``'s pages: a read-only
    or shared map (on a copy-on-write map, mode 'c', it would discard the
    owner's changes), on a system with madvise."""
    return (_MADV_DONTNEED is not None and os.name == "posix"
            and isinstance(array, np.memmap) and getattr(array, "mode", "c") in ("r", "r+"))


def release_pages(view: np.ndarray) -> None:
    """Drop the whole pages under a C-contiguous view of a map that
    :func:`can_release` accepted (best effort: errors are ignored)."""
    global _libc
    if view.size == 0 or not view.flags.c_contiguous:
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    begin = view.ctypes.data
    end = begin + view.nbytes
    begin += -begin % _PAGE  # pages shared with rows outside the view stay
    end -= end % _PAGE
    if end > begin:
        _libc.madvise(ctypes.c_void_p(begin), ctypes.c_size_t(end - begin), _MADV_DONTNEED)


def copy_rows(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``np.array(array[start:stop])``, without leaving the rows' pages
    resident when ``array`` is a memory map."""
    if _readable_file(array):
        row_bytes = array.strides[0]
        count = max(0, min(stop, array.shape[0]) - start)
        rows = np.empty((count, *array.shape[1:]), dtype=array.dtype)
        view = memoryview(rows.reshape(-1).view(np.uint8))
        position = array.offset + start * row_bytes
        with open(array.filename, "rb", buffering=0) as stream:
            done = 0
            while done < len(view):
                got = os.preadv(stream.fileno(), [view[done:]], position + done)
                if got <= 0:
                    raise OSError(f"{array.filename}: the file ended early (truncated?)")
                done += got
        return rows
    view = array[start:stop]
    rows = np.array(view)
    if can_release(array):
        release_pages(view)
    return rows


def _readable_file(array: np.ndarray) -> bool:
    """A C-ordered map of a whole region of a file (not a view into one,
    whose ``offset`` numpy does not update), shared with the file (a
    copy-on-write map, mode 'c', may hold changes the file does not)."""
    return (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap)
            and getattr(array, "mode", "c") in ("r", "r+", "w+")
            and array.flags.c_contiguous and array.filename is not None
            and hasattr(os, "preadv") and Path(array.filename).is_file())
