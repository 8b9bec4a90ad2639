"""emix: mixture models fitted by Expectation-Maximization.

Public names only; everything else is an implementation detail.

The names are imported when first used (PEP 562), not with the package:
``python -m emix`` and the ``emix`` command must install their Ctrl-C
handling (:mod:`emix.__main__`) before NumPy and SciPy load, and this module
runs before any of theirs.
"""

# typing's TYPE_CHECKING, without importing typing (it takes milliseconds in
# which a Ctrl-C would print a traceback); type checkers read it as True.
TYPE_CHECKING = False

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_HOMES = {
    "Progress": "em.engine",
    "ClusterError": "exceptions",
    "ComponentCollapseWarning": "exceptions",
    "ConvergenceWarning": "exceptions",
    "DataWarning": "exceptions",
    "DegenerateComponentError": "exceptions",
    "EmixError": "exceptions",
    "InvalidInputError": "exceptions",
    "ModelFileError": "exceptions",
    "NotFittedError": "exceptions",
    "NumericalError": "exceptions",
    "load": "io.model_file",
    "save": "io.model_file",
    "GaussianMixture": "mixture",
    "SelectionResult": "selection",
    "select": "selection",
}

__all__ = [
    "ClusterError",
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


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


if TYPE_CHECKING:
    from .em.engine import Progress
    from .exceptions import (
        ClusterError,
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
