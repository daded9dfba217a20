"""The interleaved timing of ``benchmarks._common``: per-round ratios to the baseline, and
the page faults per call beside the times."""

import numpy as np
import pytest

from benchmarks import _common as C


def test_ratios_are_per_round_and_faults_are_counted():
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
    assert out["base"]["ratio_median"] == 1.0
    assert out["fresh"]["ratios"] == [
        a / b for a, b in zip(items[1].times, items[0].times, strict=True)
    ]
    if C.minor_faults() is None:
        pytest.skip("this platform does not count page faults")
    # 4 KiB pages: 16,384 faults per buffer; transparent huge pages (2 MiB): 32.
    assert out["fresh"]["faults_per_call"] >= fresh_mib // 2
    assert out["base"]["faults_per_call"] < out["fresh"]["faults_per_call"] / 4
