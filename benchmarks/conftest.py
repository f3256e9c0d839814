"""Benchmark settings (pytest-benchmark; not part of the fast tests: pyproject's testpaths is tests/).

    python -m pytest benchmarks -p no:cacheprovider --benchmark-enable --benchmark-json=bench.json -s

Every benchmark reports ratios of times measured in the same process, so that a shared, noisy CPU
changes them less than absolute times.  ``bench_threads`` caps torch and BLAS/OpenMP threads (numpy,
scipy, scikit-learn through threadpoolctl) for the whole test, the same cap for the suite and for the
reference tools: $AVADE_BENCH_THREADS, default 1 (on an oversubscribed CPU more threads add noise).
"""
from __future__ import annotations

import os

import pytest
import torch

from common.memory import keep_freed_memory

#: what the protocol driver does for every run (common/memory.py); test_bench_allocator.py measures it
keep_freed_memory()


def bench_threads_setting() -> int:
    value = os.environ.get("AVADE_BENCH_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


@pytest.fixture
def bench_threads():
    """The thread cap, applied to torch and (threadpoolctl) BLAS/OpenMP while the test runs."""
    from threadpoolctl import threadpool_limits

    n, before = bench_threads_setting(), torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(before)
