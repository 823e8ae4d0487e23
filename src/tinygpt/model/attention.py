"""Self-attention, the fast path: all heads at once, one matrix multiply and one fused attention call.

`CausalSelfAttention` (attention: fused, the default) projects queries, keys and values for all heads
with one matrix multiply and hands them to `scaled_dot_product_attention`, which picks a fused kernel
(training on a CPU with short windows: two batched products instead, see SHORT_WINDOW). It computes the
function of the lecture's heads (gpt.py's `Head` and `MultiHeadAttention`, attention: heads) from the
same weights; tests/test_model.py checks it. Causal in a decoder (a position sees itself and the earlier
ones), every position in an encoder (`causal=False`), where `key_mask` (B, T) hides the padding of
shorter rows. Generation with the KV cache runs through cached.py.

Checkpoints always store the fused layout, whichever path trained them; `split_qkv`/`merge_qkv`
convert between it and the heads' tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .layers import ThreadedLinear, prepare_qk


def score_scale(cfg: ModelConfig) -> float:
    # Dividing by sqrt(head_size) keeps scores at unit variance so softmax does not saturate.
    # The lecture's early code divided by sqrt(n_embd); `attn_scale: n_embd` reproduces that.
    return 1.0 / math.sqrt(cfg.head_size if cfg.attn_scale == "head_size" else cfg.n_embd)


# Training on a CPU computes causal attention as two batched products (`causal_attention_products`)
# instead of the fused kernel for windows of SHORT_WINDOW tokens or fewer whose queries hold at least
# PRODUCTS_MIN_WINDOW numbers a window (tokens x n_embd). There it is faster, forward and backward: 0.6-0.8x
# of the fused kernel's wall time on 2 cores, 0.85-0.95x on one, from 32 to 128 tokens. At 256 tokens
# neither is reliably faster (0.87-1.1x in different runs) while the scores grow as the square of the
# window; for a model as small as the rhyme one (6 tokens x 32) the fused kernel's one call beats the
# products' several (1.4x). `python benchmarks/step_parts.py --what attention`. The choice looks at one
# window, never at the batch, so a batch split into micro-batches or across processes takes the same kernel.
SHORT_WINDOW = 128
PRODUCTS_MIN_WINDOW = 1024


def causal_attention_products(q, k, v, scale: float):
    """Causal attention written out for all heads at once: scores, mask, softmax, weighted sum of values.

    q, k, v: (B, nh, T, hs) -> (B, nh, T, hs). The function of `scaled_dot_product_attention(is_causal=True)`
    to rounding. PyTorch's fused CPU kernel walks the window in blocks, which pays for long windows; a
    short window's (T, T) scores are small enough to make whole, and two batched matrix products do the
    rest faster, backwards too.
    """
    B, nh, T, hs = q.shape
    mask = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)  # (T, T): the future
    scores = torch.baddbmm(mask.expand(B * nh, T, T), q.reshape(B * nh, T, hs), k.reshape(B * nh, T, hs).mT,
                           alpha=scale)  # (B*nh, T, T): mask + scale * q k^T in one call
    return torch.bmm(F.softmax(scores, dim=-1), v.reshape(B * nh, T, hs)).view(B, nh, T, hs)


def padding_mask(key_mask: torch.Tensor | None, heads: bool = True) -> torch.Tensor | None:
    """(B, L) booleans, True at real keys -> the mask attention takes: (B, 1, 1, L), or (B, 1, L) for one head."""
    if key_mask is None:
        return None
    return key_mask[:, None, None, :] if heads else key_mask[:, None, :]


class CausalSelfAttention(nn.Module):
    """All heads at once: one qkv projection and one scaled_dot_product_attention call.

    causal=False (an encoder): no mask, every position attends to every other.
    """

    def __init__(self, cfg: ModelConfig, rotary: nn.Module | None = None, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.qkv = ThreadedLinear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.qkv_bias)
        self.proj = ThreadedLinear(cfg.n_embd, cfg.n_embd, bias=cfg.bias) if cfg.attn_proj else None
        self.rotary = rotary
        self.qk_norm = cfg.qk_norm
        self.scale = score_scale(cfg)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def heads_qkv(self, x):
        """Queries, keys and values of every head: x (B, T, C) -> (B, nh, T, hs) each."""
        B, T, C = x.shape
        # One view and one permute for all three: fewer operations per token when sampling.
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        return qkv.unbind(0)

    def forward(self, x, key_mask: torch.Tensor | None = None):  # (B, T, C)
        B, T, C = x.shape
        q, k, v = self.heads_qkv(x)  # (B, nh, T, hs) each
        q, k = prepare_qk(q, k, self.qk_norm, self.rotary)
        dropout = self.dropout if self.training else 0.0
        if (self.causal and not dropout and T <= SHORT_WINDOW and T * C >= PRODUCTS_MIN_WINDOW and x.is_cpu
                and torch.is_grad_enabled()):
            y = causal_attention_products(q, k, v, self.scale)  # training on a CPU: faster (see SHORT_WINDOW)
        elif self.causal:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, scale=self.scale)
        else:  # an encoder: every real position is visible to every position
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=padding_mask(key_mask), dropout_p=dropout,
                                               scale=self.scale)
        return self.output(y)

    def output(self, y):
        """The heads' outputs (B, nh, T, hs) side by side (B, T, C), projected back into the residual stream."""
        B, nh, T, hs = y.shape
        y = y.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, T, C)
        if self.proj is not None:
            y = self.proj(y)
            if self.training:  # dropout is the identity otherwise; skipping the call speeds up sampling
                y = self.resid_dropout(y)
        return y


