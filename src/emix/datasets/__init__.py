"""Small data sets shipped with emix, and a generator of known mixtures.

``faithful.csv``: the Old Faithful geyser, 272 eruptions: duration of the
eruption (``eruptions``, minutes) and waiting time to the next one
(``waiting``, minutes).  From Azzalini, A. and Bowman, A. W. (1990), "A look
at some data on the Old Faithful geyser", Applied Statistics 39, 357-365, as
distributed in R's ``datasets::faithful``; byte-identical to
``csv/datasets/faithful.csv`` of the Rdatasets collection.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

import numpy as np


def load_faithful() -> tuple[np.ndarray, list[str]]:
    """The Old Faithful data: a (272, 2) float array and its column names
    ``["eruptions", "waiting"]`` (R's row names are dropped)."""
    text = resources.files(__package__).joinpath("faithful.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    columns = header[1:]
    X = np.array([[float(value) for value in row[1:]] for row in body])
    return X, columns


def faithful_path() -> str:
    """Filesystem path of the embedded CSV (R's row names in its first column)."""
    return str(resources.files(__package__).joinpath("faithful.csv"))


def two_gaussians(n_samples: int = 20_000, *, weights=(0.3, 0.7), means=(-1.0, 3.0),
                  stds=(1.0, 0.6), random_state=None) -> tuple[np.ndarray, np.ndarray]:
    """The seed experiment's data: a 1-D mixture of two Gaussians.

    Returns the samples (n_samples,) and the component of each.
    """
    rng = np.random.default_rng(random_state)
    labels = rng.choice(len(weights), size=n_samples, p=np.asarray(weights) / np.sum(weights))
    X = rng.normal(np.asarray(means)[labels], np.asarray(stds)[labels])
    return X, labels
