"""Cross-attention, twice: the fast path and the teaching path.

In a decoder block of the encoder-decoder, the queries come from the decoder's own stream (the
target so far) and the keys and values from the encoder's output (the source). There is no causal
mask: every target position may read every source position; only the source's padding is hidden.

The source does not change while a target is decoded, so its keys and values are computed once per
source (`keys_values`) and handed to every decoding step (`forward(x, kv)`): the cross half of the
key/value cache.

- `CrossAttention` (attention: fused): one query projection, one fused key/value projection, one
  `scaled_dot_product_attention` call.
- `MultiHeadCrossAttention` (attention: heads): one `CrossHead` per head, each with its own query,
  key and value maps, written out as the lecture writes self-attention, without the triangle.

Both compute the same function from the same weights (tests/test_seq2seq.py proves it); checkpoints
hold the fused layout (`q`, `kv`), and `split_cross`/`merge_cross` convert.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .attention import padding_mask, score_scale
from .layers import ThreadedLinear


class CrossAttention(nn.Module):
    """All heads at once: queries from x (B, T, C), keys and values from the encoder's output (B, S, C)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.q = ThreadedLinear(cfg.n_embd, cfg.n_embd, bias=cfg.qkv_bias)
        self.kv = ThreadedLinear(cfg.n_embd, 2 * cfg.n_embd, bias=cfg.qkv_bias)
        self.proj = ThreadedLinear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.scale = score_scale(cfg)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def keys_values(self, memory: torch.Tensor) -> torch.Tensor:
        """The encoder's output (B, S, C) -> its keys and values, (2, B, nh, S, hs): once per source."""
        B, S, C = memory.shape
        return self.kv(memory).view(B, S, 2, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)

    def forward(self, x, kv: torch.Tensor, key_mask: torch.Tensor | None = None):
        """x (B, T, C), kv from `keys_values`, key_mask (B, S) True at real source tokens -> (B, T, C)."""
        B, T, C = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=padding_mask(key_mask), dropout_p=dropout,
                                           scale=self.scale)  # (B, nh, T, hs)
        y = self.proj(y.transpose(1, 2).contiguous().view(B, T, C))  # (B, T, C)
        return self.resid_dropout(y) if self.training else y


class CrossHead(nn.Module):
    """One head of cross-attention: its own query map over the target, key and value maps over the source."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hs = cfg.head_size
        self.query = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        self.key = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        self.value = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        self.scale = score_scale(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def weights(self, x, k, key_mask=None):
        """x (B, T, C), this head's source keys k (B, S, hs) -> (B, T, S): how much each target token reads
        from each source token (each row sums to 1)."""
        q = self.query(x)  # (B, T, hs)
        wei = q @ k.transpose(-2, -1) * self.scale  # (B, T, hs) @ (B, hs, S) -> (B, T, S)
        if key_mask is not None:  # no triangle here: only the source's padding is hidden
            wei = wei.masked_fill(~padding_mask(key_mask, heads=False), float("-inf"))  # (B, 1, S)
        return F.softmax(wei, dim=-1)

    def forward(self, x, k, v, key_mask=None):
        return self.dropout(self.weights(x, k, key_mask)) @ v  # (B, T, S) @ (B, S, hs) -> (B, T, hs)


class MultiHeadCrossAttention(nn.Module):
    """The teaching path: one `CrossHead` per head, concatenated, then projected."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = nn.ModuleList(CrossHead(cfg) for _ in range(cfg.n_head))
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def keys_values(self, memory: torch.Tensor) -> torch.Tensor:
        k = torch.stack([h.key(memory) for h in self.heads], dim=1)  # (B, nh, S, hs)
        v = torch.stack([h.value(memory) for h in self.heads], dim=1)  # (B, nh, S, hs)
        return torch.stack((k, v))  # (2, B, nh, S, hs)

    def forward(self, x, kv: torch.Tensor, key_mask: torch.Tensor | None = None):
        out = torch.cat([h(x, kv[0][:, i], kv[1][:, i], key_mask) for i, h in enumerate(self.heads)], dim=-1)
        return self.dropout(self.proj(out))  # (B, T, C)


def cross_weights(attn, x: torch.Tensor, kv: torch.Tensor, key_mask=None) -> torch.Tensor:
    """The attention weights either path used: (B, nh, T, S), each row summing to 1 over the source."""
    B, T, C = x.shape
    if isinstance(attn, CrossAttention):
        q = attn.q(x).view(B, T, attn.n_head, attn.head_size).transpose(1, 2)  # (B, nh, T, hs)
        scores = (q @ kv[0].transpose(-2, -1)).float() * attn.scale  # (B, nh, T, S)
        if key_mask is not None:
            scores = scores.masked_fill(~padding_mask(key_mask), float("-inf"))
        return F.softmax(scores, dim=-1)
    return torch.stack([h.weights(x, kv[0][:, i], key_mask) for i, h in enumerate(attn.heads)], dim=1)


def merge_cross(state: dict, prefix: str, n_head: int) -> dict:
    """Per-head `{prefix}heads.{h}.{query,key,value}.*` -> fused `{prefix}q.*` (C, C) and `{prefix}kv.*` (2C, C)."""
    for kind in ("weight", "bias"):
        if f"{prefix}heads.0.query.{kind}" not in state:
            continue

        q, k, v = (torch.cat([state.pop(f"{prefix}heads.{h}.{name}.{kind}") for h in range(n_head)], dim=0)
                   for name in ("query", "key", "value"))
        state[f"{prefix}q.{kind}"] = q  # (C, C) or (C,)
        state[f"{prefix}kv.{kind}"] = torch.cat((k, v), dim=0)  # (2C, C) or (2C,)
    return state


def split_cross(state: dict, prefix: str, n_head: int) -> dict:
    """The inverse of `merge_cross`."""
    for kind in ("weight", "bias"):
        if f"{prefix}q.{kind}" not in state:
            continue
        q = state.pop(f"{prefix}q.{kind}")  # (C, C) or (C,)
        k, v = state.pop(f"{prefix}kv.{kind}").chunk(2, dim=0)
        hs = q.size(0) // n_head
        for name, t in (("query", q), ("key", k), ("value", v)):
            for h in range(n_head):
                state[f"{prefix}heads.{h}.{name}.{kind}"] = t[h * hs : (h + 1) * hs].clone()
    return state
