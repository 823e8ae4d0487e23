"""Lesson: LayerNorm by hand, and why a deep stack needs residual paths.

Run it with `tinygpt lesson norms` (or `python -m tinygpt.lessons.norms`) and read along.

1. BatchNorm normalises every feature (a column) over the examples of a batch; the lecture turns it
   into LayerNorm by normalising every example (a row) over its features instead: the same three
   lines with the mean and variance taken along the other dimension. On the lecture's (32, 100)
   example under seed 1337 a column then has mean 0.1469 and std 0.8803, and every row mean 0 and
   std 1. A GPT uses LayerNorm because it needs no batch: each token is normalised on its own, in
   training and in generation alike, with no running statistics to keep.
2. The hand-written version against `nn.LayerNorm`: they agree once the variance is taken the same
   way (nn.LayerNorm divides by n, the lecture's `x.var` by n - 1).
3. A deep stack of feed-forward blocks, four ways: post-norm (norm after each block, as in the
   original Transformer) or pre-norm (norm at the start of each block's branch, as in GPT-2 and the
   lecture), each without and with residual connections (x + block(x)). For each: the gradient that
   reaches the first layer at initialisation, and the loss after a few dozen training steps. With
   residual paths the addition passes the gradient from the loss straight down to every layer (the
   lecture's "gradient superhighway"), and the stack learns; without them it barely moves. A fifth
   stack with neither norms nor residuals shows the gradient all but vanish on its way down.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SEED = 1337
BATCH, FEATURES = 32, 100  # the lecture's example
EPS = 1e-5

# The deep stack: 16 blocks of 32 -> 128 -> 32 (ReLU), learning a 10-way classification of random
# 32-number inputs that a hidden linear map labels. Small enough to train in seconds on a CPU.
DEPTH, WIDTH, CLASSES = 16, 32, 10
EXAMPLES, STACK_BATCH, STEPS, LR = 512, 32, 50, 1e-3
STACKS = (  # name, norm placement, residual
    ("post-norm, no residual", "post", False),
    ("pre-norm, no residual", "pre", False),
    ("post-norm, residual", "post", True),
    ("pre-norm, residual", "pre", True),
    ("no norm, no residual", "none", False),
)


def normalise(x: torch.Tensor, dim: int, unbiased: bool = True) -> torch.Tensor:
    """Zero mean and unit variance along `dim`, as the lecture's class writes it (gamma 1, beta 0).
    dim=0: BatchNorm's statistics (each column over the batch); dim=1: LayerNorm's (each row)."""
    mean = x.mean(dim, keepdim=True)  # (1, C) for dim 0, (B, 1) for dim 1
    var = x.var(dim, keepdim=True, unbiased=unbiased)  # the same shape
    return (x - mean) / torch.sqrt(var + EPS)  # (B, C)


class LayerNorm(nn.Module):
    """LayerNorm written out: normalise each row over its features, then scale by gamma and shift by beta
    (learned, starting at 1 and 0, so the network can undo the normalisation where that helps)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * normalise(x, dim=-1, unbiased=False) + self.beta  # (B, C)


class Block(nn.Module):
    """A feed-forward block with its norm placed before (pre) or after (post) it, or none, and with or
    without the residual connection around it."""

    def __init__(self, norm: str, residual: bool):
        super().__init__()
        self.norm, self.residual = norm, residual
        self.ln = LayerNorm(WIDTH)
        self.ffwd = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.ReLU(), nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, C)
        branch = self.ffwd(self.ln(x) if self.norm == "pre" else x)
        x = x + branch if self.residual else branch
        return self.ln(x) if self.norm == "post" else x


