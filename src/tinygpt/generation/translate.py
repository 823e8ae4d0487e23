"""Decoding an encoder-decoder: the source runs through the encoder once, the target grows a token a step.

    outputs = translate_ids(model, [src_ids, ...], SamplingConfig(temperature=0), bos, eos)

Every row's target starts as <|bos|> at the same step and grows by one token per step, so all rows
have one length and the self-attention cache takes its simple shared-position path. The encoder's
output and each decoder layer's cross keys/values (`Memory`) are computed once per source and read
at every step. A row ends at <|eos|> (not returned) or after max_new_tokens; finished rows leave the
batch, their cache rows and memory rows with them.

use_cache=False re-runs the whole target so far at every step (the memory still once);
encode_every_step=True also re-runs the encoder at every step: both give the same tokens, slower
(benchmarks/seq2seq_decoding.py measures how much).
"""

from __future__ import annotations

import torch

from .sampling import SamplingConfig, next_token


def source_batch(sources: list[list[int]], device, pad: int = 0):
    """Right-padded source ids (B, S) and their mask (B, S), True at real tokens (None: no padding)."""
    S = max(len(s) for s in sources)
    src = torch.tensor([s + [pad] * (S - len(s)) for s in sources], device=device)  # (B, S)
    if all(len(s) == S for s in sources):
        return src, None
    mask = torch.arange(S, device=device)[None, :] < torch.tensor([len(s) for s in sources], device=device)[:, None]
    return src, mask


@torch.inference_mode()
def translate_ids(model, sources: list[list[int]], sampling: SamplingConfig, bos: int, eos: int, generators=None,
                  use_cache: bool = True, encode_every_step: bool = False) -> list[list[int]]:
    """Each source's target ids (without <|bos|> and <|eos|>): greedy at temperature 0, else sampled,
    each row from its own generator (a list of one per source, or None: torch's global one)."""
    device = next(model.parameters()).device
    src, mask = source_batch(sources, device)
    memory = None if encode_every_step else model.encode(src, mask)
    generators = list(generators) if generators is not None else [None] * len(sources)
    limit = min(sampling.max_new_tokens, model.config.block_size - 1)  # <|bos|> takes a position
    out = [[bos] for _ in sources]
    live = list(range(len(sources)))
    cache = model.new_cache(len(sources)) if use_cache else None
    V = model.config.vocab_size
    for _ in range(limit):  # each step every live row gains a token or ends
        if not live:
            break
        if encode_every_step:
            rows = torch.tensor(live, device=device)
            memory = model.encode(src[rows], mask[rows] if mask is not None else None)
        if cache is not None:
            logits = model.decode(torch.tensor([[out[i][-1]] for i in live], device=device), memory, cache)
        else:
            logits = model.decode(torch.tensor([out[i] for i in live], device=device), memory)
        logits = logits[:, -1, :]  # (n, V)
        seen = None
        if sampling.repetition_penalty != 1.0:
            seen = torch.zeros(len(live), V, dtype=torch.bool, device=device)  # (n, V)
            for j, i in enumerate(live):
                seen[j, torch.tensor(out[i][1:], dtype=torch.long, device=device)] = True
        tokens = next_token(logits, sampling, [generators[i] for i in live], seen).flatten().tolist()
        keep = []
        for j, (i, token) in enumerate(zip(live, tokens)):
            if token == eos:
                continue
            out[i].append(token)
            if len(out[i]) <= limit:  # <|bos|> and fewer than limit tokens: it goes on
                keep.append(j)
        if len(keep) != len(live):
            live = [live[j] for j in keep]
            if keep and not encode_every_step:
                memory = memory.keep(keep)
            if cache is not None and keep:
                cache.keep(keep)
    return [ids[1:] for ids in out]
