"""The interleaved timing of ``benchmarks._common``: every item timed once per round, and
the page faults per call beside the times (no timing is asserted: the machine's load
decides it)."""

import numpy as np
import pytest

from benchmarks import _common as C


def test_every_item_is_timed_per_round_and_faults_are_counted():
    fresh_mib = 64  # above glibc's largest mmap threshold (32 MiB): mapped anew every call

    def noop(k):
        for _ in range(k):
            pass

    def fresh(k):
        for _ in range(k):
            np.ones(fresh_mib * 2**20 // 8).sum()  # touches every page of a new buffer

    items = [C.Timed("base", noop), C.Timed("fresh", fresh)]
    out = C.interleaved_timing(items, calls_per_block=2, rounds=3, baseline="base")
    assert out["rounds"] == 3 and len(out["load1"]) == 3
    assert all(len(it.times) == 3 for it in items) and len(out["fresh"]["ratios"]) == 3
    if C.minor_faults() is None:
        pytest.skip("this platform does not count page faults")
    # 4 KiB pages: 16,384 faults per buffer; transparent huge pages (2 MiB): 32.
    assert out["fresh"]["faults_per_call"] >= fresh_mib // 2
    assert out["base"]["faults_per_call"] < out["fresh"]["faults_per_call"] / 4
