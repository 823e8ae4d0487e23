"""Int8 weights for sampling and evaluating (`--quantize int8`): a quarter of float32's bytes per token.

Sampling one token at batch 1 reads every weight once and does two flops with each: on a CPU the
time is how fast the weights stream from memory (the lecture model: 43 MB of float32 per token).
Stored as int8, one byte each with one scale per output row (symmetric, round to nearest), the same
matrices are 10.8 MB, small enough to stay in a CPU's last-level cache between tokens.

    y = (x @ W_int8^T) * scale            W ~ W_int8 * scale[:, None], |W_int8| <= 127

Only the linear layers are stored so (the blocks' projections and the head); embeddings, norms and
attention stay as they are. A few rows at a time (sampling, a server's batch) run PyTorch's
int8-weight kernel with bfloat16 activations; more rows at once (evaluating a whole split, a long
prompt's prefill) multiply by the dequantized float32 weight, which is faster there. What it costs in
loss is measured, not assumed: benchmarks/README.md ("Sampling at the memory limit").
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import TinyGPTError

QUANTIZE = ("none", "int8")
FEW_ROWS = 8  # up to this many rows per product the int8 kernel is the faster (measured: 2x at 1 row, 0.5x at 64)


class Int8Linear(nn.Module):
    """A linear layer whose weight is stored as int8 rows and a bfloat16 scale per row."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()  # (out, in)
        # The scale is rounded to bfloat16 first (the kernel's type), and the weights divided by that scale.
        scale = (w.abs().amax(dim=1).clamp(min=1e-12) / 127).to(torch.bfloat16)  # (out,)
        q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)  # (out, in)
        self.register_buffer("weight_int8", q)
        self.register_buffer("scale", scale)
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        # PyTorch's kernel reads the rows in blocks of 8 inputs; other widths take the dequantized path.
        self.kernel = self.in_features % 8 == 0

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (out, in), float32: what the int8 layer computes with."""
        return self.weight_int8.float() * self.scale.float()[:, None]

    def forward(self, x):  # (..., in) -> (..., out)
        y = self.product(x.reshape(-1, self.in_features))  # (M, out)
        return y.view(*x.shape[:-1], self.out_features)

    def product(self, rows):
        """rows (M, in) -> (M, out), in rows' dtype: the layer on a matrix of rows (what forward and the
        decode plan run)."""
        bias = self.bias.to(rows.dtype) if self.bias is not None else None
        if self.kernel and rows.is_cpu and rows.size(0) <= FEW_ROWS:
            y = torch._weight_int8pack_mm(rows.to(torch.bfloat16), self.weight_int8, self.scale)  # (M, out) bf16
            # The bias is added in the pass that brings the rows back to x's type (one op less per layer a token).
            return y.to(rows.dtype) if bias is None else torch.add(bias, y)
        return F.linear(rows, self.weight.to(rows.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def check_quantize(quantize: str | None) -> str:
    """'none' or 'int8'; anything else is one line naming the choices."""
    value = "none" if quantize in (None, "", "none") else quantize
    if value not in QUANTIZE:
        raise TinyGPTError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    return value


def quantize_int8(model: nn.Module) -> int:
    """Replace every nn.Linear of `model` by an Int8Linear, in place; returns how many were replaced.

    For a model that only generates and scores from here on: the int8 layers hold buffers, not
    parameters, so it cannot be trained or saved as a run.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child).to(child.weight.device))
                replaced += 1
    return replaced
