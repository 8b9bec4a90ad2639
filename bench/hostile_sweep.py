"""Hostile-data sweep: thousands of seeded cases of tests/hostile.py, fitted on
both E-step paths, and a table of outcomes per path. See bench/README.md.

    .venv/bin/python bench/hostile_sweep.py --cases 3000 [--start SEED] [--jobs 2]
                                            [--paths compiled,numpy] [--out FILE]
    .venv/bin/python bench/hostile_sweep.py --seed N --verbose   # one case, in detail
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import json
import multiprocessing
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
# The generator and the invariants live with the tests, which run the same
# checks on a few hundred of these seeds.
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

import hostile  # noqa: E402

#: Seeds per task handed to a worker process: enough that the pool's
#: overhead is small, few enough that the two workers finish together.
SEEDS_PER_TASK = 25
#: Seeds listed under each failing category (the worst first).
WORST_SHOWN = 5
#: Fits reported as diverged on any data (a failure only where the data are
#: well-conditioned; counted for the record).
DIVERGED_ANY = "diverged (any data; not a failure)"
#: A case whose invariant checks themselves crashed (a bug of the checker).
CHECKER_CRASHED = "checker crashed"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3000, help="seeds to run (default 3000)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--paths", default=",".join(hostile.PATHS),
                        help="comma-separated E-step paths: compiled,numpy (path agreement "
                        "needs both)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, help="run this one case and print its report")
    parser.add_argument("--verbose", action="store_true",
                        help="with --seed: the data's and each fit's details too")
    parser.add_argument("--out", type=Path, help="JSON file; default "
                        "bench/results/hostile_<timestamp>.json")
    args = parser.parse_args()
    paths = tuple(args.paths.split(","))
    unknown = set(paths) - set(hostile.PATHS)
    if unknown or len(set(paths)) != len(paths):
        parser.error(f"--paths: choose from {','.join(hostile.PATHS)}, each once")
    args.paths = paths
    if args.cases < 1 or args.jobs < 1:
        parser.error("--cases and --jobs must be at least 1")
    return args


def record(seed: int, paths: tuple[str, ...]) -> dict:
    """One case's outcome as plain data (what a worker sends back)."""
    started = time.perf_counter()
    case = hostile.hostile_case(seed)
    try:
        report = hostile.check_case(case, paths)
    except Exception:  # one broken case must not stop the sweep
        return {"seed": seed, "description": case.description, "well_conditioned": False,
                "not_well_conditioned": "unknown", "outcomes": {}, "errors": {},
                "error_types": {}, "measures": {}, "paths_disagree": None, "states": {},
                "failures": [{"category": CHECKER_CRASHED, "path": "both",
                              "detail": traceback.format_exc(limit=3), "excess": 0.0}],
                "seconds": time.perf_counter() - started}
    return {
        "seed": seed,
        "description": case.description,
        "well_conditioned": report.well_conditioned,
        "not_well_conditioned": report.not_well_conditioned,
        "outcomes": report.outcomes,
        "errors": report.errors,
        "error_types": {path: message.split(":")[0] for path, message in report.errors.items()},
        "measures": report.measures,
        "paths_disagree": report.paths_disagree,
        "states": report.states,
        "failures": [{"category": f.category, "path": f.path, "detail": f.detail,
                      "excess": f.excess} for f in report.failures],
        "seconds": time.perf_counter() - started,
    }


def run_seeds(seeds: list[int], paths: tuple[str, ...]) -> list[dict]:
    return [record(seed, paths) for seed in seeds]


