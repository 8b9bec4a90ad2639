"""``python -m emix`` and the ``emix`` command start here.

Ctrl-C ends the command with one line, ``emix: interrupted``, and status 130
(128 + SIGINT, as shells report it) at any moment: also in the third of a
second (more on a cold disk) in which NumPy, SciPy and the rest of emix are
imported, before :func:`emix.cli.main.entry_point` can catch a
KeyboardInterrupt.  Until then a Ctrl-C ends the process at once, which
loses nothing: no file is open yet.  Python's own start-up, before this
module runs, is not emix's to guard.
"""

try:
    # The C module that `signal` wraps: `signal` imports enum, and a Ctrl-C
    # in those milliseconds would still print a traceback.
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without it
    import signal
import os


def exit_interrupted(signum: int, frame: object) -> None:
    """A SIGINT handler that ends the process at once, as interrupted."""
    os.write(2, b"\nemix: interrupted\n")
    os._exit(130)


# Not when multiprocessing's "spawn" imports this as its children's __mp_main__.
if __name__ in ("__main__", "emix.__main__"):
    signal.signal(signal.SIGINT, exit_interrupted)


def entry_point() -> None:
    """Run the command (the console script ``emix`` calls this)."""
    from .cli.main import entry_point as run_command

    run_command()


if __name__ == "__main__":
    entry_point()
