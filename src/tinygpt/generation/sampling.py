"""The next-token choice: repetition penalty, temperature (0 = greedy), top-k, top-p, then a draw.

The knobs carry Hugging Face's names: `max_new_tokens`, `temperature` (0 = greedy), `top_k`,
`top_p`, `repetition_penalty`, stop strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..config.fields import MOST
from ..core.errors import TinyGPTError

# The range the sampler computes in (see SamplingConfig.validate): logits (tens at most) divided by 1e-6 or
# multiplied by 1e6 stay far inside float32's (3e38), where 1e-45, a float32 that is almost 0, would make
# them infinite and the probabilities NaN. Past these bounds nothing changes that a user could see.
SMALLEST, LARGEST = 1e-6, 1e6


class BadKnob(TinyGPTError):
    """A sampling knob the sampler cannot use; `field` names it (the server's 400 says which)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class SamplingConfig:
    """How one row is sampled; `validate()` refuses a bad knob with a one-line error naming it."""

    max_new_tokens: int = 100
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    stop: list[str] = field(default_factory=list)

    def validate(self) -> "SamplingConfig":
        """Refuse a knob that is not a number the sampler can use (BadKnob, naming it: NaN, an infinity, a
        negative), and bring the extreme ones inside the sampler's range by one rule (`SMALLEST`, `LARGEST`):
        a temperature below 1e-6 is greedy, as 0 is; top_p below 1e-6 keeps only the likeliest token, as
        1e-6 does; a repetition penalty is held between 1e-6 and 1e6. The one check of every sampling knob,
        whoever gives it: the command line, Python, the server."""
        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadKnob(name, f"{name} must be a finite number, got {value!r}")
        for name in ("max_new_tokens", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadKnob(name, f"{name} must be a whole number, got {value!r}")
            if value > MOST:  # the rule every count in tinygpt follows (config.fields)
                raise BadKnob(name, f"{name} is {value:,}, past the largest count tinygpt takes ({MOST:,})")
        if self.max_new_tokens < 0:
            raise BadKnob("max_new_tokens", f"max_new_tokens must be 0 or more, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise BadKnob("temperature", f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.top_k < 0:
            raise BadKnob("top_k", f"top_k must be 0 (off) or more, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise BadKnob("top_p", f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise BadKnob("repetition_penalty", f"repetition_penalty must be positive, got {self.repetition_penalty}")
        if any(not isinstance(s, str) or s == "" for s in self.stop):
            raise BadKnob("stop", "a stop string cannot be empty")
        if self.temperature < SMALLEST:
            self.temperature = 0.0
        self.top_p = max(self.top_p, SMALLEST)
        self.repetition_penalty = min(max(self.repetition_penalty, SMALLEST), LARGEST)
        return self

    @property
    def choice(self) -> tuple:
        """The knobs that shape the next-token choice: rows that share them are chosen together."""
        return (self.temperature, self.top_k, self.top_p, self.repetition_penalty)


def next_token(logits, sampling: SamplingConfig, generator=None, seen=None):
    """Choose the next token for each row of logits (B, V); returns ids (B, 1).

    generator: one torch.Generator for all rows (one draw for the batch), None (torch's global one),
    or a list of one per row: each row then draws from its own, so its token does not depend on
    which other rows share the batch.
    seen: (B, V) booleans, the tokens already in each row's text, for the repetition penalty.
    """
    logits = logits.float()
    if sampling.repetition_penalty != 1.0 and seen is not None:
        penalty = sampling.repetition_penalty
        # A positive logit is divided, a negative one multiplied: both make the token less likely.
        logits = torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)
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
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return draw(probs, generator)


def draw(probs, generator=None):
    """One token per row of probs (B, V) -> (B, 1), from one generator or from one per row."""
    if isinstance(generator, (list, tuple)):
        if any(g is not generator[0] for g in generator):
            # Each row's own (1, V) draw: exactly the draw it makes when sampled alone.
            return torch.cat([torch.multinomial(probs[b : b + 1], 1, generator=g) for b, g in enumerate(generator)])
        generator = generator[0]
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)
