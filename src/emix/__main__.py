"""``python -m emix`` runs the command-line tool."""

from .cli.main import entry_point

entry_point()
