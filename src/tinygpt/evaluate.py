"""Loss on a whole split: one deterministic pass, no random batches.

Every token after the first is predicted once, from the non-overlapping `block_size` window it
falls in, so two evaluations of the same model on the same text always agree. Bits per character
divide the total loss (converted from nats to bits) by the number of characters predicted, which
makes models with different tokenizers comparable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import eval_windows


@torch.no_grad()
def split_loss(model, data: torch.Tensor, block_size: int, device, batch_size: int = 64,
               max_tokens: int = 0, autocast=None, shard: tuple[int, int] = (0, 1)):
    """(sum of token losses in nats, number of tokens) over `data`.

    `shard` = (rank, world_size) splits the windows across processes; add the results up.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    rank, world = shard
    row = 0
    for x_all, y_all in eval_windows(data, block_size, max_tokens):
        for i in range(0, len(x_all), batch_size):
            row += 1
            if (row - 1) % world != rank:
                continue
            x = x_all[i : i + batch_size].to(device)  # (b, T)
            y = y_all[i : i + batch_size].to(device)  # (b, T)
            with autocast() if autocast else torch.autocast(device_type="cpu", enabled=False):
                logits, _ = model(x)  # (b, T, V)
            losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
            total += losses.item()
            count += y.numel()
    model.train(was_training)
    return total, count


def bits_per_char(total_nats: float, n_chars: int) -> float:
    return total_nats / math.log(2) / max(n_chars, 1)
