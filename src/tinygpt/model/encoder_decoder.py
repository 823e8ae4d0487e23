"""The original Transformer ("Attention is all you need"): an encoder reads the source, a decoder
writes the target, and cross-attention in every decoder block reads the encoder's output.

    source ids (B, S)
      -> token + position embedding                                       (B, S, C)
      -> n_encoder_layer encoder blocks (attention both ways, padding hidden) (B, S, C)
      -> final norm: the memory; each decoder block's cross keys/values    (2, B, nh, S, hs) per layer
    target ids so far (B, T)
      -> token + position embedding (the same token table)                (B, T, C)
      -> n_layer decoder blocks: causal self-attention, cross-attention
         (queries from the target, keys/values from the memory), MLP      (B, T, C)
      -> final norm -> linear head                                         (B, T, vocab_size)

The blocks are the GPT's (`Block`, with causal=False in the encoder); a decoder block adds one
residual step, the cross-attention (model/cross_attention.py). One tokenizer serves both sides, so
one token table embeds both (and, with tie_weights, is the head too), unless the sources have a
tokenizer of their own (`source_tokenizer`) and so a token table of their own (`src_emb`).
`norm_position` post is the paper's arrangement, pre the GPTs'.

Decoding computes the memory and its cross keys/values once per source (`encode`), then runs the
decoder one token at a time with the self-attention KV cache (`decode`): generation/translate.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .attention import from_fused_layout, to_fused_layout
from .cached import attend_cached
from .cross_attention import CrossAttention, MultiHeadCrossAttention, merge_cross, split_cross
from .gpt import Block, final_norm, init_weights
from .kv_cache import KVCache
from .layers import Rotary, ThreadedLinear, make_norm


@dataclass
class Memory:
    """What the decoder reads of one batch of sources: each decoder layer's cross keys and values,
    (2, B, nh, S, hs) each, and which source positions are real (B, S) (None: no padding)."""

    kv: list[torch.Tensor]
    mask: torch.Tensor | None

    def keep(self, rows: list[int]) -> "Memory":
        """The memory of these rows, in this order (a row may repeat: beams of one source)."""
        index = torch.tensor(rows, device=self.kv[0].device)
        mask = self.mask.index_select(0, index) if self.mask is not None else None
        return Memory([kv.index_select(1, index) for kv in self.kv], mask)


class DecoderBlock(Block):
    """A GPT block with cross-attention between its self-attention and its MLP."""

    def __init__(self, cfg: ModelConfig, rotary: nn.Module | None):
        super().__init__(cfg, rotary, causal=True)
        self.ln_cross = make_norm(cfg)
        self.cross = CrossAttention(cfg) if cfg.attention == "fused" else MultiHeadCrossAttention(cfg)

    def forward(self, x, memory: Memory, cache: KVCache | None = None, layer: int = 0):  # (B, T, C)
        if cache is None:
            x = self.sublayer(x, self.ln1, self.attn)
        else:  # generation: the fast path's cached self-attention (cached.py)
            x = self.sublayer(x, self.ln1, lambda h: attend_cached(self.attn, h, cache, layer))
        x = self.sublayer(x, self.ln_cross, lambda h: self.cross(h, memory.kv[layer], memory.mask))
        if self.mlp is not None:
            x = self.sublayer(x, self.ln2, self.mlp)
        return x


class EncoderDecoder(nn.Module):
    """Encoder blocks over the source, decoder blocks with cross-attention over the target, one head."""

    supports_cache = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        C = cfg.n_embd
        self.tok_emb = nn.Embedding(cfg.vocab_size, C)
        # Sources with a tokenizer of their own have a token table of their own; otherwise they share this one.
        self.src_emb = nn.Embedding(cfg.source_vocab_size, C) if cfg.source_vocab_size else None
        learned = cfg.pos_emb == "learned"
        self.enc_pos_emb = nn.Embedding(cfg.block_size, C) if learned else None
        self.pos_emb = nn.Embedding(cfg.block_size, C) if learned else None
        self.rotary = Rotary(cfg.head_size, cfg.block_size, cfg.rope_base) if cfg.pos_emb == "rope" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(Block(cfg, self.rotary, causal=False) for _ in range(cfg.encoder_layers))
        self.enc_ln = final_norm(cfg)
        self.blocks = nn.ModuleList(DecoderBlock(cfg, self.rotary) for _ in range(cfg.n_layer))
        self.ln_f = final_norm(cfg)
        self.lm_head = ThreadedLinear(C, cfg.vocab_size, bias=cfg.bias and cfg.head_bias)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        init_weights(self, cfg, 2 * cfg.encoder_layers + 3 * cfg.n_layer)

    def _embed(self, idx, pos_emb, start: int, table: nn.Embedding):
        x = table(idx)  # (B, T, C)
        if pos_emb is not None:
            x = x + pos_emb(torch.arange(start, start + idx.size(1), device=idx.device))  # (T, C) broadcast
        return self.drop(x) if self.training else x

    def _check_length(self, n: int, what: str):
        if n > self.config.block_size:
            raise ValueError(f"{what} of {n} tokens is longer than block_size {self.config.block_size}")

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> Memory:
        """Source ids (B, S), src_mask (B, S) True at real tokens -> the memory every decoding step reads."""
        self._check_length(src.size(1), "source")
        x = self._embed(src, self.enc_pos_emb, 0, self.src_emb or self.tok_emb)  # (B, S, C)
        for block in self.encoder:
            x = block(x, src_mask)  # (B, S, C)
        memory = self.enc_ln(x)  # (B, S, C)
        return Memory([block.cross.keys_values(memory) for block in self.blocks], src_mask)

    def decode(self, idx: torch.Tensor, memory: Memory, cache: KVCache | None = None) -> torch.Tensor:
        """Target ids (B, T) after the cache's tokens (if any) -> logits (B, T, vocab_size)."""
        start = cache.pos if cache is not None else 0  # every row of a target batch has one length
        self._check_length(start + idx.size(1), "target")
        x = self._embed(idx, self.pos_emb, start, self.tok_emb)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, memory, cache, i)  # (B, T, C)
        if cache is not None:
            cache.advance(idx.size(1))
        return self.lm_head(self.ln_f(x))  # (B, T, vocab_size)

    def forward(self, src, idx, targets=None, src_mask=None):
        """src (B, S), idx (B, T) the target shifted right (it starts with <|bos|>), targets (B, T) with
        -100 where nothing is scored. Returns logits (B, T, vocab_size) and the mean loss (or None)."""
        logits = self.decode(idx, self.encode(src, src_mask))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    def new_cache(self, batch_size: int) -> KVCache:
        return KVCache.for_model(self.config, self.tok_emb.weight, batch_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # Checkpoints hold the fused layout whatever the attention path, and a tied tensor once.
    def _layout(self):
        cfg = self.config
        selfs = [f"encoder.{i}.attn." for i in range(cfg.encoder_layers)]
        selfs += [f"blocks.{i}.attn." for i in range(cfg.n_layer)]
        return selfs, [f"blocks.{i}.cross." for i in range(cfg.n_layer)]

    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: v.detach() for k, v in self.state_dict().items()}
        if self.config.tie_weights:
            state.pop("lm_head.weight")
        selfs, crosses = self._layout()
        if self.config.attention == "heads":
            for prefix in crosses:
                merge_cross(state, prefix, self.config.n_head)
        return to_fused_layout(state, self.config, selfs)

    def load_canonical_state_dict(self, state: dict[str, torch.Tensor]):
        selfs, crosses = self._layout()
        state = from_fused_layout(dict(state), self.config, selfs)
        if self.config.attention == "heads":
            for prefix in crosses:
                split_cross(state, prefix, self.config.n_head)
        if self.config.tie_weights:
            state["lm_head.weight"] = state["tok_emb.weight"]
        self.load_state_dict(state, strict=True)
