"""Measuring a model: the exact loss over a whole split, an estimate from random batches, and
`tinygpt eval`'s report (loss, bits per character, perplexity) for a trained run.

The exact loss is one deterministic pass, no random batches.

Every token after the first is predicted once, from the non-overlapping `block_size` window it
falls in, so two evaluations of the same model on the same text always agree. Bits per character
divide the total loss (converted from nats to bits) by the number of characters predicted, which
makes models with different tokenizers comparable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.distributed import padding, turns
from ..data import pass_windows, random_batch, read_windows


@torch.no_grad()
def split_loss(model, data, block_size: int, device, batch_size: int = 64, max_tokens: int = 0, autocast=None,
               shard: tuple[int, int] = (0, 1), lockstep: bool = False, windows: list[tuple[int, int]] | None = None,
               on_batch=None):
    """(sum of token losses in nats, number of tokens) over `data` (ids, or a TokenFile).

    The windows of a pass over the first `max_tokens` predictions (all when 0), or `windows`, (start,
    length) pairs (a subset of a pass: batches.subset_windows); each batch is read when it is scored, so
    memory does not grow with the split. `shard` = (rank, world_size) splits the batches across
    processes; add the results up. `lockstep`: every process runs as many forwards (FSDP;
    distributed.turns). on_batch(y) sees each scored batch's targets (counting characters, timing).
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    windows = pass_windows(len(data), block_size, max_tokens) if windows is None else windows
    batches = []  # (starts, length): up to batch_size windows of one length
    for start, length in windows:
        if batches and batches[-1][1] == length and len(batches[-1][0]) < batch_size:
            batches[-1][0].append(start)
        else:
            batches.append(([start], length))
    for j, counts in turns(len(batches), *shard, lockstep):
        starts, length = batches[j]
        x, y = read_windows(data, torch.tensor(starts), length)  # (b, T) each
        x, y = x.to(device), y.to(device)
        with autocast() if autocast else torch.autocast(device_type="cpu", enabled=False):
            logits, _ = model(x)  # (b, T, V)
        if counts:
            total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
            if on_batch is not None:
                on_batch(y)
    model.train(was_training)
    return total, count


def bits_per_char(total_nats: float, n_chars: int) -> float:
    return total_nats / math.log(2) / max(n_chars, 1)


@torch.no_grad()
def estimate_loss(model, data: torch.Tensor, batch_size: int, block_size: int, n_batches: int, seed: int,
                  device, autocast, shard: tuple[int, int] = (0, 1), lockstep: bool = False):
    """(sum of batch mean losses, number of batches) over `n_batches` random batches.

    The batches come from their own generator seeded with `seed`, so every evaluation of a run
    scores the same batches; `shard` = (rank, world_size) gives each process its share.
    """
    rank, world = shard
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    for i in range(n_batches):
        x, y = random_batch(data, batch_size, block_size, gen)  # (B, T) each; drawn on every rank alike
        if i % world == rank:
            with autocast():
                _, loss = model(x.to(device), y.to(device))
            total, count = total + loss.item(), count + 1
        if i == 0:  # lockstep (FSDP): uncounted forwards, so that every process runs as many
            for _ in range(padding(n_batches, rank, world, lockstep)):
                with autocast():
                    model(x.to(device), y.to(device))
    model.train(was_training)
    return total, count
