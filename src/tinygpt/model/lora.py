"""LoRA: low-rank adapters trained beside frozen weights (Hu et al., 2021), saved as PEFT saves them.

    adapters = add_lora(model, train_cfg)    # train_cfg.lora_rank, lora_alpha, lora_dropout, lora_targets

Each targeted projection of every block, y = x W^T + b, becomes

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T        A: (r, in), B: (out, r)

with A random (PEFT's Kaiming-uniform) and B zero, so step 0 computes the base model exactly. W and b
are frozen (requires_grad False), and so is every other weight: the optimizer holds A and B alone,
r x (in + out) numbers per projection instead of in x out. The wrapped layer keeps W and b under
their own names, so a checkpoint holds the base and the adapters side by side
(`blocks.0.attn.qkv.weight`, `blocks.0.attn.qkv.lora_A.weight`, ...); `merge_lora` folds the adapters
in, W + (alpha / r) B @ A, which are the weights of an ordinary run (model.safetensors holds those).

`peft_adapter` gives the adapters as PEFT writes them (adapter_config.json and adapter_model.safetensors),
under the module names of the model `tinygpt export --to hf` writes of the run's base: GPT-2's
(`transformer.h.{i}.attn.c_attn`) when the base exports as a plain GPT2LMHeadModel, tinygpt's own
(`blocks.{i}.attn.qkv`) in the custom-code form.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig, TrainConfig
from ..config.model import gpt2_misfits
from ..config.train import LORA_TARGETS
from ..core.errors import TinyGPTError

GPT2_NAMES = {"attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj", "mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj"}


class LoRALinear(nn.Module):
    """A frozen linear layer (its own `weight` and `bias`) plus a trainable rank-r update B @ A."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias  # the same tensors, frozen by add_lora
        kinds = dict(device=linear.weight.device, dtype=linear.weight.dtype)
        self.lora_A = nn.Linear(self.in_features, rank, bias=False, **kinds)
        self.lora_B = nn.Linear(rank, self.out_features, bias=False, **kinds)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # PEFT's default (and nn.Linear's)
        nn.init.zeros_(self.lora_B.weight)  # B @ A = 0: the base model's function at step 0
        self.lora_dropout = nn.Dropout(dropout)
        self.scaling = alpha / rank

    def forward(self, x):  # (..., in) -> (..., out)
        y = F.linear(x, self.weight, self.bias)
        h = self.lora_dropout(x) if self.training else x
        return y + self.lora_B(self.lora_A(h)) * self.scaling  # (..., r) -> (..., out)


def targets(train_cfg: TrainConfig) -> tuple[str, ...]:
    """The projections --lora-targets names, in the blocks' order."""
    names = [t.strip() for t in train_cfg.lora_targets.split(",") if t.strip()]
    return LORA_TARGETS if names == ["all"] else tuple(t for t in LORA_TARGETS if t in names)


def shapes(cfg: ModelConfig) -> dict[str, tuple[int, int] | None]:
    """(in, out) of each projection LoRA can adapt in a block of `cfg`, or None where the block has none."""
    C, hidden = cfg.n_embd, cfg.mlp_ratio * cfg.n_embd
    return {"attn.qkv": (C, 3 * C), "attn.proj": (C, C) if cfg.attn_proj else None,
            "mlp.fc": (C, hidden) if hidden else None, "mlp.proj": (hidden, C) if hidden and cfg.mlp_proj else None}


def check_lora(cfg: ModelConfig, train_cfg: TrainConfig, source: str = "the model"):
    """One line for a LoRA request `cfg` cannot take (before anything is trained or overwritten)."""
    if not train_cfg.lora_rank:
        return
    if cfg.arch != "gpt":
        raise TinyGPTError(f"LoRA adapts a GPT's projections, and {source} is a{'n' if cfg.arch[0] == 'e' else ''} "
                           f"{cfg.arch} model; fine-tune it without --lora-rank")
    if cfg.attention != "fused":
        raise TinyGPTError(f"LoRA adapts the fused query/key/value projection, and {source} computes attention "
                           "head by head; add --attention fused (the same function from the same weights)")
    r, present = train_cfg.lora_rank, shapes(cfg)
    for name in targets(train_cfg):
        if present[name] is None:
            raise TinyGPTError(f"--lora-targets names {name}, which {source}'s blocks do not have; choose from "
                               f"{', '.join(n for n, s in present.items() if s)}")
    for name in targets(train_cfg):
        (fan_in, fan_out), most = present[name], min(min(present[t]) for t in targets(train_cfg))
        if r > min(fan_in, fan_out):
            raise TinyGPTError(f"--lora-rank {r} is more than {name} can hold: its weight is {fan_out} x {fan_in}, so "
                               f"an update of it has rank at most {min(fan_in, fan_out)}; choose a rank from 1 to "
                               f"{most}")


