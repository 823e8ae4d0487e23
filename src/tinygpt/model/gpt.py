"""The GPT as the "Let's build GPT" lecture builds it, in the order data flows through it.

    ids (B, T)
      -> token embedding + position embedding                              (B, T, C)   C = n_embd
      -> n_layer blocks, each:
           x = x + attention(norm(x))    communication: every position reads the earlier ones
           x = x + feed_forward(norm(x)) computation: each position on its own
      -> final norm -> linear head                                         (B, T, vocab_size)
      -> cross-entropy against the next tokens                             the loss

Read it top to bottom: `Head` (one head of self-attention, written out), `MultiHeadAttention`
(heads side by side, then a projection), `FeedForward`, `Block` (the two residual lines), `GPT`
(embeddings, blocks, final norm, head, loss) and its `generate` (crop, forward, softmax, sample).

Every optional piece is a `ModelConfig` switch, so the lecture's build-up steps, its full model,
nanoGPT's recipe, the fast modern recipe (rotary positions, QK-norm, ReLU squared, zero-initialised
projections, tied embeddings) and GPT-2 itself are configurations of this one class. Two things here
are not the lecture's code but compute its function faster, and live in modules of their own:
- attention: fused (the default) replaces the heads by one matrix multiply and one fused attention
  call (attention.py); tests/test_model.py checks both give the same logits from the same weights;
- the KV cache: generating with a cache runs the same weights through cached.py, which also batches
  rows of different lengths (what a server needs). Nothing of it is in the teaching path below.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .attention import CausalSelfAttention, from_fused_layout, score_scale, to_fused_layout
from .kv_cache import KVCache
from .layers import Rotary, ThreadedLinear, make_norm, prepare_qk, relu_squared


class Head(nn.Module):
    """One head of self-attention: each position asks a question (query), offers a label (key) and a
    message (value); it takes the messages of the earlier positions, weighted by how well their labels
    answer its question. causal=False (an encoder): every position, before and after."""

    def __init__(self, cfg: ModelConfig, rotary: nn.Module | None = None, causal: bool = True):
        super().__init__()
        self.causal = causal
        hs = cfg.head_size
        self.key = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        self.query = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        self.value = nn.Linear(cfg.n_embd, hs, bias=cfg.qkv_bias)
        # The mask is a buffer, not a parameter: it is not learned and not saved.
        self.register_buffer("tril", torch.tril(torch.ones(cfg.block_size, cfg.block_size)), persistent=False)
        self.rotary = rotary
        self.qk_norm = cfg.qk_norm
        self.scale = score_scale(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, key_mask: torch.Tensor | None = None):  # x: (B, T, C); key_mask (B, T): real tokens
        B, T, C = x.shape
        k = self.key(x)  # (B, T, hs)
        q = self.query(x)  # (B, T, hs)
        q, k = prepare_qk(q, k, self.qk_norm, self.rotary)  # optional QK-norm and rotary positions
        wei = q @ k.transpose(-2, -1) * self.scale  # (B, T, hs) @ (B, hs, T) -> (B, T, T): affinities
        if self.causal:
            wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))  # no peeking ahead
        elif key_mask is not None:  # an encoder's padded rows: the padding is never read
            wei = wei.masked_fill(~key_mask[:, None, :], float("-inf"))  # (B, 1, T)
        wei = F.softmax(wei, dim=-1)  # each row: how much position t takes from each position
        wei = self.dropout(wei)
        v = self.value(x)  # (B, T, hs)
        return wei @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)


class MultiHeadAttention(nn.Module):
    """Several heads side by side, each looking for something else; their outputs concatenated and
    projected back into the residual stream."""

    def __init__(self, cfg: ModelConfig, rotary: nn.Module | None = None, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.heads = nn.ModuleList(Head(cfg, rotary, causal) for _ in range(cfg.n_head))
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias) if cfg.attn_proj else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, key_mask: torch.Tensor | None = None):  # (B, T, C)
        out = torch.cat([h(x, key_mask) for h in self.heads], dim=-1)  # (B, T, n_head * hs) = (B, T, C)
        if self.proj is not None:
            out = self.dropout(self.proj(out))
        return out


class FeedForward(nn.Module):
    """Position-wise computation: widen, a non-linearity, project back (the 'thinking' step)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.n_embd
        # ThreadedLinear is nn.Linear, but a single row's product (sampling) uses every core: layers.py.
        self.fc = ThreadedLinear(cfg.n_embd, hidden, bias=cfg.bias)
        self.proj = ThreadedLinear(hidden, cfg.n_embd, bias=cfg.bias) if cfg.mlp_proj else None
        self.activation = cfg.activation
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):  # (B, T, C)
        h = self.activate(self.fc(x))  # (B, T, 4C)
        if self.proj is not None:
            h = self.proj(h)  # (B, T, C)
        return self.dropout(h) if self.training else h  # skipping the identity call speeds up sampling

    def activate(self, h):
        """The non-linearity, elementwise."""
        if self.activation == "relu":
            return F.relu(h)
        if self.activation == "gelu":
            return F.gelu(h)
        if self.activation == "gelu_tanh":  # GPT-2's
            return F.gelu(h, approximate="tanh")
        # relu2: ReLU squared, sparse and cheap, works well in small fast-trained GPTs
        return relu_squared(h)  # F.relu(h).square(), with a leaner backward (layers.py)


