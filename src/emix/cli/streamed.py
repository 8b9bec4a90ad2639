"""``emix fit --chunk-size`` and ``--scheduler``: fits (and model
selection) on files larger than memory, read a chunk of rows at a time, or
spread over a Dask cluster.

Only one chunk is in the client's memory at a time: each fit reads the file
once per EM iteration (``--chunk-size``), or the workers hold the data
(``--scheduler``).  The statistics printed (log-likelihood, BIC, AIC, ICL)
come from passes over the same chunks; a picture draws the fit over a
uniform sample of the rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._text import one_line
from ..em.init import SAMPLE_ROWS
from ..exceptions import InvalidInputError
from ..execution.chunked import ChunkedData
from ..io.tables import ChunkedTable, iter_chunks
from ..mixture import GaussianMixture
from ..selection import weighted_sums_of_chunk
from .report import fit_statistics

#: Seconds to wait for a Dask scheduler before giving up.
CONNECT_TIMEOUT = 20


def open_table(args, stdin) -> ChunkedTable:
    if args.file is None:
        raise InvalidInputError(
            "--chunk-size and --scheduler read a FILE; the embedded Old Faithful data "
            "fits in memory (leave them out)")
    if args.file == "-":
        raise InvalidInputError(
            "--chunk-size and --scheduler cannot read standard input: EM reads the data "
            "once per iteration, and a pipe can be read only once. Save it to a file first")
    table = iter_chunks(args.file, chunk_rows=args.chunk_size, columns=args.columns,
                        stdin=stdin)
    if args.weights:
        names = [name for name in table.names if name != args.weights] \
            if args.columns is None else table.names
        table = table.select([*names, args.weights])
    return table


def chunk_source(table: ChunkedTable, weighted: bool):
    """A re-readable source of (rows, weights) chunks from the table."""
    def source() -> Iterator[Any]:
        for block in table:
            yield (block[:, :-1], block[:, -1]) if weighted else block
    return source


@dataclass
class Streamed:
    """The file as ``fit`` and ``select`` read it in pieces: ``X`` is a chunk
    source (with the weights in its chunks) or a Dask array (with ``weights``
    a Dask array); ``source`` re-reads the file chunk by chunk either way."""

    X: Any
    weights: Any
    names: list[str]
    source: Any
    weighted: bool
    on_cluster: bool

    def n_rows(self) -> int:
        if self.on_cluster:
            return int(self.X.shape[0])
        return sum(chunk[0].shape[0] if self.weighted else chunk.shape[0]
                   for chunk in self.source())

    def statistics(self, model: GaussianMixture, convention: str) -> dict[str, Any]:
        if self.on_cluster:
            return _dask_statistics(model, self.X, self.weights, convention)
        return _chunk_statistics(model, self.source, self.weighted, convention)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """A uniform sample of at most SAMPLE_ROWS rows, for pictures."""
        return ChunkedData(self.source).sample(SAMPLE_ROWS, np.random.default_rng(0))


def open_streamed(args, stdin, stack: ExitStack) -> Streamed:
    """The file of ``emix fit --chunk-size / --scheduler``, read in pieces."""
    table = stack.enter_context(open_table(args, stdin))
    weighted = bool(args.weights)
    names = table.names[:-1] if weighted else table.names
    source = chunk_source(table, weighted)  # the table reads --chunk-size rows at a time
    if args.scheduler:
        X, weights = _on_cluster(args, table, weighted, stack)
        return Streamed(X, weights, names, source, weighted, on_cluster=True)
    return Streamed(source, None, names, source, weighted, on_cluster=False)


def _chunk_statistics(model: GaussianMixture, source, weighted: bool, convention: str
                      ) -> dict[str, Any]:
    """One pass: rows, total weight and classification cost, chunk by chunk."""
    n_rows, total = 0, np.zeros(2)
    for chunk in source():
        X, weights = chunk if weighted else (chunk, None)
        n_rows += X.shape[0]
        total += weighted_sums_of_chunk(model, X, weights)
    return fit_statistics(model, n_rows, float(total[0]), float(total[1]), convention)


def _dask_statistics(model: GaussianMixture, X, weights, convention: str) -> dict[str, Any]:
    from ..execution.dask_data import compute

    best = -np.log(model.predict_proba(X).max(axis=1))
    if weights is None:
        n, cost = X.shape[0], best.sum()
    else:
        n, cost = weights.sum(), (weights * best).sum()
    n, cost = compute(n, cost)
    return fit_statistics(model, int(X.shape[0]), float(n), float(cost), convention)


def _on_cluster(args, table: ChunkedTable, weighted: bool, stack: ExitStack):
    """The file as a Dask array on the cluster at ``args.scheduler``.

    A .npy file is read by the workers themselves (each block a task that
    reads its rows), so a block lost with a worker is read again; other
    formats are read here a chunk at a time and scattered to the workers
    (such a block is lost with its worker: use .npy or replicate for
    fault tolerance).  The file must be readable by the workers at the
    same path for the former.
    """
    try:
        import dask.array as da
        from distributed import Client

        from ..execution.dask_data import require_workers
    except ImportError:
        raise InvalidInputError(
            "--scheduler needs Dask: pip install 'emix[dask]'") from None
    client = stack.enter_context(_connected(Client, args.scheduler))
    require_workers(client)
    path = Path(args.file)
    if path.suffix.lower() == ".npy" and not weighted and args.columns is None:
        X = _npy_on_workers(path, args.chunk_size, da)
        return X, None
    blocks, weight_blocks = [], []
    for chunk in chunk_source(table, weighted)():
        X, w = chunk if weighted else (chunk, None)
        blocks.append(da.from_delayed(client.scatter(X), shape=X.shape, dtype=X.dtype))
        if weighted:
            weight_blocks.append(da.from_delayed(client.scatter(w), shape=w.shape,
                                                 dtype=w.dtype))
    X = da.concatenate(blocks)
    return X, (da.concatenate(weight_blocks) if weighted else None)


def _connected(Client, address: str):
    """A client of the scheduler at ``address``, or an error within
    CONNECT_TIMEOUT seconds: Dask's own connect waits without end for the
    greeting of a server that accepts the connection but never answers."""
    try:
        asyncio.run(_greeted(address))
        return Client(address, timeout=CONNECT_TIMEOUT)
    # Any failure (a malformed address, a refused or silent port, a server
    # answering something else) means the same to the user.
    except Exception as exc:
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {CONNECT_TIMEOUT} s"
        elif isinstance(exc, (OSError, ValueError)):  # refused, unknown host, bad address
            reason = one_line(exc) or type(exc).__name__
        else:
            reason = "something answers there, but not as a Dask scheduler"
        raise InvalidInputError(
            f"cannot reach a Dask scheduler at {address!r} ({reason}); start one with "
            "'dask scheduler' and workers with 'dask worker ADDRESS', or check the "
            "address (tcp://HOST:PORT)") from None


async def _greeted(address: str) -> None:
    """Dask's handshake with ``address``, within CONNECT_TIMEOUT seconds."""
    from distributed.comm import connect

    comm = await asyncio.wait_for(connect(address, timeout=CONNECT_TIMEOUT), CONNECT_TIMEOUT)
    await comm.close()


def _npy_on_workers(path: Path, chunk_rows: int | None, da):
    import dask

    mapped = np.load(path, mmap_mode="r")
    n = mapped.shape[0]
    width = 1 if mapped.ndim == 1 else mapped.shape[1]
    rows = chunk_rows or max(1, (64 * 2**20) // (8 * width))
    read = dask.delayed(_read_rows, pure=True)
    blocks = [da.from_delayed(read(str(path.resolve()), start, min(n, start + rows)),
                              shape=(min(n, start + rows) - start, width), dtype=np.float64)
              for start in range(0, n, rows)]
    return da.concatenate(blocks)


def _read_rows(path: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a .npy file, as float64 (a task on a worker)."""
    from ..io.pages import copy_rows

    rows = copy_rows(np.load(path, mmap_mode="r"), start, stop)
    rows = np.asarray(rows, dtype=np.float64).reshape(stop - start, -1)
    if not np.isfinite(rows).all():
        raise InvalidInputError(f"{path!r} holds NaN or inf in rows {start + 1}..{stop}")
    return rows
