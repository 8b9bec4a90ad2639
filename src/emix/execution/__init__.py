"""Where the E-step runs: each back-end only maps it over the data and sums
the statistics; the EM loop itself is shared."""

from .memory import InMemoryData, default_chunk_rows
from .workspace import Workspace

__all__ = ["InMemoryData", "Workspace", "default_chunk_rows"]
