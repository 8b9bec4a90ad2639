"""What this machine could do at best: a lower bound on one EM iteration.

One iteration must at least read X once (memory bandwidth) and do its
matrix work plus one exp per (row, component) (GEMM and exp rates). The
rates are measured here, in a few short loops, rather than taken from a
data sheet: what matters is what numpy reaches on this machine, now.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

BANDWIDTH_BYTES = 512 * 2**20
GEMM_SIZE = 2000
EXP_VALUES = 10_000_000
REPEATS = 3


def best_time(operation, repeats: int = REPEATS) -> float:
    """Best of a few runs: the floor is about what the machine can do, and
    noise only ever adds time."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        operation()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_rates() -> dict[str, float]:
    """Memory bandwidth (bytes/s), GEMM rate (flop/s) and exp rate (values/s)."""
    rng = np.random.default_rng(0)
    big = np.ones(BANDWIDTH_BYTES // 8)
    bandwidth = big.nbytes / best_time(big.sum)
    del big
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE))
    b = rng.standard_normal((GEMM_SIZE, GEMM_SIZE))
    gemm = 2.0 * GEMM_SIZE**3 / best_time(lambda: a @ b)
    values = rng.uniform(-50.0, 0.0, EXP_VALUES)
    out = np.empty_like(values)
    exp_rate = EXP_VALUES / best_time(lambda: np.exp(values, out=out))
    return {"bandwidth_bytes_per_s": bandwidth, "gemm_flops_per_s": gemm,
            "exp_values_per_s": exp_rate}


def matrix_flops(n: int, d: int, K: int, covariance_type: str) -> float:
    """Multiply-adds of the E and M steps, counted as 2 flops each."""
    if d == 1:
        return 4.0 * n * K
    if covariance_type == "diag":
        return 4.0 * n * K * d
    return 4.0 * n * K * d * d


def iteration_floor(rates: dict[str, float], n: int, d: int, K: int,
                    covariance_type: str) -> float:
    """Seconds: the larger of reading X once and computing the iteration."""
    read_seconds = 8.0 * n * d / rates["bandwidth_bytes_per_s"]
    compute_seconds = (matrix_flops(n, d, K, covariance_type) / rates["gemm_flops_per_s"]
                       + n * K / rates["exp_values_per_s"])
    return max(read_seconds, compute_seconds)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_description() -> list[dict] | str:
    """threadpoolctl names the BLAS and its threads; numpy's config is the
    fallback when it is not installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = np.show_config(mode="dicts")
        return str(config.get("Build Dependencies", {}).get("blas", "unknown"))
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture")
    return [{key: pool.get(key) for key in keep} for pool in threadpool_info()]


def machine_description() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas_description()}
