"""One benchmark run of one library, in a process of its own.

Run by ``bench/run.py``; prints a single JSON line. A fresh process per run
keeps the libraries from sharing caches, thread pools or heap, and makes
``ru_maxrss`` the peak of this library alone.

Modes:
  iterations  fit from the given initial parameters for 1 and for n_iter EM
              iterations, without early stopping; report both times and the
              score of the n_iter fit.
  fit         one whole fit to tol=1e-6 from the library's default init.
  precision   (emix only) the iterations mode in float64 and in float32 on
              the same data, alternately, ``PRECISION_PAIRS`` times: each
              pair's speed ratio compares runs made seconds apart in one
              process, which this shared machine's drift between processes
              (up to 1.5x) would otherwise swamp.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import resource
import time
import warnings

import numpy as np

WHOLE_FIT_TOL = 1e-6
PRECISION_PAIRS = 3
PRECISION_ITERATIONS = 8


def emix_model(K: int, covariance_type: str, n_iter: int, init: dict | None):
    import emix

    if init is None:
        return emix.GaussianMixture(K, covariance_type=covariance_type, tol=WHOLE_FIT_TOL,
                                    max_iter=1000, random_state=0)
    # tol=0: emix stops when |change| < tol, which never holds for 0, so it
    # runs exactly max_iter M-steps (n_iter_ is checked below).
    return emix.GaussianMixture(K, covariance_type=covariance_type, tol=0.0, max_iter=n_iter,
                                init_params="random_from_data", random_state=0, **init)


def sklearn_model(K: int, covariance_type: str, n_iter: int, init: dict | None):
    from sklearn.mixture import GaussianMixture

    if init is None:
        return GaussianMixture(K, covariance_type=covariance_type, tol=WHOLE_FIT_TOL,
                               max_iter=1000, random_state=0)
    # scikit-learn runs init_params even when all *_init are given (its
    # result is then overwritten); random_from_data keeps that wasted pass
    # cheap instead of k-means over all rows. It is subtracted anyway.
    return GaussianMixture(K, covariance_type=covariance_type, tol=0.0, max_iter=n_iter,
                           init_params="random_from_data", random_state=0, **init)


MODEL_FACTORIES = {"emix": emix_model, "sklearn": sklearn_model}


def silence_convergence_warnings(library: str) -> None:
    """Reaching max_iter is the point of a fixed-iteration run.  Only the
    library under test is imported, so that its peak memory is its own."""
    if library == "emix":
        from emix.exceptions import ConvergenceWarning
    elif library == "sklearn":
        from sklearn.exceptions import ConvergenceWarning
    else:
        return
    warnings.simplefilter("ignore", ConvergenceWarning)


def timed_fit(model, X: np.ndarray) -> float:
    start = time.perf_counter()
    model.fit(X)
    return time.perf_counter() - start


def warm_up(factory, X: np.ndarray, K: int, covariance_type: str, init: dict | None) -> float:
    """One short fit on the first rows, before anything is timed: what a
    library does once per process (numba loading its compiled kernels,
    scikit-learn importing its k-means) is not a cost of the fits that
    follow.  Its time is reported as ``first_fit_s``."""
    rows = X[:max(2000, 20 * K)]
    model = factory(K, covariance_type, 1, init)
    seconds = timed_fit(model, rows)
    # The interpreter's first full garbage collection after the imports
    # (numba's and scikit-learn's many objects) takes about 80 ms, once per
    # process: it would otherwise land in a timed fit (measured on case B:
    # one iteration of 40 ms took 120), so it runs here.
    gc.collect()
    return seconds


def run_sklearn_api(library: str, X: np.ndarray, K: int, covariance_type: str,
                    n_iter: int, init: dict | None) -> dict:
    """emix and scikit-learn share the estimator API, so one runner serves both.
    Peak memory is read after the fits and before ``score``, which allocates
    per-row outputs of its own."""
    factory = MODEL_FACTORIES[library]
    first_fit = warm_up(factory, X, K, covariance_type, init)
    reset_peak_rss()
    if init is None:
        model = factory(K, covariance_type, 0, None)
        seconds = timed_fit(model, X)
        peak = peak_rss_kb()
        return {"seconds": seconds, "n_iter": int(model.n_iter_), "score": float(model.score(X)),
                "first_fit_s": first_fit, "peak_rss_kb": peak}
    one = factory(K, covariance_type, 1, init)
    seconds_one = timed_fit(one, X)
    many = factory(K, covariance_type, n_iter, init)
    seconds_many = timed_fit(many, X)
    peak = peak_rss_kb()
    return {"seconds_1": seconds_one, "seconds_n": seconds_many,
            "n_iter": [int(one.n_iter_), int(many.n_iter_)], "score": float(many.score(X)),
            "first_fit_s": first_fit, "peak_rss_kb": peak}


def record_elapsed(stamps: list[float], state) -> None:
    stamps.append(state.elapsed)


def run_precision_pairs(X: np.ndarray, K: int, covariance_type: str, n_iter: int,
                        init: dict) -> dict:
    """emix's float32 mode against its float64 fit, alternately, each fit
    timed by its iterations: the median of the intervals between emix's
    progress callbacks (one M-step and one E-step each), over at least
    PRECISION_ITERATIONS of them.  Within a process the two precisions then
    compare like with like, and a pause of the machine spoils one interval,
    not the fit's time.  Both fits are scored on the float64 data, so that
    the scores differ only by what the fits computed."""
    factory = MODEL_FACTORIES["emix"]
    data = {"float64": X, "float32": X.astype(np.float32)}
    for rows in data.values():
        warm_up(factory, rows, K, covariance_type, init)
    iterations = max(n_iter, PRECISION_ITERATIONS)
    pairs, scores, exact = [], {}, True
    for _ in range(PRECISION_PAIRS):
        pair = []
        for name, rows in data.items():
            stamps: list[float] = []
            model = factory(K, covariance_type, iterations, init)
            model.fit(rows, progress=functools.partial(record_elapsed, stamps))
            pair.append(float(np.median(np.diff(stamps))))
            exact = exact and model.n_iter_ == iterations and len(stamps) == iterations + 1
            scores[name] = float(model.score(X))
        pairs.append(pair)
    return {"pairs": pairs, "scores": scores, "n_iter_exact": exact}


def run_pomegranate(X: np.ndarray, K: int, covariance_type: str, n_iter: int,
                    init: dict | None) -> dict:
    """pomegranate >= 1.0 (torch based), float64 throughout so that its score
    is comparable. Only used when it imports; its API has moved between
    releases, so any failure is reported rather than raised."""
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    if init is None:
        raise ValueError("pomegranate is timed only from shared initial parameters")
    data = torch.from_numpy(X)

    def build(iterations: int):
        components = []
        for k in range(K):
            precision = init["precisions_init"][k]
            covariance = (1.0 / precision if covariance_type == "diag"
                          else np.linalg.inv(precision))
            components.append(Normal(torch.from_numpy(init["means_init"][k]),
                                     torch.from_numpy(covariance),
                                     covariance_type=covariance_type))
        return GeneralMixtureModel(components, priors=torch.from_numpy(init["weights_init"]),
                                   max_iter=iterations, tol=0.0)

    one, many = build(1), build(n_iter)
    seconds_one = timed_fit(one, data)
    seconds_many = timed_fit(many, data)
    peak = peak_rss_kb()
    score = float(many.log_probability(data).mean())
    return {"seconds_1": seconds_one, "seconds_n": seconds_many,
            "n_iter": [1, n_iter], "score": score, "peak_rss_kb": peak}


def reset_peak_rss() -> None:
    """Start the peak resident set afresh at the current one (Linux >= 4.0),
    so that the peak is that of the fits, the data included, and not of the
    warm-up: with a cold numba cache the warm-up compiles the kernels, and
    LLVM's 100 MB or so are no cost of a fit."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def peak_rss_kb() -> int:
    """This process's own peak resident set (KiB), data included: VmHWM
    belongs to the address space, which exec starts afresh."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", choices=["emix", "sklearn", "pomegranate"], required=True)
    parser.add_argument("--data", required=True, help=".npy file with X (n, d), float64")
    parser.add_argument("--init", help=".npz with weights_init, means_init, precisions_init")
    parser.add_argument("--components", type=int, required=True)
    parser.add_argument("--covariance-type", default="full")
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--mode", choices=["iterations", "fit", "precision"],
                        default="iterations")
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    silence_convergence_warnings(args.library)
    X = np.load(args.data)
    init = None
    if args.mode in ("iterations", "precision"):
        with np.load(args.init) as archive:
            init = {name: archive[name] for name in archive.files}
    if args.mode == "precision":
        result = run_precision_pairs(X, args.components, args.covariance_type, args.n_iter,
                                     init)
    elif args.library == "pomegranate":
        result = run_pomegranate(X, args.components, args.covariance_type, args.n_iter, init)
    else:
        result = run_sklearn_api(args.library, X, args.components, args.covariance_type,
                                 args.n_iter, init)
    result["library"] = args.library
    result["data_mb"] = X.nbytes / 2**20
    # Linux carries ru_maxrss (KiB) across fork and exec, so it is at least
    # the parent's peak when run.py forked us: kept for the record only.
    result["ru_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result))


if __name__ == "__main__":
    main()
