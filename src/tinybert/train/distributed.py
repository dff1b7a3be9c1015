"""One code path from one CPU to many GPUs: device choice and torchrun's process group.

`tinybert CMD ...` run under `torchrun --nproc_per_node N` (any rendezvous, multi-node too)
finds WORLD_SIZE/RANK/LOCAL_RANK in its environment and joins the group: NCCL on GPUs, gloo on
CPU. Run plainly, it is one process and nothing here does anything.

How the loop splits work (see `Trainer`): `batch_size` is the *global* micro-batch. Every
process computes the same batch order from (seed, epoch) and takes rows rank, rank+W, ... of
each batch, so a run's batches, learning-rate schedule and data position do not depend on the
number of processes, and a checkpoint resumes under any world size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from tinybert.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Only the main process logs, evaluates to disk and writes checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def gather(self, obj: T) -> list[T]:
        """Every process's `obj`, in rank order (just [obj] when not distributed)."""
        if not self.enabled:
            return [obj]
        out: list[T] = [obj] * self.world  # placeholders: all_gather_object fills every slot
        dist.all_gather_object(out, obj)
        return out

    def max_int(self, value: int) -> int:
        """The largest `value` over all processes (e.g. a stop flag every process must agree
        on): one all-reduce of one integer, on this process's GPU under NCCL."""
        if not self.enabled:
            return value
        on = torch.device("cpu")
        if dist.get_backend() == "nccl":
            on = torch.device("cuda", torch.cuda.current_device())
        flag = torch.tensor([value], dtype=torch.int64, device=on)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def gather_rows(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Every process's `rows` (any number of them, the same trailing shape and dtype
        everywhere), in rank order, on the CPU: one all_gather of tensors padded to the longest
        (on this process's GPU under NCCL), nothing pickled."""
        if not self.enabled:
            return [rows]
        sizes = [int(n) for n in self.gather(len(rows))]
        on = torch.device("cpu")
        if dist.get_backend() == "nccl":
            on = torch.device("cuda", torch.cuda.current_device())
        padded = rows.new_zeros((max(sizes), *rows.shape[1:]), device=on)
        padded[: len(rows)] = rows
        out = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(out, padded)
        return [part[:n].cpu() for part, n in zip(out, sizes, strict=True)]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` is this process's GPU when there is one, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but no CUDA GPU is visible; use device=cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(
            f"device '{name}': this machine has {torch.cuda.device_count()} GPU(s), numbered from 0"
        )
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{name}' asked for, but this machine has no Apple GPU (MPS)")
    return device


def setup(device_name: str) -> tuple[Dist, torch.device]:
    """Join torchrun's process group if launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


def cleanup(synchronise: bool = False) -> None:
    """Leave the process group. `synchronise` (a command that succeeded on every process):
    wait for the others first, so no process tears down its gloo connections while another
    still uses them (that aborted a process at exit now and then). Not after an error: the
    others may never get there (torchrun then stops them)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if synchronise:
        dist.barrier()
    dist.destroy_process_group()
