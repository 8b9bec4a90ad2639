"""What ``emix fit`` and ``emix show`` print: a fitted model as text or JSON."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._text import counted, text_table
from ..mixture import GaussianMixture
from ..plotting import full_covariances
from ..selection import SelectionResult, information_criteria


def feature_names(model: GaussianMixture) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is None:  # as the table readers name the columns of a file without a header
        return [f"column {j + 1}" for j in range(model.n_features_in_)]
    return [str(name) for name in names]


def fit_statistics(model: GaussianMixture, n_rows: int, n: float, classification_cost: float,
                   convention: str = "sklearn") -> dict[str, Any]:
    """Data size, log-likelihood and criteria of ``model`` just fitted to
    ``n_rows`` rows of total weight ``n`` (with that classification cost,
    ICL's penalty), the criteria in ``convention`` ('mclust': negated,
    higher is better)."""
    # lower_bound_ is the per-sample log-likelihood of the fitted parameters,
    # from the fit's last E-step: no pass over the data for it.
    log_likelihood = model.lower_bound_ * n
    criteria = information_criteria(log_likelihood, model._n_parameters(), n,
                                    classification_cost)
    sign = -1.0 if convention == "mclust" else 1.0
    return {"n_rows": int(n_rows), "n_samples": n, "log_likelihood": log_likelihood,
            "convention": convention,
            **{name: sign * value for name, value in criteria.items()}}


def selected_statistics(selection: SelectionResult, n_rows: int) -> dict[str, Any]:
    """:func:`fit_statistics` of the winner, from the selection's table."""
    best = selection.best_candidate
    return {"n_rows": n_rows, "n_samples": selection.n_samples,
            "log_likelihood": best.log_likelihood, "convention": selection.convention,
            "bic": best.bic, "aic": best.aic, "icl": best.icl}


def model_record(model: GaussianMixture, stats: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The model as a JSON-ready dictionary (components numbered from 1)."""
    record: dict[str, Any] = {
        "n_components": int(model.n_components),
        "covariance_type": model.covariance_type,
        "features": feature_names(model),
        "convergence_state": model.convergence_state_,
        "n_iter": int(model.n_iter_),
        "log_likelihood_per_sample": float(model.lower_bound_),
        "n_parameters": int(model._n_parameters()),
    }
    if stats is not None:
        record.update({key: value for key, value in stats.items() if key != "n_rows"})
    covariances = full_covariances(model)
    record["components"] = [
        {"component": k + 1, "weight": float(model.weights_[k]),
         "mean": [float(v) for v in model.means_[k]],
         "covariance": covariances[k].tolist()}
        for k in range(model.n_components)]
    return record


def selection_record(selection: SelectionResult) -> dict[str, Any]:
    best = selection.best_candidate
    return {"criterion": selection.criterion, "convention": selection.convention,
            "higher_is_better": selection.higher_is_better,
            "best": {"n_components": best.n_components,
                     "covariance_type": best.covariance_type},
            "margin": selection.margin if np.isfinite(selection.margin) else None,
            "table": selection.to_records()}


def format_model(model: GaussianMixture, stats: dict[str, Any] | None = None, *,
                 source: str) -> str:
    """A readable report of a fitted model, with its fit to the data
    (:func:`fit_statistics`) if given."""
    names = feature_names(model)
    if stats is not None:
        head = (f"data        {source}: {counted(stats['n_rows'], 'sample')} x "
                f"{counted(model.n_features_in_, 'feature')} ({', '.join(names)})")
    else:
        head = (f"model file  {source}: {counted(model.n_features_in_, 'feature')} "
                f"({', '.join(names)})")
    lines = [
        head,
        f"model       {counted(model.n_components, 'component')}, covariance "
        f"{model.covariance_type}, {counted(model._n_parameters(), 'parameter')}",
        f"fit         {model.convergence_state_} after {counted(model.n_iter_, 'iteration')} "
        f"(tol {model.tol:g})",
    ]
    if stats is not None:
        direction = ("higher is better, mclust's sign" if stats["convention"] == "mclust"
                     else "lower is better")
        lines += [
            f"log-lik     {stats['log_likelihood']:.4f}  "
            f"({stats['log_likelihood'] / stats['n_samples']:.6f} per sample)",
            f"BIC         {stats['bic']:.4f}  ({direction})",
            f"AIC         {stats['aic']:.4f}",
            f"ICL         {stats['icl']:.4f}",
        ]
    else:
        lines.append(f"log-lik     {model.lower_bound_:.6f} per sample (at the end of the fit)")
    lines.append("")
    header = ["component", "weight"] + [f"mean {name}" for name in names]
    rows = [[str(k + 1), f"{model.weights_[k]:.4f}"] + [f"{v:.4f}" for v in model.means_[k]]
            for k in range(model.n_components)]
    lines += text_table(header, rows)
    covariances = full_covariances(model)
    for k in range(model.n_components):
        lines += ["", f"covariance of component {k + 1}"]
        lines += text_table(["", *names],
                            [[names[i]] + [f"{v:.4g}" for v in covariances[k, i]]
                             for i in range(len(names))])
    return "\n".join(lines) + "\n"
