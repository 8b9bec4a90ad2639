"""Working buffers allocated once per fit and reused for every chunk.

The first touch of fresh memory costs far more than a pass over memory
already in use, so the E-step writes its temporaries into buffers kept here
instead of allocating new ones per chunk.
"""

from __future__ import annotations

import math

import numpy as np


class Workspace:
    """Named scratch arrays that grow to the largest request and are reused."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous array of ``shape``; its content is undefined."""
        size = math.prod(shape)
        dtype = np.dtype(dtype)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != dtype or buffer.size < size:
            buffer = np.empty(size, dtype=dtype)
            self._buffers[name] = buffer
        return buffer[:size].reshape(shape)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())
