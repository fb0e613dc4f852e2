"""Thread counts for the numerical libraries, set explicitly so runs are predictable on shared machines; where
messages go."""

from __future__ import annotations

import logging
import os
import sys


def default_workers() -> int:
    """Worker processes for per-case work: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def set_threads(n: int) -> None:
    """Use `n` threads in torch, SimpleITK and BLAS-backed numpy code started later; one in antspyx.

    antspyx registration is repeatable for a seed only on one thread (with two, the same seed gave affine
    parameters differing by up to 0.1), and antspyx reads its thread count once, when first imported.
    Per-case work runs in parallel processes instead.
    """
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    # OpenMP threads that spin while they wait steal a busy machine's cores from everyone, autopipe's own
    # other processes included; sleeping ones do not (benchmarks/train_under_load.py)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"  # read by antspyx's ITK; SimpleITK is set below
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    except ImportError:
        pass
    if "torch" in sys.modules:  # torch reads OMP_NUM_THREADS when it is imported later
        sys.modules["torch"].set_num_threads(n)


def configure_logging(quiet: bool) -> None:
    """Messages of every autopipe module go to stderr, plain, whatever else configured logging."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    log = logging.getLogger("autopipe")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)  # log files (training.log) keep everything, even with --quiet
    log.propagate = False
