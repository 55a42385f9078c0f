"""Helpers for the plugins' numba kernels: cache prefetch hints.

    from textlab.jit import prefetch, prefetch2, prefetch_row

    @njit
    def kernel(table, rows, ...):
        for i in range(len(rows)):
            if i + 8 < len(rows):
                prefetch_row(table, rows[i + 8])   # on its way while row i is worked on
            ...

A kernel that reads rows of a large table at random waits on memory for most of its time unless
the rows it will need next are already being fetched. `prefetch(a, i)` (1-D) and
`prefetch2(a, i, j)` (2-D) compile to LLVM's prefetch intrinsic (for writing, kept in all cache
levels): no fault on any address, no effect on any value. `prefetch_row(a, r)` hints every
64-byte line of row r of a 2-D float32 array. Importing this module imports numba.
"""

from __future__ import annotations

from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic


# the intrinsic's name carries its pointer type: opaque `ptr` from LLVM 17 on (this machine's llvmlite
# 0.50 has LLVM 22), typed `i8*` before (the LLVM 14 of older llvmlite builds); only the first is tested here
_PREFETCH = "llvm.prefetch.p0" if llvm_version_info[0] >= 17 else "llvm.prefetch.p0i8"


def _prefetch_codegen(context, builder, signature, args):
    """llvm.prefetch of the address of arr[i] or arr[i, j] (args: the array, then its indices)."""
    aryty = signature.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    inds = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], signature.args[1:])]
    ptr = cgutils.get_item_pointer2(context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape),
                                    strides=cgutils.unpack_tuple(builder, ary.strides), layout=aryty.layout, inds=inds)
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                        _PREFETCH)
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])  # for writing, keep, data cache
    return context.get_dummy_value()


@intrinsic
def prefetch(typingctx, arr, i):
    """Hint the CPU to bring the cache line of arr[i] (a 1-D array) in."""
    if isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(i, types.Integer):
        return types.void(arr, i), _prefetch_codegen
    return None


@intrinsic
def prefetch2(typingctx, arr, i, j):
    """Hint the CPU to bring the cache line of arr[i, j] (a 2-D array) in."""
    if isinstance(arr, types.Array) and arr.ndim == 2 and isinstance(i, types.Integer) and isinstance(j, types.Integer):
        return types.void(arr, i, j), _prefetch_codegen
    return None


@njit(nogil=True, cache=True, inline="always")
def prefetch_row(a, r):
    """Hint every 64-byte line of row r of a 2-D float32 array."""
    for k in range(0, a.shape[1], 16):
        prefetch2(a, r, k)
