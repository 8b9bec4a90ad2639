"""``emix``: fit mixture models from the shell.

``main(argv)`` runs in-process and returns the exit status: 0 on success, 2
for a problem with the input or the options (one line on stderr, no
traceback), 1 only for a genuine bug.  Components are numbered from 1 in
everything the command prints or writes.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import json
import os
import re
import signal
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from .. import __version__
from .._text import counted, one_line, text_table
from ..datasets import load_faithful, two_gaussians
from ..exceptions import EmixError, InvalidInputError
from ..families.covariance import COVARIANCE_MODELS
from ..io.atomic import check_writable
from ..io.model_file import load, save
from ..io.tables import ChunkedTable, Table, TableWriter, iter_chunks, output_format, read_data
from ..mixture import GaussianMixture
from ..plotting import PICTURE_FORMATS
from ..selection import (
    CONVENTIONS,
    COVARIANCE_ORDER,
    CRITERIA,
    SELECTION_MAX_ITER,
    SELECTION_TOL,
    SelectionResult,
    select,
)
from .progress import NORMAL, QUIET, VERBOSE, ProgressReporter
from .report import (
    feature_names,
    fit_statistics,
    format_model,
    model_record,
    selected_statistics,
    selection_record,
)
from .streamed import open_streamed

EXIT_OK, EXIT_BUG, EXIT_USAGE = 0, 1, 2

#: Rows per chunk when ``emix predict`` streams a file.
PREDICT_CHUNK_ROWS = 65_536

FAITHFUL = "Old Faithful (embedded)"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2, no usage dump
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="emix",
        description="Fit Gaussian mixture models by Expectation-Maximization.",
        epilog="Run 'emix fit' with no file to fit the embedded Old Faithful data; "
               "'emix COMMAND --help' for each command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"emix {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    fit = _command(
        commands, "fit", "fit a mixture (or select among several) and print it",
        "Fit a Gaussian mixture to a data file and print its parameters. A range of K "
        "or several covariance structures fits each and selects by an information "
        "criterion.",
        "emix fit                                   # Old Faithful, K=2, full\n"
        "emix fit data.csv -k 3 --covariance diag --save model.emix\n"
        "emix fit -k 1..6 --covariance all --plot selection.png\n"
        "emix fit data.parquet --columns x,y --weights count --format json\n"
        "cat data.csv | emix fit - -k 2..4 --criterion icl\n"
        "emix fit big.npy -k 8 --chunk-size 1000000      # larger than memory\n"
        "emix fit big.npy -k 8 --scheduler tcp://10.0.0.5:8786")
    fit.add_argument("file", nargs="?", metavar="FILE",
                     help="CSV/TSV (header detected), Parquet or .npy file, or - for stdin; "
                          "default: the embedded Old Faithful data")
    fit.add_argument("-k", "--components", type=_component_counts, default=[2], metavar="K",
                     help="number of components: 3, a range 1..8, or a list 2,4,6 (default 2)")
    fit.add_argument("--covariance", type=_covariance_types, default=["full"],
                     metavar="TYPE", help="full, tied, diag, spherical, a list (full,diag) "
                                          "or all (default full)")
    _add_columns(fit)
    fit.add_argument("--weights", metavar="COLUMN",
                     help="column of frequency weights (name or 1-based position)")
    fit.add_argument("--criterion", choices=CRITERIA, default="bic",
                     help="criterion for selecting among several models (default bic)")
    fit.add_argument("--convention", choices=CONVENTIONS, default="sklearn",
                     help="sklearn: -2 log L + penalty, lower is better (default); "
                          "mclust: R mclust's sign, higher is better")
    fit.add_argument("--n-init", type=_positive_int, default=1, metavar="N",
                     help="initialisations per model; the best is kept (default 1)")
    fit.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    fit.add_argument("--max-iter", type=_positive_int, default=SELECTION_MAX_ITER,
                     metavar="N", help="most EM iterations per initialisation "
                                       f"(default {SELECTION_MAX_ITER})")
    fit.add_argument("--tol", type=_positive_float, default=SELECTION_TOL,
                     help="stop when the log-likelihood per sample changes less "
                          f"(default {SELECTION_TOL:g}: tight, since criteria compare fits)")
    fit.add_argument("--reg-covar", type=_non_negative_float, default=1e-6, metavar="R",
                     help="added to every covariance's diagonal, in the data's units "
                          "(default 1e-6)")
    fit.add_argument("--save", metavar="MODEL", help="write the (best) model to this file")
    fit.add_argument("--plot", metavar="PICTURE",
                     help="draw the fit (and the selection curves) to a .png, .svg or .pdf")
    fit.add_argument("--format", choices=("table", "json"), default="table",
                     help="output format on stdout (default table)")
    fit.add_argument("--chunk-size", type=_positive_int, metavar="ROWS",
                     help="read the file ROWS rows at a time, once per iteration, for files "
                          "larger than memory (--plot draws a sample of the rows)")
    fit.add_argument("--checkpoint", metavar="FILE",
                     help="write the fit's state to FILE after every iteration; run the same "
                          "command again to resume a fit that was stopped (one model)")
    fit.add_argument("--scheduler", metavar="ADDRESS",
                     help="fit on the Dask cluster at ADDRESS (e.g. tcp://host:8786); needs "
                          "emix[dask]; .npy files are read by the workers at the same path")
    _add_verbosity(fit)

    predict = _command(
        commands, "predict", "label the rows of a file with a fitted model",
        "Write the most probable component of each row (1-based), and with --proba "
        "the probability of each component. Large files are streamed in chunks.",
        "emix predict model.emix data.csv\n"
        "emix predict model.emix data.parquet --proba -o labels.csv\n"
        "emix predict model.emix big.npy --format json -o labels.json")
    predict.add_argument("model", metavar="MODEL", help="model file written by emix fit --save")
    predict.add_argument("file", metavar="FILE", help="data file, or - for stdin")
    predict.add_argument("--proba", action="store_true",
                         help="also write each component's probability")
    _add_columns(predict, default="the model's feature names when the file has them")
    _add_output(predict)
    predict.add_argument("--chunk-size", type=_positive_int, default=PREDICT_CHUNK_ROWS,
                         metavar="ROWS", help=f"rows read at a time (default {PREDICT_CHUNK_ROWS})")

    sample = _command(
        commands, "sample", "draw samples from a fitted model",
        "Draw N rows from the fitted mixture, with the component each came from.",
        "emix sample model.emix -n 1000\nemix sample model.emix -n 5 --seed 1 --format json")
    sample.add_argument("model", metavar="MODEL", help="model file")
    sample.add_argument("-n", "--n-samples", type=_positive_int, required=True, metavar="N",
                        help="number of rows to draw")
    sample.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    _add_output(sample)

    show = _command(
        commands, "show", "print a model file's parameters",
        "Print the parameters of a model file: weights, means and covariances.",
        "emix show model.emix\nemix show model.emix --format json")
    show.add_argument("model", metavar="MODEL", help="model file")
    show.add_argument("--format", choices=("table", "json"), default="table",
                      help="output format (default table)")

    plot = _command(
        commands, "plot", "draw a fitted model over data",
        "Draw a model over data: a histogram with the component densities (1 feature), "
        "a scatter with covariance ellipses and density contours (2), a pair grid (more).",
        "emix plot model.emix data.csv -o fit.png\n"
        "emix plot model.emix data.csv --trace -o trace.svg")
    plot.add_argument("model", metavar="MODEL", help="model file")
    plot.add_argument("file", metavar="FILE", help="data file, or - for stdin")
    plot.add_argument("-o", "--output", required=True, metavar="PICTURE",
                      help=".png, .svg or .pdf file to write")
    plot.add_argument("--trace", action="store_true",
                      help="draw the log-likelihood per iteration of the fit instead")
    _add_columns(plot, default="the model's feature names when the file has them")
    plot.add_argument("--weights", metavar="COLUMN",
                      help="column of frequency weights: weighted histograms, rows of weight "
                           "0 not drawn")

    demo = _command(
        commands, "demo", "the experiment emix grew from: two 1-D Gaussians",
        "Draw 20,000 samples from a known two-component 1-D mixture (weights 0.3/0.7, "
        "means -1/3, standard deviations 1/0.6), fit it, and print the true and the "
        "estimated parameters side by side; draw the fit.",
        "emix demo\nemix demo -n 1000000 --seed 3 --plot demo.svg")
    demo.add_argument("-n", "--n-samples", type=_positive_int, default=20_000, metavar="N",
                      help="samples to draw (default 20000)")
    demo.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    demo.add_argument("--plot", metavar="PICTURE", default="emix-demo.png",
                      help="picture of the fit (default emix-demo.png); --plot '' for none")
    _add_verbosity(demo)
    return parser


def _command(commands, name: str, summary: str, description: str, examples: str):
    return commands.add_parser(
        name, help=summary, description=textwrap.fill(description, 79),
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_columns(parser, default: str = "all columns") -> None:
    parser.add_argument("--columns", type=_column_list, metavar="A,B",
                        help=f"columns to use, by name or 1-based position (default: {default})")


def _add_output(parser) -> None:
    parser.add_argument("-o", "--output", metavar="OUT", default="-",
                        help="file to write (default: stdout)")
    parser.add_argument("--format", choices=("csv", "json"), default=None,
                        help="output format (default: from OUT's extension, else csv)")


def _add_verbosity(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true",
                       help="print nothing but the result and errors")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="report every few iterations of every fit")


# -- option values ---------------------------------------------------------------------
def _number(kind: type, minimum: float, *, strict: bool, noun: str):
    """An argparse type: a finite ``kind`` above (``strict``) or at least ``minimum``."""
    def parse(text: str):
        try:
            value = kind(text)
            valid = bool(np.isfinite(value)) and value >= minimum \
                and not (strict and value == minimum)
        except (ValueError, OverflowError):
            valid = False
        if not valid:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}")
        return value
    return parse


_positive_int = _number(int, 1, strict=False, noun="a positive integer")
_seed = _number(int, 0, strict=False, noun="a non-negative integer")
_positive_float = _number(float, 0.0, strict=True, noun="a positive number")
_non_negative_float = _number(float, 0.0, strict=False, noun="a non-negative number")


#: The most values of K one selection fits (each is a whole fit).
MAX_MODELS = 1000


def _component_counts(text: str) -> list[int]:
    """``3``, ``1..8`` (or ``1-8``) or ``2,4,6``."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:\.\.|-)\s*(\d+)\s*", text)
    if match:
        low, high = int(match[1]), int(match[2])
        if 1 <= low <= high and high - low < MAX_MODELS:
            return list(range(low, high + 1))
        if 1 <= low <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} asks for {high - low + 1:.3g} models; at most {MAX_MODELS} are "
                "fitted in one selection: give a shorter range")
    else:
        try:
            counts = [int(part) for part in text.split(",")]
        except ValueError:
            counts = []
        if counts and min(counts) >= 1:
            return sorted(set(counts))
    raise argparse.ArgumentTypeError(
        f"expected a number of components such as 3, 1..8 or 2,4,6; got {text!r}")


