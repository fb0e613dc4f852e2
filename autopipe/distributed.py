"""Several processes through torch.distributed: who am I, summing across ranks, and sharing work evenly.

Started by `torchrun --nproc_per_node N -m autopipe train FOLD` (or across nodes with torchrun's
--nnodes/--rdzv options), which sets RANK, WORLD_SIZE and LOCAL_RANK. Without them everything here
is a no-op on a single process, so the same code path serves a laptop and a cluster. Backend: NCCL on
GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process' place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_environment() -> Ranks:
    """RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them; one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(ranks: Ranks, device_type: str) -> None:
    """Join the process group (NCCL on cuda, gloo otherwise) when there are several ranks."""
    if ranks.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of `values` over every rank (a copy; unchanged on one process)."""
    total = values.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def mean_across_ranks(values: list[torch.Tensor], device: torch.device) -> float:
    """Mean of the scalar tensors `values` of every rank (each rank may hold a different number)."""
    total = sum_across_ranks(torch.stack([torch.stack(values).sum(), torch.tensor(float(len(values)), device=device)]))
    return float(total[0] / total[1])


def share_work(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Indices of `costs` split into `world_size` lists of nearly equal total cost (largest first, greedy).

    Each list keeps ascending index order, so every rank processes its items in a stable order.
    """
    shares: list[list[int]] = [[] for _ in range(world_size)]
    loads = [0.0] * world_size
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        lightest = min(range(world_size), key=lambda r: (loads[r], r))
        shares[lightest].append(index)
        loads[lightest] += costs[index]
    return [sorted(s) for s in shares]


def local_world_size() -> int:
    """Processes on this machine (torchrun's LOCAL_WORLD_SIZE): they share its cores."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
