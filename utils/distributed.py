"""Process-group set-up and rank helpers that also work as one plain process (no torchrun).

torchrun (or any launcher setting RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT) selects the
distributed path; without those variables every helper degrades to the single-process answer.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def launched_distributed() -> bool:
    """True when a launcher asked for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init_distributed(device: str | torch.device = "auto") -> torch.device:
    """Pick this process's device and, under a multi-process launcher, join the process group.

    device "auto" means CUDA when available, else CPU. With several processes each takes GPU `LOCAL_RANK` and
    the backend is NCCL on GPU, gloo on CPU. Returns the device this process should use.
    """
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda was requested but CUDA is not available; pass --device cpu")
        device = torch.device("cuda", local_rank() if device.index is None else device.index)
        torch.cuda.set_device(device)
    if launched_distributed() and not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return device


def shutdown() -> None:
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (picklable objects)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of `tensor` over ranks (a new tensor; the input is left unchanged)."""
    if not is_initialized():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def max_over_ranks(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """The element-wise maximum of `values` over ranks (one small all-reduce)."""
    if not is_initialized():
        return list(values)
    t = torch.tensor(values, device=device, dtype=torch.float32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def all_ranks_true(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True only if `flag` is true on every rank (so all ranks take the same branch)."""
    if not is_initialized():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], device=device, dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
