"""The numba kernels behind :mod:`emix.families._compiled` (imported only
when numba is installed; see that module for what they do and why).

Defined at module level so that numba's on-disk cache keeps them between
processes: compiling them takes seconds, loading them a fraction of that.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

#: Rows per block: the block's transposed rows and its (K, rows)
#: log-densities stay in the L1/L2 cache.
BLOCK_ROWS = 256
#: The L1 data cache of the machines measured (48 KB per core).
L1_BYTES = 48 * 1024

#: exp(x) for x below this is under 1e-307 next to the row's largest term,
#: 1: it is taken as 0 (libm would return a subnormal number).
_EXP_CUTOFF = -708.0
_LOG2E = 1.4426950408889634
# ln 2 split in two so that x - n ln 2 is exact for |n| <= 1024.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# 2**52 + 1023: adding an integer n <= 0 to it in float64 puts n + 1023
# into the low bits, from where a shift moves it into the exponent field.
_EXPONENT_MAGIC = 4503599627371519.0
_MAGIC_BITS = np.float64(4503599627370496.0).view(np.int64)


# No reassociation here: it would undo the two-part reduction by ln 2.
@njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def exp_nonpositive(values, count, scratch, bits):
    """values[:count] = exp(values[:count]) for values <= 0, in place.

    Range reduction x = n ln 2 + r with |r| <= ln 2 / 2, a degree-13
    Taylor polynomial for exp(r) (truncation below 2e-16), and 2**n
    built in the exponent bits; values below _EXP_CUTOFF give 0.
    ``scratch`` (float64) and ``bits`` (int64, the same memory viewed as
    integers) hold at least ``count`` values."""
    for i in range(count):
        x = max(values[i], _EXP_CUTOFF)
        n = np.floor(x * _LOG2E + 0.5)
        r = (x - n * _LN2_HI) - n * _LN2_LO
        # Estrin's scheme: the same degree-13 polynomial as a tree of
        # depth 4 instead of a chain of 13 dependent multiply-adds.
        r2 = r * r
        r4 = r2 * r2
        p01 = 1.0 + r
        p23 = 0.5 + r * (1.0 / 6.0)
        p45 = 1.0 / 24.0 + r * (1.0 / 120.0)
        p67 = 1.0 / 720.0 + r * (1.0 / 5040.0)
        p89 = 1.0 / 40320.0 + r * (1.0 / 362880.0)
        p1011 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0)
        p1213 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0)
        q0 = p01 + r2 * p23
        q1 = p45 + r2 * p67
        q2 = p89 + r2 * p1011
        s0 = q0 + r4 * q1
        s1 = q2 + r4 * p1213
        p = s0 + (r4 * r4) * s1
        scratch[i] = n + _EXPONENT_MAGIC
        values[i] = p if values[i] >= _EXP_CUTOFF else 0.0
    for i in range(count):
        bits[i] = (bits[i] - _MAGIC_BITS) << 52
    for i in range(count):
        values[i] *= scratch[i]

# The same in float32, eight lanes per instruction: for float32 data, whose
# responsibilities are float32 anyway.  Below exp(-87) (float32's least
# normal number is exp(-87.3)) it returns 0.
_EXP_CUTOFF_32 = np.float32(-87.0)
_LOG2E_32 = np.float32(_LOG2E)
_HALF_32 = np.float32(0.5)
# 355 / 512: n * _LN2_HI_32 is exact in float32 for |n| <= 2**15.
_LN2_HI_32 = np.float32(0.693359375)
_LN2_LO_32 = np.float32(-2.12194440e-4)
_TAYLOR_32 = tuple(np.float32(1.0 / factorial) for factorial in
                   (5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0))
# 2**23 + 127: as for float64, n + 127 lands in the low bits.
_EXPONENT_MAGIC_32 = np.float32(8388735.0)
_MAGIC_BITS_32 = np.float32(8388608.0).view(np.int32)
_ZERO_32 = np.float32(0.0)


@njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def exp_nonpositive_float32(values, count, scratch, bits):
    """:func:`exp_nonpositive` for float32 ``values`` and ``scratch``
    (``bits`` its int32 view): degree-7 Taylor polynomial (truncation below
    6e-9), within 2 ulp of float32."""
    c7, c6, c5, c4, c3, c2, c1, c0 = _TAYLOR_32
    for i in range(count):
        x = max(values[i], _EXP_CUTOFF_32)
        n = np.floor(x * _LOG2E_32 + _HALF_32)
        r = (x - n * _LN2_HI_32) - n * _LN2_LO_32
        p = c7
        p = p * r + c6
        p = p * r + c5
        p = p * r + c4
        p = p * r + c3
        p = p * r + c2
        p = p * r + c1
        p = p * r + c0
        scratch[i] = n + _EXPONENT_MAGIC_32
        values[i] = p if values[i] >= _EXP_CUTOFF_32 else _ZERO_32
    for i in range(count):
        bits[i] = (bits[i] - _MAGIC_BITS_32) << 23
    for i in range(count):
        values[i] *= scratch[i]


def exp_rows(values, count, scratch):
    """exp of values[:count] <= 0 in place, in the values' own precision
    (``scratch``: a work array of the same dtype); compiled per dtype."""


@overload(exp_rows)
def _exp_rows(values, count, scratch):
    if values.dtype == types.float32:
        def exp_float32(values, count, scratch):
            exp_nonpositive_float32(values, count, scratch, scratch.view(np.int32))
        return exp_float32

    def exp_float64(values, count, scratch):
        exp_nonpositive(values, count, scratch, scratch.view(np.int64))
    return exp_float64


_jit = njit(nogil=True, cache=True, fastmath={"contract", "reassoc"}, error_model="numpy")

@_jit
def transpose_rows(X, start, count, out):
    """out[j, i] = X[start + i, j]: a block of rows as columns, so that the
    kernels' loops run along rows.

    In tiles of 8 rows: each write fills a vector (and a cache line of
    float64), and the tile's rows stay in the cache while their features
    are read one by one.  Measured per value against row by row: 14x
    faster at d = 64 (row by row writes to d cache lines per row, more than
    L1 holds), 1.1-2x at d = 2-16; one feature is a plain copy."""
    n_features = X.shape[1]
    if n_features == 1:
        for i in range(count):
            out[0, i] = X[start + i, 0]
        return
    tiled = count - count % 8
    for tile in range(0, tiled, 8):
        for j in range(n_features):
            for i in range(tile, tile + 8):
                out[j, i] = X[start + i, j]
    for j in range(n_features):
        for i in range(tiled, count):
            out[j, i] = X[start + i, j]


@_jit
def _log_likelihood_and_scales(top, total, count, row_weights, use_weights, start,
                               n_components):
    """The block's log-likelihood from each row's largest log-density
    ``top`` and its sum of exponentials ``total`` (in [1, K]), which becomes
    the factor that turns the exponentials into weighted responsibilities."""
    one = np.ones(1, total.dtype)[0]  # 1 in that dtype: keeps divisions in it
    log_likelihood = 0.0
    if use_weights:
        for i in range(count):
            weight = row_weights[start + i]
            log_likelihood += weight * (top[i] + np.log(total[i]))
            total[i] = weight / total[i]
    else:
        # The product of up to 700 / ln K row sums cannot overflow, and one
        # logarithm serves them all.
        rows_per_log = max(1, int(700.0 / np.log(max(n_components, 2))))
        for group in range(0, count, rows_per_log):
            product = 1.0
            for i in range(group, min(group + rows_per_log, count)):
                product *= total[i]
            log_likelihood += np.log(product)
        for i in range(count):
            log_likelihood += top[i]
            total[i] = one / total[i]
    return log_likelihood


@_jit
def _normalise_pair(logits, count, row_weights, use_weights, start, work, resp_weight):
    """:func:`normalise_block` for two components, with one exponential per
    row instead of two: the larger log-density's term is exp(0) = 1.  The
    sums, products and quotients are those of the general case, so the
    results are the same to the last bit."""
    first = logits[0]
    second = logits[1]
    top = work[0]
    total = work[1]
    one = np.ones(1, work.dtype)[0]
    check = 0.0
    for i in range(count):
        top[i] = first[i] if first[i] > second[i] else second[i]
        # As in the general case, a NaN or infinity makes the check non-finite.
        total[i] = -abs(first[i] - second[i])
        check += total[i]
    if not np.isfinite(check):
        return np.nan
    exp_rows(total, count, work[2])
    # total holds the smaller term; the row sums, 1 + it, go in the scratch row.
    sums = work[2]
    for i in range(count):
        sums[i] = one + total[i]
    log_likelihood = _log_likelihood_and_scales(top, sums, count, row_weights, use_weights,
                                                start, 2)
    weight_first = 0.0
    weight_second = 0.0
    for i in range(count):
        larger = sums[i]
        smaller = total[i] * sums[i]
        first_is_top = first[i] >= second[i]
        first[i] = larger if first_is_top else smaller
        second[i] = smaller if first_is_top else larger
        weight_first += first[i]
        weight_second += second[i]
    resp_weight[0] += weight_first
    resp_weight[1] += weight_second
    return log_likelihood


@_jit
def row_maxima(logits, count, top):
    """top[i] = the largest of a block's log-densities (K, rows) in row i."""
    for i in range(count):
        top[i] = logits[0, i]
    for k in range(1, logits.shape[0]):
        row = logits[k]
        for i in range(count):
            top[i] = row[i] if row[i] > top[i] else top[i]


