"""One new token per row through the KV cache, with the modules taken apart once: sampling's hot loop.

    plan = DecodePlan.build(model)               # None where the model needs the general path
    logits = plan.step(ids, cache)               # ids (B,): each row's newest token -> (B, vocab_size)

Sampling one token at batch 1 multiplies a single row by every weight: on a CPU the products take a
few milliseconds, and everything around them (about fifty module calls, their hook checks and
attribute lookups, the views each layer makes of its weights) added about half as much again
(benchmarks/README.md, "Sampling at the memory limit"). A plan looks each block's tensors up once,
makes the threaded views of the weights once (layers.py `ThreadedLinear`), and runs the step as
straight-line calls of the same functions on the same tensors (attention over the cache is
cached.py's own): the logits are bit-identical to `model(ids, cache=cache)`'s
(tests/test_decode_plan.py), so the tokens are too.

It covers the GPT a run trains (pre-norm blocks with residual lines, fused attention, either kind of
position, any norm, activation and head), with plain, int8 or LoRA linear layers, in inference, rows
of any lengths. Anything else (the teaching heads, post-norm, a sharded or hooked model) takes
cached.py's general path, which computes the same function.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.sharding import is_sharded
from .attention import CausalSelfAttention
from .cached import attend_over_cache, place
from .gpt import GPT
from .kv_cache import KVCache
from .layers import SPLIT_ROWS, ThreadedLinear, split_product, split_weight
from .quantize import Int8Linear


def _norm(module: nn.Module):
    """The norm as a function of x (..., C): the functional call its module makes, skipping the module."""
    if isinstance(module, nn.Identity):
        return None
    if type(module) is nn.LayerNorm:  # F.layer_norm's kernel, called without its wrapper's checks
        shape, weight, bias, eps = module.normalized_shape, module.weight, module.bias, module.eps
        return lambda x: torch.layer_norm(x, shape, weight, bias, eps)
    if isinstance(module, nn.RMSNorm):  # ours (layers.RMSNorm) differs only in its backward
        shape, weight, eps = module.normalized_shape, module.weight, module.eps
        return lambda x: F.rms_norm(x, shape, weight, eps)
    return module  # the hand-written LayerNorm: its own forward


class _Product:
    """A linear layer as a function of x (B, in) -> (B, out), with ThreadedLinear's split of the weight
    among the threads viewed once. An int8 layer runs its product on the rows; other layers (LoRA) their
    own forward."""

    def __init__(self, module: nn.Module, threads: int):
        self.module = module.product if isinstance(module, Int8Linear) else module
        self.plain = type(module) in (nn.Linear, ThreadedLinear)
        self.weight, self.bias = (module.weight, module.bias) if self.plain else (None, None)
        self.split = None
        if type(module) is ThreadedLinear and threads >= 2 and module.out_features % threads == 0:
            self.split = split_weight(module.weight, module.bias, threads)

    def __call__(self, x):  # (B, in)
        if self.split is not None and x.size(0) <= SPLIT_ROWS and x.is_cpu:
            return split_product(x, *self.split)  # what ThreadedLinear runs for these rows
        if self.plain:
            return F.linear(x, self.weight, self.bias)
        return self.module(x)


class DecodePlan:
    """A GPT's one-token step through a KV cache, its modules looked up once (see the module docstring)."""

    def __init__(self, model: nn.Module):
        cfg = model.config
        # The plan holds the weights' tensors and views of them: if the model's tensors are replaced (a
        # `model.to(...)` after the plan was made), the plan is stale. Loading weights copies into them.
        self.anchor = (model.tok_emb, model.tok_emb.weight.data_ptr())
        self.threads = torch.get_num_threads()  # the weights' splits are made for this many threads
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.block_size = cfg.block_size
        self.tok_emb = model.tok_emb.weight  # (V, C)
        self.pos_emb = model.pos_emb.weight if model.pos_emb is not None else None  # (block_size, C)
        self.rotary = model.rotary
        self.layers = []
        for block in model.blocks:
            attn, mlp = block.attn, block.mlp
            self.layers.append((
                _norm(block.ln1), _Product(attn.qkv, self.threads),
                _Product(attn.proj, self.threads) if attn.proj is not None else None,
                attn.qk_norm, attn.scale,
                _norm(block.ln2) if mlp is not None else None,
                _Product(mlp.fc, self.threads) if mlp is not None else None,
                mlp.activate if mlp is not None else None,
                _Product(mlp.proj, self.threads) if mlp is not None and mlp.proj is not None else None,
            ))
        self.ln_f = _norm(model.ln_f)
        self.head = _Product(model.lm_head, self.threads)

    @classmethod
    def build(cls, model: nn.Module) -> DecodePlan | None:
        """A plan for this model, or None where its one-token step needs the general path."""
        if type(model) is not GPT or model.training or torch.is_grad_enabled():
            return None
        cfg = model.config
        if cfg.attention != "fused" or cfg.norm_position != "pre" or not cfg.residual:
            return None
        if any(is_sharded(p) for p in model.parameters()):
            return None  # FSDP gathers a block's weights when its module is called
        for m in model.modules():
            if m._forward_hooks or m._forward_pre_hooks:
                return None  # someone watches a module's calls: let them happen
        if not all(isinstance(b.attn, CausalSelfAttention) for b in model.blocks):
            return None
        return cls(model)

    def current(self) -> bool:
        """Whether the plan still matches the model: its tensors not replaced (a `model.to(...)` after the
        plan was made; loading weights copies into them) and the thread count its splits were made for."""
        module, where = self.anchor
        return module.weight.data_ptr() == where and torch.get_num_threads() == self.threads

    def fits(self, cache: KVCache) -> bool:
        """Whether the step can run on the cache now: room for a token in every row, in inference."""
        return cache.longest < self.block_size and not torch.is_grad_enabled()

    def step(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """ids (B,): each row's newest token, at that row's position -> logits (B, vocab_size)."""
        cache.prepare(1)  # rows of different lengths: each new token's position and the keys it sees
        pos = cache.pos  # None: the rows' positions differ (cache.positions)
        B, nh, hs = ids.size(0), self.n_head, self.head_size
        x = self.tok_emb[ids]  # (B, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb[pos if pos is not None else cache.positions[:, 0]]  # (C,) or (B, C)
        for layer, (ln1, qkv, proj, qk_norm, scale, ln2, fc, act, fc_proj) in enumerate(self.layers):
            h = ln1(x) if ln1 is not None else x
            q, k, v = qkv(h).view(B, 3, nh, 1, hs).unbind(1)  # (B, nh, 1, hs) each
            if qk_norm:
                q, k = F.rms_norm(q, (hs,)), F.rms_norm(k, (hs,))
            q, k = place(self.rotary, q, k, cache)
            y = attend_over_cache(q, k, v, cache, layer, scale).view(B, nh * hs)  # the heads side by side
            x = x + (proj(y) if proj is not None else y)
            if fc is not None:
                h = act(fc(ln2(x) if ln2 is not None else x))  # (B, hidden)
                x = x + (fc_proj(h) if fc_proj is not None else h)
        cache.advance(1)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return self.head(x)  # (B, vocab_size)
