"""The experiment emix grew from: EM on a two-component 1-D Gaussian mixture.

20,000 samples from a known mixture; the fit recovers weights, means and
standard deviations within a few standard errors; then one far outlier
(x = 1e4), which makes raw densities underflow to 0/0, leaves emix's fit
finite.  Run:  .venv/bin/python examples/seed_experiment.py
"""

import numpy as np

from emix import GaussianMixture
from emix.datasets import two_gaussians

WEIGHTS, MEANS, STDS = np.array([0.3, 0.7]), np.array([-1.0, 3.0]), np.array([1.0, 0.6])


def fit_and_report(X: np.ndarray, title: str) -> None:
    model = GaussianMixture(2, random_state=0, tol=1e-8, max_iter=500).fit(X)
    order = np.argsort(model.means_[:, 0])
    weights = model.weights_[order]
    means = model.means_[order, 0]
    stds = np.sqrt(model.covariances_[order, 0, 0])
    n_k = len(X) * WEIGHTS
    print(f"\n{title}: {len(X)} samples, {model.convergence_state_} after "
          f"{model.n_iter_} iterations, log-likelihood {model.lower_bound_:.6f} per sample")
    print(f"{'':10}{'true':>8}{'fitted':>10}{'std. error':>12}")
    for k in range(2):
        rows = [("weight", WEIGHTS[k], weights[k], np.sqrt(WEIGHTS[k] * (1 - WEIGHTS[k]) / len(X))),
                ("mean", MEANS[k], means[k], STDS[k] / np.sqrt(n_k[k])),
                ("std", STDS[k], stds[k], STDS[k] / np.sqrt(2 * n_k[k]))]
        for name, true, fitted, se in rows:
            print(f"{name + ' ' + str(k + 1):10}{true:8.4f}{fitted:10.4f}{se:12.4f}")


def main() -> None:
    X, _ = two_gaussians(20_000, weights=WEIGHTS, means=MEANS, stds=STDS, random_state=2024)
    fit_and_report(X, "Clean data")
    with np.errstate(all="ignore"):
        outlier = np.array([1e4])
        density = WEIGHTS * np.exp(-0.5 * ((outlier[:, None] - MEANS) / STDS) ** 2) / (
            np.sqrt(2 * np.pi) * STDS)
        print(f"\nRaw densities at x = 1e4: {density[0]} -> responsibilities "
              f"{density[0] / density.sum()} (0/0)")
    fit_and_report(np.append(X, 1e4), "With the outlier x = 1e4")


if __name__ == "__main__":
    main()
