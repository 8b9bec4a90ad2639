"""Compiled E-step kernels (numba, the optional extra ``emix[fast]``).

NumPy's E-step is a dozen passes over (rows, K) or (rows, K, d) temporaries:
where each row's work is small (one to a few features, diagonal covariances)
the time goes into memory traffic, per-call overhead and float64 ``np.exp``
(one value at a time on CPUs without AVX-512), not into arithmetic.  The
kernels in :mod:`emix.families._numba_kernels` instead work on a block of
256 rows while it sits in the L1 cache, every inner loop along the rows so
that it compiles to SIMD instructions:

* ``scaled`` (diagonal and spherical covariances, and any structure with one
  feature) and ``triangular`` (full and tied, up to 4 features) do the whole
  E-step of a block: log-densities, the max-shifted log-sum-exp,
  responsibilities and the statistics.
* Full and tied covariances with more features write each row's quadratic
  features (x'_a x'_b, x', 1; x' = x minus the mixture's centre) for a
  cache-sized block, and one matrix product with the coefficients of
  :meth:`~emix.families.covariance.CovarianceModel.quadratic_coefficients`
  gives all log-densities: half the flops of whitening every component.
  The product is emix's own (4 components x 4 terms per pass along the
  rows; BLAS stalls on a product this skinny), and the moments are taken
  about each component's own mean (register tiles of 4 x 2 feature pairs)
  while the block is in the cache.  The block loop runs in one compiled
  call per chunk, so that threads do not queue for the GIL between blocks.
  The expansion's rounding grows with a row's distance from the centre in
  a component's spread: rows where it could exceed about 2000 units of
  their log-density's own rounding (outliers a broad component owns,
  clusters far from the centre) get their log-densities from residuals
  about each mean instead, in float64.  The moments are float64 sums of
  float64 products, also for float32 data.

They compute what the NumPy path computes -- residuals about each
component's own mean, statistics centred on those means -- in another order,
so the two agree to rounding.  The exponential is emix's own, within 2 ulp
of libm's and vectorised (in float32 for float32 data, 8 lanes); the
log-likelihood takes one logarithm per 700 / ln K rows (the log of a product
of row sums, each between 1 and K).

The kernels release the GIL, so chunks run on several threads.  Nothing here
is imported until the first fit that can use it; without numba (or with
``EMIX_NUMBA=0``) the NumPy path runs.
"""

from __future__ import annotations

import os
import threading

#: Set EMIX_NUMBA=0 to use the NumPy path even when numba is installed.
ENVIRONMENT_SWITCH = "EMIX_NUMBA"

_kernels: dict | None = None
_loaded = False
# Chunks on several threads ask at once on a process's first fit: one loads,
# the others wait for it (they would otherwise see "loading" as "absent"
# and take the NumPy path).
_loading = threading.Lock()


def kernels() -> dict | None:
    """The compiled kernels by name, or None when numba is unavailable or
    switched off.  Compiled (or loaded from numba's cache) on first use."""
    global _kernels, _loaded
    if _loaded:
        return _kernels
    with _loading:
        if not _loaded:
            _kernels = _load()
            _loaded = True
    return _kernels


def _load() -> dict | None:
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0":
        return None
    try:
        import numba  # noqa: F401
    except ImportError:
        return None
    from . import _numba_kernels as compiled

    return {"scaled": compiled.scaled_e_step,
            "triangular": compiled.triangular_e_step,
            "quadratic_e_step": compiled.quadratic_e_step}
