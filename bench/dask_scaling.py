"""Dask's scaling: seconds per EM iteration of a fit of a Dask array with 1
and with 2 worker processes (1 thread each), next to emix in memory with 1
and with 2 threads, on the same data, from the same start, for the same
number of iterations.

    .venv/bin/python bench/dask_scaling.py            # 2,000,000 x 16, K=8, full; ~2-3 min
    .venv/bin/python bench/dask_scaling.py --quick    # 100,000 rows, 1 repeat: a smoke test
    .venv/bin/python bench/dask_scaling.py --n 4000000 --blocks 32 --repeats 5

What is measured, and how (the house rules of bench/README.md):

* **Same work.** The rows are drawn block by block from a seeded mixture
  (block i from its own seed, so the Dask array is generated on the workers,
  never shipped from here, and the in-memory array is the same blocks
  concatenated). Every fit starts from the same ``weights_init``,
  ``means_init``, ``precisions_init`` (equal weights, K random rows of the
  first block as means, that block's covariance for every component) and
  runs exactly ``--iterations`` EM iterations with ``tol=0``.
* **One process per run.** Each configuration runs in a fresh interpreter
  (this script with ``--run``); a Dask run starts its own
  ``LocalCluster(n_workers=w, threads_per_worker=1, processes=True)`` there
  and closes it. Repeats go round the configurations: this shared machine's
  speed drifts over minutes, and a ratio should compare runs made at about
  the same time.
* **Warm-up first.** Each run fits 2,000 rows once before anything is timed
  (emix loading its compiled kernels from numba's cache), on every worker
  too for Dask, then ``gc.collect()``.
* **Seconds per iteration** are the median of the intervals between
  successive calls of the fit's progress callback (one M-step and one E-step
  each; for Dask one ``compute()`` of the per-block E-step tasks, their tree
  sum on the workers and the M-step on the client). What a fit does once
  (validation, persisting the Dask array, the first E-step, the final one)
  lies outside them. The table shows the median over repeats of each run's
  median, and the range of the runs' medians.
* **One thread means one.** The in-memory 1-thread fit runs with BLAS held
  to one thread (threadpoolctl), as the 2-thread fit's chunks are by emix
  and Dask's workers are by their nannies (``OMP_NUM_THREADS=1`` ...).
* **Agreement.** Every run's ``weights_``, ``means_`` and ``covariances_``
  must equal the first in-memory 1-thread run's within 1e-10 relative
  (max |difference| / max |reference| per array); the script exits non-zero
  otherwise.

The machine may be shared: the 1-minute load average is printed before and
after, and speed-ups above 1.0 need the second core to be free.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
AGREEMENT_RTOL = 1e-10
WARMUP_ROWS = 2_000
#: (back-end, workers or threads), in the order each repeat runs them.
CONFIGS = (("memory", 1), ("memory", 2), ("dask", 1), ("dask", 2))
LABELS = {("memory", 1): "in memory, 1 thread", ("memory", 2): "in memory, 2 threads",
          ("dask", 1): "Dask, 1 worker x 1 thread", ("dask", 2): "Dask, 2 workers x 1 thread"}


@dataclass(frozen=True)
class Spec:
    n: int
    d: int
    K: int
    covariance_type: str
    blocks: int
    iterations: int
    seed: int = 17

    def block_rows(self) -> list[int]:
        base, extra = divmod(self.n, self.blocks)
        return [base + (i < extra) for i in range(self.blocks)]


# ----------------------------------------------------------------------- the data


def make_block(spec: Spec, index: int) -> np.ndarray:
    """Block ``index``: rows of a K-component mixture with well separated,
    unequal components (shared by every block), drawn from the block's own
    seed."""
    shared = np.random.default_rng(spec.seed)
    centres = shared.normal(scale=4.0, size=(spec.K, spec.d))
    scales = shared.uniform(0.5, 2.0, size=(spec.K, spec.d))
    rng = np.random.default_rng([spec.seed, index])
    rows = spec.block_rows()[index]
    labels = rng.integers(spec.K, size=rows)
    X = rng.standard_normal((rows, spec.d))
    X *= scales[labels]
    X += centres[labels]
    return X


def numpy_data(spec: Spec) -> np.ndarray:
    return np.concatenate([make_block(spec, i) for i in range(spec.blocks)])


def dask_data(spec: Spec):
    import dask
    import dask.array as da

    blocks = [da.from_delayed(dask.delayed(make_block)(spec, i), shape=(rows, spec.d),
                              dtype=np.float64)
              for i, rows in enumerate(spec.block_rows())]
    return da.concatenate(blocks, axis=0)


def initial_parameters(spec: Spec) -> dict[str, np.ndarray]:
    first = make_block(spec, 0)
    rng = np.random.default_rng(spec.seed + 1000)
    means = first[rng.choice(first.shape[0], size=spec.K, replace=False)].copy()
    covariance = np.atleast_2d(np.cov(first, rowvar=False))
    precision = np.linalg.inv(covariance)
    variances = np.diag(covariance)
    precisions = {
        "full": np.repeat(precision[None], spec.K, axis=0),
        "tied": precision,
        "diag": np.repeat(1.0 / variances[None], spec.K, axis=0),
        "spherical": np.full(spec.K, 1.0 / variances.mean()),
    }[spec.covariance_type]
    return {"weights_init": np.full(spec.K, 1.0 / spec.K), "means_init": means,
            "precisions_init": precisions}


# ----------------------------------------------------- one run, in its own process


def model(spec: Spec, init: dict, max_iter: int, n_threads: int | None = None):
    from emix import GaussianMixture

    return GaussianMixture(spec.K, covariance_type=spec.covariance_type, tol=0.0,
                           max_iter=max_iter, n_threads=n_threads, **init)


def warm_up(spec: Spec, init: dict) -> float:
    """One small fit (loads emix's compiled kernels); returns its seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(spec, init, 2, n_threads=1).fit(make_block(spec, 0)[:WARMUP_ROWS])
    return time.perf_counter() - start


def timed_fit(spec: Spec, init: dict, X, n_threads: int | None, on_iteration=None):
    """The fit, and the times of its progress callbacks."""
    stamps: list[float] = []

    def progress(state) -> None:
        stamps.append(time.perf_counter())
        if on_iteration is not None:
            on_iteration(state)

    from emix.exceptions import ConvergenceWarning

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = model(spec, init, spec.iterations, n_threads).fit(X, progress=progress)
    total = time.perf_counter() - start
    return fitted, np.diff(stamps).tolist(), total


def run_memory(spec: Spec, init: dict, threads: int) -> tuple:
    from threadpoolctl import threadpool_limits

    X = numpy_data(spec)
    warm_up(spec, init)
    gc.collect()
    if threads == 1:
        with threadpool_limits(limits=1):
            return (*timed_fit(spec, init, X, 1), {})
    return (*timed_fit(spec, init, X, threads), {})


def run_dask(spec: Spec, init: dict, workers: int) -> tuple:
    from distributed import Client, LocalCluster

    X = dask_data(spec)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(workers, timeout=120)
        client.run(warm_up, spec, init)
        warm_up(spec, init)  # the client runs the M-steps
        gc.collect()
        spread: dict = {}

        def count_blocks(state) -> None:
            # Where the persisted blocks lie, once, mid-fit.
            if state.iteration == 1:
                held = client.has_what()
                spread.update({address: sum(isinstance(key, tuple) and key[0] == X.name
                                            for key in keys)
                               for address, keys in held.items()})

        return (*timed_fit(spec, init, X, None, count_blocks), spread)


def run_one(args: argparse.Namespace) -> int:
    spec = Spec(**json.loads(args.spec))
    init = initial_parameters(spec)
    runner = run_memory if args.run == "memory" else run_dask
    fitted, intervals, total, spread = runner(spec, init, args.parallel)
    np.savez(args.params, weights=fitted.weights_, means=fitted.means_,
             covariances=fitted.covariances_)
    print(json.dumps({"intervals": intervals, "seconds_per_iter": statistics.median(intervals),
                      "fit_seconds": total, "n_iter": int(fitted.n_iter_),
                      "blocks_per_worker": sorted(spread.values(), reverse=True)}))
    return 0


# ------------------------------------------------------------------------ the parent


def launch(spec: Spec, config: tuple[str, int], params: Path) -> dict:
    backend, parallel = config
    command = [sys.executable, __file__, "--run", backend, "--parallel", str(parallel),
               "--spec", json.dumps(asdict(spec)), "--params", str(params)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-3:] or ["no output"]}
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["params"] = str(params)
    return result


