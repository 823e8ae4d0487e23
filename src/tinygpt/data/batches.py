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
    return read_windows(data, ix, block_size)


def read_windows(data, starts: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of `length` tokens at `starts` (B,) of `data` (a tensor of ids, or a TokenFile, read one
    window at a time) and the same windows shifted by one: int64 x, y of shape (B, length)."""
    if hasattr(data, "windows"):  # a TokenFile (prepared.py): one read per window, x and y from it
        w = data.windows(starts, length + 1)  # (B, T + 1)
        return w[:, :-1], w[:, 1:]
    offsets = starts[:, None] + torch.arange(length)  # (B, T)
    return data[offsets].long(), data[offsets + 1].long()


def pass_windows(n_tokens: int, block_size: int, max_tokens: int = 0) -> list[tuple[int, int]]:
    """(start, length) of the non-overlapping windows of a pass over the first `max_tokens` predictions (all
    when 0) of a split of `n_tokens` ids: full windows of block_size, then a shorter one for what is left.
    Every token after the first is predicted once."""
    n = n_tokens - 1
    if max_tokens:
        n = min(n, max_tokens)
    full = n // block_size
    windows = [(i * block_size, block_size) for i in range(full)]
    if n - full * block_size:
        windows.append((full * block_size, n - full * block_size))
    return windows


def first_tokens(n_tokens: int, block_size: int, max_tokens: int) -> int:
    """How many predictions a pass capped at `max_tokens` scores of a split of `n_tokens` ids: a multiple of
    block_size (so its windows are a whole pass's first ones), or 0 when the cap covers the split."""
    if not max_tokens or max_tokens >= n_tokens - 1:
        return 0
    return max(block_size, max_tokens // block_size * block_size)


SUBSET_SEED = 0  # fixed, not the run's seed: every run on the same split is scored on the same windows


def subset_windows(n_tokens: int, block_size: int, first_tokens: int, max_tokens: int) -> list[tuple[int, int]]:
    """A fixed subset of a whole pass's windows, for a split too long to score whole: the windows of its
    first `first_tokens` predictions (what periodic evaluations score), then windows drawn from the rest
    without replacement (seeded with SUBSET_SEED) up to `max_tokens` predictions, in order. The whole pass
    when it is no longer than `max_tokens` (or max_tokens is 0)."""
    whole = pass_windows(n_tokens, block_size)
    if not max_tokens or n_tokens - 1 <= max_tokens:
        return whole
    head = pass_windows(n_tokens, block_size, first_tokens) if first_tokens else []
    rest = [w for w in whole[len(head):] if w[1] == block_size]  # full windows only: each scores block_size
    count = max(0, (max_tokens - sum(n for _, n in head)) // block_size)
    order = torch.randperm(len(rest), generator=torch.Generator().manual_seed(SUBSET_SEED))[:count]
    return head + [rest[i] for i in sorted(order.tolist())]


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
