"""Scoring text: each token's log-probability under the model, given the tokens before it.

    [s] = score(model, [[5, 9, 2, 7]], top=1)
    s.logprobs   # [log p(9 | 5), log p(2 | 5 9), log p(7 | 5 9 2)]: tokens 1..n-1, the first has no context
    s.greedy     # [True, False, True]: whether each was the model's likeliest next token
    s.top        # [[(9, -0.1)], [(4, -0.3)], [(7, -0.2)]]: the `top` likeliest ids at each position

A one-token sequence has no scores (nothing predicts its token).

What EleutherAI's lm-evaluation-harness asks of a model (the log-likelihood of a continuation, the
rolling log-likelihood of a document) and what `/v1/completions` returns for an `echo`ed prompt. One
function serves both (`evaluation/harness.py` in-process, the server's engine for `echo`), so the
harness's numbers are the same either way.

A sequence may hold block_size + 1 tokens: the model reads the first block_size and scores the last
block_size. Sequences run in batches, right-padded: the causal mask keeps the pads out of every real
position, so a sequence's scores do not depend on what it is batched with (to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.errors import TinyGPTError
from .decoder import autograd_off


@dataclass
class TokenScores:
    """One sequence's scores, for its tokens 1..n-1 (the first token has nothing before it)."""

    logprobs: list[float]
    greedy: list[bool]
    top: list[list[tuple[int, float]]] = field(default_factory=list)  # [] unless asked for

    @property
    def total(self) -> float:
        return sum(self.logprobs)


def score(model, sequences: list[list[int]], top: int = 0, batch_size: int = 16) -> list[TokenScores]:
    """Every sequence's TokenScores, in order; `top`: also the k likeliest ids at each position."""
    block = model.config.block_size
    for ids in sequences:
        if not 1 <= len(ids) <= block + 1:
            raise TinyGPTError(f"a sequence to score must hold 1 to block_size + 1 = {block + 1} tokens "
                               f"(the model reads the first block_size and scores the rest), not {len(ids)}")
    device = next(model.parameters()).device
    out: list[TokenScores | None] = [TokenScores([], [], []) if len(ids) == 1 else None for ids in sequences]
    # Longest first, so each batch pads little; results go back to the callers' order.
    order = sorted((i for i, ids in enumerate(sequences) if len(ids) > 1), key=lambda i: -len(sequences[i]))
    with autograd_off(model)():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            inputs = [sequences[i][:-1] for i in chunk]
            T = len(inputs[0])
            idx = torch.tensor([ids + [0] * (T - len(ids)) for ids in inputs], device=device)  # (n, T)
            logits, _ = model(idx)  # (n, T, V)
            logp = torch.log_softmax(logits.float(), dim=-1)  # (n, T, V)
            targets = torch.tensor([sequences[i][1:] + [0] * (T - len(sequences[i]) + 1) for i in chunk],
                                   device=device)  # (n, T): the token each position predicts
            chosen = logp.gather(-1, targets[..., None])[..., 0]  # (n, T)
            best = logp.argmax(-1)  # (n, T)
            greedy = best == targets  # (n, T)
            if top:
                top_values, top_ids = torch.topk(logp, min(top, logp.size(-1)), dim=-1)  # (n, T, k)
            for row, i in enumerate(chunk):
                n = len(sequences[i]) - 1
                scores = TokenScores(chosen[row, :n].tolist(), greedy[row, :n].tolist())
                if top:
                    scores.top = [list(zip(ids, values)) for ids, values in
                                  zip(top_ids[row, :n].tolist(), top_values[row, :n].tolist())]
                out[i] = scores
    return out
