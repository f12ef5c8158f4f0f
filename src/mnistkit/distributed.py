"""Data parallelism with torch.distributed: one process per CPU group or GPU, started by `torchrun`.

    torchrun --standalone --nproc_per_node 2 -m mnistkit train ...

`torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous variables; :func:`start` reads them
and joins the process group (gloo on CPU, nccl on CUDA). Without them, training is one ordinary
process and nothing here does anything. ``batch_size`` stays the *global* batch: each of the W
processes takes ``batch_size / W`` images of every step, so W processes at the same global batch and
seed follow the same sample order and learning-rate schedule as one process.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from mnistkit.errors import MnistkitError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The one process that writes files, prints and draws."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def from_env() -> Ranks:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Ranks(rank=int(os.environ.get("RANK", "0")), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group if this process was started by torchrun (or with its variables set)."""
    ranks = from_env()
    if not ranks.distributed:
        return ranks, device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ranks, device


def stop(ranks: Ranks) -> None:
    """Leave the process group together: rank 0 may still be writing files when the others finish, and
    a process that tears down its connections while a peer still holds them can abort the peer."""
    if ranks.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End the process at once, without the interpreter's teardown, after flushing its output.

    A process that wrapped a model in DistributedDataParallel keeps the gloo group's threads running
    after ``destroy_process_group`` (torch 2.13: DDP leaves a C++ reference to the group), and
    destroying them at interpreter exit now and then aborts a process whose work is done and saved
    ("terminate called without an active exception"). Processes started by torchrun end here."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def local_batch(batch_size: int, ranks: Ranks) -> int:
    if batch_size % ranks.world:
        raise MnistkitError(f"batch_size {batch_size} (the global batch) must divide evenly among "
                            f"{ranks.world} processes")
    return batch_size // ranks.world


@torch.no_grad()
def average_buffers(module: torch.nn.Module, ranks: Ranks) -> None:
    """Average floating-point buffers (batch-norm running statistics) over processes. Each process
    updates them from its own share of the batches, and they only matter in eval mode, so they are
    made one at the end of each epoch, before validation and saving."""
    if ranks.distributed:
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(ranks.world)


def clock_of_rank0(seconds: float, ranks: Ranks, device: torch.device) -> float:
    """Rank 0's ``seconds`` in every process (itself with one process). A time budget is read off this one
    clock, so that every process stops at the same step: on their own clocks one process could stop a step
    early and leave the others waiting in the next gradient all-reduce. Under a budget this is called
    every step; a scalar broadcast costs little beside a step's gradient all-reduce."""
    if not ranks.distributed:
        return seconds
    value = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.broadcast(value, src=0)
    return value.item()


def sum_all(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The element-wise sum of ``values`` over all processes (itself with one process)."""
    if ranks.distributed:
        values = values.clone()
        dist.all_reduce(values)
    return values
