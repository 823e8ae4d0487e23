"""Lesson: the trick inside self-attention, and why its scores are divided by sqrt(head_size).

Run it with `tinygpt lesson attention` (or `python -m tinygpt.lessons.attention`) and read along.

A GPT predicts the next token at every position of a sequence at once. Position t may use what came
before it (positions 0..t) but never what comes after, or it would be reading the answer. The
simplest way to let a position gather information from its past is to average it. This lesson
computes that running average four ways and shows they agree:

1. an explicit Python loop: position t takes the mean of x[0..t];
2. one matrix product with a lower-triangular matrix whose rows sum to 1 (first on the lecture's
   3 x 3 toy, `a @ b`, where such a matrix turns running sums into running averages);
3. the same matrix made by a softmax over scores that are 0 on and below the diagonal and -inf above
   (exp(-inf) = 0, so future positions get weight 0 and the rest share the weight equally);
4. real single-head self-attention: the scores are no longer all 0 but come from the data, as the
   dot product of a query (what this position is looking for) and a key (what each position
   offers); the output is the weighted sum of values. The -inf mask and the softmax are exactly
   those of way 3, so the weights stay causal and each row still sums to 1.

Way 3 is the bridge: it is an average written so that replacing the zeros by learned scores turns
it into attention.

The second half is about scale. A score is a sum of head_size products q_i * k_i. If q and k have
unit variance, each product does too, and the sum of head_size of them has variance head_size.
Large scores make the softmax saturate: it puts nearly all weight on the largest score, so each
position listens to one other position and gradients through the other weights vanish. Dividing
the scores by sqrt(head_size) brings their variance back to about 1. The lecture shows it on one
small draw (4 x 8 positions, heads of 16: it prints 1.0449, 1.0700 and 1.0918 from unseeded draws);
this lesson prints the same three numbers from a seeded draw, then over 262,144 scores, and ends
with the lecture's softmax([0.1, -0.2, 0.3, -0.2, 0.5]) against the same scores times 8.
"""

import torch
from torch import nn
from torch.nn import functional as F

SEED = 1337
B, T, C = 4, 8, 2  # batch, time (sequence length), channels: tiny so every tensor can be printed
HEAD_SIZE = 16

# The variance demo wants many samples so its numbers are stable: 256 * 32 * 32 = 262,144 scores.
VAR_B, VAR_T = 256, 32
SHARPEN = 8.0  # how much the saturation demo multiplies its scores by
SOFTMAX_SCORES = (0.1, -0.2, 0.3, -0.2, 0.5)  # the lecture's row of scores
TOY_SEED = 42  # the lecture's seed for its a @ b toy
# float32 sums in a different order differ in the last bits (about 1e-8 here), and allclose's
# default tolerance is relative, which is too strict for averages that land near 0.
ATOL = 1e-6


def _matrix_text(m: torch.Tensor, decimals: int = 4) -> list[str]:
    """Rows of a 2-D tensor as aligned text lines (local formatting, so global print options stay as they are)."""
    width = decimals + 4
    return ["  [" + " ".join(f"{v:{width}.{decimals}f}" for v in row) + " ]" for row in m.tolist()]


def _row_text(row: torch.Tensor, decimals: int = 4) -> str:
    """A 1-D tensor as "[0.1925, 0.1426, ...]", every number to the same precision."""
    return "[" + ", ".join(f"{v:.{decimals}f}" for v in row.tolist()) + "]"


def _causal_mask(size: int) -> torch.Tensor:
    """1 on and below the diagonal (a position and its past), 0 above it (the future)."""
    return torch.tril(torch.ones(size, size))  # (T, T)


def average_loop(x: torch.Tensor) -> torch.Tensor:
    """Way 1: for every batch row b and position t, the mean of x[b, 0..t]."""
    Bx, Tx, Cx = x.shape
    xbow = torch.zeros(Bx, Tx, Cx)  # "bag of words": an average that forgets order
    for b in range(Bx):
        for t in range(Tx):
            xbow[b, t] = x[b, : t + 1].mean(dim=0)  # (t+1, C) -> (C,)
    return xbow


def averaging_weights_matmul(size: int) -> torch.Tensor:
    """Way 2's weights: the lower-triangular ones, each row divided by its count, so row t is
    1/(t+1) on positions 0..t and 0 after."""
    wei = _causal_mask(size)  # (T, T)
    return wei / wei.sum(dim=1, keepdim=True)  # (T, T), rows sum to 1


def toy_matmul() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The lecture's toy: a (3, 3) matrix times b, a (3, 2) matrix of small random integers.
    Returns (ones @ b, a @ b with a = the row-normalised lower triangle, a, b): with all ones every
    row of the product is the sum of b's rows; with a, row t is the mean of b's rows 0..t."""
    b = torch.randint(0, 10, (3, 2), generator=torch.Generator().manual_seed(TOY_SEED)).float()  # (3, 2)
    a = averaging_weights_matmul(3)  # (3, 3)
    return torch.ones(3, 3) @ b, a @ b, a, b  # (3, 2), (3, 2)


def averaging_weights_softmax(size: int) -> torch.Tensor:
    """Way 3's weights: softmax of equal scores (0) with the future set to -inf."""
    scores = torch.zeros(size, size)  # (T, T) every past position equally interesting
    scores = scores.masked_fill(_causal_mask(size) == 0, float("-inf"))  # (T, T) the future is forbidden
    return F.softmax(scores, dim=-1)  # (T, T)


