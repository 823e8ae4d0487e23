"""Fully sharded data parallel (FSDP2, `torch.distributed.fsdp.fully_shard`): `--parallel fsdp`.

    shard(model)                                   # every Block, then the rest: DTensor parameters
    state = whole_state(module)                    # the full tensors, gathered (every process calls it)
    shard_like(tensor, param)                      # a whole saved tensor cut as `param` is

Under DDP every process holds the whole model, its gradients and its optimizer state. Under FSDP each
holds a 1/N slice of each (dim 0); a block's weights are gathered just before its forward (and its
backward) and freed after, and gradients are reduce-scattered, averaged like DDP's. So N processes
still take exactly the step one process takes on the whole batch, and a model N times bigger fits.

Checkpoints stay whole (the same files as any run's): every process gathers, rank 0 writes, and a
resumed run cuts the saved tensors again, so a run can change between ddp, fsdp and one process when
it resumes. Because a forward is now a collective, every process runs the same number of them:
evaluation pads its share (distributed.turns) and all processes write the final samples.
"""

from __future__ import annotations

import sys
import warnings

import torch
import torch.nn as nn


def shard(model: nn.Module) -> nn.Module:
    """Shard `model` in place: each transformer block a unit of its own, the embeddings, final norm and
    head (and anything an objective adds) the root's unit."""
    from torch.distributed.fsdp import fully_shard

    from ..model.gpt import Block

    # The head's logits come back as a view of the matmul's output; nothing here changes them in place,
    # which is what FSDP warns about.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for module in model.modules():
        if isinstance(module, Block):
            fully_shard(module)
    fully_shard(model)
    return model


def is_sharded(t) -> bool:
    """Whether `t` is a DTensor (without importing DTensor's module, which only FSDP runs need)."""
    tensor_module = sys.modules.get("torch.distributed.tensor")
    return tensor_module is not None and isinstance(t, tensor_module.DTensor)


def whole(t):
    """A tensor whole: a DTensor gathered from every process (a collective), anything else as it is."""
    return t.full_tensor() if is_sharded(t) else t


def whole_state(state):
    """A (nested) state dict with every sharded tensor gathered, in the dict's order on every process."""
    if isinstance(state, dict):
        return {k: whole_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [whole_state(v) for v in state]
    return whole(state)


def shard_like(value: torch.Tensor, param) -> torch.Tensor:
    """A whole saved tensor of `param`'s shape cut the way `param` is (each process keeps its slice)."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(param.device_mesh.device_type), param.device_mesh, param.placements,
                             src_data_rank=None)  # every process read the same checkpoint: no broadcast


class WholeModel:
    """What checkpoint.save_checkpoint reads of a model, from a sharded one: `canonical_state_dict()` of the
    whole weights, computed by a plain copy of the model on the CPU."""

    def __init__(self, plain: nn.Module, sharded: nn.Module):
        state = {k: whole(v).detach().cpu() for k, v in sharded.state_dict().items()}  # every process
        plain.load_state_dict(state, strict=True)
        self.plain = plain

    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        return self.plain.canonical_state_dict()


class WholeOptimizer:
    """What checkpoint.save_checkpoint reads of an optimizer, `state_dicts()`, with the moments whole."""

    def __init__(self, optimizer):
        self.states = [whole_state(s) for s in optimizer.state_dicts()]  # every process

    def state_dicts(self) -> list[dict]:
        return self.states