def split_qkv(state: dict, prefix: str, n_head: int) -> dict:
    """Fused `{prefix}qkv.weight` (3C, C) -> per-head `{prefix}heads.{h}.{query,key,value}.weight`
    (and the biases, (3C,), likewise)."""
    for kind in ("weight", "bias"):
        if prefix + "qkv." + kind not in state:
            continue
        t = state.pop(prefix + "qkv." + kind)  # (3C, C) or (3C,)
        C = t.size(0) // 3
        hs = C // n_head
        for name, part in zip(("query", "key", "value"), t.split(C, dim=0)):
            for h in range(n_head):
                state[f"{prefix}heads.{h}.{name}.{kind}"] = part[h * hs : (h + 1) * hs].clone()
    return state


def merge_qkv(state: dict, prefix: str, n_head: int) -> dict:
    """The inverse of `split_qkv`."""
    for kind in ("weight", "bias"):
        if f"{prefix}heads.0.query.{kind}" not in state:
            continue
        parts = []
        for name in ("query", "key", "value"):
            parts.append(torch.cat([state.pop(f"{prefix}heads.{h}.{name}.{kind}") for h in range(n_head)], dim=0))
        state[prefix + "qkv." + kind] = torch.cat(parts, dim=0)  # (3C, C) or (3C,)
    return state


def to_fused_layout(state: dict, cfg: ModelConfig, prefixes=None) -> dict:
    """A model's state dict in the checkpoint layout: one fused query/key/value per block, whatever the
    attention path (the teaching path's per-head tensors merged). prefixes: the self-attention modules'
    names (default: a GPT's, `blocks.{i}.attn.`)."""
    if cfg.attention == "heads":
        for prefix in prefixes or [f"blocks.{i}.attn." for i in range(cfg.n_layer)]:
            merge_qkv(state, prefix, cfg.n_head)
    return state


def from_fused_layout(state: dict, cfg: ModelConfig, prefixes=None) -> dict:
    """The inverse of `to_fused_layout`: the checkpoint layout as this attention path's state dict."""
    if cfg.attention == "heads":
        for prefix in prefixes or [f"blocks.{i}.attn." for i in range(cfg.n_layer)]:
            split_qkv(state, prefix, cfg.n_head)
    return state

