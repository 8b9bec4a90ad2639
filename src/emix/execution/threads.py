"""Chunks of one E-step on several threads.

The compiled kernels and most of NumPy release the GIL, so chunks can run on
all cores from threads of this process, with no copies of the data.  BLAS
must then run one thread per call: two chunks' matrix products, each asking
for every core, slow each other down (measured: 15 GFLOP/s together against
28 with one BLAS thread each).  threadpoolctl (in ``emix[fast]``) sets that
for the duration of a fit; without it chunks that call BLAS run one after
another.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

_pools: dict[int, ThreadPoolExecutor] = {}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_pool(n_threads: int) -> ThreadPoolExecutor:
    """A pool of ``n_threads`` workers, kept for the process's lifetime so
    that a fit does not pay for starting threads."""
    pool = _pools.get(n_threads)
    if pool is None:
        pool = _pools[n_threads] = ThreadPoolExecutor(n_threads, thread_name_prefix="emix")
    return pool


@contextmanager
def single_threaded_blas() -> Iterator[bool]:
    """BLAS limited to one thread per call inside the block; yields whether
    that could be arranged (threadpoolctl installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(1, user_api="blas"):
        yield True
