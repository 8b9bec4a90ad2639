"""Speed, memory and agreement of emix against scikit-learn (and pomegranate
when it imports) on fixed EM workloads. See bench/README.md.

    .venv/bin/python bench/run.py [--quick] [--cases A,C] [--repeats N] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from cases import CASES, QUICK_SHRINK, Case, initial_parameters, make_data
from floor import iteration_floor, machine_description, measure_rates

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "worker.py"
#: Same data, same start, same iterations, float64: only rounding may differ.
AGREEMENT_RTOL = 1e-9
#: emix's float32 mode against its float64 fit of the same case.
FLOAT32_RTOL = 1e-5
#: The acceptance targets of issue 4: scikit-learn's seconds per iteration
#: over emix's (A-fit: per whole fit), and emix's ratio to the floor.
SPEEDUP_TARGETS = {"A": 15, "A-fit": 5, "B": 30, "C": 10, "D": 6, "E": 5, "F": 5}
FLOOR_TARGET = 3.0
FLOAT32_SPEEDUP_TARGET = 1.7
FLOAT32_CASES = ("C",)
#: Worker processes for the float32 comparison (each runs 3 pairs), and the
#: repeats of case A, whose runs take seconds: more of them where they are
#: cheap, because this machine's speed differs from process to process (case
#: A's iterations: 0.17 to 0.57 ms in three processes of one run).
PRECISION_PROCESSES = 5
CHEAP_CASES_REPEATS = {"A": 5}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"every n / {QUICK_SHRINK}, 1 repeat: a smoke test of agreement")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, e.g. A,C")
    parser.add_argument("--repeats", type=int, help="runs per library and case (median); "
                        "default 3, or 1 with --quick")
    parser.add_argument("--out", type=Path, help="JSON file; default "
                        "bench/results/<timestamp>.json")
    args = parser.parse_args()
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from {','.join(CASES)}")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def libraries() -> list[str]:
    found = ["emix", "sklearn"]
    if importlib.util.find_spec("pomegranate") is not None:
        found.append("pomegranate")
    return found


def run_worker(library: str, case: Case, data_path: Path, init_path: Path | None,
               mode: str) -> dict:
    """One run of one library in a fresh interpreter; its last stdout line is JSON."""
    command = [sys.executable, str(WORKER), "--library", library, "--data", str(data_path),
               "--components", str(case.K), "--covariance-type", case.covariance_type,
               "--n-iter", str(case.n_iter), "--mode", mode]
    if init_path is not None:
        command += ["--init", str(init_path)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1:] or ["no output"]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def summarise_iteration_runs(runs: list[dict], n_iter: int) -> dict:
    """Seconds per iteration as (t(n) - t(1)) / (n - 1): this cancels what a
    fit costs besides its iterations (validation, init_params, final
    E-step), which differs between the libraries. Median over repeats."""
    errors = [run["error"] for run in runs if "error" in run]
    if errors:
        return {"error": errors[0]}
    per_iter = [(run["seconds_n"] - run["seconds_1"]) / (n_iter - 1) for run in runs]
    exact = all(run["n_iter"] == [1, n_iter] for run in runs)
    return {"seconds_per_iter": statistics.median(per_iter), "all_seconds_per_iter": per_iter,
            "n_iter_exact": exact, "n_iter_seen": runs[0]["n_iter"],
            "score": runs[0]["score"], "peak_rss_mb": max(r["peak_rss_kb"] for r in runs) / 1024}


def summarise_precision_runs(runs: list[dict]) -> dict:
    """float32 against float64 from the precision workers' alternating
    pairs: the median of the pairs' speed ratios, and each precision's
    median seconds per iteration."""
    errors = [run["error"] for run in runs if "error" in run]
    if errors:
        return {"error": errors[0]}
    pairs = [pair for run in runs for pair in run["pairs"]]
    ratios = [double / single for double, single in pairs]
    return {"speedup": statistics.median(ratios), "all_speedups": ratios,
            "float64_seconds_per_iter": statistics.median(double for double, _ in pairs),
            "float32_seconds_per_iter": statistics.median(single for _, single in pairs),
            "scores": runs[0]["scores"],
            "n_iter_exact": all(run["n_iter_exact"] for run in runs)}


def summarise_fit_runs(runs: list[dict]) -> dict:
    errors = [run["error"] for run in runs if "error" in run]
    if errors:
        return {"error": errors[0]}
    return {"seconds_per_fit": statistics.median(run["seconds"] for run in runs),
            "n_iter": runs[0]["n_iter"], "score": runs[0]["score"],
            "peak_rss_mb": max(r["peak_rss_kb"] for r in runs) / 1024}


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), np.finfo(float).tiny)


def agreement(results: dict, reference: str = "sklearn") -> dict:
    """emix's score against each other library's, after the same iterations."""
    emix_score = results["emix"].get("score")
    found = {}
    for library, result in results.items():
        if library == "emix":
            continue
        if emix_score is None or "score" not in result:
            found[library] = None
        else:
            found[library] = relative_difference(emix_score, result["score"])
    return found


def bench_case(case: Case, rates: dict, repeats: int, workdir: Path, with_fit: bool) -> list:
    """Rows for one case: the fixed-iteration row, and for A the whole-fit row."""
    X = make_data(case)
    data_path = workdir / f"{case.name}.npy"
    init_path = workdir / f"{case.name}.npz"
    np.save(data_path, X)
    np.savez(init_path, **initial_parameters(case, X))
    del X  # the workers load their own copy; keep the parent's RSS out of the way

    # Repeats go round the libraries (emix's float32 run right after its
    # float64 one): this shared machine's speed drifts over minutes, and each
    # ratio should compare runs made at about the same time.
    runs = {library: [] for library in libraries()}
    precision_runs = []
    if repeats > 1:
        repeats = max(repeats, CHEAP_CASES_REPEATS.get(case.name, 0))
    for _ in range(repeats):
        for library in runs:
            runs[library].append(run_worker(library, case, data_path, init_path, "iterations"))
            if library == "emix" and case.name in FLOAT32_CASES:
                precision_runs.append(run_worker("emix", case, data_path, init_path,
                                                 "precision"))
    # Each precision run compares within its own process: the extra ones
    # need no scikit-learn run next to them.
    extra = PRECISION_PROCESSES - len(precision_runs) if precision_runs and repeats > 1 else 0
    for _ in range(extra):
        precision_runs.append(run_worker("emix", case, data_path, init_path, "precision"))
    results = {library: summarise_iteration_runs(library_runs, case.n_iter)
               for library, library_runs in runs.items()}
    floor = iteration_floor(rates, case.n, case.d, case.K, case.covariance_type)
    rows = [{"case": case.name, "n": case.n, "d": case.d, "K": case.K,
             "cov": case.covariance_type, "n_iter": case.n_iter, "floor_s": floor,
             "results": results, "rel_diff": agreement(results), "gated": True}]
    if precision_runs:
        rows.append({"case": f"{case.name}-f32", "n": case.n, "d": case.d, "K": case.K,
                     "cov": case.covariance_type, "n_iter": case.n_iter,
                     "results": summarise_precision_runs(precision_runs), "gated": False})
    if with_fit:
        fit_runs = {"emix": [], "sklearn": []}
        for _ in range(repeats):
            for library, library_runs in fit_runs.items():
                library_runs.append(run_worker(library, case, data_path, None, "fit"))
        fit_results = {library: summarise_fit_runs(library_runs)
                       for library, library_runs in fit_runs.items()}
        # Different k-means inits may end in different optima: informative only.
        rows.append({"case": f"{case.name}-fit", "n": case.n, "d": case.d, "K": case.K,
                     "cov": case.covariance_type, "results": fit_results,
                     "rel_diff": agreement(fit_results), "gated": False})
    return rows


def row_agrees(row: dict) -> bool:
    if row["case"].endswith("-f32"):
        return float32_agrees(row)
    if not row["gated"]:
        return True
    difference = row["rel_diff"].get("sklearn")
    # pomegranate, when present, is reported but not part of the gate.
    exact = all(row["results"][name].get("n_iter_exact", False) for name in ("emix", "sklearn"))
    return difference is not None and difference <= AGREEMENT_RTOL and exact


def float32_agrees(row: dict) -> bool:
    scores = row["results"].get("scores")
    if scores is None or not row["results"]["n_iter_exact"]:
        return False
    return relative_difference(scores["float32"], scores["float64"]) <= FLOAT32_RTOL


def meets(value: float | None, target: float | None, larger_is_better: bool) -> str:
    if value is None or target is None:
        return ""
    return "yes" if (value >= target if larger_is_better else value <= target) else "no"


def seconds(result: dict) -> float | None:
    return result.get("seconds_per_iter", result.get("seconds_per_fit"))


def format_number(value: float | None, spec: str) -> str:
    width = int(re.match(r"\d*", spec).group() or 0)
    return f"{'-':>{width}}" if value is None else format(value, spec)


def table_lines(rows: list[dict], quick: bool = False) -> list[str]:
    header = (f"{'case':<6} {'n':>10} {'d':>3} {'K':>3} {'cov':<4} {'emix s/it':>10} "
              f"{'sk s/it':>10} {'sk/emix':>8} {'target':>7} {'emix/floor':>10} "
              f"{'emix MB':>8} {'sk MB':>8} {'rel.diff':>9} ok")
    lines = [header, "-" * len(header)]
    for row in rows:
        if row["case"].endswith("-f32"):
            lines.append(float32_line(row))
            continue
        emix, sk = row["results"]["emix"], row["results"]["sklearn"]
        emix_s, sk_s = seconds(emix), seconds(sk)
        ratio = sk_s / emix_s if emix_s and sk_s else None
        to_floor = emix_s / row["floor_s"] if emix_s and "floor_s" in row else None
        target = SPEEDUP_TARGETS.get(row["case"])
        ok = ("yes" if row_agrees(row) else "NO") if row["gated"] else "(info)"
        floor_met = meets(to_floor, FLOOR_TARGET, False) if row["case"] != "A" else ""
        lines.append(
            f"{row['case']:<6} {row['n']:>10} {row['d']:>3} {row['K']:>3} {row['cov']:<4} "
            f"{format_number(emix_s, '10.4g')} {format_number(sk_s, '10.4g')} "
            f"{format_number(ratio, '8.2f')} {'' if target is None else target:>3} "
            f"{meets(ratio, target, True):>3} {format_number(to_floor, '6.1f')} {floor_met:>3} "
            f"{format_number(emix.get('peak_rss_mb'), '8.0f')} "
            f"{format_number(sk.get('peak_rss_mb'), '8.0f')} "
            f"{format_number(row['rel_diff'].get('sklearn'), '9.1e')} {ok}")
        for library, result in row["results"].items():
            if "error" in result:
                lines.append(f"       {library} failed: {result['error']}")
    lines.append("-fit rows: seconds per whole fit (tol=1e-6, default init), not per iteration.")
    lines.append(f"target: the sk/emix ratio issue 4 asks for; emix/floor should be <= "
                 f"{FLOOR_TARGET:g} (yes/no after each). MB: peak RSS of the fitting process, "
                 "data included, read before score().")
    if quick:
        lines.append("--quick: n / 100, so times are noise-dominated; it checks agreement only.")
    return lines


def float32_line(row: dict) -> str:
    result = row["results"]
    if "error" in result:
        return f"{row['case']:<6} emix float32 failed: {result['error']}"
    scores = result["scores"]
    difference = relative_difference(scores["float32"], scores["float64"])
    return (f"{row['case']:<6} emix float32 {result['float32_seconds_per_iter']:.4g} s/it, "
            f"float64 {result['float64_seconds_per_iter']:.4g}: median of "
            f"{len(result['all_speedups'])} alternating pairs {result['speedup']:.2f}x "
            f"(target {FLOAT32_SPEEDUP_TARGET:g}, "
            f"{meets(result['speedup'], FLOAT32_SPEEDUP_TARGET, True)}); score differs by "
            f"{difference:.1e} (<= {FLOAT32_RTOL:g}: {'yes' if float32_agrees(row) else 'NO'})")


def default_output() -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return BENCH_DIR / "results" / f"{stamp}.json"


def main() -> int:
    args = parse_arguments()
    machine = machine_description()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, numpy {machine['numpy']}, "
          f"BLAS {machine['blas']}")
    rates = measure_rates()
    print("rates: " + ", ".join(f"{name} {value:.3g}" for name, value in rates.items()))
    rows = []
    with tempfile.TemporaryDirectory(prefix="emix-bench-") as workdir:
        for name in args.cases.split(","):
            case = CASES[name].shrunk(QUICK_SHRINK) if args.quick else CASES[name]
            case_rows = bench_case(case, rates, args.repeats, Path(workdir), with_fit=name == "A")
            print("\n".join(table_lines(case_rows)[2:2 + len(case_rows)]), flush=True)
            rows += case_rows
    lines = table_lines(rows, args.quick)
    print("\n" + "\n".join(lines))
    all_agree = all(row_agrees(row) for row in rows)
    output = args.out or default_output()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"machine": machine, "rates": rates, "quick": args.quick,
                                  "repeats": args.repeats, "agreement_rtol": AGREEMENT_RTOL,
                                  "all_agree": all_agree, "rows": rows}, indent=2))
    print(f"\nagreement (rtol {AGREEMENT_RTOL:g}): {'all cases agree' if all_agree else 'FAILED'}"
          f"; results in {output}")
    return 0 if all_agree else 1


if __name__ == "__main__":
    sys.exit(main())
