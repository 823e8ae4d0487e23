"""The decoder-only GPT, in the order data flows through it.

    ids (B, T)
      -> token embedding (+ learned position embedding, unless rotary)   (B, T, C)
      -> n_layer blocks: x + attention(norm(x)), then x + mlp(norm(x))  (B, T, C)
      -> final norm -> linear head                                       (B, T, vocab_size)

(norm_position post, the original Transformer's: norm(x + attention(x)), then norm(x + mlp(x)),
and no final norm. The encoder, model/encoder.py, is this network without the causal mask.)

Everything optional is a `ModelConfig` switch, so the lecture's build-up steps, its full model,
nanoGPT's recipe, the fast modern recipe (rotary, QK-norm, ReLU squared, zero-initialised
projections, tied embeddings) and GPT-2 itself (query/key/value biases, GELU's tanh approximation,
a tied head without a bias; see convert/gpt2.py) are all configurations of this one class.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .attention import CausalSelfAttention, MultiHeadAttention, from_fused_layout, to_fused_layout
from .kv_cache import KVCache
from .layers import MLP, Linear, Rotary, make_norm


class Block(nn.Module):
    """Communication (attention across positions), then computation (MLP per position).

    causal=False: the encoder's block, where every position attends to every other.
    """

    def __init__(self, cfg: ModelConfig, rotary: nn.Module | None, causal: bool = True):
        super().__init__()
        self.residual = cfg.residual
        self.post_norm = cfg.norm_position == "post"
        self.ln1 = make_norm(cfg)
        attention = CausalSelfAttention if cfg.attention == "fused" else MultiHeadAttention
        self.attn = attention(cfg, rotary, causal)
        self.ln2 = make_norm(cfg) if cfg.mlp_ratio else None
        self.mlp = MLP(cfg) if cfg.mlp_ratio else None

    def sublayer(self, x, norm: nn.Module, f):
        """One residual step: x + f(norm(x)) (pre-norm), or norm(x + f(x)) (post-norm, the paper's)."""
        if self.post_norm:
            y = f(x)
            return norm(x + y if self.residual else y)
        y = f(norm(x))
        return x + y if self.residual else y

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, key_mask=None):  # (B, T, C)
        x = self.sublayer(x, self.ln1, lambda h: self.attn(h, cache, layer, key_mask))
        if self.mlp is not None:
            x = self.sublayer(x, self.ln2, self.mlp)
        return x


def final_norm(cfg: ModelConfig) -> nn.Module:
    """The norm after the last block: pre-norm blocks leave the stream unnormalised; post-norm ones
    end with a norm already."""
    return make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()


@torch.no_grad()
def init_weights(model: nn.Module, cfg: ModelConfig, residual_branches: int):
    """Every tensor's starting value, in one place (for the GPT, the encoder and the encoder-decoder).

    normal: GPT-2's N(0, 0.02) for weights and embeddings, zero biases, and residual projections
            scaled by 1/sqrt(residual_branches) so the residual stream's variance does not grow with depth.
    torch:  PyTorch's layer defaults (what the teaching texts' code used).
    zero_init_proj: residual projections start at zero, so each block starts as the identity.
    """
    if cfg.init == "normal":
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
    for name, p in model.named_parameters():
        if name.endswith(("attn.proj.weight", "mlp.proj.weight", "cross.proj.weight")):
            if cfg.zero_init_proj:
                nn.init.zeros_(p)
            elif cfg.init == "normal":
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(residual_branches))


class GPT(nn.Module):
    """The decoder-only transformer: embeddings, n_layer blocks, a final norm and a linear head."""

    supports_cache = True
    causal = True  # the encoder (model/encoder.py) is this class with False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos_emb == "learned" else None
        # One rotary table shared by every attention layer (its buffers are not saved).
        self.rotary = Rotary(cfg.head_size, cfg.block_size, cfg.rope_base) if cfg.pos_emb == "rope" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, self.rotary, self.causal) for _ in range(cfg.n_layer))
        self.ln_f = final_norm(cfg)
        self.lm_head = Linear(cfg.n_embd, cfg.vocab_size, bias=cfg.bias and cfg.head_bias)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.init_weights()

    def init_weights(self):
        """See `init_weights`: two residual branches (attention, MLP) per block."""
        init_weights(self, self.config, 2 * self.config.n_layer)

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        """idx, targets: (B, T) token ids. Returns logits (B, T, vocab_size) and the mean loss (or None).

        cache: the keys and values of each row's earlier tokens (generation); idx then holds the
        tokens after them, at each row's own positions.
        """
        B, T = idx.shape
        start = cache.pos if cache is not None else 0  # None: the cache's rows hold different lengths
        if cache is not None:
            cache.prepare(T)
        end = cache.longest + T if cache is not None else T
        if end > self.config.block_size:
            raise ValueError(f"sequence of {end} tokens is longer than block_size {self.config.block_size}")
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None and start is None:
            x = x + self.pos_emb(cache.positions)  # (B, T, C): each row at its own positions
        elif self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(start, start + T, device=idx.device))  # (T, C) broadcast
        if self.training:
            x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)  # (B, T, C)
        if cache is not None:
            cache.advance(T)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.reshape(B * T))
        return logits, loss

    def new_cache(self, batch_size: int) -> KVCache:
        return KVCache.for_model(self.config, self.tok_emb.weight, batch_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once

    # Checkpoints use one layout whatever the attention path, and hold a tied tensor once.
    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: v.detach() for k, v in self.state_dict().items()}
        if self.config.tie_weights:
            state.pop("lm_head.weight")
        return to_fused_layout(state, self.config)

    def load_canonical_state_dict(self, state: dict[str, torch.Tensor]):
        state = from_fused_layout(dict(state), self.config)
        if self.config.tie_weights:
            state["lm_head.weight"] = state["tok_emb.weight"]
        self.load_state_dict(state, strict=True)
