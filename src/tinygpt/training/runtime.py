"""Where a run computes: the device, the process group (torchrun), CPU threads and precision."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..core import distributed as ddp
from ..core.devices import autocast_for, choose_threads, keep_freed_memory, map_large_blocks, pick_device
from ..core.errors import TinyGPTError


@dataclass
class Runtime:
    device: torch.device
    dist: ddp.DistInfo
    threads: int
    autocast: object  # a context-manager factory: `with runtime.autocast(): ...`

    @classmethod
    def local(cls, device: torch.device) -> "Runtime":
        """One process, as it is, full precision: what `tinygpt eval` measures a loaded run with."""
        import contextlib

        return cls(device, ddp.DistInfo(), torch.get_num_threads(), contextlib.nullcontext)

    def use_threads(self, threads: int):
        self.threads = threads
        torch.set_num_threads(threads)


def setup_runtime(cfg: TrainConfig) -> Runtime:
    device = pick_device(cfg.device)
    dist = ddp.setup(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if cfg.batch_size % dist.world_size:
        raise TinyGPTError(f"batch_size {cfg.batch_size} must divide evenly among {dist.world_size} processes")
    dist.lockstep = dist.enabled and cfg.parallel == "fsdp"  # sharded: every forward is a collective
    if device.type == "cpu":
        (map_large_blocks if dist.lockstep else keep_freed_memory)()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    runtime = Runtime(device, dist, 0, autocast_for(device, cfg.dtype))
    runtime.use_threads(choose_threads(cfg.threads, dist.local_world_size))  # this node's cores, shared
    return runtime
