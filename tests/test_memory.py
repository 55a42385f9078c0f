"""The core's helpers for large tables: huge-page memory and prefetch hints for numba kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import textlab


def test_huge_zeros_are_zeros_that_numpy_and_torch_share():
    a = textlab.huge_zeros((3000, 100))
    assert a.shape == (3000, 100) and a.dtype == np.float32 and a.flags.writeable and not a.any()
    t = torch.from_numpy(a)
    t[7, 3] = 2.5
    assert a[7, 3] == 2.5
    b = textlab.huge_zeros((5,), dtype=np.int32)
    assert b.dtype == np.int32 and b.tolist() == [0] * 5
    assert textlab.huge_zeros((0, 32)).shape == (0, 32)


def test_huge_zeros_fall_back_to_plain_zeros_without_anonymous_maps(monkeypatch):
    import mmap

    monkeypatch.delattr(mmap, "MAP_ANONYMOUS")  # as on Windows
    a = textlab.huge_zeros((4, 3))
    assert a.shape == (4, 3) and not a.any() and a.flags.writeable


def test_prefetch_hints_change_no_value_and_take_any_row():
    numba = pytest.importorskip("numba")
    from textlab.jit import prefetch, prefetch2, prefetch_row

    @numba.njit
    def total(a, rows, ahead):
        s = 0.0
        for i in range(len(rows)):
            if i + ahead < len(rows):
                prefetch_row(a, rows[i + ahead])
                prefetch(rows, i + ahead)
                prefetch2(a, rows[i + ahead], a.shape[1] - 1)
            for k in range(a.shape[1]):
                s += a[rows[i], k]
        return s

    a = np.random.default_rng(0).random((500, 40), dtype=np.float32)  # 40: a row's last line is partly used
    rows = np.random.default_rng(1).integers(0, 500, 2000).astype(np.int64)
    assert total(a, rows, 0) == total(a, rows, 8) == pytest.approx(float(a[rows].astype(np.float64).sum()), rel=1e-6)
    assert total(a, rows.astype(np.int32), 3) == total(a, rows, 0)
