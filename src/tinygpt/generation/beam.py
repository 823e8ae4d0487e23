"""Beam search for the encoder-decoder: keep the num_beams likeliest targets so far, not only the best.

    ids = beam_search(model, src_ids, num_beams=4, max_new_tokens=30, bos=bos, eos=eos)

One source at a time; its beams are the rows of one batch, reading one memory (computed once and
repeated per beam) and one self-attention cache whose rows are reordered as beams are chosen. At
each step every beam's candidates are scored by their total log-probability; of the 2 * num_beams
best, those ending in <|eos|> among the first num_beams are finished hypotheses, and the rest fill
the beams. The search stops once num_beams hypotheses are finished (Hugging Face's
early_stopping=True) or the length runs out, and returns the finished one with the best score per
token ** length_penalty. With one beam this is greedy decoding, token for token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import TinyGPTError


@torch.inference_mode()
def beam_search(model, source: list[int], num_beams: int, max_new_tokens: int, bos: int, eos: int,
                length_penalty: float = 1.0) -> list[int]:
    """The best target ids (without <|bos|>/<|eos|>) for one source."""
    if num_beams < 1:
        raise TinyGPTError(f"num_beams must be at least 1, got {num_beams}")
    device = next(model.parameters()).device
    memory = model.encode(torch.tensor([source], device=device))  # one row, repeated as the beams grow
    cache = model.new_cache(1)
    limit = min(max_new_tokens, model.config.block_size - 1)
    beams, scores = [[]], torch.zeros(1, device=device)  # token lists; (n,) total log-probabilities
    finished: list[tuple[float, list[int]]] = []
    for step in range(limit + 1):
        last = [[b[-1] if b else bos] for b in beams]
        logits = model.decode(torch.tensor(last, device=device), memory, cache)[:, -1, :]  # (n, V)
        total = scores[:, None] + F.log_softmax(logits.float(), dim=-1)  # (n, V)
        V = total.size(-1)
        best = total.flatten().topk(min(2 * num_beams, total.numel()))
        chosen, new_scores = [], []
        for rank, (score, flat) in enumerate(zip(best.values.tolist(), best.indices.tolist())):
            beam, token = divmod(flat, V)
            if token == eos or step == limit:  # the length ran out: what the beam holds is finished
                if rank < num_beams:
                    ended = beams[beam]
                    finished.append((score / max(len(ended) + 1, 1) ** length_penalty, ended))
                continue
            chosen.append((beam, token))
            new_scores.append(score)
            if len(chosen) == num_beams:
                break
        if len(finished) >= num_beams or not chosen:
            break
        rows = [beam for beam, _ in chosen]
        cache.keep(rows)
        memory = memory.keep(rows)
        beams = [beams[beam] + [token] for beam, token in chosen]
        scores = torch.tensor(new_scores, device=device)
    return max(finished, key=lambda f: f[0])[1] if finished else beams[0]
