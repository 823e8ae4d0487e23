"""The reward model: a GPT's trunk with one number per position in place of next-token logits.

    ids (B, T)
      -> the GPT trunk: embeddings, n_layer blocks, final norm            (B, T, C)
      -> head: Linear(n_embd, 1)                                          (B, T)   values(idx)
      -> the value at each row's last real token                          (B,)     score(idx, lengths)

A reward run (`tinygpt reward`) starts from a trained run's trunk, with the same parameter names,
so the weights carry over as they are; only the language-model head is left behind. `score` is the
reward of a whole text (the lecture's reward model, trained on preference pairs); `values` is the
same head read at every position, a value estimate for each prefix (what PPO's critic needs).

Rows are padded on the right. The trunk is causal, so a position never sees the padding after it,
and the score read at position lengths - 1 is the score of the row's own text.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..core.errors import TinyGPTError
from .attention import from_fused_layout, to_fused_layout
from .gpt import GPT


class RewardModel(nn.Module):
    """GPT trunk + `head`, a Linear(n_embd, 1): `values(idx)` (B, T) and `score(idx, lengths)` (B,)."""

    supports_cache = False  # it scores whole texts; it does not generate

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        # The trunk is made and initialised by GPT itself (GPT.init_weights documents every tensor),
        # under the same names, so a GPT's weights load into it; GPT's head is dropped.
        gpt = GPT(dataclasses.replace(cfg, arch="gpt", tie_weights=False))
        self.tok_emb, self.pos_emb, self.rotary, self.drop = gpt.tok_emb, gpt.pos_emb, gpt.rotary, gpt.drop
        self.blocks, self.ln_f = gpt.blocks, gpt.ln_f
        # Zero: every text starts with reward 0, so the first Bradley-Terry loss is exactly log 2 and the
        # trunk's features, not a random head, decide which way the rewards move. The bias adds the same
        # amount to both texts of a pair, so the pairwise loss never changes it (its gradient cancels);
        # it is there for values(), whose targets (returns) need not average zero.
        self.head = nn.Linear(cfg.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """idx: (B, T) token ids. Returns values (B, T), or with `lengths` (B,) the scores (B,).

        (Training calls the model itself, so that DDP and torch.compile wrap this forward.)
        """
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(T, device=idx.device))  # (T, C) broadcast
        if self.training:
            x = self.drop(x)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        values = self.head(self.ln_f(x)).squeeze(-1)  # (B, T)
        if lengths is None:
            return values
        if lengths.shape != (B,):
            raise TinyGPTError(f"lengths must hold one length per row, shape ({B},), got {tuple(lengths.shape)}; "
                               "a reward model is trained by `tinygpt reward`, not as a language model")
        last = (lengths.to(idx.device).long() - 1).unsqueeze(1)  # (B, 1): each row's last real token
        return values.gather(1, last).squeeze(1)  # (B,)

    def values(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T): the head's scalar at every position (a value estimate per prefix)."""
        return self(idx)

    def score(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded token ids and (B,) lengths, each in 1..T -> (B,): each row's reward, the
        value at its last real token (position lengths - 1)."""
        return self(idx, lengths)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # The same layout as GPT's checkpoints (one fused query/key/value whatever the attention path).
    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: v.detach() for k, v in self.state_dict().items()}
        return to_fused_layout(state, self.config)

    def load_canonical_state_dict(self, state: dict[str, torch.Tensor]):
        state = from_fused_layout(dict(state), self.config)
        self.load_state_dict(state, strict=True)


def reward_weights(gpt_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A GPT's canonical weights as a RewardModel's: the trunk's tensors as they are, GPT's head left
    behind, and the scalar head at zero (as RewardModel starts it)."""
    state = {k: v for k, v in gpt_state.items() if not k.startswith("lm_head.")}
    emb = state["tok_emb.weight"]  # (V, C)
    state["head.weight"] = emb.new_zeros(1, emb.shape[1])  # (1, C)
    state["head.bias"] = emb.new_zeros(1)  # (1,)
    return state