def _stack_run(norm: str, residual: bool, X: torch.Tensor, Y: torch.Tensor) -> dict:
    """Build a stack (same seed for every kind), measure its first gradient, train it, score it."""
    torch.manual_seed(SEED)
    blocks = nn.Sequential(*(Block(norm, residual) for _ in range(DEPTH)))
    head = nn.Linear(WIDTH, CLASSES)
    params = list(blocks.parameters()) + list(head.parameters())

    F.cross_entropy(head(blocks(X[:STACK_BATCH])), Y[:STACK_BATCH]).backward()
    first = blocks[0].ffwd[0].weight.grad.norm().item()  # the first layer of the first block
    last = blocks[-1].ffwd[0].weight.grad.norm().item()  # the same layer of the last block

    optimizer = torch.optim.AdamW(params, lr=LR)
    g = torch.Generator().manual_seed(SEED)
    for _ in range(STEPS):
        idx = torch.randint(len(X), (STACK_BATCH,), generator=g)  # (B,)
        loss = F.cross_entropy(head(blocks(X[idx])), Y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = F.cross_entropy(head(blocks(X)), Y).item()  # on all the examples
    return {"grad_first": first, "grad_last": last, "loss": final}


def run(out=print) -> dict:
    """Print the lesson step by step and return its numbers."""
    # ---- 1. BatchNorm's statistics against LayerNorm's ---------------------------------------
    torch.manual_seed(SEED)
    x = torch.randn(BATCH, FEATURES)  # (B, C): 32 examples of 100 features
    out(f"1. x = torch.randn({BATCH}, {FEATURES}) under torch.manual_seed({SEED}): {BATCH} examples (rows) of"
        f" {FEATURES} features (columns)")

    def stats(t: torch.Tensor) -> dict:
        return {"column_mean": t[:, 0].mean().item(), "column_std": t[:, 0].std().item(),
                "row_mean": t[0, :].mean().item(), "row_std": t[0, :].std().item()}

    batch = stats(normalise(x, dim=0))
    layer = stats(normalise(x, dim=1))
    for name, s, dim in (("BatchNorm", batch, "each column over the batch (dim 0)"),
                         ("LayerNorm", layer, "each row over its features (dim 1)")):
        out(f"   {name}, normalising {dim}:")
        out(f"     column x[:, 0]: mean {s['column_mean']:.4f}, std {s['column_std']:.4f};"
            f"   row x[0, :]: mean {s['row_mean']:.4f}, std {s['row_std']:.4f}")
    out("   The same code, the other dimension: LayerNorm needs no batch statistics, so a token is normalised")
    out("   the same way alone or in a batch, in training and in generation, with no running averages to keep.")

    # ---- 2. Against nn.LayerNorm ----------------------------------------------------------------
    reference = nn.LayerNorm(FEATURES, eps=EPS)(x).detach()  # (B, C), gamma 1 and beta 0 at the start
    diff_lecture = (normalise(x, dim=1) - reference).abs().max().item()
    diff_biased = (LayerNorm(FEATURES)(x).detach() - reference).abs().max().item()
    out("")
    out("2. Against nn.LayerNorm(100):")
    out(f"   the lecture's x.var (divides by n - 1 = {FEATURES - 1}): largest difference {diff_lecture:.4f}"
        f" (a factor sqrt({FEATURES}/{FEATURES - 1}) = {(FEATURES / (FEATURES - 1)) ** 0.5:.4f})")
    out(f"   with the variance divided by n = {FEATURES}, as nn.LayerNorm does: largest difference {diff_biased:.1e}")

    # ---- 3. A deep stack, four ways -----------------------------------------------------------------
    g = torch.Generator().manual_seed(SEED)
    X = torch.randn(EXAMPLES, WIDTH, generator=g)  # (N, C) inputs
    Y = (X @ torch.randn(WIDTH, CLASSES, generator=g)).argmax(dim=1)  # (N,) labels from a hidden linear map
    out("")
    out(f"3. A stack of {DEPTH} feed-forward blocks ({WIDTH} -> {4 * WIDTH} -> {WIDTH}) learning {CLASSES} classes of"
        f" {EXAMPLES} random inputs;")
    out("   gradient size (norm) at the first block's first layer and the last block's at the start, and the loss")
    out(f"   after {STEPS} AdamW steps (lr {LR:g}, batch {STACK_BATCH}; ln {CLASSES} = 2.30 is guessing):")
    stacks = {}
    # Tensors this small spend more time handing work between threads than computing: on the 2-core
    # development machine under load the five stacks took 90 s with 2 threads and 6 s with one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, norm, residual in STACKS:
            stacks[name] = r = _stack_run(norm, residual, X, Y)
            out(f"     {name:<24} first {r['grad_first']:.1e}  last {r['grad_last']:.1e}  loss {r['loss']:.3f}")
    finally:
        torch.set_num_threads(threads)
    out("   Without residual paths the gradient must pass through every block on its way down: with no norms")
    out("   it all but vanishes, and even where LayerNorm keeps its size the stack barely learns. With them,")
    out("   x + block(x) hands the gradient straight down (the lecture's gradient superhighway): every block")
    out("   learns from the first step, pre-norm fastest, which is why the lecture and GPT-2 put the norm first.")

    return {"batchnorm": batch, "layernorm": layer, "max_diff_lecture_var": diff_lecture,
            "max_diff_nn_layernorm": diff_biased, "stacks": stacks}


if __name__ == "__main__":
    run()
