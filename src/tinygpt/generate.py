"""Sampling text from a model: the next-token choice, the cached loop, stop strings, streaming.

The knobs carry Hugging Face's names: `max_new_tokens`, `temperature` (0 = greedy), `top_k`,
`top_p`, `repetition_penalty`, stop strings.

With a KV cache each new token costs one position's work. The cached loop gives exactly the tokens
of the plain loop (which re-runs the last `block_size` tokens for every new one): once the text
outgrows the context, positions shift, so both re-run the cropped window from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import TinyGPTError


@dataclass
class SamplingConfig:
    max_new_tokens: int = 100
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    stop: list[str] = field(default_factory=list)

    def validate(self) -> "SamplingConfig":
        if self.max_new_tokens < 0:
            raise TinyGPTError(f"max_new_tokens must be 0 or more, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise TinyGPTError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.top_k < 0:
            raise TinyGPTError(f"top_k must be 0 (off) or more, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise TinyGPTError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise TinyGPTError(f"repetition_penalty must be positive, got {self.repetition_penalty}")
        if any(s == "" for s in self.stop):
            raise TinyGPTError("a stop string cannot be empty")
        return self


def next_token(logits, sampling: SamplingConfig, generator: torch.Generator | None, history=None):
    """Choose the next token for each row of logits (B, V); returns ids (B, 1)."""
    logits = logits.float()
    if sampling.repetition_penalty != 1.0 and history is not None:
        seen = torch.gather(logits, 1, history)  # (B, T): logits of tokens already in the text
        seen = torch.where(seen > 0, seen / sampling.repetition_penalty, seen * sampling.repetition_penalty)
        logits = logits.scatter(1, history, seen)
    if sampling.temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.size(-1):  # a k as large as the vocabulary keeps every token
        kth = torch.topk(logits, sampling.top_k).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Keep the smallest set of tokens whose probability reaches top_p (always the top one).
        drop = probs.cumsum(dim=-1) - probs >= sampling.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


def generate_ids(model, idx, sampling: SamplingConfig, generator=None, use_cache: bool = True,
                 on_token=None):
    """Extend idx (B, T) by up to `max_new_tokens` tokens; returns (B, T + n).

    `on_token(idx)` is called after every new token; returning True stops generation early.
    """
    # inference_mode skips autograd's bookkeeping (version counters, views), a few percent per
    # token; the clone outside it hands back an ordinary tensor that autograd may use later.
    with torch.inference_mode():
        idx = _generate(model, idx, sampling, generator, use_cache, on_token)
    return idx.clone()


def _generate(model, idx, sampling, generator, use_cache, on_token):
    block_size = model.config.block_size
    cache = model.new_cache(idx.size(0)) if use_cache and getattr(model, "supports_cache", False) else None
    for _ in range(sampling.max_new_tokens):
        if cache is None:
            logits, _ = model(idx[:, -block_size:])  # (B, T, V)
        elif cache.pos == 0 or cache.pos >= block_size:
            cache.pos = 0  # first call, or the window slid: run the cropped context from scratch
            logits, _ = model(idx[:, -block_size:], cache=cache)
        else:
            logits, _ = model(idx[:, -1:], cache=cache)  # only the newest token
        token = next_token(logits[:, -1, :], sampling, generator, history=idx)
        idx = torch.cat((idx, token), dim=1)
        if on_token is not None and on_token(idx):
            break
    return idx


class TextStream:
    """Turns growing id sequences into text: new text to stream, and stop-string detection."""

    def __init__(self, tokenizer, prompt_ids: list[int], stop: list[str], drop_lead: str = ""):
        self.tokenizer = tokenizer
        self.n_prompt = len(prompt_ids)
        self.prefix = tokenizer.decode(prompt_ids)
        self.stop = stop
        # Text to drop from the start of the completion: the word tokenizer joins words with a space,
        # which must not open a sample that starts from no prompt at all.
        self.drop_lead = drop_lead

    def completion(self, ids: list[int]) -> tuple[str, bool]:
        """The generated text after the prompt, cut before the first stop string; and whether one was hit."""
        text = self.tokenizer.decode(ids)
        text = text[len(self.prefix):] if text.startswith(self.prefix) else self.tokenizer.decode(ids[self.n_prompt:])
        if self.drop_lead and text.startswith(self.drop_lead):
            text = text[len(self.drop_lead):]
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        return (text[:cut], True) if cut >= 0 else (text, False)

    def printable(self, text: str, done: bool) -> str:
        """The part of `text` that is safe to show now (it will not change or turn out to be a stop)."""
        if done:
            return text
        # A byte-level BPE can end mid-character (shown as U+FFFD) until the next token completes it.
        text = text.rstrip("\ufffd")
        # Hold back an ending that could be the start of a stop string.
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    text = text[:-n]
                    break
        return text
