"""Building blocks shared by the attention and the GPT: norms, the MLP, rotary embeddings."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig


class HandwrittenLayerNorm(nn.Module):
    """LayerNorm written out, as the lecture teaches it: normalise each row, then scale and shift.

    Same parameters (`weight`, `bias`) and same result as `nn.LayerNorm`, so checkpoints move freely
    between the two.
    """

    def __init__(self, dim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):  # (..., C)
        mean = x.mean(-1, keepdim=True)  # (..., 1)
        var = x.var(-1, keepdim=True, unbiased=False)  # (..., 1); LayerNorm uses the biased variance
        x_hat = (x - mean) / torch.sqrt(var + self.eps)  # zero mean, unit variance per row
        out = x_hat * self.weight
        return out + self.bias if self.bias is not None else out


def make_norm(cfg: ModelConfig, dim: int | None = None) -> nn.Module:
    dim = dim or cfg.n_embd
    if cfg.norm == "layernorm":
        return nn.LayerNorm(dim, bias=cfg.bias)
    if cfg.norm == "handwritten":
        return HandwrittenLayerNorm(dim, bias=cfg.bias)
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(dim)
    return nn.Identity()


class MLP(nn.Module):
    """Position-wise feed-forward: expand, non-linearity, project back (the 'thinking' step)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.n_embd
        self.fc = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias) if cfg.mlp_proj else None
        self.activation = cfg.activation
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):  # (B, T, C)
        h = self.fc(x)  # (B, T, 4C)
        if self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "gelu":
            h = F.gelu(h)
        else:  # relu2: ReLU squared, sparse and cheap, works well in small fast-trained GPTs
            h = F.relu(h).square()
        if self.proj is not None:
            h = self.proj(h)  # (B, T, C)
        return self.dropout(h)


class Rotary(nn.Module):
    """Rotary position embedding (RoPE): rotate query/key pairs by a position-dependent angle.

    Scores then depend on relative positions only, and there is no position table to learn.
    """

    def __init__(self, head_size: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)  # (hs/2,)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (T_max, hs/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x, start: int = 0):  # x: (B, nh, T, hs)
        T = x.size(-2)
        cos = self.cos[start : start + T].to(x.dtype)  # (T, hs/2)
        sin = self.sin[start : start + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hs)
