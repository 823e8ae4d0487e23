"""Self-attention, twice: the fast path and the teaching path.

Both compute the same function from the same weights (tests/test_model.py proves it):

- `CausalSelfAttention` (attention: fused) projects queries, keys and values for all heads with one
  matrix multiply and hands them to `scaled_dot_product_attention`, which picks a fused kernel.
- `MultiHeadAttention` (attention: heads) is the lecture's version: one `Head` module per head with
  its own key, query and value projections and its own lower-triangular mask, the heads'
  outputs concatenated and projected. Slower, but every step is a line you can read.

Both are causal in a decoder (a position sees only itself and earlier ones) and see every position
in an encoder (`causal=False`), where `key_mask` (B, T) hides the padding of shorter rows.
Checkpoints are always stored in the fused layout; `split_qkv`/`merge_qkv` convert.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .kv_cache import KVCache
from .layers import Linear


def score_scale(cfg: ModelConfig) -> float:
    # Dividing by sqrt(head_size) keeps scores at unit variance so softmax does not saturate.
    # The lecture's early code divided by sqrt(n_embd); `attn_scale: n_embd` reproduces that.
    return 1.0 / math.sqrt(cfg.head_size if cfg.attn_scale == "head_size" else cfg.n_embd)


def causal_mask(T: int, start: int, device) -> torch.Tensor:
    """(T, start + T) booleans: query i (at position start + i) may see key j iff j <= start + i."""
    q_pos = torch.arange(start, start + T, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(start + T, device=device)[None, :]  # (1, start+T)
    return k_pos <= q_pos


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
        self.qkv = Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.qkv_bias)
        self.proj = Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias) if cfg.attn_proj else None
        self.rotary = rotary
        self.qk_norm = cfg.qk_norm
        self.scale = score_scale(cfg)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, key_mask: torch.Tensor | None = None):
        B, T, C = x.shape
        # One view and one permute for all three: fewer operations per token when sampling.
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        q, k, v = qkv.unbind(0)  # (B, nh, T, hs) each
        start = cache.pos if cache is not None else 0  # None: the rows are at different positions
        if self.qk_norm or self.rotary is not None:
            q, k = prepare_qk(q, k, self.qk_norm, self.rotary, cache.positions if start is None else start)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, L, hs)
        dropout = self.dropout if self.training else 0.0
        if not self.causal:  # an encoder: every real position is visible to every position
            mask = padding_mask(key_mask)  # (B, 1, 1, T) or None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scale)
        elif start is None:  # each row sees its own keys up to its own position
            mask = cache.visible[:, None]  # (B, 1, T, L), the same for every head
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scale)
        elif start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, scale=self.scale)
        elif T == 1:  # one new token sees every cached position: no mask needed
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        else:
            mask = causal_mask(T, start, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scale)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side
        if self.proj is not None:
            y = self.proj(y)
            if self.training:  # dropout is the identity otherwise; skipping the call speeds up sampling
                y = self.resid_dropout(y)
        return y


def prepare_qk(q, k, qk_norm: bool, rotary, start: int | torch.Tensor):
    """Optional QK-norm, then rotary positions; q, k: (B, nh, T, hs) (or (B, T, hs) for one head).

    start: the first token's position, or every token's own position (B, T) when the rows differ.
    """
    if qk_norm:
        q = F.rms_norm(q, (q.size(-1),))
        k = F.rms_norm(k, (k.size(-1),))
    if rotary is not None and isinstance(start, int):
        q, k = rotary(q, start), rotary(k, start)
    elif rotary is not None:
        q, k = rotate_rows(rotary, q, start), rotate_rows(rotary, k, start)
    return q, k


def rotate_rows(rotary, x, positions):
    """`Rotary.forward` with a position per row and token: x (B, nh, T, hs) or (B, T, hs), positions (B, T).

    The same products of the same table entries as `Rotary.forward`, so each row gets exactly what it
    gets alone (tests/test_generate.py checks it).
    """
    cos = rotary.cos[positions].to(x.dtype)  # (B, T, hs/2)
    sin = rotary.sin[positions].to(x.dtype)
    if x.dim() == 4:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs/2): every head alike
    x1, x2 = x.chunk(2, dim=-1)  # (..., T, hs/2) each
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., T, hs)


class Head(nn.Module):
    """One head of self-attention, written out as the lecture does (causal=False: no triangle)."""

    def __init__(self, cfg: ModelConfig, rotary: nn.Module | None = None, causal: bool = True):
        super().__init__()
        self.causal = causal
        hs = cfg.head_size
        self.key = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        self.query = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        self.value = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        # The mask is a buffer, not a parameter: it is not learned and not saved.
        self.register_buffer("tril", torch.tril(torch.ones(cfg.block_size, cfg.block_size)), persistent=False)
        self.rotary = rotary
        self.qk_norm = cfg.qk_norm
        self.scale = score_scale(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, index: int = 0,
                key_mask: torch.Tensor | None = None):
        B, T, C = x.shape
        k = self.key(x)  # (B, T, hs)
        q = self.query(x)  # (B, T, hs)
        v = self.value(x)  # (B, T, hs)
        start = cache.pos if cache is not None else 0  # None: the rows are at different positions
        q, k = prepare_qk(q, k, self.qk_norm, self.rotary, cache.positions if start is None else start)
        if cache is not None:  # this head's slot in the shared cache
            k, v = cache.update(layer, k[:, None], v[:, None], heads=slice(index, index + 1))
            k, v = k[:, 0], v[:, 0]  # (B, L, hs)
        L = k.size(1)
        wei = q @ k.transpose(-2, -1) * self.scale  # (B, T, hs) @ (B, hs, L) -> (B, T, L): affinities
        if not self.causal:  # an encoder: all positions, only the padding hidden
            if key_mask is not None:
                wei = wei.masked_fill(~padding_mask(key_mask, heads=False), float("-inf"))  # (B, 1, L)
        elif start is None:  # each row sees its own past only
            wei = wei.masked_fill(~cache.visible, float("-inf"))  # visible: (B, T, L)
        else:
            wei = wei.masked_fill(self.tril[start : start + T, :L] == 0, float("-inf"))  # no peeking ahead
        wei = F.softmax(wei, dim=-1)  # each row: how much position t takes from each earlier position
        wei = self.dropout(wei)
        return wei @ v  # (B, T, L) @ (B, L, hs) -> (B, T, hs)


class MultiHeadAttention(nn.Module):
    """Several heads side by side, concatenated, then projected back into the residual stream."""

    def __init__(self, cfg: ModelConfig, rotary: nn.Module | None = None, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.heads = nn.ModuleList(Head(cfg, rotary, causal) for _ in range(cfg.n_head))
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias) if cfg.attn_proj else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, key_mask: torch.Tensor | None = None):
        out = torch.cat([h(x, cache, layer, i, key_mask) for i, h in enumerate(self.heads)], dim=-1)  # (B, T, C)
        if self.proj is not None:
            out = self.dropout(self.proj(out))
        return out


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

