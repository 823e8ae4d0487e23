"""The lecture's first model: a table of next-token logits indexed by the current token."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig


class BigramLM(nn.Module):
    """logits[t] = table[idx[t]]: each token predicts the next from itself alone."""

    supports_cache = False  # it looks at one token; there is nothing to cache

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        # PyTorch's N(0, 1) initialisation gives the lecture's untrained loss of about 4.88.
        self.table = nn.Embedding(cfg.vocab_size, cfg.vocab_size)

    def forward(self, idx, targets=None, cache=None):  # idx: (B, T)
        logits = self.table(idx)  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            B, T, V = logits.shape
            loss = F.cross_entropy(logits.view(B * T, V).float(), targets.reshape(B * T))
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_canonical_state_dict(self, state):
        self.load_state_dict(dict(state), strict=True)
