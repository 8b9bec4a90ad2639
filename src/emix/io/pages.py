"""Giving the pages of a memory map back once they have been read.

Pages of a map stay in the process, and count in its resident memory, after
they are read: one pass over a 4 GB map leaves 4 GB resident.
``madvise(MADV_DONTNEED)`` drops them from the process only; the page cache
keeps the file, and the next pass reads it from there.
"""

from __future__ import annotations

import ctypes
import mmap
import os

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