def relative_difference(params: Path, reference: Path) -> float:
    """Largest of max |a - b| / max |b| over weights, means, covariances."""
    with np.load(params) as a, np.load(reference) as b:
        return max(float(np.max(np.abs(a[name] - b[name])) / np.max(np.abs(b[name])))
                   for name in ("weights", "means", "covariances"))


def summarise(runs: list[dict], reference: Path, iterations: int) -> dict:
    errors = [run["error"] for run in runs if "error" in run]
    if errors:
        return {"error": errors[0]}
    medians = [run["seconds_per_iter"] for run in runs]
    return {"seconds_per_iter": statistics.median(medians), "range": [min(medians),
                                                                      max(medians)],
            "rel_diff": max(relative_difference(Path(run["params"]), reference)
                            for run in runs),
            "n_iter_exact": all(run["n_iter"] == iterations for run in runs),
            "blocks_per_worker": runs[0]["blocks_per_worker"], "runs": runs}


def agrees(result: dict) -> bool:
    return ("error" not in result and result["n_iter_exact"]
            and result["rel_diff"] <= AGREEMENT_RTOL)


def ratio(results: dict, slower: tuple, faster: tuple) -> float | None:
    a, b = results[slower].get("seconds_per_iter"), results[faster].get("seconds_per_iter")
    return a / b if a and b else None