def add_lora(model: nn.Module, train_cfg: TrainConfig) -> int:
    """Freeze every weight of `model` (a GPT) and wrap each targeted projection of every block in a LoRALinear;
    returns the number of adapter parameters (what the optimizer will hold)."""
    check_lora(model.config, train_cfg)
    model.requires_grad_(False)
    count = 0
    for block in model.blocks:
        for name in targets(train_cfg):
            parent, attr = block.get_submodule(name.split(".")[0]), name.split(".")[1]
            wrapped = LoRALinear(getattr(parent, attr), train_cfg.lora_rank, train_cfg.lora_alpha,
                                 train_cfg.lora_dropout)
            setattr(parent, attr, wrapped)
            count += wrapped.lora_A.weight.numel() + wrapped.lora_B.weight.numel()
    return count


def merge_lora(state: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """Tensors with adapters (`X.lora_A.weight`, `X.lora_B.weight` beside `X.weight`) -> the merged tensors,
    `X.weight + scaling * B @ A`, and no adapter left: an ordinary model's weights."""
    state = dict(state)
    for key in [k for k in state if k.endswith(".lora_A.weight")]:
        prefix = key.removesuffix("lora_A.weight")
        A, B = state.pop(key), state.pop(prefix + "lora_B.weight")  # (r, in), (out, r)
        W = state[prefix + "weight"]  # (out, in)
        state[prefix + "weight"] = (W.float() + scaling * (B.float() @ A.float())).to(W.dtype)
    return state


class Merged:
    """What save_weights reads of a model with adapters: `canonical_state_dict()`, merged."""

    def __init__(self, model: nn.Module, scaling: float):
        self.model, self.scaling = model, scaling

    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        return merge_lora(self.model.canonical_state_dict(), self.scaling)


def peft_adapter(model: nn.Module, train_cfg: TrainConfig) -> tuple[dict, dict[str, torch.Tensor]]:
    """adapter_config.json and adapter_model.safetensors' tensors, as PEFT's `save_pretrained` writes them for the
    model `tinygpt export --to hf` makes of the base (see the module docstring)."""
    cfg = model.config
    gpt2 = not gpt2_misfits(cfg)
    names = [GPT2_NAMES[t] if gpt2 else t for t in targets(train_cfg)]
    tensors = {}
    for i, block in enumerate(model.blocks):
        for target, name in zip(targets(train_cfg), names):
            layer = block.get_submodule(target)
            A = layer.lora_A.weight.detach().float()  # (r, in)
            B = layer.lora_B.weight.detach().float().clone()  # (out, r)
            if gpt2 and target == "attn.qkv" and cfg.attn_scale == "n_embd":
                B[: cfg.n_embd] *= math.sqrt(cfg.head_size / cfg.n_embd)  # the export folds this scale into the queries
            where = f"base_model.model.{'transformer.h' if gpt2 else 'blocks'}.{i}.{name}"
            tensors[f"{where}.lora_A.weight"], tensors[f"{where}.lora_B.weight"] = A.contiguous(), B.contiguous()
    alpha = train_cfg.lora_alpha
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": train_cfg.init_from,
              "r": train_cfg.lora_rank, "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
              "lora_dropout": train_cfg.lora_dropout, "target_modules": names, "bias": "none",
              "fan_in_fan_out": gpt2, "use_rslora": False, "use_dora": False, "init_lora_weights": True,
              "inference_mode": True, "modules_to_save": None, "layers_to_transform": None, "revision": None}
    return config, tensors