class Head(nn.Module):
    """Way 4: one head of causal self-attention, as in a GPT."""

    def __init__(self, n_embd: int, head_size: int, block_size: int):
        super().__init__()
        self.head_size = head_size
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", _causal_mask(block_size))  # (T, T), a constant, not a weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output, attention weights) so the lesson can inspect the weights."""
        _, Tx, _ = x.shape
        k = self.key(x)  # (B, T, hs) what each position offers
        q = self.query(x)  # (B, T, hs) what each position is looking for
        scores = q @ k.transpose(-2, -1) * self.head_size**-0.5  # (B, T, hs) @ (B, hs, T) -> (B, T, T)
        scores = scores.masked_fill(self.tril[:Tx, :Tx] == 0, float("-inf"))  # (B, T, T)
        wei = F.softmax(scores, dim=-1)  # (B, T, T)
        v = self.value(x)  # (B, T, hs) what each position passes on if attended to
        return wei @ v, wei  # (B, T, T) @ (B, T, hs) -> (B, T, hs)


def run(out=print) -> dict:
    """Print the lesson step by step and return its tensors and figures."""
    # Seeding the global generator also fixes the initial weights of the Linear layers in Head.
    torch.manual_seed(SEED)
    x = torch.randn(B, T, C)  # (B, T, C)
    out(f"x has shape (B, T, C) = {tuple(x.shape)}. The {T} positions of batch row 0:")
    for line in _matrix_text(x[0]):
        out(line)

    # ---- 1. Loop ------------------------------------------------------------------------------
    out("")
    out("Way 1. A loop: position t takes the mean of positions 0..t. Batch row 0:")
    xbow1 = average_loop(x)  # (B, T, C)
    for line in _matrix_text(xbow1[0]):
        out(line)
    out(
        f"  row 0 is x[0] itself; the last row is the mean of all {T} rows:"
        f" {[round(v, 4) for v in xbow1[0, -1].tolist()]}"
    )

    # ---- 2. Matrix product --------------------------------------------------------------------
    out("")
    out(f"Way 2. One matrix product. The lecture's toy first (b from torch.manual_seed({TOY_SEED})):")
    sums, averages, a, b = toy_matmul()
    for name, left, product in (("ones(3, 3)", torch.ones(3, 3), sums), ("a", a, averages)):
        out(f"  {name} @ b,: {[[round(v, 4) for v in r] for r in left.tolist()]}"
            f" @ {b.long().tolist()} = {[[round(v, 4) for v in r] for r in product.tolist()]}")
    out("  all ones gives every row the sum of b's rows; the lower triangle of ones, each row divided by")
    out("  its count, gives row t the mean of b's rows 0..t: a running average in one product.")
    out(f"  The same {T} x {T} matrix for x:")
    wei2 = averaging_weights_matmul(T)  # (T, T)
    for line in _matrix_text(wei2):
        out(line)
    xbow2 = wei2 @ x  # (T, T) @ (B, T, C) -> (B, T, C): the matrix is applied to every batch row
    diff2 = (xbow2 - xbow1).abs().max().item()
    out(f"  same as the loop? {torch.allclose(xbow1, xbow2, atol=ATOL)} (largest difference {diff2:.1e})")

    # ---- 3. Softmax over a masked matrix ------------------------------------------------------
    out("")
    out("Way 3. Softmax over scores that are 0 on/below the diagonal and -inf above:")
    wei3 = averaging_weights_softmax(T)  # (T, T)
    for line in _matrix_text(wei3):
        out(line)
    xbow3 = wei3 @ x  # (B, T, C)
    diff3 = (xbow3 - xbow1).abs().max().item()
    out(f"  same weights as way 2? {torch.allclose(wei2, wei3, atol=ATOL)}")
    out(f"  same as the loop? {torch.allclose(xbow1, xbow3, atol=ATOL)} (largest difference {diff3:.1e})")

    # ---- 4. Self-attention --------------------------------------------------------------------
    out("")
    out(f"Way 4. Single-head self-attention (head_size {HEAD_SIZE}): scores from queries and keys")
    head = Head(C, HEAD_SIZE, T)
    with torch.no_grad():  # nothing is trained here, so no gradients are needed
        attn_out, wei4 = head(x)  # (B, T, hs), (B, T, T)
    out("  attention weights for batch row 0 (each row: how much position t listens to each position):")
    for line in _matrix_text(wei4[0]):
        out(line)
    above_diagonal = torch.triu(wei4, diagonal=1).abs().max().item()  # weight on any future position
    row_sum_error = (wei4.sum(dim=-1) - 1).abs().max().item()
    out(f"  causal: largest weight above the diagonal = {above_diagonal} (no position sees its future)")
    out(f"  every row sums to 1: largest deviation {row_sum_error:.1e}")
    out(
        f"  unlike ways 2-3 the weights depend on the data: batch rows 0 and 1 get different weights? "
        f"{not torch.allclose(wei4[0], wei4[1], atol=ATOL)}"
    )
    out(f"  output shape (B, T, head_size) = {tuple(attn_out.shape)}")

    # ---- 5. Why divide by sqrt(head_size) -----------------------------------------------------
    out("")
    out(f"Why the scores are divided by sqrt(head_size). The lecture's draw: B, T = {B}, {T}, heads of {HEAD_SIZE},"
        f" here seeded with {SEED}:")
    g = torch.Generator().manual_seed(SEED)
    small_k = torch.randn(B, T, HEAD_SIZE, generator=g)  # (B, T, hs)
    small_q = torch.randn(B, T, HEAD_SIZE, generator=g)  # (B, T, hs)
    small_wei = small_q @ small_k.transpose(-2, -1) * HEAD_SIZE**-0.5  # (B, T, T)
    lecture_draw = {"var_k": small_k.var().item(), "var_q": small_q.var().item(), "var_wei": small_wei.var().item(),
                    "var_unscaled": (small_q @ small_k.transpose(-2, -1)).var().item()}
    out(f"  var(k) = {lecture_draw['var_k']:.4f}, var(q) = {lecture_draw['var_q']:.4f},"
        f" var(wei) = {lecture_draw['var_wei']:.4f} for wei = q @ k^T / sqrt({HEAD_SIZE})"
        f"  (the lecture, unseeded: 1.0449, 1.0700, 1.0918)")
    out(f"  without the division the scores' variance is {lecture_draw['var_unscaled']:.4f}: about head_size.")
    out(f"  {B * T * T} scores are too few for steady numbers (each draw differs); over {VAR_B * VAR_T * VAR_T:,}:")
    q = torch.randn(VAR_B, VAR_T, HEAD_SIZE)  # (B, T, hs) unit-variance queries
    k = torch.randn(VAR_B, VAR_T, HEAD_SIZE)  # (B, T, hs) unit-variance keys
    raw = q @ k.transpose(-2, -1)  # (B, T, T)
    scaled = raw * HEAD_SIZE**-0.5  # (B, T, T)
    var_q, var_k = q.var().item(), k.var().item()
    var_raw, var_scaled = raw.var().item(), scaled.var().item()
    out(f"  var(q) = {var_q:.3f}, var(k) = {var_k:.3f}")
    out(f"  var(q @ k^T)            = {var_raw:.3f}  (about head_size = {HEAD_SIZE})")
    out(f"  var(q @ k^T / sqrt({HEAD_SIZE})) = {var_scaled:.3f}  (about 1)")
    # Over a whole row of VAR_T scores: how much weight does the favourite position get?
    top_raw = F.softmax(raw, dim=-1).max(dim=-1).values.mean().item()
    top_scaled = F.softmax(scaled, dim=-1).max(dim=-1).values.mean().item()
    out(
        f"  softmax over {VAR_T} scores, average largest weight: unscaled {top_raw:.3f},"
        f" scaled {top_scaled:.3f} (uniform would be {1 / VAR_T:.3f})"
    )

    out("")
    out(f"Saturation: the same five scores, and the same scores times {SHARPEN:g}")
    demo = torch.tensor(SOFTMAX_SCORES)  # (5,) the lecture's row of scores
    soft = F.softmax(demo, dim=-1)  # (5,)
    sharp = F.softmax(demo * SHARPEN, dim=-1)  # (5,)
    out(f"  scores             {_row_text(demo, 1)}")
    out(f"  softmax(scores)    {_row_text(soft)}  max weight {soft.max().item():.4f}")
    out(f"  softmax(scores*{SHARPEN:g})  {_row_text(sharp)}  max weight {sharp.max().item():.4f}")
    out("  the bigger the scores, the closer the softmax gets to one-hot: one position takes everything.")

    return {
        "x": x,
        "xbow_loop": xbow1,
        "xbow_matmul": xbow2,
        "xbow_softmax": xbow3,
        "wei_matmul": wei2,
        "wei_softmax": wei3,
        "attention_weights": wei4,
        "attention_out": attn_out,
        "max_diff_matmul": diff2,
        "max_diff_softmax": diff3,
        "attention_max_above_diagonal": above_diagonal,
        "attention_row_sum_error": row_sum_error,
        "head_size": HEAD_SIZE,
        "var_q": var_q,
        "var_k": var_k,
        "var_unscaled": var_raw,
        "var_scaled": var_scaled,
        "top_weight_unscaled": top_raw,
        "top_weight_scaled": top_scaled,
        "toy_b": b,
        "toy_sums": sums,
        "toy_averages": averages,
        "lecture_draw": lecture_draw,
        "softmax": soft,
        "softmax_sharpened": sharp,
        "softmax_max_weight": soft.max().item(),
        "softmax_sharpened_max_weight": sharp.max().item(),
    }


if __name__ == "__main__":
    run()
