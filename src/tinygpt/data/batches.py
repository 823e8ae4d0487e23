"""Cutting token ids into the windows a model trains and is evaluated on."""

from __future__ import annotations

import torch


def random_batch(data, batch_size: int, block_size: int, generator: torch.Generator):
    """`batch_size` random windows of `block_size` tokens of `data` (a tensor of ids, or a TokenFile) and
    the same windows shifted by one.

    Returns int64 x, y of shape (B, T). Offsets come from `generator` so a resumed run draws the same
    batches.
    """
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    if hasattr(data, "windows"):  # a TokenFile (prepared.py): one read per window, x and y from it
        w = data.windows(ix, block_size + 1)  # (B, T + 1)
        return w[:, :-1], w[:, 1:]
    offsets = torch.arange(block_size)  # (T,)
    x = data[ix[:, None] + offsets].long()  # (B, T)
    y = data[ix[:, None] + offsets + 1].long()  # (B, T)
    return x, y


def eval_windows(data: torch.Tensor, block_size: int, max_tokens: int = 0):
    """Non-overlapping windows covering the split once, in order, for an exact loss.

    Every token after the first is predicted exactly once; the last window is shorter when the
    split does not divide evenly. Yields x, y of shape (1 or many, T).
    """
    n = len(data) - 1
    if max_tokens:
        n = min(n, max_tokens)
    full = n // block_size
    if full:
        x = data[: full * block_size].view(full, block_size)  # (W, T)
        y = data[1 : full * block_size + 1].view(full, block_size)  # (W, T)
        yield x.long(), y.long()
    rest = n - full * block_size
    if rest:
        start = full * block_size
        yield data[start : start + rest][None].long(), data[start + 1 : start + rest + 1][None].long()  # (1, rest)
