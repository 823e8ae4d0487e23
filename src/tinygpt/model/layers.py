"""Building blocks of every network here: a CPU-friendly linear layer, the norms, rotary positions."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig

SPLIT_ROWS = 16  # up to this many rows a product splits its weight among the threads (see ThreadedLinear)


class ThreadedLinear(nn.Linear):
    """nn.Linear (same parameters, same function) that keeps every core busy when sampling a few rows.

    Sampling multiplies one row (or a few: a server's batch, several samples) by each weight matrix.
    The BLAS kernel behind `F.linear` runs such a thin product on one core, so on a CPU half the
    machine idles while the weights stream from memory. Viewing the weight's rows as one chunk per
    thread and multiplying the chunks as a batch lets every core take its share (2 cores, the lecture
    model's 24 products that split, `python benchmarks/sample_limit.py --what products`: 1.1-1.6x from 1
    to 16 rows; 1.1-1.3x at 32 to 128 rows, where a first measurement had found nothing, so the limit
    stayed at 16). Each output is still a dot product of a row with a weight row, so the results match
    `F.linear` (bit for bit at one row). Training, evaluation and larger batches take the ordinary path.
    """

    def forward(self, x):  # (..., in_features) -> (..., out_features)
        if torch.is_grad_enabled():  # training: first, as every check costs a small model's step
            return F.linear(x, self.weight, self.bias)
        rows = x.numel() // self.in_features
        n = torch.get_num_threads()
        if rows > SPLIT_ROWS or n < 2 or self.out_features % n or not x.is_cpu:
            return F.linear(x, self.weight, self.bias)
        w, b = split_weight(self.weight, self.bias, n)
        return split_product(x.reshape(rows, self.in_features), w, b).view(*x.shape[:-1], self.out_features)


def split_weight(weight, bias, n: int):
    """A weight (out, in) viewed as n chunks of its rows, (n, in, out/n), and its bias as (n, 1, out/n):
    one chunk per thread for `split_product`. Views, no copies."""
    out, inp = weight.shape
    w = weight.view(n, out // n, inp).transpose(1, 2)  # (n, in, out/n)
    return w, (bias.view(n, 1, out // n) if bias is not None else None)


def split_product(x, w, b):
    """x (M, in) times a split weight (`split_weight`) -> (M, out): each thread multiplies every row by its
    chunk of the weight's rows, the chunks' outputs side by side."""
    n, inp, part = w.shape
    rows = x.expand(n, x.size(0), inp)  # (n, M, in), no copy
    y = torch.bmm(rows, w) if b is None else torch.baddbmm(b, rows, w)  # (n, M, out/n); the bias in the same call
    if x.size(0) == 1:
        return y.view(1, n * part)  # one row: the chunks already lie side by side
    return y.transpose(0, 1).reshape(x.size(0), n * part)  # (M, n, out/n) -> (M, out)


class ReluSquared(torch.autograd.Function):
    """relu(h) ** 2, with a backward of its own: the same numbers as `F.relu(h).square()` and its gradient.

    Autograd would keep both relu(h) and its input and take three passes over the (B, T, 4C)
    activations backwards; here relu(h) is the one tensor kept (its zeros already say where the
    gradient stops) and the gradient is two passes: 2 * relu(h) * grad. On a CPU these activations
    stream through memory, so the passes are the cost (speedrun-cpu: benchmarks/README.md).
    """

    @staticmethod
    def forward(ctx, h):  # (..., 4C)
        r = torch.relu(h)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad):
        (r,) = ctx.saved_tensors
        return torch.mul(grad, r).mul_(2.0)  # x2 is exact in floating point: what pow's gradient computes


def relu_squared(h: torch.Tensor) -> torch.Tensor:
    """ReLU squared (the modded-nanogpt activation): sparse, cheap, and trains small GPTs fast."""
    if not torch.is_grad_enabled():  # sampling, evaluating: the same numbers without autograd's Function
        r = torch.relu(h)
        return r * r
    return ReluSquared.apply(h)


class LeanRMSNorm(torch.autograd.Function):
    """rms_norm(x) * weight with a backward of its own: the forward's numbers are F.rms_norm's, bit for bit,
    and the gradients agree with autograd's to rounding.

    On a CPU, autograd differentiates F.rms_norm piece by piece (square, mean, rsqrt, two products): about a
    dozen passes over the (B, T, C) activations backwards. Here the normalised input and each row's scale
    are kept, and the gradient is
        dx = r * (g w - x_hat * mean(g w x_hat)),   dw = the sum over rows of g x_hat
    where r = 1 / rms(x) and x_hat = x r. speedrun-cpu has nine norms a step, QK-norm's included, and they
    were a seventh of its step (benchmarks/README.md).
    """

    @staticmethod
    def forward(ctx, x, weight, eps: float):  # x: (..., C); weight: (C,) or None
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # (..., 1)
        x_hat = x * r
        ctx.save_for_backward(x_hat, r, weight)
        return x_hat * weight if weight is not None else x_hat

    @staticmethod
    def backward(ctx, grad):
        x_hat, r, weight = ctx.saved_tensors
        gw = grad * weight if weight is not None else grad  # the gradient at x_hat
        dx = torch.addcmul(gw, x_hat, (gw * x_hat).mean(-1, keepdim=True), value=-1).mul_(r)
        dw = None
        if weight is not None and ctx.needs_input_grad[1]:
            dw = (grad * x_hat).reshape(-1, x_hat.size(-1)).sum(0)  # (C,)
        return dx, dw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float | None = None) -> torch.Tensor:
    """F.rms_norm over the last dimension (eps None: the dtype's epsilon, as F.rms_norm); float32 training on
    a CPU takes LeanRMSNorm's backward, everything else F.rms_norm itself."""
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    float32 = x.dtype == torch.float32 and (weight is None or weight.dtype == x.dtype)
    if torch.is_grad_enabled() and x.is_cpu and float32:
        return LeanRMSNorm.apply(x, weight, eps)
    return F.rms_norm(x, (x.size(-1),), weight, eps)


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm (the same parameter, the same numbers forward) with `rms_norm`'s leaner backward on a CPU."""

    def forward(self, x):  # (..., C)
        return rms_norm(x, self.weight, self.eps)


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
        return RMSNorm(dim)
    return nn.Identity()


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
        return turn(x, cos, sin)  # (B, nh, T, hs)


def turn(x, cos, sin):
    """Rotary's rotation: x (..., hs) as pairs (x1[i], x2[i]) of its halves, each turned by the angle whose
    cos and sin (broadcast to (..., hs/2)) are given."""
    x1, x2 = x.chunk(2, dim=-1)  # (..., hs/2) each
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., hs)


def prepare_qk(q, k, qk_norm: bool, rotary, start: int = 0):
    """Optional QK-norm, then rotary positions from `start` on; q, k: (B, nh, T, hs), or (B, T, hs) for one
    head. (Rows at different positions, in generation, are cached.py's `rotate_rows`.)"""
    if qk_norm:
        q, k = rms_norm(q), rms_norm(k)
    if rotary is not None:
        q, k = rotary(q, start), rotary(k, start)
    return q, k
