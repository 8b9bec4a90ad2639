"""Peak memory of a fit of a .npy file larger than the memory it may use.

    .venv/bin/python bench/out_of_core.py                 # 4 GB file, d=16, K=8
    .venv/bin/python bench/out_of_core.py --gigabytes 0.5 --iterations 2   # quicker

Writes a float64 .npy file of the given size (d=16 columns drawn from a
mixture of 8 Gaussians; kept between runs in --workdir, which must have the
space), then fits it in fresh processes, each reporting its own peak
resident memory (``ru_maxrss``, which counts every page of a memory map the
process touched):

* ``path``: ``GaussianMixture(8).fit("file.npy")``, read a chunk at a time;
* ``memmap``: ``fit(np.load(file, mmap_mode="r"))``;
* ``path, k-means init``: the same with the default initialisation
  (k-means on a sample of 100,000 rows drawn in one pass, then a pass of
  hard assignments);
* ``memmap, in memory``: the same map fitted as an ordinary array (what
  emix did before chunked sources, and what any library that takes an
  array does): its pages stay resident, so the peak grows with the file.

The chunked fits must stay under the bound (600 MB asked), and those from
the same start agree; the in-memory one shows what the bound saves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_FEATURES, N_COMPONENTS = 16, 8

_WORKER = r"""
import json, resource, sys, time, warnings
import numpy as np
from emix import GaussianMixture
from emix.execution.chunked import ChunkedData
path, how, iterations, init = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
warnings.simplefilter("ignore")
if how == "default":  # k-means on a sample of the rows, then EM
    model = GaussianMixture(8, tol=0.0, max_iter=iterations, random_state=0)
    how = "path"
else:
    start = np.load(init)
    model = GaussianMixture(start["means"].shape[0], tol=0.0, max_iter=iterations,
                            weights_init=start["weights"], means_init=start["means"],
                            precisions_init=start["precisions"])
if how == "path":
    X = path
elif how == "memmap":
    X = np.load(path, mmap_mode="r")
else:  # the map as a plain array: the in-memory back-end, no chunked reading
    X = np.asarray(np.load(path, mmap_mode="r")).view(np.ndarray)
times = []
model.fit(X, progress=lambda p: times.append(time.perf_counter()))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_bytes": peak, "seconds_per_iteration": float(np.median(np.diff(times))),
                  "lower_bound": model.lower_bound_, "means": model.means_.tolist()}))
"""


def write_data(path: Path, gigabytes: float, seed: int = 0) -> int:
    """A float64 (n, 16) .npy file of ``gigabytes``, written a block at a
    time (never held in memory); returns n."""
    n = int(gigabytes * 1e9) // (8 * N_FEATURES)
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, N_FEATURES):
        return n
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(N_COMPONENTS, N_FEATURES))
    scales = rng.uniform(0.5, 1.5, size=(N_COMPONENTS, 1))
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as stream:
        np.lib.format.write_array_header_2_0(
            stream, {"descr": "<f8", "fortran_order": False, "shape": (n, N_FEATURES)})
        block = 1 << 18
        for start in range(0, n, block):
            m = min(block, n - start)
            labels = rng.integers(N_COMPONENTS, size=m)
            rows = centres[labels] + rng.normal(size=(m, N_FEATURES)) * scales[labels]
            stream.write(rows.astype("<f8").tobytes())
    os.replace(temporary, path)
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=4.0)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--limit-mb", type=float, default=600.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emix-out-of-core"))
    parser.add_argument("--skip-in-memory", action="store_true",
                        help="leave out the in-memory run (its peak is the file's size)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"X-{args.gigabytes:g}GB.npy"
    started = time.perf_counter()
    n = write_data(path, args.gigabytes)
    print(f"data: {path} ({path.stat().st_size / 1e9:.2f} GB, {n:,} x {N_FEATURES}), "
          f"ready in {time.perf_counter() - started:.0f} s")
    rng = np.random.default_rng(1)
    head = np.load(path, mmap_mode="r")[:200_000]
    init = args.workdir / "init.npz"
    np.savez(init, weights=np.full(N_COMPONENTS, 1.0 / N_COMPONENTS),
             means=head[rng.choice(head.shape[0], N_COMPONENTS, replace=False)],
             precisions=np.repeat(np.linalg.inv(np.cov(head.T))[None], N_COMPONENTS, axis=0))
    del head
    results = {}
    modes = {"path": "path", "memmap": "memmap", "path, k-means init": "default"}
    if not args.skip_in_memory:
        modes["memmap, in memory"] = "array"
    for how, mode in modes.items():
        run = subprocess.run([sys.executable, "-c", _WORKER, str(path), mode,
                              str(args.iterations), str(init)],
                             capture_output=True, text=True, check=False)
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return 1
        results[how] = json.loads(run.stdout.strip().splitlines()[-1])
    limit = args.limit_mb * 2**20
    print(f"\n{'fit of':<20}{'peak RSS MiB':>14}{'/ file':>9}{'s / iteration':>15}  bound")
    for how, result in results.items():
        peak = result["peak_bytes"]
        bound = "ok" if peak < limit else "OVER"
        if how == "memmap, in memory":
            bound = "-"
        print(f"{how:<20}{peak / 2**20:>14.1f}{peak / path.stat().st_size:>9.3f}"
              f"{result['seconds_per_iteration']:>15.2f}  {bound}")
    reference = results["path"]
    same = all(abs(r["lower_bound"] - reference["lower_bound"])
               <= 1e-10 * abs(reference["lower_bound"])
               and np.allclose(r["means"], reference["means"], rtol=1e-10, atol=0)
               for how, r in results.items() if how != "path, k-means init")
    print(f"\nsame fit from every source with the same start (log-likelihood, means, "
          f"1e-10): {same}")
    chunked = ("path", "memmap", "path, k-means init")
    within = all(results[how]["peak_bytes"] < limit for how in chunked)
    print(f"peak RSS of the chunked fits under {args.limit_mb:g} MB: {within}")
    return 0 if same and within else 1


if __name__ == "__main__":
    sys.exit(main())
