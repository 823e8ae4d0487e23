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
                  device, autocast, shard: tuple[int, int] = (0, 1), lockstep: bool = False,
                  tokens_per_forward: int = 1024):
    """(sum of batch mean losses, number of batches) over `n_batches` random batches.

    The batches come from their own generator seeded with `seed`, so every evaluation of a run
    scores the same batches; `shard` = (rank, world_size) gives each process its share. Each batch
    is scored on its own (its mean loss), but small batches run several to a forward pass, up to
    about `tokens_per_forward` tokens: the rhyme model's 50 batches of 16 x 6 tokens are 5 forwards,
    not 50, where each forward's fixed cost is most of its time.
    """
    rank, world = shard
    gen = torch.Generator().manual_seed(seed)
    mine = []  # (x, y) of this process's batches, (B, T) each: drawn on every rank alike
    for i in range(n_batches):
        batch = random_batch(data, batch_size, block_size, gen)
        if i % world == rank:
            mine.append(batch)
    per_forward = max(1, tokens_per_forward // (batch_size * block_size))  # batches per forward pass

    def forwards(batches: int) -> int:  # forward passes for this many batches: a ceiling division
        return -(-batches // per_forward)

    # lockstep (FSDP): uncounted forwards, so that every process runs as many as the busiest one
    busiest = len(mine) + padding(n_batches, rank, world, lockstep)
    padding_forwards = forwards(busiest) - forwards(len(mine))
    total = 0.0
    was_training = model.training
    model.eval()
    for j in range(0, len(mine), per_forward):
        group = mine[j : j + per_forward]
        x, y = torch.cat([b[0] for b in group]).to(device), torch.cat([b[1] for b in group]).to(device)  # (nB, T)
        with autocast():
            logits, _ = model(x)  # (nB, T, V)
        token_losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")  # (nB*T,)
        total += token_losses.view(len(group), -1).mean(dim=1).sum().item()  # each batch's mean, added up
    for _ in range(padding_forwards):
        with autocast():
            model(mine[0][0].to(device) if mine else random_batch(data, batch_size, block_size, gen)[0].to(device))
    model.train(was_training)
    return total, len(mine)