@_jit
def normalise_block(logits, count, row_weights, use_weights, start, work, resp_weight):
    """Turn a block's log-densities (K, rows) into weighted responsibilities
    in place, add each component's sum of them to ``resp_weight`` and return
    the block's log-likelihood: NaN when a log-density is not finite (a point
    beyond floating-point range; the block is then left unusable).
    ``work`` is a (3, rows) scratch array of logits' dtype, in which the
    responsibilities and each row's log-sum-exp are computed (float32: to
    about 1e-7); the log-likelihood adds up in float64."""
    n_components = logits.shape[0]
    if n_components == 2:
        return _normalise_pair(logits, count, row_weights, use_weights, start, work,
                               resp_weight)
    top = work[0]
    total = work[1]
    scratch = work[2]
    row_maxima(logits, count, top)
    # A NaN or infinity among the log-densities makes this sum non-finite
    # (so would an overflow of the sum: a false alarm that only sends the
    # chunk to the NumPy path).
    check = 0.0
    for k in range(n_components):
        row = logits[k]
        for i in range(count):
            row[i] -= top[i]
            check += row[i]
    if not np.isfinite(check):
        return np.nan
    for i in range(count):
        total[i] = 0.0
    for k in range(n_components):
        row = logits[k]
        exp_rows(row, count, scratch)
        for i in range(count):
            total[i] += row[i]
    log_likelihood = _log_likelihood_and_scales(top, total, count, row_weights, use_weights,
                                                start, n_components)
    for k in range(n_components):
        row = logits[k]
        weight = 0.0
        for i in range(count):
            row[i] *= total[i]
            weight += row[i]
        resp_weight[k] += weight
    return log_likelihood


