"""Text in, text out: prompts as rows of one Decoder, and their tokens back as text.

    pieces = complete(model, tokenizer, ["mary", "it"], [config, config], [0, 1])   # (row, text piece), ...

What `Run.generate` / `Run.stream` and the samples at the end of training share: a prompt's ids (an
empty prompt starts where the tokenizer says a text starts), one torch.Generator per sample seeded
with seed + j, and a TextStream per row that turns its tokens into text and cuts it at a stop string.
Row i * num_samples + j is sample j of prompt i.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .decoder import Decoder, Row
from .sampling import SamplingConfig
from .text import TextStream, stream_rows


def start_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids to start from; an empty prompt starts where the tokenizer says a text starts (a line
    break, or the word model's sentence end)."""
    ids = tokenizer.encode(prompt) if prompt else []
    return ids or tokenizer.start_ids()


def complete(model, tokenizer, prompts: list[str], configs: list[SamplingConfig], seeds: list[int | None],
             num_samples: int = 1, use_cache: bool = True, context: str = "exact") -> Iterator[tuple[int, str]]:
    """Every prompt's num_samples completions, decoded in one batch: (row, text piece) as they come."""
    device = next(model.parameters()).device
    rows, streams = [], []
    for text, config, first_seed in zip(prompts, configs, seeds):
        ids = start_ids(tokenizer, text)
        # A word model with no prompt starts after a sentence end, which decoding joins with a space.
        lead = " " if tokenizer.kind == "word" and not text.strip() else ""
        for j in range(num_samples):
            generator = None if first_seed is None else torch.Generator(device=device).manual_seed(first_seed + j)
            rows.append(Row(ids, config, generator))
            streams.append(TextStream(tokenizer, ids, config.stop, drop_lead=lead))
    return stream_rows(Decoder(model, rows, use_cache, context), streams)
