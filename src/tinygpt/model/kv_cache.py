"""The key/value cache that makes generation cost one token's work per new token.

Without a cache every new token re-runs the whole context through the model. With one, each
attention layer keeps the keys and values it already computed and only the newest position is run.

The rows of a batch may hold different lengths (different prompts sampled together). Each row then
writes its new keys at its own positions, and each query sees only its own row's keys up to its own
position, so a row computes what it computes alone. When every row has the same length (one
prompt, or several samples of it) the cache takes the simpler path of a shared position.
"""

from __future__ import annotations

import torch


class KVCache:
    """Preallocated keys and values for every layer: (n_layer, B, nh, max_len, hs) each.

    `lengths[b]`: how many of row b's positions are filled. `pos`: that number when every row has
    the same one, else None. While a forward pass runs over rows of different lengths, `positions`
    (B, T) holds each new token's position and `visible` (B, T, L) which keys each query may see.
    """

    def __init__(self, n_layer, batch_size, n_head, max_len, head_size, device, dtype):
        shape = (n_layer, batch_size, n_head, max_len, head_size)
        self._set(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
        self.max_len = max_len
        self.set_lengths([0] * batch_size)

    def _set(self, k, v):
        self.k, self.v = k, v
        # One view per layer, made once: indexing a 5-D tensor on every call costs more than the copy.
        self.layer_k, self.layer_v = self.k.unbind(0), self.v.unbind(0)  # (B, nh, max_len, hs) each

    def set_lengths(self, lengths: list[int]):
        """Declare each row's filled length, e.g. after a prefill of right-padded prompts (the pads'
        keys stay in the buffer, unseen, until the row's own tokens overwrite them)."""
        self.lengths = list(lengths)
        self.pos = self.lengths[0] if len(set(self.lengths)) == 1 else None
        self.positions = self.visible = None

    def prepare(self, T: int):
        """Before a forward pass of T new tokens per row: where each row's tokens go and what they see."""
        if self.pos is not None:
            return  # one shared position: the attention layers need nothing more
        device = self.k.device
        start = torch.tensor(self.lengths, device=device)[:, None]  # (B, 1)
        self.positions = start + torch.arange(T, device=device)  # (B, T)
        keys = torch.arange(max(self.lengths) + T, device=device)  # (L,)
        self.visible = keys[None, None, :] <= self.positions[:, :, None]  # (B, T, L): a row's own past only

    def update(self, layer: int, k, v, heads: slice | None = None):
        """Store k, v (B, nh, T, hs) for the positions after each row's length; return all keys/values
        so far, (B, nh, L, hs) each, L the longest row's length (shorter rows' extra keys are hidden
        by `visible`)."""
        T = k.size(-2)
        keys, values = self.layer_k[layer], self.layer_v[layer]
        if heads is not None:  # the teaching path stores one head at a time
            keys, values = keys[:, heads], values[:, heads]
        if self.pos is not None:
            keys.narrow(2, self.pos, T).copy_(k)
            values.narrow(2, self.pos, T).copy_(v)
            end = self.pos + T
        else:
            where = self.positions[:, None, :, None].expand_as(k)  # (B, nh, T, hs): each row's own slots
            keys.scatter_(2, where, k)
            values.scatter_(2, where, v)
            end = self.visible.size(-1)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)  # (B, nh, end, hs)

    @property
    def longest(self) -> int:
        return max(self.lengths)

    def advance(self, n: int):
        self.set_lengths([length + n for length in self.lengths])

    def keep(self, rows: list[int]):
        """Keep only these rows, in this order (rows that finished or left the cache are dropped)."""
        index = torch.tensor(rows, device=self.k.device)
        self._set(self.k.index_select(1, index), self.v.index_select(1, index))
        self.set_lengths([self.lengths[r] for r in rows])

    def extend(self, other: "KVCache"):
        """Append another cache's rows after these (rows that joined the batch later)."""
        self._set(torch.cat((self.k, other.k), dim=1), torch.cat((self.v, other.v), dim=1))
        self.set_lengths(self.lengths + other.lengths)
