"""Importing emix pulls in numpy and scipy only; optional stacks stay unloaded."""

import subprocess
import sys

HEAVY = ("matplotlib", "dask", "distributed", "torch", "cupy", "sklearn", "pandas",
         "pyarrow", "numba", "threadpoolctl")

MODULES = ("emix", "emix.cli.main", "emix.cli.progress", "emix.io.model_file",
           "emix.io.tables", "emix.datasets", "emix.em.engine", "emix.em.init", "emix.families",
           "emix.execution", "emix.execution.dask_data", "emix.execution.chunked",
           "emix.selection", "emix.plotting")


def test_no_optional_stack_is_imported():
    code = (
        "import sys\n"
        f"for name in {MODULES!r}: __import__(name)\n"
        f"loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "", f"imported at import time: {result.stdout.strip()}"


def test_command_line_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "emix", "fit", "-k", "2"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Old Faithful" in result.stdout
