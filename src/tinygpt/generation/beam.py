"""Beam search for the encoder-decoder: keep the num_beams likeliest targets so far, not only the best.

    ids = beam_search(model, src_ids, num_beams=4, max_new_tokens=30, bos=bos, eos=eos)

One source at a time; its beams are the rows of one batch, reading one memory (computed once and
repeated per beam) and one self-attention cache whose rows are reordered as beams are chosen.

A hypothesis is scored by its total log-probability divided by its length ** length_penalty (the
length counts <|eos|>; Hugging Face's convention). At each step every live beam's <|eos|> ending
becomes a finished hypothesis, and the num_beams best other continuations are the next beams. The
search stops when no live beam can still beat the best finished hypothesis: a beam's total can
only fall as it grows, so its best possible score is its total over the longest (or, for a
negative length_penalty, the shortest) length it may still reach. Stopping as soon as num_beams
hypotheses have finished (Hugging Face's early_stopping=True) kept short, poor endings over the
likely one still growing: on the dates model, "30 sefember 2001" (-10.1) over "30 september 2001"
(-0.003).

Plain beam search can still lose the greedy path (its prefix may fall out of the beams), so the
greedy target is scored too and taken when it is better: the result is never worse than greedy by
the search's own score (tests/test_seq2seq.py checks it, and against exhaustive search).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import TinyGPTError
from .sampling import SamplingConfig
from .translate import translate_ids


def _normalised(total: float, length: int, length_penalty: float) -> float:
    return total / max(length, 1) ** length_penalty


@torch.inference_mode()
def target_score(model, source: list[int], target: list[int], bos: int, eos: int, ended: bool = True,
                 length_penalty: float = 1.0) -> float:
    """The search's score of `target` (ids without <|bos|>/<|eos|>) for `source`: the model's total
    log-probability of it (and of the <|eos|> after it when `ended`), over its length ** length_penalty."""
    device = next(model.parameters()).device
    memory = model.encode(torch.tensor([source], device=device))
    inputs = [bos, *target] if ended else [bos, *target[:-1]]
    wanted = [*target, eos] if ended else list(target)
    if not wanted:
        return 0.0
    logits = model.decode(torch.tensor([inputs], device=device), memory)[0]  # (T, V)
    logp = F.log_softmax(logits.float(), dim=-1)  # (T, V)
    total = logp.gather(1, torch.tensor(wanted, device=device)[:, None]).sum().item()
    return _normalised(total, len(wanted), length_penalty)


@torch.inference_mode()
def beam_search(model, source: list[int], num_beams: int, max_new_tokens: int, bos: int, eos: int,
                length_penalty: float = 1.0) -> list[int]:
    """The best target ids (without <|bos|>/<|eos|>) for one source."""
    if num_beams < 1:
        raise TinyGPTError(f"num_beams must be at least 1, got {num_beams}")
    device = next(model.parameters()).device
    memory = model.encode(torch.tensor([source], device=device))  # one row, repeated as the beams grow
    cache = model.new_cache(1)
    limit = min(max_new_tokens, model.config.block_size - 1)  # <|bos|> takes a position

    # The greedy target, scored, is the hypothesis to beat.
    greedy = translate_ids(model, [source], SamplingConfig(max_new_tokens, temperature=0.0), bos, eos)[0]
    ended = len(greedy) < limit  # it stopped at <|eos|>, not at the length limit
    best_score = target_score(model, source, greedy, bos, eos, ended, length_penalty)
    best = greedy

    def bound(total: float, length: int) -> float:
        """The best score a live beam of `length` tokens and this total may still reach."""
        return max(_normalised(total, length + 1, length_penalty), _normalised(total, limit, length_penalty))

    beams, scores = [[]], torch.zeros(1, device=device)  # token lists; (n,) total log-probabilities
    for step in range(limit):  # each step gives every live beam one more token
        last = [[b[-1] if b else bos] for b in beams]
        logits = model.decode(torch.tensor(last, device=device), memory, cache)[:, -1, :]  # (n, V)
        total = scores[:, None] + F.log_softmax(logits.float(), dim=-1)  # (n, V)
        for beam, ending in zip(beams, total[:, eos].tolist()):  # every beam may end here
            score = _normalised(ending, len(beam) + 1, length_penalty)
            if score > best_score:
                best, best_score = beam, score
        total[:, eos] = float("-inf")
        k = min(num_beams, int(torch.isfinite(total).sum()))
        if k == 0:
            break
        top = total.flatten().topk(k)
        V = total.size(-1)
        chosen = [divmod(flat, V) for flat in top.indices.tolist()]  # (beam, token) pairs
        rows = [beam for beam, _ in chosen]
        cache.keep(rows)
        memory = memory.keep(rows)
        beams = [beams[beam] + [token] for beam, token in chosen]
        scores = top.values
        if step + 1 == limit:  # the length ran out: what each beam holds is finished as it is
            for beam, total_score in zip(beams, scores.tolist()):
                score = _normalised(total_score, len(beam), length_penalty)
                if score > best_score:
                    best, best_score = beam, score
            break
        if all(bound(s, len(b)) <= best_score for b, s in zip(beams, scores.tolist())):
            break  # no live beam can beat the best finished hypothesis
    return best
