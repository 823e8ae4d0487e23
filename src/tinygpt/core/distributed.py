"""Data-parallel training through PyTorch's standard engine (torchrun + DistributedDataParallel).

`torchrun --nproc_per_node=N -m tinygpt train ...` starts N copies of the same command; each finds
its rank in the environment. Every process draws the same global batch (same seed, same generator)
and trains on its own slice, DDP averages the gradients, and so N processes compute exactly the
step one process would with the whole batch. Only rank 0 logs and writes files. On several machines
(`torchrun --nnodes=M --node-rank=K ...`) the rank is global and the local rank is the node's own.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0  # among all processes, on every node
    world_size: int = 1
    local_rank: int = 0  # on this node: which GPU is this process's
    local_world_size: int = 1  # processes on this node, which share its cores
    lockstep: bool = False  # every forward is a collective (FSDP): processes take the same number (turns)

    @classmethod
    def from_environment(cls, env=os.environ) -> "DistInfo":
        """What torchrun tells each process (a plain run is a world of one)."""
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(env["RANK"]), world, int(env.get("LOCAL_RANK", "0")), int(env.get("LOCAL_WORLD_SIZE", world)))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    """Join the process group if launched by torchrun; a plain run is a world of one."""
    info = DistInfo.from_environment()
    if not info.enabled:
        return info
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def teardown(info: DistInfo):
    """Leave the process group together, once nothing holds it any more.

    Without the barrier a rank with less to do at the end (only rank 0 saves and samples) tears
    its group down and exits while its peer is still connected; gloo's worker threads then die in
    the interpreter's shutdown and abort the process (SIGABRT) about one run in ten. Callers drop
    their DistributedDataParallel wrapper first: it holds a reference to the group.
    """
    if info.enabled and dist.is_initialized():
        gc.collect()  # a dropped wrapper caught in a reference cycle would still hold the group
        dist.barrier()
        dist.destroy_process_group()


def turns(n: int, rank: int, world: int, lockstep: bool = False):
    """This process's share of n items, every world-th from its rank, as (index, counts) pairs. With
    `lockstep` (FSDP, where a forward is a collective) every process takes the same number of turns:
    one with nothing left repeats item 0, which it must not count."""
    for i in range(rank, n, world):
        yield i, True
    for _ in range(padding(n, rank, world, lockstep)):
        yield 0, False


def padding(n: int, rank: int, world: int, lockstep: bool) -> int:
    """How many uncounted turns this process adds to its share of n items, so that under `lockstep`
    it takes as many as the busiest process (0 otherwise)."""
    return -(-n // world) - len(range(rank, n, world)) if lockstep and n else 0


def sum_across(info: DistInfo, *values: float) -> list[float]:
    """Add numbers up over all processes (each gets the totals)."""
    if not info.enabled:
        return list(values)
    device = f"cuda:{info.local_rank}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_across(info: DistInfo, flag: bool) -> bool:
    """True on every process if any process says True (e.g. 'the time budget is spent')."""
    if not info.enabled:
        return flag
    return sum_across(info, float(flag))[0] > 0
