"""emix: mixture models fitted by Expectation-Maximization.

Public names only; everything else is an implementation detail.
"""

from .em.engine import Progress
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
from .selection import SelectionResult, select

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
    "Progress",
    "SelectionResult",
    "__version__",
    "load",
    "save",
    "select",
]
