"""Progress of long fits on the terminal.

The library reports through callbacks (``fit(progress=...)``,
``select(progress=...)``); this module turns those reports into what a
person at a shell wants: a live line that rewrites itself on a terminal, a
single summary line when stderr is a file or a pipe (logs stay readable),
nothing with ``--quiet``, and a line every few iterations with
``--verbose``.
"""

from __future__ import annotations

import math
import time
from typing import TextIO

from .._text import counted
from ..em.engine import Progress
from ..selection import FitProgress

QUIET, NORMAL, VERBOSE = 0, 1, 2

#: A live line is redrawn at most this often (seconds): drawing every
#: iteration of a fast fit would cost more than the fit.
REDRAW_INTERVAL = 0.1
#: With --verbose, one line every this many iterations (and at each end).
VERBOSE_INTERVAL = 10


class ProgressReporter:
    """A progress callback for ``fit`` and ``select`` that writes to ``stream``."""

    def __init__(self, stream: TextIO, *, verbosity: int = NORMAL, live: bool | None = None):
        self.stream = stream
        self.verbosity = verbosity
        self.live = verbosity > QUIET and (_is_terminal(stream) if live is None else live)
        self.started = time.perf_counter()
        self.iterations = 0
        self._last_draw = -math.inf
        self._line_width = 0

    def __call__(self, report: Progress | FitProgress) -> None:
        fit = report if isinstance(report, FitProgress) else None
        em = fit.em if fit is not None else report
        if em.iteration > 0:
            self.iterations += 1
        finished = em.state != "running"
        if self.verbosity >= VERBOSE and (em.iteration % VERBOSE_INTERVAL == 0 or finished):
            self._clear()
            self.stream.write(f"emix: {self._describe(fit, em)}\n")
            self.stream.flush()
        elif self.live:
            now = time.perf_counter()
            if finished or now - self._last_draw >= REDRAW_INTERVAL:
                self._last_draw = now
                self._draw(self._describe(fit, em))

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # An error message must not be glued to a half-drawn live line.
        self._clear()

    def status(self, text: str) -> None:
        """A live line between fits (reading a file, say); only on a terminal."""
        if self.live:
            self._draw(text)

    def finish(self, summary: str) -> None:
        """End the live line; print ``summary`` unless quiet."""
        self._clear()
        if self.verbosity > QUIET:
            elapsed = time.perf_counter() - self.started
            self.stream.write(f"emix: {summary} in {elapsed:.2f} s "
                              f"({counted(self.iterations, 'EM iteration')})\n")
            self.stream.flush()

    def _describe(self, fit: FitProgress | None, em: Progress) -> str:
        parts = []
        if fit is not None:
            parts.append(f"model {fit.fit}/{fit.n_fits} (K={fit.n_components} "
                         f"{fit.covariance_type})")
        if em.n_restarts > 1:
            parts.append(f"init {em.restart + 1}/{em.n_restarts}")
        change = "" if math.isnan(em.change) else f" ({em.change:+.2e})"
        parts.append(f"iteration {em.iteration}")
        parts.append(f"log-lik/sample {em.log_likelihood:.6f}{change}")
        parts.append(f"{time.perf_counter() - self.started:.1f} s")
        if em.state != "running":
            parts.append(em.state)
        return "  ".join(parts)

    def _draw(self, text: str) -> None:
        padding = " " * max(0, self._line_width - len(text))
        self.stream.write(f"\r{text}{padding}")
        self.stream.flush()
        self._line_width = len(text)

    def _clear(self) -> None:
        if self._line_width:
            self.stream.write("\r" + " " * self._line_width + "\r")
            self.stream.flush()
            self._line_width = 0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