def table_lines(spec: Spec, results: dict, repeats: int) -> list[str]:
    header = (f"{'configuration':<27} {'s/iter':>8} {'range over runs':>17} "
              f"{'blocks/worker*':>14} {'rel.diff':>9} ok")
    lines = [f"n={spec.n:,} d={spec.d} K={spec.K} {spec.covariance_type}, "
             f"{spec.blocks} blocks of ~{spec.n // spec.blocks:,} rows, "
             f"{spec.iterations} iterations, {repeats} repeat(s)", "", header,
             "-" * len(header)]
    for config in CONFIGS:
        result = results[config]
        if "error" in result:
            lines.append(f"{LABELS[config]:<27} failed: {result['error']}")
            continue
        low, high = result["range"]
        spread = "/".join(map(str, result["blocks_per_worker"])) or "-"
        lines.append(f"{LABELS[config]:<27} {result['seconds_per_iter']:8.4f} "
                     f"{f'{low:.4f}-{high:.4f}':>17} {spread:>14} "
                     f"{result['rel_diff']:9.1e} {'yes' if agrees(result) else 'NO'}")
    lines.append(f"* copies of the {spec.blocks} persisted blocks each worker held at "
                 "iteration 1 (a block is copied where a task that needs it runs)")
    lines.append("")
    named = [
        ("Dask speed-up, 2 workers over 1", ratio(results, ("dask", 1), ("dask", 2))),
        ("in-memory speed-up, 2 threads over 1", ratio(results, ("memory", 1), ("memory", 2))),
        ("Dask overhead, 1 worker / 1 thread in memory",
         ratio(results, ("dask", 1), ("memory", 1))),
        ("Dask overhead, 2 workers / 2 threads in memory",
         ratio(results, ("dask", 2), ("memory", 2))),
    ]
    for name, value in named:
        lines.append(f"{name:<47} {'-' if value is None else f'{value:.2f}x'}")
    for workers in (1, 2):
        dask_s = results[("dask", workers)].get("seconds_per_iter")
        memory_s = results[("memory", workers)].get("seconds_per_iter")
        if dask_s and memory_s:
            lines.append(f"Dask's extra seconds per iteration, {workers} worker(s): "
                         f"{dask_s - memory_s:+.4f}")
    return lines


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="100,000 rows in 8 blocks, 4 iterations, 1 repeat: a smoke test "
                             "of agreement (times are noise)")
    parser.add_argument("--n", type=int, help="rows (default 2,000,000)")
    parser.add_argument("--d", type=int, default=16, help="features (default 16)")
    parser.add_argument("--k", type=int, default=8, help="components (default 8)")
    parser.add_argument("--covariance-type", default="full",
                        choices=("full", "tied", "diag", "spherical"))
    parser.add_argument("--blocks", type=int, help="Dask blocks of rows (default 16)")
    parser.add_argument("--iterations", type=int, help="EM iterations per fit (default 8)")
    parser.add_argument("--repeats", type=int, help="runs per configuration (median); "
                        "default 3, or 1 with --quick")
    parser.add_argument("--out", type=Path, help="JSON file; default "
                        "bench/results/dask-<timestamp>.json")
    # one run, in a process of its own (used by the parent)
    parser.add_argument("--run", choices=("memory", "dask"), help=argparse.SUPPRESS)
    parser.add_argument("--parallel", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--params", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is None:
        quick = args.quick
        args.n = args.n or (100_000 if quick else 2_000_000)
        args.blocks = args.blocks or (8 if quick else 16)
        args.iterations = args.iterations or (4 if quick else 8)
        args.repeats = args.repeats or (1 if quick else 3)
        if args.iterations < 2:
            parser.error("--iterations must be at least 2 (times are intervals between them)")
        if not 1 <= args.blocks <= args.n:
            parser.error("--blocks must be between 1 and --n")
    return args


def main() -> int:
    args = parse_arguments()
    if args.run is not None:
        return run_one(args)
    spec = Spec(args.n, args.d, args.k, args.covariance_type, args.blocks, args.iterations)
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start", flush=True)
    started = time.perf_counter()
    runs: dict = {config: [] for config in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="emix-dask-bench-") as workdir:
        for repeat in range(args.repeats):
            for config in CONFIGS:
                params = Path(workdir) / f"{config[0]}-{config[1]}-{repeat}.npz"
                run = launch(spec, config, params)
                runs[config].append(run)
                shown = run.get("seconds_per_iter")
                shown = f"failed: {run['error']}" if shown is None else f"{shown:.4f} s/iter"
                print(f"  repeat {repeat + 1}: {LABELS[config]:<27} {shown}", flush=True)
        reference = Path(runs[CONFIGS[0]][0].get("params", workdir + "/missing.npz"))
        results = {config: summarise(config_runs, reference, spec.iterations)
                   if reference.exists() else {"error": "no reference run"}
                   for config, config_runs in runs.items()}
    lines = table_lines(spec, results, args.repeats)
    print("\n" + "\n".join(lines))
    all_agree = all(agrees(result) for result in results.values())
    elapsed = time.perf_counter() - started
    print(f"\nagreement (rtol {AGREEMENT_RTOL:g}): "
          f"{'all configurations agree' if all_agree else 'FAILED'}; "
          f"load average {os.getloadavg()[0]:.2f} at end; {elapsed:.0f} s in all")
    output = args.out or BENCH_DIR / "results" / (
        f"dask-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "spec": asdict(spec), "quick": args.quick, "repeats": args.repeats,
        "agreement_rtol": AGREEMENT_RTOL, "all_agree": all_agree, "seconds": elapsed,
        "results": {LABELS[config]: result for config, result in results.items()}},
        indent=2, default=str))
    print(f"results in {output}")
    return 0 if all_agree else 1


if __name__ == "__main__":
    sys.exit(main())
