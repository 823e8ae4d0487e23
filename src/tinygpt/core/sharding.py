"""Fully sharded data parallel (FSDP2, `torch.distributed.fsdp.fully_shard`): `--parallel fsdp`.

    shard(model, blocks)                           # each block, then the rest: DTensor parameters
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


def shard(model: nn.Module, units: list[nn.Module]) -> nn.Module:
    """Shard `model` in place: each of `units` (the transformer blocks) a unit of its own, the rest (the
    embeddings, final norm and head, and anything an objective adds) the root's unit."""
    from torch.distributed.fsdp import fully_shard

    # The head's logits come back as a view of the matmul's output; nothing here changes them in place,
    # which is what FSDP warns about.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for module in units:
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


def whole_state(state, keep: bool = True):
    """A (nested) state dict with every sharded tensor gathered (a collective: every process calls it, in
    the dict's order). keep=False (the processes that do not write): each gathered tensor is dropped at
    once, so only the writer ever holds more than one whole tensor; returns None."""
    if isinstance(state, dict):
        gathered = {k: whole_state(v, keep) for k, v in state.items()}
    elif isinstance(state, list):
        gathered = [whole_state(v, keep) for v in state]
    else:
        gathered = whole(state)
        gathered = gathered.detach().cpu() if keep and torch.is_tensor(gathered) else gathered
    return gathered if keep else None


def shard_like(value: torch.Tensor, param) -> torch.Tensor:
    """A whole saved tensor of `param`'s shape cut the way `param` is (each process keeps its slice)."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(param.device_mesh.device_type), param.device_mesh, param.placements,
                             src_data_rank=None)  # every process read the same checkpoint: no broadcast


class WholeModel:
    """What checkpoint.save_checkpoint reads of a model, from a sharded one: `canonical_state_dict()` of the
    whole weights, put into `plain` (a copy of the model on the CPU, kept by the writing process only)."""

    def __init__(self, plain: nn.Module | None, sharded: nn.Module):
        state = whole_state(sharded.state_dict(), keep=plain is not None)  # every process takes part
        if plain is not None:
            plain.load_state_dict(state, strict=True)
        self.plain = plain

    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        return self.plain.canonical_state_dict()


class WholeOptimizer:
    """What checkpoint.save_checkpoint reads of an optimizer, `state_dicts()`, with the moments whole."""

    def __init__(self, optimizer, keep: bool):
        self.states = whole_state(optimizer.state_dicts(), keep)  # every process takes part

    def state_dicts(self) -> list[dict]:
        return self.states
