"""Fused E-step kernels, compiled with numba when it is installed (``emix[fast]``).

Where each row's work is small -- one to a few features, or a diagonal
covariance -- NumPy's E-step is a dozen passes over (rows, K) or (rows, K, d)
temporaries, and the time goes into memory traffic, per-call overhead and
float64 ``np.exp`` (one value at a time on CPUs without AVX-512) rather than
arithmetic.  These kernels do the whole E-step for a block of rows while it
sits in the L1 cache: log-densities, the max-shifted log-sum-exp,
responsibilities and the statistics.  They compute what the NumPy path
computes -- residuals about each component's own mean, statistics centred on
those means -- in another order, so the two agree to rounding.

Every inner loop runs along the rows of a block (the block is transposed
once), so the compiler turns it into SIMD instructions; the exponential is
our own (:func:`_exp_nonpositive`, within about 1 ulp of libm's), written so
that it vectorises too.  The log-likelihood takes one logarithm per 16 rows
(the log of a product of row sums, each between 1 and K) instead of one per
row.

The kernels release the GIL, so chunks can run on several threads.  Nothing
here is imported until the first fit that can use it; without numba (or
with ``EMIX_NUMBA=0``) the NumPy path runs.
"""

from __future__ import annotations

import os

#: Set EMIX_NUMBA=0 to use the NumPy path even when numba is installed.
ENVIRONMENT_SWITCH = "EMIX_NUMBA"

_kernels: dict | None = None
_loaded = False


def kernels() -> dict | None:
    """The compiled kernels by name, or None when numba is unavailable or
    switched off.  Compiled (or loaded from numba's cache) on first use."""
    global _kernels, _loaded
    if not _loaded:
        _loaded = True
        if os.environ.get(ENVIRONMENT_SWITCH, "1") != "0":
            try:
                import numba  # noqa: F401
            except ImportError:
                _kernels = None
            else:
                from . import _numba_kernels as compiled

                _kernels = {"scaled": compiled.scaled_e_step,
                            "triangular": compiled.triangular_e_step,
                            "quadratic_features": compiled.quadratic_features,
                            "normalise_chunk": compiled.normalise_chunk,
                            "centred_moments": compiled.centred_moments}
    return _kernels