def _covariance_types(text: str) -> list[str]:
    if text == "all":
        return list(COVARIANCE_ORDER)
    types = [part.strip() for part in text.split(",")]
    unknown = [t for t in types if t not in COVARIANCE_MODELS]
    if unknown or not types:
        raise argparse.ArgumentTypeError(
            f"unknown covariance type {unknown[0] if unknown else text!r}; choose from "
            f"{', '.join(COVARIANCE_ORDER)}, a comma-separated list of them, or all")
    return sorted(set(types), key=COVARIANCE_ORDER.index)


def _column_list(text: str) -> list[str]:
    columns = [part.strip() for part in text.split(",")]
    if not all(columns):
        raise argparse.ArgumentTypeError(
            f"expected column names or 1-based positions separated by commas, got {text!r}")
    return columns


# -- running ---------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None, stdin: TextIO | None = None) -> int:
    """Run the command line ``argv``; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stdin = stdin or sys.stdin
    parser = build_parser()
    args = None
    try:
        with contextlib.redirect_stdout(stdout):  # --help and --version print there
            args = parser.parse_args(list(argv) if argv is not None else None)
        if args.command is None:
            parser.print_help(stdout)
            return EXIT_USAGE
        command = _COMMANDS[args.command]
        with _warnings_to(stderr, quiet=getattr(args, "quiet", False)):
            return command(args, stdout=stdout, stderr=stderr, stdin=stdin)
    except _UsageError as exc:
        print(str(exc), file=stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except EmixError as exc:
        print(f"emix: error: {_in_command_terms(one_line(exc))}", file=stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (head, less) closed the pipe: it has what it wanted.
        _discard_further_output(stdout)
        return EXIT_OK
    except MemoryError as exc:  # a table too large or too wide for a fit in memory
        reason = one_line(exc) or "out of memory"
        remedy = _MEMORY_REMEDIES.get(getattr(args, "command", None), _MEMORY_REMEDIES["fit"])
        print(f"emix: error: not enough memory ({reason}); {remedy}", file=stderr)
        return EXIT_USAGE
    except OSError as exc:  # unwritable output, disk full: the user's to fix
        print(f"emix: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=stderr)
        return EXIT_USAGE


#: What each command can do with less memory.
_MEMORY_REMEDIES = {
    "fit": ("fit fewer columns (--columns), a covariance with fewer parameters "
            "(--covariance diag) or fewer components, or read the rows in pieces "
            "(--chunk-size ROWS)"),
    "sample": "draw fewer samples (-n) at a time",
    "predict": "read the rows in smaller pieces (--chunk-size ROWS)",
}


def _discard_further_output(stdout: TextIO) -> None:
    """Point a closed standard output at /dev/null, so that the interpreter's
    final flush does not fail again."""
    try:
        descriptor = stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


@contextlib.contextmanager
def _warnings_to(stderr: TextIO, *, quiet: bool) -> Iterator[None]:
    """Show the library's warnings as one line each (not with source lines)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            if not quiet:
                seen = set()
                for warning in caught:
                    text = _in_command_terms(one_line(warning.message))
                    if text not in seen:
                        seen.add(text)
                        print(f"emix: warning: {text}", file=stderr)


