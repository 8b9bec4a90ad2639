# Two commands do all the set-up on a fresh machine with Python >= 3.11 and make:
#   make run    creates .venv (emix and its test tools), fits the embedded Old Faithful data
#   make test   the same set-up, then ruff, the whole test suite, the numerically
#               sensitive tests under two more BLAS kernels and on the NumPy E-step
#               path (make numerics), and the benchmarks' agreement check
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test numerics lint clean

run: $(STAMP)
	$(BIN)/emix fit

# The numerically sensitive tests, run again under another BLAS kernel
# (OpenBLAS picks one per CPU: Haswell here, SkylakeX on most AVX-512 CPUs)
# and on the NumPy E-step path: a result that changes with either is a bug.
NUMERICS := tests/test_blas_kernel.py tests/test_hard_data.py tests/test_invariants.py \
            tests/test_engine.py tests/test_laws.py tests/test_sklearn_equivalence.py \
            tests/test_compiled.py

test: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory numerics
	$(BIN)/python bench/run.py --quick

numerics: $(STAMP)
	OPENBLAS_CORETYPE=Haswell $(BIN)/python -m pytest -q $(NUMERICS)
	if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
	    OPENBLAS_CORETYPE=SkylakeX $(BIN)/python -m pytest -q $(NUMERICS); fi
	EMIX_NUMBA=0 $(BIN)/python -m pytest -q $(NUMERICS)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache .hypothesis