def sweep(seeds: list[int], paths: tuple[str, ...], jobs: int) -> list[dict]:
    tasks = [seeds[i:i + SEEDS_PER_TASK] for i in range(0, len(seeds), SEEDS_PER_TASK)]
    if jobs == 1:
        return [r for task in tasks for r in run_seeds(task, paths)]
    records: list[dict] = []
    # spawn: each worker loads emix and its compiled kernels itself, with no
    # state inherited from this process.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(run_seeds, task, paths) for task in tasks]
        for future in concurrent.futures.as_completed(futures):
            records += future.result()
            print(f"\r{len(records)}/{len(seeds)} cases", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return sorted(records, key=lambda r: r["seed"])


def table(records: list[dict], paths: tuple[str, ...]) -> tuple[list[list[str]], dict]:
    """Counts per outcome and failure category, per path (a case counts once
    per category and path)."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        for path, outcome in r["outcomes"].items():
            label = outcome
            if outcome != "ok":
                label = f"{outcome}: {r['error_types'][path]}"
            counts[label][path] += 1
        seen = {(f["category"], f["path"]) for f in r["failures"]}
        for category, path in seen:
            if category == hostile.UNCLEAR_EXCEPTION:
                continue  # counted by type among the outcomes
            for p in (paths if path == "both" else (path,)):
                counts[category][p] += 1
        for path, state in r["states"].items():
            if state == "diverged":
                counts[DIVERGED_ANY][path] += 1
    rows = [["outcome / failure", *paths]]
    ordered = sorted(k for k in counts if k == "ok" or k.startswith("clear"))
    ordered += sorted(k for k in counts if k.startswith(hostile.UNCLEAR_EXCEPTION))
    ordered += [c for c in (*hostile.FAILURES, DIVERGED_ANY, CHECKER_CRASHED)
                if c in counts and c not in (hostile.UNCLEAR_EXCEPTION,
                                             hostile.PATHS_DISAGREE_WELL_CONDITIONED)]
    for label in ordered:
        rows.append([label, *(str(counts[label][p]) for p in paths)])
    well = [r for r in records if r["well_conditioned"]]
    summary = {
        "cases": len(records),
        "well_conditioned": len(well),
        "paths_disagree_well_conditioned": sum(bool(r["paths_disagree"]) for r in well),
        "paths_disagree_all": sum(bool(r["paths_disagree"]) for r in records),
        "counts": {label: dict(counts[label]) for label in ordered},
    }
    return rows, summary


def float32_distribution(records: list[dict]) -> dict:
    """The measured C of invariant d (|error| / (eps32 d (|log p| + d))) over
    float32 cases: the worst row of each case, and each case's 99th
    percentile row; also for cases whose data are otherwise well-conditioned."""
    out = {}
    for name, keep in (("all float32 cases", lambda r: True),
                       ("otherwise well-conditioned", lambda r: r["not_well_conditioned"]
                        == "float32 data")):
        worst, p99 = [], []
        for r in records:
            if not keep(r):
                continue
            for measures in r["measures"].values():
                if "float32_row_C_max" in measures:
                    worst.append(measures["float32_row_C_max"])
                    p99.append(measures["float32_row_C_p99"])
        if worst:
            out[name] = {"fits": len(worst),
                         "max of rows' max": float(np.max(worst)),
                         "99th pct of rows' max": float(np.percentile(worst, 99)),
                         "median of rows' max": float(np.median(worst)),
                         "max of rows' 99th pct": float(np.max(p99)),
                         "bound C": hostile.FLOAT32_ROW_C}
    return out


def worst_seeds(records: list[dict]) -> dict[str, list[dict]]:
    """Per failure category (unclear exceptions by type), the worst few
    seeds: the largest excess over the bound, else the first seeds."""
    found: dict[str, list[tuple[float, int, str, str]]] = collections.defaultdict(list)
    for r in records:
        for f in r["failures"]:
            category = f["category"]
            if category == hostile.UNCLEAR_EXCEPTION:
                category += ": " + f["detail"].split(":")[0].split(" raised ")[-1]
            found[category].append((-f["excess"], r["seed"], f["path"], f["detail"]))
    shown = {}
    for category, items in sorted(found.items()):
        items.sort()
        seeds_seen: list[dict] = []
        for excess, seed, path, detail in items:
            if any(s["seed"] == seed for s in seeds_seen):
                continue
            seeds_seen.append({"seed": seed, "path": path, "excess": -excess,
                               "detail": detail[:300]})
            if len(seeds_seen) == WORST_SHOWN:
                break
        shown[category] = seeds_seen
    return shown


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                        for j, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_verbose(seed: int, paths: tuple[str, ...]) -> int:
    case = hostile.hostile_case(seed)
    X = case.X
    print(case.description)
    print(f"knobs: {', '.join(case.knobs) or 'none'}")
    print(f"settings: {case.settings}")
    with np.errstate(all="ignore"):
        print(f"X: {X.shape} {X.dtype}, |x| in [{np.abs(X).min():.3g}, {np.abs(X).max():.3g}], "
              f"{np.unique(X, axis=0).shape[0]} distinct rows; weights: "
              + ("none" if case.sample_weight is None else
                 f"{(case.sample_weight == 0).sum()} zeros, max {case.sample_weight.max():.3g}"))
    report = hostile.check_case(case, paths)
    print(report.summary())
    for path in paths:
        fit = hostile.fit_case(case, path)
        if fit.model is None:
            print(f"{path}: raised {type(fit.error).__name__}; remedy "
                  f"{getattr(fit.error, 'remedy', None)}")
            continue
        m = fit.model
        collapses = [(c.iteration, c.component, c.reason, c.action) for c in m.collapses_]
        print(f"{path}: {m.convergence_state_} after {m.n_iter_} iterations, lower_bounds_[-4:] "
              f"{[float(v) for v in m.lower_bounds_[-4:]]}, weights_ {np.round(m.weights_, 6)},"
              f" collapses {collapses}")
    return 1 if report.failures else 0


def main() -> int:
    args = parse_arguments()
    if args.seed is not None:
        if args.verbose:
            return print_verbose(args.seed, args.paths)
        report = hostile.check_case(hostile.hostile_case(args.seed), args.paths)
        print(report.summary())
        return 1 if report.failures else 0
    seeds = list(range(args.start, args.start + args.cases))
    started = time.perf_counter()
    records = sweep(seeds, args.paths, args.jobs)
    elapsed = time.perf_counter() - started
    rows, summary = table(records, args.paths)
    print(f"{len(records)} hostile cases (seeds {seeds[0]}..{seeds[-1]}), paths "
          f"{','.join(args.paths)}, {elapsed:.0f} s with {args.jobs} job(s); "
          f"{summary['well_conditioned']} well-conditioned\n")
    print_table(rows)
    if len(args.paths) == 2:
        print(f"\npath disagreements: {summary['paths_disagree_well_conditioned']} of "
              f"{summary['well_conditioned']} well-conditioned cases (a failure), "
              f"{summary['paths_disagree_all']} of {len(records)} in all")
    float32 = float32_distribution(records)
    for name, values in float32.items():
        print(f"\nfloat32 rows, measured C ({name}, {values['fits']} fits): "
              + ", ".join(f"{k} {v:.3g}" for k, v in values.items() if k != "fits"))
    worst = worst_seeds(records)
    if worst:
        print("\nworst seeds per failure (rerun: .venv/bin/python bench/hostile_sweep.py "
              "--seed N --verbose):")
    for category, items in worst.items():
        print(f"  {category}:")
        for item in items:
            print(f"    seed {item['seed']} [{item['path']}]: {item['detail'][:160]}")
    out = args.out or BENCH_DIR / "results" / (
        "hostile_" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    import emix  # the worker processes' emix, for the record

    out.write_text(json.dumps({
        "arguments": {"cases": args.cases, "start": args.start, "paths": list(args.paths),
                      "jobs": args.jobs},
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "emix": emix.__version__, "platform": platform.platform()},
        "seconds": elapsed, "summary": summary, "float32_row_C": float32,
        "worst_seeds": worst, "cases": records,
    }, indent=1))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    sys.exit(main())
