"""The key/value cache that makes generation cost one token's work per new token.

Without a cache every new token re-runs the whole context through the model. With one, each
attention layer keeps the keys and values it already computed and only the newest position is run.
"""

from __future__ import annotations

import torch


class KVCache:
    """Preallocated keys and values for every layer: (n_layer, B, nh, block_size, hs) each."""

    def __init__(self, n_layer, batch_size, n_head, max_len, head_size, device, dtype):
        shape = (n_layer, batch_size, n_head, max_len, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        # One view per layer, made once: indexing a 5-D tensor on every call costs more than the copy.
        self.layer_k, self.layer_v = self.k.unbind(0), self.v.unbind(0)  # (B, nh, max_len, hs) each
        self.max_len = max_len
        self.pos = 0  # how many positions are filled (the same for every layer once a forward ends)

    def update(self, layer: int, k, v, heads: slice | None = None):
        """Store k, v (B, nh, T, hs) for the positions after `pos`; return all keys/values so far."""
        T = k.size(-2)
        keys, values = self.layer_k[layer], self.layer_v[layer]
        if heads is not None:  # the teaching path stores one head at a time
            keys, values = keys[:, heads], values[:, heads]
        keys.narrow(2, self.pos, T).copy_(k)
        values.narrow(2, self.pos, T).copy_(v)
        end = self.pos + T
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)  # (B, nh, pos+T, hs)

    def advance(self, n: int):
        self.pos += n
