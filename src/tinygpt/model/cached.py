"""The fast path of generation: a GPT's forward pass over new tokens only, reading the KV cache.

    logits = forward_cached(model, idx, cache)     # what model(idx, cache=cache) runs

Without a cache every new token re-runs the whole context; with one (kv_cache.py), each attention
layer stores the keys and values it computed and only the newest positions run. The rows of a batch
may hold different lengths (prompts of different lengths, requests that joined a server's batch at
different times): each row's new tokens then sit at that row's own positions (`cache.positions`) and
see only that row's keys up to there (`cache.visible`), so a row computes what it computes alone.

The same weights as gpt.py's teaching path: with the lecture's heads (attention: heads), their
queries, keys and values are stacked and attended to in one fused call, the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .kv_cache import KVCache
from .layers import turn


def forward_cached(model, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """idx (B, T): each row's tokens after the ones its cache holds -> logits (B, T, vocab_size)."""
    T = idx.size(1)
    start = cache.pos  # None: the cache's rows hold different lengths
    cache.prepare(T)
    if cache.longest + T > model.config.block_size:
        raise ValueError(f"sequence of {cache.longest + T} tokens is longer than block_size {model.config.block_size}")
    x = model.tok_emb(idx)  # (B, T, C)
    if model.pos_emb is not None and start is None:
        x = x + model.pos_emb(cache.positions)  # (B, T, C): each row at its own positions
    elif model.pos_emb is not None:
        x = x + model.pos_emb(torch.arange(start, start + T, device=idx.device))  # (T, C) broadcast
    if model.training:
        x = model.drop(x)
    for layer, block in enumerate(model.blocks):
        x = block(x, cache=cache, layer=layer)  # (B, T, C): through the module, so FSDP gathers its weights
    cache.advance(T)
    return model.lm_head(model.ln_f(x))  # (B, T, vocab_size)


def block_cached(block, x, cache: KVCache, layer: int):
    """One block over the new tokens x (B, T, C): cached self-attention, then the feed-forward."""
    x = block.sublayer(x, block.ln1, lambda h: attend_cached(block.attn, h, cache, layer))
    if block.mlp is not None:
        x = block.sublayer(x, block.ln2, block.mlp)
    return x  # (B, T, C)


def heads_qkv(attn, x):
    """The queries, keys and values of every head of either attention path: x (B, T, C) -> (B, nh, T, hs)
    each. The fused path projects them at once; the lecture's heads each project their own, stacked."""
    if isinstance(attn, CausalSelfAttention):
        return attn.heads_qkv(x)
    return tuple(torch.stack([getattr(h, name)(x) for h in attn.heads], dim=1) for name in ("query", "key", "value"))


def attend_cached(attn, x, cache: KVCache, layer: int):
    """Self-attention of the new tokens x (B, T, C) over the cache's keys and theirs; stores theirs."""
    B, T, C = x.shape
    q, k, v = heads_qkv(attn, x)  # (B, nh, T, hs) each
    fused = isinstance(attn, CausalSelfAttention)
    rotary = attn.rotary if fused else attn.heads[0].rotary
    qk_norm, scale = (attn.qk_norm, attn.scale) if fused else (attn.heads[0].qk_norm, attn.heads[0].scale)
    if qk_norm:
        q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
    q, k = place(rotary, q, k, cache)
    dropout = attn.dropout if fused and attn.training else 0.0
    y = attend_over_cache(q, k, v, cache, layer, scale, dropout)  # (B, nh, T, hs)
    if fused:
        return attn.output(y)
    out = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): the heads side by side, as torch.cat puts them
    return attn.dropout(attn.proj(out)) if attn.proj is not None else out


def place(rotary, q, k, cache: KVCache):
    """Rotary positions for the new tokens' q, k (B, nh, T, hs): each row's own when the rows' lengths differ."""
    if rotary is None:
        return q, k
    if cache.pos is not None:
        return rotary(q, cache.pos), rotary(k, cache.pos)
    return rotate_rows(rotary, q, cache.positions), rotate_rows(rotary, k, cache.positions)


def attend_over_cache(q, k, v, cache: KVCache, layer: int, scale: float, dropout: float = 0.0):
    """Store the new tokens' k, v (B, nh, T, hs) in the cache and attend from q (B, nh, T, hs) over every key
    so far, each query seeing only its own row's keys up to its own position -> (B, nh, T, hs)."""
    T = q.size(-2)
    start = cache.pos  # None: the rows are at different positions
    k, v = cache.update(layer, k, v)  # (B, nh, L, hs): every key so far
    if start is None:  # each row sees its own keys up to its own position
        return F.scaled_dot_product_attention(q, k, v, attn_mask=cache.visible[:, None], dropout_p=dropout,
                                              scale=scale)
    if start == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, scale=scale)
    if T == 1:  # one new token sees every cached position: no mask needed
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, start, q.device), dropout_p=dropout,
                                          scale=scale)


def causal_mask(T: int, start: int, device) -> torch.Tensor:
    """(T, start + T) booleans: query i (at position start + i) may see key j iff j <= start + i."""
    q_pos = torch.arange(start, start + T, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(start + T, device=device)[None, :]  # (1, start+T)
    return k_pos <= q_pos


def rotate_rows(rotary, x, positions):
    """`Rotary.forward` with a position per row and token: x (B, nh, T, hs) or (B, T, hs), positions (B, T).

    The same products of the same table entries as `Rotary.forward`, so each row gets exactly what it
    gets alone (tests/test_generate.py checks it).
    """
    cos = rotary.cos[positions].to(x.dtype)  # (B, T, hs/2)
    sin = rotary.sin[positions].to(x.dtype)
    if x.dim() == 4:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs/2): every head alike
    return turn(x, cos, sin)  # (..., T, hs)


def rotate_back(rotary, k, n: int):
    """Rotary keys k (..., L, hs) turned back by n positions, as if each stood n places earlier: a rotation
    by -n angles, the inverse of `Rotary.forward`'s. Scores depend only on how far a query is from a key,
    so a query n places earlier scores them as before (to rounding: float32, whatever the cache's dtype)."""
    return turn(k.float(), rotary.cos[n], -rotary.sin[n]).to(k.dtype)  # (..., L, hs): by -n angles