#: The library's names for what the command calls options.
_OPTION_NAMES = {"max_iter": "--max-iter", "tol": "--tol", "reg_covar": "--reg-covar",
                 "random_state": "--seed", "n_components": "-k"}


def _in_command_terms(text: str) -> str:
    """A library message as a command-line user reads it: options by their
    flags, components numbered from 1 as everywhere in the command's output."""
    text = re.sub(r"\b(component|feature)(\(s\))? (\[[\d, ]+\]|\d+)",
                  lambda m: m[1] + (m[2] or "") + " " + re.sub(
                      r"\d+", lambda d: str(int(d[0]) + 1), m[3]), text)
    text = text.replace("See collapses_; fewer n_components", "Fewer components (-k)")
    names = "|".join(_OPTION_NAMES)
    return re.sub(rf"(?<![-\w])({names})\b(=?)",
                  lambda m: _OPTION_NAMES[m[1]] + (" " if m[2] else ""), text)


def _verbosity(args) -> int:
    return QUIET if args.quiet else VERBOSE if args.verbose else NORMAL


def _read(args, stdin: TextIO) -> tuple[Table, str]:
    if args.file is None:
        if args.columns or args.weights:
            raise InvalidInputError("--columns and --weights need a FILE; the embedded "
                                    "Old Faithful data has the columns eruptions, waiting")
        X, names = load_faithful()
        return Table(X, names, None), FAITHFUL
    table = read_data(args.file, columns=args.columns, weights=args.weights, stdin=stdin)
    return table, "standard input" if args.file == "-" else args.file


