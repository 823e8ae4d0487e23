"""Lesson: the rest of the Transformer, what the decoder-only GPT left out.

Run it with `tinygpt lesson transformer` (or `python -m tinygpt.lessons.transformer`) and read along.

The original Transformer ("Attention is all you need") translates: an encoder reads the source, a
decoder writes the target. Three kinds of attention, told apart by their masks:

1. causal self-attention (the decoder, and every GPT): target position t sees positions 0..t only;
2. unmasked self-attention (the encoder): every source position sees every other, both ways, since
   the whole source is known before anything is written;
3. cross-attention (in each decoder block): queries from the target, keys and values from the
   encoder's output; every target position may read every source position, so there is no mask
   (only the source's padding is hidden when sources of different lengths share a batch).

The second part computes one cross-attention step by hand with real numbers and checks it against
the module tinygpt trains (model/cross_attention.py).

The third part is where the paper put its LayerNorm: after each residual sum (post-norm:
x = norm(x + f(x))), where GPTs put it before the sub-layer (pre-norm: x = x + f(norm(x))). In a
post-norm stack every gradient reaching the first layer has passed through every later norm; in a
pre-norm stack the residual path carries it straight down. The lesson measures the gradient at the
first and last block of a deep stack, both ways, on the same weights' starting point and batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..model import build_model
from ..model.cross_attention import CrossHead

SEED = 1337
T, S = 3, 4  # target and source lengths: small enough to print every number
C, HS = 4, 4  # width of the stream and of the one head
DEEP = 24  # blocks in the gradient experiment


def _grid(mask: torch.Tensor, rows: str, cols: str) -> list[str]:
    lines = ["       " + " ".join(f"{cols}{j}" for j in range(mask.size(1)))]
    for i, row in enumerate(mask.tolist()):
        lines.append(f"  {rows}{i}   " + "  ".join("x" if v else "." for v in row))
    return lines


def _matrix(m: torch.Tensor, decimals: int = 3) -> list[str]:
    return ["    [" + " ".join(f"{v:{decimals + 4}.{decimals}f}" for v in row) + " ]" for row in m.tolist()]


def masks() -> dict[str, torch.Tensor]:
    """The three masks, True where a query may read a key."""
    return {"causal": torch.tril(torch.ones(T, T, dtype=torch.bool)),  # decoder self-attention: (T, T)
            "none": torch.ones(S, S, dtype=torch.bool),  # encoder self-attention: (S, S)
            "cross": torch.ones(T, S, dtype=torch.bool)}  # decoder reads encoder: (T, S)


def cross_step() -> dict:
    """One cross-attention head by hand, and the module's own answer."""
    torch.manual_seed(SEED)
    head = CrossHead(ModelConfig(n_embd=C, n_head=C // HS, block_size=8, qkv_bias=False, dropout=0.0))
    x = torch.randn(T, C)  # the target so far, (T, C)
    memory = torch.randn(S, C)  # the encoder's output for the source, (S, C)
    q = x @ head.query.weight.T  # (T, hs): what each target position looks for
    k = memory @ head.key.weight.T  # (S, hs): what each source position offers
    v = memory @ head.value.weight.T  # (S, hs): what it hands over
    scores = q @ k.T / math.sqrt(HS)  # (T, S)
    weights = F.softmax(scores, dim=-1)  # (T, S): no mask, every row sums to 1 over the source
    by_hand = weights @ v  # (T, hs)
    with torch.no_grad():
        module = head(x[None], head.key(memory)[None], head.value(memory)[None])[0]  # (T, hs)
    return {"x": x, "memory": memory, "q": q, "k": k, "v": v, "scores": scores, "weights": weights,
            "by_hand": by_hand, "module": module}


def gradient_depth(position: str) -> dict:
    """Gradient norms of the first and last block's weights of a DEEP-block GPT at initialisation."""
    torch.manual_seed(SEED)
    cfg = ModelConfig(vocab_size=32, block_size=16, n_layer=DEEP, n_head=2, n_embd=32, norm_position=position,
                      init="torch").validate()
    model = build_model(cfg)
    x = torch.randint(32, (8, 16), generator=torch.Generator().manual_seed(SEED))  # (B, T)
    _, loss = model(x, x.roll(-1, dims=1))
    loss.backward()

    def norm(block) -> float:
        return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in block.parameters()))

    return {"first": norm(model.blocks[0]), "last": norm(model.blocks[-1]), "loss": loss.item()}


def run(out=print) -> dict:
    """Print the lesson step by step and return its tensors and numbers."""
    found = masks()
    out("1. Three masks (x: the query in that row may read the key in that column).")
    out("")
    out(f"  causal self-attention, the decoder (target t{0}..t{T - 1} reads target t):")
    for line in _grid(found["causal"], "t", "t"):
        out(line)
    out("")
    out(f"  no mask, the encoder (source s{0}..s{S - 1} reads source s, both ways):")
    for line in _grid(found["none"], "s", "s"):
        out(line)
    out("")
    out("  cross-attention, each decoder block (target t reads source s, all of it):")
    for line in _grid(found["cross"], "t", "s"):
        out(line)

    step = cross_step()
    out("")
    out(f"2. One cross-attention head by hand: {T} target positions read {S} source positions, C = {C}.")
    for name, what in (("q", f"queries = target x W_query^T, ({T}, {HS})"),
                       ("k", f"keys = encoder output x W_key^T, ({S}, {HS})"),
                       ("v", f"values = encoder output x W_value^T, ({S}, {HS})"),
                       ("scores", f"scores = q k^T / sqrt({HS}), ({T}, {S}): no -inf anywhere"),
                       ("weights", f"weights = softmax over each row, ({T}, {S})"),
                       ("by_hand", f"output = weights v, ({T}, {HS})")):
        out(f"  {what}:")
        for line in _matrix(step[name]):
            out(line)
    sums = step["weights"].sum(-1).tolist()
    diff = (step["by_hand"] - step["module"]).abs().max().item()
    out(f"  every row of the weights sums to 1: {[round(s, 6) for s in sums]}")
    out(f"  the module (CrossHead) gives the same output? {torch.allclose(step['by_hand'], step['module'], atol=1e-6)}"
        f" (largest difference {diff:.1e})")

    grads = {position: gradient_depth(position) for position in ("pre", "post")}
    out("")
    out(f"3. Pre-norm against post-norm: gradient norms at initialisation, a {DEEP}-block GPT, one batch.")
    out(f"  {'':<10} {'first block':>12} {'last block':>12} {'first / last':>13}")
    for position, g in grads.items():
        out(f"  {position + '-norm':<10} {g['first']:>12.4f} {g['last']:>12.4f} {g['first'] / g['last']:>13.3f}")
    pre, post = (grads[p]["first"] / grads[p]["last"] for p in ("pre", "post"))
    out(f"  Post-norm: the first block gets {post:.2f}x the last block's gradient; every later norm rescales it on")
    out(f"  its way down. Pre-norm: {pre:.2f}x; the residual path carries it down past the norms. The paper")
    out("  trained post-norm with a learning-rate warmup; GPT-2 moved the norm in front, and GPTs since kept it.")
    return {"masks": found, "cross": step, "gradients": grads}


if __name__ == "__main__":
    run()