@_jit
def scaled_e_step(X, row_weights, use_weights, means, scale, const,
                  resp_weight, first, second):
    """Diagonal (and spherical, with ``scale`` repeated over features)
    covariances; ``scale`` = 1 / standard deviation, (K, d).  Adds N_k,
    sum r (x - mu_k) and sum r (x - mu_k)**2 to the outputs; returns
    (log-likelihood, whether a row was beyond range)."""
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    # As many rows as keep the block's arrays within the L1 cache (48 KB
    # here), from 256 to 1024: with one feature and two components, 1024
    # rows ran 22% faster than 256 (fewer passes' set-up per row).
    block = max(BLOCK_ROWS, min(4 * BLOCK_ROWS,
                                L1_BYTES // ((n_features + n_components + 3) * 8)))
    rows_t = np.empty((n_features, block))
    logits = np.empty((n_components, block))
    work = np.empty((3, block))
    log_likelihood = 0.0
    touched = 0.0
    for start in range(0, n_rows, block):
        count = min(block, n_rows - start)
        # One read per cache line of the next block: its rows are on their
        # way from memory while this one computes (measured on 10,000,000
        # rows of one feature: 15% faster; the prefetcher alone lagged).
        ahead = start + block
        for i in range(ahead, min(ahead + block, n_rows), max(1, 8 // n_features)):
            touched += X[i, 0]
        transpose_rows(X, start, count, rows_t)
        for k in range(n_components):
            # log N = const - 1/2 sum_j (s_j (x_j - mu_j))^2, one pass per feature.
            row = logits[k]
            c = const[k]
            for i in range(count):
                row[i] = c
            for j in range(n_features):
                mean = means[k, j]
                half_precision = 0.5 * scale[k, j] * scale[k, j]
                column = rows_t[j]
                for i in range(count):
                    delta = column[i] - mean
                    row[i] -= half_precision * delta * delta
        # A NaN (a row beyond range) stays NaN to the end: the caller then
        # discards these statistics.
        log_likelihood += normalise_block(logits, count, row_weights, use_weights, start,
                                          work, resp_weight)
        for k in range(n_components):
            row = logits[k]
            for j in range(n_features):
                mean = means[k, j]
                column = rows_t[j]
                moment1 = 0.0
                moment2 = 0.0
                for i in range(count):
                    delta = column[i] - mean
                    weighted = row[i] * delta
                    moment1 += weighted
                    moment2 += weighted * delta
                first[k, j] += moment1
                second[k, j] += moment2
    # Keeps the reads ahead from being optimised away (the sum is never
    # this value in practice, and adding 0 changes nothing if it is).
    if touched == 1.2345e-300:
        log_likelihood += 0.0
    return log_likelihood, np.isnan(log_likelihood)

@_jit
def squared_whitened(residual, count, prec_chol, whitened, out):
    """out[i] = |r_i P|^2 for the first ``count`` residuals r_i (the columns
    of ``residual``, (d, rows)) and one upper triangular precision factor P,
    every loop along the rows; ``whitened`` is a scratch row."""
    n_features = residual.shape[0]
    for i in range(count):
        out[i] = 0.0
    for j in range(n_features):
        for i in range(count):
            whitened[i] = 0.0
        for a in range(j + 1):
            factor = prec_chol[a, j]
            column = residual[a]
            for i in range(count):
                whitened[i] += column[i] * factor
        for i in range(count):
            out[i] += whitened[i] * whitened[i]


@_jit
def triangular_e_step(X, row_weights, use_weights, means, prec_chol, const,
                      resp_weight, first, second):
    """Full (and tied, with ``prec_chol`` repeated) covariances for few
    features; ``prec_chol`` (K, d, d) upper triangular.  Adds N_k,
    sum r (x - mu_k) and the upper triangle of sum r (x - mu_k)(x -
    mu_k)^T to the outputs; returns (log-likelihood, beyond range)."""
    n_rows, n_features = X.shape
    n_components = means.shape[0]
    block = BLOCK_ROWS
    rows_t = np.empty((n_features, block))
    centred = np.empty((n_components, n_features, block))
    whitened = np.empty(block)
    logits = np.empty((n_components, block))
    work = np.empty((3, block))
    log_likelihood = 0.0
    for start in range(0, n_rows, block):
        count = min(block, n_rows - start)
        transpose_rows(X, start, count, rows_t)
        for k in range(n_components):
            row = logits[k]
            for j in range(n_features):
                mean = means[k, j]
                column = rows_t[j]
                out = centred[k, j]
                for i in range(count):
                    out[i] = column[i] - mean
            squared_whitened(centred[k], count, prec_chol[k], whitened, row)
            c = const[k]
            for i in range(count):
                row[i] = c - 0.5 * row[i]
        # A NaN (a row beyond range) stays NaN to the end: the caller then
        # discards these statistics.
        log_likelihood += normalise_block(logits, count, row_weights, use_weights, start,
                                          work, resp_weight)
        for k in range(n_components):
            row = logits[k]
            for a in range(n_features):
                column_a = centred[k, a]
                for i in range(count):
                    whitened[i] = row[i] * column_a[i]
                moment1 = 0.0
                for i in range(count):
                    moment1 += whitened[i]
                first[k, a] += moment1
                for b in range(a, n_features):
                    column_b = centred[k, b]
                    moment2 = 0.0
                    for i in range(count):
                        moment2 += whitened[i] * column_b[i]
                    second[k, a, b] += moment2
    return log_likelihood, np.isnan(log_likelihood)



@_jit
def quadratic_e_step(X, shift, theta, bounds, tolerances, means, prec_chol, const, features,
                     values, row_weights, use_weights, smallest, resp_weight, first, second):
    """The whole E-step of full (and tied) covariances for the rows of
    ``X``, block by block: a block's quadratic features
    (:func:`quadratic_features`) times ``theta`` (K, P', zero beyond the P
    terms, P' a multiple of 4; :func:`coefficients_times_features`) give
    its log-densities, :func:`normalise_block` its
    responsibilities, and :func:`centred_moments` adds its statistics to
    ``first`` and ``second`` while the block is still in the cache.
    ``features`` and ``values`` are flat buffers of X's dtype whose length,
    over P' and over K, is the rows per block.  Adds each component's sum of
    responsibilities to ``resp_weight`` and returns (log-likelihood, rows
    whose log-densities were recomputed about each mean); the
    log-likelihood is NaN for a row beyond range (the statistics are then
    unusable).

    The expansion about the centre ``shift`` rounds each term, and its
    terms grow with a row's distance from the centre in units of a
    component's spread, not with its distance from that component: a row
    far from the centre but near a component (an outlier that a broad
    component owns, a cluster far from the others) can lose every digit.
    :func:`flag_inexact_rows` bounds that rounding per row and component
    from ``bounds`` ((3, K), see its docstring) and ``tolerances``; the
    rows it flags get their log-densities again from residuals about each
    mean (:func:`exact_log_densities`: ``means`` (K, d) and ``prec_chol``
    (K, d, d) upper triangular, float64; ``const`` the log-constants), as
    the NumPy path computes them.

    One call per chunk, with the GIL released throughout (from Python the
    steps of each block took the GIL six times, and two threads waiting for
    each other's hand-over lost a fifth of float32's time), and no
    responsibilities kept beyond a block: the working set is the two
    buffers, whatever the chunk's length.

    Responsibilities below ``smallest`` are taken as 0.  The caller passes
    the square root of the least normal number of X's dtype (float32:
    1e-19, next to a row's largest responsibility of at least 1 / K):
    products of smaller ones with residuals would be subnormal numbers,
    each a slow microcode path of the CPU (measured: float32 moments of a
    converged fit 1.4x slower)."""
    n_rows, n_features = X.shape
    n_components, padded_terms = theta.shape
    n_terms = n_features * (n_features + 1) // 2 + n_features + 1
    block = min(features.size // padded_terms, values.size // n_components)
    work = np.empty((3, block), values.dtype)
    padded = second.shape[1]
    shifted = np.empty((n_features, block), X.dtype)
    centred = np.zeros((padded, block))
    weighted = np.zeros((padded, block))
    rows_t = np.empty((n_features, block), X.dtype)
    norms = np.empty(block)
    flagged = np.empty(block, np.int64)
    gathered = np.empty((n_features, block))
    residual = np.empty((n_features, block))
    whitened = np.empty(block)
    log_likelihood = 0.0
    recomputed = 0
    for start in range(0, n_rows, block):
        count = min(block, n_rows - start)
        # Transposed once: the features and the moments read the same columns.
        transpose_rows(X, start, count, rows_t)
        part = features[:padded_terms * count].reshape((padded_terms, count))
        quadratic_features(rows_t, count, shift, shifted, part[:n_terms])
        part[n_terms:] = 0.0
        resp = values[:n_components * count].reshape((n_components, count))
        coefficients_times_features(theta, part, resp, count)
        n_flagged = flag_inexact_rows(resp, shifted, count, bounds, tolerances, norms,
                                      work[0], flagged)
        if n_flagged:
            exact_log_densities(rows_t, flagged, n_flagged, means, prec_chol, const,
                                gathered, residual, whitened, norms, resp)
        recomputed += n_flagged
        log_likelihood += normalise_block(resp, count, row_weights, use_weights, start,
                                          work, resp_weight)
        if np.isnan(log_likelihood):
            return log_likelihood, recomputed
        for k in range(n_components):
            for i in range(count):
                if resp[k, i] < smallest:
                    resp[k, i] = 0.0
        centred_moments(rows_t, count, means, resp, first, second, centred, weighted)
    return log_likelihood, recomputed


@_jit
def flag_inexact_rows(logits, shifted, count, bounds, tolerances, norms, top, flagged):
    """Write into ``flagged`` the rows of a block whose quadratic-form
    log-densities may be off by more than the accuracy asked; returns how
    many.

    The terms of component k's expansion at a row x' (= x - centre, the
    columns of ``shifted``) add up in absolute value to at most
    ``a_k |x'|^2 + b_k |x'| + c_k`` (``bounds`` rows a, b, c: half the
    largest absolute row sum of the precision, the norm of the linear
    coefficients, the constant's magnitude), and their rounding is at most
    ``tolerances[0]`` times that.  A row is flagged where, for a component
    that could matter (its log-density, plus that bound, within
    ``tolerances[2]`` of the row's largest), the bound exceeds
    ``tolerances[1]`` times the log-density's magnitude (at least 1)."""
    n_components = logits.shape[0]
    n_features = shifted.shape[0]
    rounding, accuracy, gap = tolerances[0], tolerances[1], tolerances[2]
    for i in range(count):
        norms[i] = 0.0
    for j in range(n_features):
        column = shifted[j]
        for i in range(count):
            norms[i] += float(column[i]) * float(column[i])
    row_maxima(logits, count, top)
    # Components outer, rows inner and no branches: the loops vectorise
    # (row by row, the check cost a third of case C's E-step).  ``top``
    # becomes the threshold, ``norms`` the rows' flags.
    lengths = np.empty(count)
    for i in range(count):
        lengths[i] = np.sqrt(norms[i])
        top[i] -= gap
    for k in range(n_components):
        a, b, c = rounding * bounds[0, k], rounding * bounds[1, k], rounding * bounds[2, k]
        row = logits[k]
        for i in range(count):
            bound = a * norms[i] + b * lengths[i] + c
            value = float(row[i])
            # NaN (a row beyond range) fails every comparison: not flagged,
            # and normalise_block reports it.
            inexact = (bound > accuracy * max(1.0, abs(value))) & (value + bound >= top[i])
            top[i] = top[i] if not inexact else np.inf
    n_flagged = 0
    for i in range(count):
        if top[i] == np.inf:
            flagged[n_flagged] = i
            n_flagged += 1
    return n_flagged


@_jit
def exact_log_densities(rows_t, flagged, n_flagged, means, prec_chol, const, gathered,
                        residual, whitened, squared, logits):
    """logits[:, i] = each component's log-density (plus its log weight) for
    the rows i in ``flagged[:n_flagged]`` of the transposed block, from the
    residuals about each mean in float64, whitened by the upper triangular
    ``prec_chol``.  The flagged rows are gathered into ``gathered`` (d,
    rows) and every loop runs along them (measured at d = 32, K = 16: 1.5 us
    a row, against 4.5 row by row); ``residual`` (d, rows), ``whitened`` and
    ``squared`` (rows) are float64 scratch arrays."""
    n_components, n_features = means.shape
    for a in range(n_features):
        out = gathered[a]
        column = rows_t[a]
        for f in range(n_flagged):
            out[f] = float(column[flagged[f]])
    for k in range(n_components):
        for a in range(n_features):
            mean = means[k, a]
            source = gathered[a]
            out = residual[a]
            for f in range(n_flagged):
                out[f] = source[f] - mean
        squared_whitened(residual, n_flagged, prec_chol[k], whitened, squared)
        c = const[k]
        row = logits[k]
        for f in range(n_flagged):
            row[flagged[f]] = c - 0.5 * squared[f]


@_jit
def coefficients_times_features(theta, features, out, count):
    """out = theta @ features for the first ``count`` columns; theta (K, P)
    with P a multiple of 4.

    Four components times four terms per pass along the rows: each feature
    value loaded serves four products, and the sixteen coefficients stay in
    registers.  Measured single-threaded on case C's shapes against BLAS
    (OpenBLAS 0.3.30/0.3.31, whose kernels for a product this skinny stall):
    float64 55 GFLOP/s against 30, float32 106 against 40-70."""
    n_components, n_terms = theta.shape
    grouped = n_components - n_components % 4
    for k in range(0, grouped, 4):
        out0 = out[k]
        out1 = out[k + 1]
        out2 = out[k + 2]
        out3 = out[k + 3]
        for i in range(count):
            out0[i] = 0.0
            out1[i] = 0.0
            out2[i] = 0.0
            out3[i] = 0.0
        for p in range(0, n_terms, 4):
            f0 = features[p]
            f1 = features[p + 1]
            f2 = features[p + 2]
            f3 = features[p + 3]
            a0, a1, a2, a3 = theta[k, p], theta[k, p + 1], theta[k, p + 2], theta[k, p + 3]
            b0, b1, b2, b3 = (theta[k + 1, p], theta[k + 1, p + 1], theta[k + 1, p + 2],
                              theta[k + 1, p + 3])
            c0, c1, c2, c3 = (theta[k + 2, p], theta[k + 2, p + 1], theta[k + 2, p + 2],
                              theta[k + 2, p + 3])
            d0, d1, d2, d3 = (theta[k + 3, p], theta[k + 3, p + 1], theta[k + 3, p + 2],
                              theta[k + 3, p + 3])
            for i in range(count):
                x0 = f0[i]
                x1 = f1[i]
                x2 = f2[i]
                x3 = f3[i]
                out0[i] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                out1[i] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
                out2[i] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
                out3[i] += d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3
    for k in range(grouped, n_components):
        row = out[k]
        for i in range(count):
            row[i] = 0.0
        for p in range(0, n_terms, 4):
            f0 = features[p]
            f1 = features[p + 1]
            f2 = features[p + 2]
            f3 = features[p + 3]
            a0, a1, a2, a3 = theta[k, p], theta[k, p + 1], theta[k, p + 2], theta[k, p + 3]
            for i in range(count):
                row[i] += a0 * f0[i] + a1 * f1[i] + a2 * f2[i] + a3 * f3[i]


@_jit
def quadratic_features(columns, count, shift, shifted, features):
    """Write, for the first ``count`` rows x (the columns of ``columns``,
    a block transposed to (d, rows)) and x' = x - shift, the products
    x'_a x'_b (a <= b, row by row of the upper triangle), then x', then 1,
    as the columns of ``features`` ((d (d + 1) / 2 + d + 1, rows), X's
    dtype).  x' is formed in float64 and rounded once to X's dtype (in
    ``shifted``, a (d, rows) scratch array); the products are then exact to
    that dtype's rounding."""
    n_features = columns.shape[0]
    for j in range(n_features):
        for i in range(count):
            shifted[j, i] = columns[j, i] - shift[j]
    p = 0
    for a in range(n_features):
        column_a = shifted[a, :count]
        for b in range(a, n_features):
            column_b = shifted[b, :count]
            out = features[p, :count]
            for i in range(count):
                out[i] = column_a[i] * column_b[i]
            p += 1
    n_products = p
    for a in range(n_features):
        features[n_products + a, :count] = shifted[a, :count]
    features[n_products + n_features, :count] = 1.0


@_jit
def centred_moments(columns, n_rows, means, resp, first, second, centred, weighted):
    """Add sum_i r_ki (x_i - mu_k) and sum_i r_ki (x_i - mu_k)(x_i -
    mu_k)^T (upper triangle, and some entries just below the diagonal)
    over the first ``n_rows`` rows x (the columns of ``columns``, a block
    transposed to (d, rows), in the data's dtype) to the float64 outputs;
    ``resp`` is (K, rows) in the data's dtype, ``second`` (K, d', d') with
    d' = d rounded up to a multiple of 4.  ``centred`` and ``weighted``
    ((d', rows) or wider, rows d to d' zero) are float64 scratch arrays.

    Residuals about each component's own mean: no cancellation, whatever
    the data's offset.  Everything here is float64, for float32 data too:
    products of float32 numbers are exact in float64, so the second moments
    are positive semi-definite to float64's rounding; in float32 they lose
    every direction in which a component's variance is below float32's
    rounding of its largest, and whether the start of an ill-conditioned
    fit is positive definite then depends on the order of the sums.  Feature
    pairs go in 4 x 2 tiles, so that each value loaded serves several
    products; each tile ends in 8 horizontal sums, which the caller
    amortises by passing blocks of several hundred rows."""
    n_components, n_features = means.shape
    padded = second.shape[1]
    for k in range(n_components):
        r = resp[k]
        for a in range(n_features):
            mean = means[k, a]
            column = columns[a]
            out = centred[a]
            out_weighted = weighted[a]
            for i in range(n_rows):
                out[i] = float(column[i]) - mean
            moment1 = 0.0
            for i in range(n_rows):
                out_weighted[i] = out[i] * float(r[i])
                moment1 += out_weighted[i]
            first[k, a] += moment1
        for a in range(0, padded, 4):
            w0 = weighted[a]
            w1 = weighted[a + 1]
            w2 = weighted[a + 2]
            w3 = weighted[a + 3]
            for b in range(a, padded, 2):
                c0 = centred[b]
                c1 = centred[b + 1]
                s00 = 0.0
                s01 = 0.0
                s10 = 0.0
                s11 = 0.0
                s20 = 0.0
                s21 = 0.0
                s30 = 0.0
                s31 = 0.0
                for i in range(n_rows):
                    x0 = c0[i]
                    x1 = c1[i]
                    s00 += w0[i] * x0
                    s01 += w0[i] * x1
                    s10 += w1[i] * x0
                    s11 += w1[i] * x1
                    s20 += w2[i] * x0
                    s21 += w2[i] * x1
                    s30 += w3[i] * x0
                    s31 += w3[i] * x1
                second[k, a, b] += s00
                second[k, a, b + 1] += s01
                second[k, a + 1, b] += s10
                second[k, a + 1, b + 1] += s11
                second[k, a + 2, b] += s20
                second[k, a + 2, b + 1] += s21
                second[k, a + 3, b] += s30
                second[k, a + 3, b + 1] += s31
