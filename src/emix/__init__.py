"""emix: mixture models fitted by Expectation-Maximization.

Public names only; everything else is an implementation detail.
"""

from .exceptions import (
    ComponentCollapseWarning,
    ConvergenceWarning,
    DataWarning,
    DegenerateComponentError,
    EmixError,
    InvalidInputError,
    ModelFileError,
    NotFittedError,
    NumericalError,
)
from .io.model_file import load, save
from .mixture import GaussianMixture

__version__ = "0.1.0"

__all__ = [
    "ComponentCollapseWarning",
    "ConvergenceWarning",
    "DataWarning",
    "DegenerateComponentError",
    "EmixError",
    "GaussianMixture",
    "InvalidInputError",
    "ModelFileError",
    "NotFittedError",
    "NumericalError",
    "__version__",
    "load",
    "save",
]