def _fit(args, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    _check_outputs(args, pictures=("plot",), files=("save", "checkpoint"), inputs=("file",))
    streamed = args.chunk_size is not None or args.scheduler is not None
    with ProgressReporter(stderr, verbosity=_verbosity(args)) as reporter, \
            contextlib.ExitStack() as stack:
        reporter.status(f"reading {args.file or 'the Old Faithful data'} ...")
        if streamed:
            data = open_streamed(args, stdin, stack)
            X, weights, names, source = data.X, data.weights, data.names, args.file
        else:
            table, source = _read(args, stdin)
            X, weights, names = table.X, table.weights, table.names
        model, selection = _fit_or_select(args, X, weights, reporter)
        if streamed:  # one more pass over the file, for the statistics or the row count
            if selection is None:
                stats = data.statistics(model, args.convention)
                n_rows = stats["n_rows"]
            else:
                n_rows = data.n_rows()
                stats = selected_statistics(selection, n_rows)
            if args.plot:
                rows, row_weights = data.sample()
                table = Table(rows, names, row_weights)
        else:
            n_rows = int(table.X.shape[0])
    if not _numbered(names):  # a header's names, for predict to find the columns
        model.feature_names_in_ = np.asarray(names, dtype=object)
    with _fitted_names_ignored():
        if not streamed:
            stats = (selected_statistics(selection, n_rows) if selection is not None
                     else fit_statistics(model, n_rows, float(X.shape[0] if weights is None
                                                              else weights.sum()),
                                         model.classification_cost(X, weights),
                                         args.convention))
        if args.format == "json":
            record = {"data": {"source": source, "n_samples": n_rows,
                               "features": list(names)},
                      "model": model_record(model, stats)}
            if selection is not None:
                record["selection"] = selection_record(selection)
            stdout.write(json.dumps(record, indent=2) + "\n")
        else:
            text = ""
            if selection is not None:
                text += selection.format_table() + "\n" + selection.describe() + "\n\n"
            text += format_model(model, stats, source=source)
            stdout.write(text)
        if args.save:
            path = save(model, args.save)
            _note(args, stderr, f"model written to {path}")
        if args.plot:
            _draw_fit(model, table, selection, args.plot)
            _note(args, stderr, f"picture written to {args.plot}")
    return EXIT_OK


def _fit_or_select(args, X, weights, reporter: ProgressReporter
                   ) -> tuple[GaussianMixture, SelectionResult | None]:
    """One model, or the selection among several; ``X`` an array, or what
    ``fit`` reads in pieces (a chunk source, a Dask array)."""
    options = dict(n_init=args.n_init, random_state=args.seed, max_iter=args.max_iter,
                   tol=args.tol, reg_covar=args.reg_covar)
    selection: SelectionResult | None = None
    if len(args.components) == 1 and len(args.covariance) == 1:
        model = GaussianMixture(args.components[0], covariance_type=args.covariance[0],
                                **options)
        model.fit(X, sample_weight=weights, progress=reporter, checkpoint=args.checkpoint)
        reporter.finish(f"fitted K={model.n_components} {model.covariance_type}: "
                        f"{model.convergence_state_} after "
                        f"{counted(model.n_iter_, 'iteration')}")
    else:
        if args.checkpoint:
            raise InvalidInputError(
                "--checkpoint resumes one model's fit: give one K and one covariance type")
        selection = select(X, args.components, args.covariance,
                           criterion=args.criterion, convention=args.convention,
                           sample_weight=weights, progress=reporter, **options)
        model = selection.best
        failed = sum(c.error is not None for c in selection.candidates)
        reporter.finish(f"fitted {counted(len(selection.candidates) - failed, 'model')}"
                        + (f" ({failed} could not be fitted)" if failed else ""))
    return model, selection


def _numbered(names: list[str]) -> bool:
    """Whether the names are the readers' stand-ins for a file without a header."""
    return names == [f"column {j + 1}" for j in range(len(names))]


def _note(args, stderr: TextIO, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"emix: {text}", file=stderr)


def _predict(args, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    _check_outputs(args, files=("output",), inputs=("model", "file"))
    model = load(args.model)
    k = model.n_components
    names = ["component"] + ([f"p{j + 1}" for j in range(k)] if args.proba else [])
    fmt = output_format(args.output, args.format)
    with _model_columns(model, args, stdin, args.chunk_size) as chunks, \
            TableWriter(args.output, names, fmt, stdout=stdout) as writer, \
            _fitted_names_ignored():
        for chunk in chunks:
            proba = model.predict_proba(chunk).astype(np.float64)
            labels = proba.argmax(axis=1) + 1
            rows = labels[:, None] if not args.proba else np.column_stack([labels, proba])
            writer.write(rows)
    return EXIT_OK


def _model_columns(model: GaussianMixture, args, stdin: TextIO, chunk_rows: int) -> ChunkedTable:
    """The file's columns for the model: the user's choice, else the model's
    feature names (the file must have them all when it has a header), else
    every column in order."""
    chunks = iter_chunks(args.file, chunk_rows=chunk_rows, columns=args.columns, stdin=stdin)
    source = "standard input" if args.file == "-" else repr(args.file)
    fitted = feature_names(model)  # "column j" when the model was fitted without names
    if args.columns is None and set(fitted) <= set(chunks.all_names):
        chunks = chunks.select(fitted)
    elif args.columns is None and getattr(model, "feature_names_in_", None) is not None:
        if not _numbered(chunks.all_names):
            missing = [name for name in fitted if name not in chunks.all_names]
            raise InvalidInputError(
                f"{source} lacks the column(s) {', '.join(map(repr, missing))} that the model "
                f"was fitted on; choose the columns to use with --columns")
    if len(chunks.names) != model.n_features_in_:
        what = "--columns selects" if args.columns else f"{source} has"
        raise InvalidInputError(
            f"{what} {counted(len(chunks.names), 'column')} ({', '.join(chunks.names)}) but "
            f"the model was fitted on {model.n_features_in_} ({', '.join(fitted)}); choose "
            "them with --columns")
    return chunks


def _label_column(taken: list[str]) -> str:
    """The name of the column of component labels: "component", unless a
    feature already has that name."""
    name = "component"
    while name in taken:
        name = f"_{name}"
    return name


@contextlib.contextmanager
def _fitted_names_ignored() -> Iterator[None]:
    # The command has already matched the file's columns to the model's
    # names; the arrays it passes carry none, which is not worth a warning.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        yield


def _sample(args, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    _check_outputs(args, files=("output",), inputs=("model",))
    model = load(args.model)
    model.random_state = args.seed
    X, labels = model.sample(args.n_samples)
    names = [*feature_names(model), _label_column(feature_names(model))]
    with TableWriter(args.output, names, output_format(args.output, args.format),
                     stdout=stdout) as writer:
        writer.write(np.column_stack([X.astype(np.float64), labels + 1]))
    return EXIT_OK


def _show(args, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    model = load(args.model)
    if args.format == "json":
        stdout.write(json.dumps(model_record(model), indent=2) + "\n")
    else:
        stdout.write(format_model(model, source=args.model))
    return EXIT_OK


def _plot(args, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    _check_outputs(args, pictures=("output",), inputs=("model", "file"))
    model = load(args.model)
    from .. import plotting

    with _fitted_names_ignored():
        figure = _model_picture(model, args, stdin)
    plotting.save_figure(figure, args.output)
    print(f"emix: picture written to {args.output}", file=stderr)
    return EXIT_OK


def _model_picture(model: GaussianMixture, args, stdin: TextIO):
    from .. import plotting

    if args.trace:
        figure, axes = plotting.figure_with_axes()
        plotting.plot_trace(model, ax=axes)
    else:
        chunks = _model_columns(model, args, stdin, PREDICT_CHUNK_ROWS)
        names = chunks.names
        if args.weights:
            chunks = chunks.select([*names, args.weights])
        blocks = list(chunks)
        if not blocks:
            raise InvalidInputError(f"{args.file!r} has no data rows: there is nothing to draw")
        data = np.concatenate(blocks)
        X, weights = (data[:, :-1], data[:, -1]) if args.weights else (data, None)
        figure = plotting.plot_fit(model, X, feature_names=names, sample_weight=weights)
    return figure


def _demo(args, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    _check_outputs(args, pictures=("plot",))
    weights, means, stds = (0.3, 0.7), (-1.0, 3.0), (1.0, 0.6)
    X, _ = two_gaussians(args.n_samples, weights=weights, means=means, stds=stds,
                         random_state=args.seed)
    reporter = ProgressReporter(stderr, verbosity=_verbosity(args))
    model = GaussianMixture(2, random_state=args.seed, tol=1e-6, max_iter=1000)
    model.fit(X, progress=reporter)
    reporter.finish(f"fitted K=2: {model.convergence_state_} after "
                    f"{counted(model.n_iter_, 'iteration')}")
    order = np.argsort(model.means_[:, 0])
    fitted_sd = np.sqrt(model.covariances_.reshape(2, -1)[:, 0])
    # Standard errors of the estimates, to judge the differences by.
    n = args.n_samples
    rows = []
    for j, k in enumerate(order):
        w = weights[j]
        se = {"weight": np.sqrt(w * (1 - w) / n), "mean": stds[j] / np.sqrt(n * w),
              "sd": stds[j] / np.sqrt(2 * n * w)}
        for name, truth, estimate in (("weight", w, model.weights_[k]),
                                      ("mean", means[j], model.means_[k, 0]),
                                      ("sd", stds[j], fitted_sd[k])):
            rows.append([f"{name} {j + 1}", f"{truth:.4f}", f"{estimate:.4f}",
                         f"{estimate - truth:+.4f}", f"{(estimate - truth) / se[name]:+.2f}"])
    lines = [f"demo: {n} samples from 0.3 N(-1, 1) + 0.7 N(3, 0.6^2), seed {args.seed}",
             f"fit:  {model.convergence_state_} after {model.n_iter_} iterations, "
             f"log-lik/sample {model.lower_bound_:.6f}", "",
             *text_table(["parameter", "true", "estimated", "difference", "in s.e."], rows)]
    stdout.write("\n".join(lines) + "\n")
    if args.plot:
        from .. import plotting

        figure = plotting.plot_fit(model, X, feature_names=["x"])
        (axes,) = figure.axes
        grid = np.linspace(*axes.get_xlim(), 400)
        truth = sum(w * np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
                    for w, m, s in zip(weights, means, stds, strict=True))
        axes.plot(grid, truth, color="#CC79A7", linestyle="--", linewidth=1.5,
                  label="true mixture")
        axes.legend()
        plotting.save_figure(figure, args.plot)
        _note(args, stderr, f"picture written to {args.plot}")
    return EXIT_OK


def _check_outputs(args, *, pictures: tuple[str, ...] = (), files: tuple[str, ...] = (),
                   inputs: tuple[str, ...] = ()) -> None:
    """Refuse bad output names before any work (not after a long fit): a
    picture must end in .png/.svg/.pdf, every output must be writable and
    must not be one of the inputs."""
    read = [Path(path) for path in (getattr(args, name, None) for name in inputs)
            if path and path != "-"]
    written: dict[Path, str] = {}
    for name in (*pictures, *files):
        path = getattr(args, name, None)
        if path == "" and name in files:
            raise InvalidInputError(f"--{name} needs a file name")
        if not path or path == "-":
            continue
        same = written.get(Path(os.path.abspath(path)))
        if same is not None:
            raise InvalidInputError(
                f"--{same} and --{name} both write {path!r}; give them different files")
        written[Path(os.path.abspath(path))] = name
        if name in pictures and Path(path).suffix.lower() not in PICTURE_FORMATS:
            raise InvalidInputError(
                f"cannot draw to {path!r}: the picture's name must end in "
                f"{', '.join(PICTURE_FORMATS)}")
        check_writable(path)
        for source in read:
            if source.exists() and Path(path).exists() and source.samefile(path):
                raise InvalidInputError(
                    f"{path!r} is an input of this command; write the output to another file")


def _draw_fit(model: GaussianMixture, table: Table, selection: SelectionResult | None,
              path: str) -> None:
    from .. import plotting

    if selection is None:
        figure = plotting.plot_fit(model, table.X, feature_names=table.names,
                                   sample_weight=table.weights)
    else:
        figure = plotting.plot_selection_and_fit(selection, table.X, feature_names=table.names,
                                                 sample_weight=table.weights)
    plotting.save_figure(figure, path)


_COMMANDS = {"fit": _fit, "predict": _predict, "sample": _sample, "show": _show,
             "plot": _plot, "demo": _demo}


def entry_point() -> None:  # pragma: no cover - exercised through the console script
    """Run the command line of the process and exit with its status.

    A Ctrl-C is a KeyboardInterrupt while the command runs, so that its
    with-blocks remove partial outputs; before and after, the SIGINT handler
    in place when this was called (:mod:`emix.__main__`'s, which exits at
    once) stays in force, through the interpreter's shutdown too.
    """
    outer_handler = signal.getsignal(signal.SIGINT)
    outer_hook = sys.unraisablehook
    try:
        sys.unraisablehook = _interrupts_passed_on(outer_hook)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = main()
    except KeyboardInterrupt:
        _restore_handler(outer_handler)  # a second Ctrl-C must not interrupt the message
        print("\nemix: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception:
        import traceback

        traceback.print_exc()
        print("emix: internal error (a bug): please report it with the traceback above.",
              file=sys.stderr)
        code = EXIT_BUG
    finally:
        _restore_handler(outer_handler)
        sys.unraisablehook = outer_hook
    sys.exit(code)


#: 128 + SIGINT, as shells report a command ended by Ctrl-C.
EXIT_INTERRUPTED = 130


def _restore_handler(handler) -> None:
    if handler is not None:  # None: not installed from Python, nothing to restore
        signal.signal(signal.SIGINT, handler)


def _interrupts_passed_on(hook):
    """An unraisable-exception hook that does not drop a Ctrl-C.

    A KeyboardInterrupt raised in a callback from C (numba's compiler calls
    Python through ctypes while it loads its cache; ``__del__`` methods) is
    printed and dropped by Python, and the command would go on.  It is
    raised again in a moment, outside the callback; other exceptions go to
    ``hook``.
    """
    def unraisable(report) -> None:
        if report.exc_type is not None and issubclass(report.exc_type, KeyboardInterrupt):
            again = threading.Timer(0.05, _thread.interrupt_main)
            again.daemon = True
            again.start()
            return
        hook(report)
    return unraisable

