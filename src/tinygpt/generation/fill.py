"""Filling in masked tokens with an encoder: `tinygpt fill RUN --prompt "mary had a <mask> lamb"`.

The prompt runs through the encoder once; at each `<mask>` the model's distribution over the
vocabulary, read from both sides of the gap, gives the likeliest tokens and their probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import TinyGPTError
from ..core.tokens import MASK


@torch.inference_mode()
def fill_masks(model, tokenizer, prompt: str, k: int = 5) -> list[dict]:
    """For each <mask> in `prompt`, in order: {"position", "top": [{"token", "id", "prob"}, ...]} with the k
    likeliest tokens (the mask token itself never among them)."""
    mask_id = tokenizer.token_to_id(MASK)
    ids = tokenizer.encode(prompt)
    where = [t for t, i in enumerate(ids) if i == mask_id]
    if not where:
        raise TinyGPTError(f"the prompt has no {MASK}; write {MASK} where a token should be filled in, e.g. "
                           f"'mary had a {MASK} lamb'")
    if len(ids) > model.config.block_size:
        raise TinyGPTError(f"the prompt is {len(ids)} tokens, longer than the model's context "
                           f"({model.config.block_size}); shorten it")
    if k < 1:
        raise TinyGPTError(f"top_k must be at least 1, got {k}")
    device = next(model.parameters()).device
    logits, _ = model(torch.tensor([ids], device=device))  # (1, T, V)
    special = [tokenizer.token_to_id(s) for s in tokenizer.special_tokens]
    rows = []
    for t in where:
        scores = logits[0, t].float()
        scores[special] = float("-inf")  # a gap is filled with text, not with <mask>
        probs = F.softmax(scores, dim=-1)  # (V,)
        values, order = probs.topk(min(k, int((probs > 0).sum())))
        rows.append({"position": t, "top": [{"token": tokenizer.token(i), "id": i, "prob": v}
                                           for v, i in zip(values.tolist(), order.tolist())]})
    return rows
