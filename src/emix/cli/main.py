"""``emix``: fit mixture models from the shell.

``main(argv)`` runs in-process and returns the exit status: 0 on success, 2
for a problem with the input or the options (one line on stderr, no
traceback), 1 only for a genuine bug.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from .. import __version__
from ..datasets import load_faithful
from ..exceptions import EmixError
from ..families.covariance import COVARIANCE_MODELS
from ..io.tables import read_table
from ..mixture import GaussianMixture

EXIT_OK, EXIT_BUG, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2, no usage dump
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="emix",
        description="Fit mixture models by Expectation-Maximization.",
        epilog="Run 'emix fit' with no file to fit the embedded Old Faithful data.",
    )
    parser.add_argument("--version", action="version", version=f"emix {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    fit = commands.add_parser(
        "fit", help="fit a Gaussian mixture to a CSV file (or the Old Faithful data)",
        description="Fit a Gaussian mixture and print its parameters.",
        epilog="examples:\n  emix fit\n  emix fit data.csv -k 3 --covariance diag",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("file", nargs="?", metavar="FILE",
                     help="CSV/TSV file of numbers (header detected); default: Old Faithful")
    fit.add_argument("-k", "--components", type=_positive_int, default=2, metavar="K",
                     help="number of components (default 2)")
    fit.add_argument("--covariance", choices=sorted(COVARIANCE_MODELS), default="full",
                     help="covariance structure (default full)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv: Sequence[str] | None = None, *, stdout=None, stderr=None) -> int:
    """Run the command line ``argv``; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
        if args.command is None:
            parser.print_help(stdout)
            return EXIT_USAGE
        return _fit(args, stdout, stderr)
    except _UsageError as exc:
        print(str(exc), file=stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except EmixError as exc:
        print(f"emix: error: {exc}", file=stderr)
        return EXIT_USAGE


def _fit(args: argparse.Namespace, stdout, stderr) -> int:
    if args.file is None:
        X, columns = load_faithful()
        source = "Old Faithful (embedded)"
    else:
        X, columns = read_table(args.file)
        source = args.file
    model = GaussianMixture(args.components, covariance_type=args.covariance,
                            random_state=args.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X)
    for warning in caught:
        print(f"emix: warning: {warning.message}", file=stderr)
    stdout.write(format_fit(model, X, columns, source))
    return EXIT_OK


def format_fit(model: GaussianMixture, X: np.ndarray, columns: list[str], source: str) -> str:
    """A readable report of a fitted model."""
    n_samples, n_features = X.shape
    log_likelihood = model.score(X) * n_samples
    lines = [
        f"data        {source}: {n_samples} samples x {n_features} features "
        f"({', '.join(columns)})",
        f"model       {model.n_components} components, covariance {model.covariance_type}",
        f"fit         {model.convergence_state_} after {model.n_iter_} iterations "
        f"(tol {model.tol:g})",
        f"log-lik     {log_likelihood:.4f}  ({log_likelihood / n_samples:.6f} per sample)",
        f"BIC         {model.bic(X):.4f}  (lower is better)",
        f"AIC         {model.aic(X):.4f}",
        "",
    ]
    header = ["component", "weight"] + [f"mean {name}" for name in columns]
    rows = [[str(k + 1), f"{model.weights_[k]:.4f}"] + [f"{v:.4f}" for v in model.means_[k]]
            for k in range(model.n_components)]
    lines += _table(header, rows)
    full = COVARIANCE_MODELS[model.covariance_type].full_matrices(
        np.asarray(model.covariances_, dtype=np.float64), model.n_components, n_features)
    for k in range(model.n_components):
        lines += ["", f"covariance of component {k + 1}"]
        lines += _table(["", *columns],
                        [[columns[i]] + [f"{v:.4f}" for v in full[k, i]]
                         for i in range(n_features)])
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(row[j])) for row in [header, *rows]) for j in range(len(header))]
    def render(row):
        return "  ".join(cell.rjust(width) if j else cell.ljust(width)
                         for j, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()
    return [render(header)] + [render(row) for row in rows]


def entry_point() -> None:  # pragma: no cover - exercised through the console script
    try:
        code = main()
    except Exception:
        import traceback

        traceback.print_exc()
        print("emix: internal error (a bug): please report it with the traceback above.",
              file=sys.stderr)
        code = EXIT_BUG
    sys.exit(code)
