"""torch.distributed plumbing for data-parallel training and sharded evaluation.

``torchrun --nproc-per-node N -m protocols.run ...`` sets RANK / WORLD_SIZE / LOCAL_RANK;
:func:`init_from_env` then joins the process group (NCCL on CUDA, Gloo on CPU).  The trainer
shards batches by rank and averages gradients with :func:`all_reduce_grads` after each
backward (explicit all-reduce rather than DDP because models expose ``losses(phase, batch)``
rather than one ``forward``); only rank 0 logs, writes checkpoints and touches the store.
Without torchrun everything degrades to a single process.
"""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist


def init_from_env(device: str = "auto") -> torch.device:
    """Join the process group if launched by torchrun; return this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = (device == "auto" and torch.cuda.is_available()) or device.startswith("cuda")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        if device.startswith("cuda:") and world == 1:
            return torch.device(device)
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def all_reduce_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Average gradients over processes (a no-op in a single process)."""
    n = world_size()
    if n == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(n)


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor's first dimension across ranks (equal sizes per rank)."""
    n = world_size()
    if n == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(n)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def broadcast_object(obj):
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
