"""Large tables on huge pages.

    table = textlab.huge_zeros((rows, dim))          # numpy float32 zeros; torch.from_numpy(table) shares it

Kernels that read and write rows of a large table at random spend much of their time on address
translation: with 4 KB pages a 1 GB table is 262,144 pages and nearly every row read misses the
TLB too; with Linux's 2 MB transparent huge pages it is 512. torch's own tensors of 2 MB and more
get huge pages in the `textlab` command (`THP_MEM_ALLOC_ENABLE`, set in `__main__.py`); numpy
arrays do not: `huge_zeros` maps its own anonymous memory and asks for huge pages (madvise)
before the first touch (word2vec's two matrices). Where the system has none (macOS, THP off)
the same zeros come on ordinary pages. The memory is freed with the array.
"""

from __future__ import annotations

import mmap
from typing import Any


def huge_zeros(shape: tuple[int, ...], dtype: Any = "float32") -> Any:
    """Zeros of `shape` in an anonymous memory map of their own, on huge pages where the system allows."""
    import numpy as np

    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if not hasattr(mmap, "MAP_ANONYMOUS"):  # Windows: no anonymous maps with flags, no huge pages to ask for
        return np.zeros(shape, dtype=dt)
    mm = mmap.mmap(-1, max(1, count * dt.itemsize), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mm.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel without transparent huge pages: ordinary pages
            pass
    return np.frombuffer(mm, dtype=dt, count=count).reshape(shape)