class Block(nn.Module):
    """Communication (attention across positions), then computation (feed-forward per position), each on
    a residual line: x + f(norm(x)). norm_position post is the original Transformer's norm(x + f(x));
    residual False takes the residual lines away (the lecture's experiment)."""

    def __init__(self, cfg: ModelConfig, rotary: nn.Module | None, causal: bool = True):
        super().__init__()
        self.residual = cfg.residual
        self.post_norm = cfg.norm_position == "post"
        self.ln1 = make_norm(cfg)
        attention = CausalSelfAttention if cfg.attention == "fused" else MultiHeadAttention
        self.attn = attention(cfg, rotary, causal)
        self.ln2 = make_norm(cfg) if cfg.mlp_ratio else None
        self.mlp = FeedForward(cfg) if cfg.mlp_ratio else None

    def sublayer(self, x, norm: nn.Module, f):
        """One residual step: x + f(norm(x)) (pre-norm), or norm(x + f(x)) (post-norm, the paper's)."""
        if self.post_norm:
            y = f(x)
            return norm(x + y if self.residual else y)
        y = f(norm(x))
        return x + y if self.residual else y

    def forward(self, x, key_mask: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0):
        """x (B, T, C) -> (B, T, C). cache: generation's, run by the fast path (cached.py)."""
        if cache is not None:
            from .cached import block_cached

            return block_cached(self, x, cache, layer)
        x = self.sublayer(x, self.ln1, lambda h: self.attn(h, key_mask))
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
    causal = True  # the encoder (encoder.py) is this class with False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # each token's identity
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos_emb == "learned" else None  # its place
        # Rotary positions instead turn queries and keys by their position: one table for every layer.
        self.rotary = Rotary(cfg.head_size, cfg.block_size, cfg.rope_base) if cfg.pos_emb == "rope" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, self.rotary, self.causal) for _ in range(cfg.n_layer))
        self.ln_f = final_norm(cfg)
        self.lm_head = ThreadedLinear(cfg.n_embd, cfg.vocab_size, bias=cfg.bias and cfg.head_bias)
        if cfg.tie_weights:  # the head reads the residual stream with the token table itself
            self.lm_head.weight = self.tok_emb.weight
        self.init_weights()

    def init_weights(self):
        """See `init_weights`: two residual branches (attention, feed-forward) per block."""
        init_weights(self, self.config, 2 * self.config.n_layer)

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        """idx, targets: (B, T) token ids. Returns logits (B, T, vocab_size) and the mean loss (or None).

        cache: generation's keys and values of earlier tokens (idx then holds the tokens after them):
        the same weights, run by the fast path in cached.py.
        """
        if cache is not None:
            from .cached import forward_cached

            return forward_cached(self, idx, cache), None
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(T, device=idx.device))  # (T, C), broadcast over the batch
        if self.training:
            x = self.drop(x)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.reshape(B * T))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None):
        """The lecture's sampler: idx (B, T) grows by max_new_tokens tokens, one forward pass each.

        (tinygpt's own sampler, with the KV cache, batches of different prompts, top-p and stop
        strings, is generation/decoder.py; it gives these tokens too, for the same random numbers.)
        """
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]  # the model sees at most block_size tokens
            logits, _ = self(context)  # (B, T, vocab_size)
            logits = logits[:, -1, :] / temperature  # (B, vocab_size): the next token's scores
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)  # (B, vocab_size)
            next_id = torch.multinomial(probs, num_samples=1)  # (B, 1)
            idx = torch.cat((idx, next_id), dim=1)  # (B, T + 1)
        return idx

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
