"""The ``emix`` command: a thin shell over the library."""

from .main import main

__all__ = ["main"]
