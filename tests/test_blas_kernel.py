"""CI runs the numerically sensitive tests under several BLAS kernels
(OPENBLAS_CORETYPE): a kernel that the variable did not select would leave
a kernel-dependent failure unseen."""

import os

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")


def test_the_blas_kernel_asked_for_is_the_one_used():
    import numpy as np  # noqa: F401  (loads numpy's OpenBLAS)

    libraries = [info for info in threadpoolctl.threadpool_info()
                 if info.get("internal_api") == "openblas"]
    assert libraries, "numpy is expected to run on OpenBLAS (the wheels' BLAS)"
    wanted = os.environ.get("OPENBLAS_CORETYPE")
    for library in libraries:
        architecture = library.get("architecture") or ""
        assert architecture, library
        if wanted:
            assert architecture.lower() == wanted.lower(), library
