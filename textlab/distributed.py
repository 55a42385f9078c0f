"""Several processes with torch.distributed (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK).

`textlab train` calls `init(device)` before it creates the run; everything here is a no-op in a
single process, so task code can call these helpers unconditionally.
"""

from __future__ import annotations

import os
from typing import Any, Sequence, TypeVar

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    """True when several processes train together and the process group is up."""
    if world_size() <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init(device: Any) -> None:
    """Start the process group if torchrun launched us (gloo on CPU, nccl on CUDA)."""
    if world_size() <= 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "nccl" if getattr(device, "type", str(device)).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)


def shutdown(clean: bool = True) -> None:
    """End the process group. After a clean run every rank first waits for the others: a rank that
    tore down its gloo pairs while another still used them could abort the process at exit."""
    if active():
        import torch.distributed as dist

        if clean:
            try:
                dist.barrier()
            except Exception:  # noqa: BLE001 - another rank is gone; nothing left to wait for
                pass
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s value of `obj` on every rank."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of a list of floats over all ranks."""
    if not active():
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_true(flag: bool) -> bool:
    """True on every rank if it is true on any rank (stop signals, time budgets)."""
    if not active():
        return flag
    return all_reduce_sum([1.0 if flag else 0.0])[0] > 0


def shard(items: Sequence[T]) -> Sequence[T]:
    """This rank's share of a sequence: items rank, rank+world, ... (equal lengths, tail dropped).

    Every rank gets the same number of items, so collective operations stay in step.
    """
    w = world_size()
    if w <= 1:
        return items
    n = (len(items) // w) * w
    return items[rank():n:w]


def resolve_device(name: str = "auto") -> Any:
    """`auto` picks CUDA when present (this rank's GPU under torchrun), else CPU."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() if world_size() > 1 else 0)
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        from .errors import UsageError

        raise UsageError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        from .errors import UsageError

        raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    return dev


DIGEST_ENV = "TEXTLAB_RANK_DIGEST"


def write_digest(model: Any) -> None:
    """With TEXTLAB_RANK_DIGEST=DIR set, each rank writes DIR/rank<R>.txt: a SHA-256 of its weights.

    `textlab.fit` calls it when training ends, so a test (or a suspicious user) can check that the
    processes really exchanged gradients: after DDP steps every rank holds identical weights.
    """
    out = os.environ.get(DIGEST_ENV)
    if not out:
        return
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"rank{rank()}.txt"), "w") as fh:
        fh.write(h.hexdigest())
