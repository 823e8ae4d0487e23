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
    """Preallocated keys and values for every layer: (n_layer, B, nh, max_len, hs) each, the first B
    rows of buffers that may hold more (rows join with `room`/`extend`, leave with `remove`).

    `lengths[b]`: how many of row b's positions are filled. `pos`: that number when every row has
    the same one, else None. While a forward pass runs over rows of different lengths, `positions`
    (B, T) holds each new token's position and `visible` (B, T, L) which keys each query may see.
    """

    def __init__(self, n_layer, batch_size, n_head, max_len, head_size, device, dtype):
        shape = (n_layer, batch_size, n_head, max_len, head_size)
        # The buffers may hold more rows than the batch (room for rows that join later); k and v view
        # the first B of them.
        self.buffer_k = torch.zeros(shape, device=device, dtype=dtype)
        self.buffer_v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.home = None  # (cache, first row) when this one is another cache's spare rows (see `room`)
        self._use(batch_size)
        self.set_lengths([0] * batch_size)

    @classmethod
    def for_model(cls, cfg, weight: torch.Tensor, batch_size: int) -> "KVCache":
        """An empty cache for `batch_size` rows of a model with settings `cfg` (its n_layer self-attention
        layers, up to block_size positions), on the device and in the dtype of its `weight`."""
        return cls(cfg.n_layer, batch_size, cfg.n_head, cfg.block_size, cfg.head_size, weight.device, weight.dtype)

    def _use(self, rows: int):
        """View the first `rows` rows of the buffers as the batch."""
        self.k, self.v = self.buffer_k[:, :rows], self.buffer_v[:, :rows]
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

    def remove(self, rows: list[int]) -> list[int]:
        """Drop these rows by moving the last remaining rows into their places, which copies one row
        per dropped row rather than every row kept (what a server does each time a request leaves).
        Returns the old index of each row now in the cache, in its new order."""
        gone = set(rows)
        n = len(self.lengths) - len(gone)
        holes = sorted(i for i in gone if i < n)
        movers = [i for i in range(n, len(self.lengths)) if i not in gone]  # as many as there are holes
        order = list(range(n))
        if holes:
            src, dst = torch.tensor(movers, device=self.k.device), torch.tensor(holes, device=self.k.device)
            self.buffer_k[:, dst] = self.buffer_k[:, src]
            self.buffer_v[:, dst] = self.buffer_v[:, src]
            for hole, mover in zip(holes, movers):
                order[hole] = mover
        self._use(n)
        self.set_lengths([self.lengths[i] for i in order])
        return order

    def shift(self, rows: list[int], drops: list[int], move_keys=None):
        """Forget the oldest drops[j] positions of row rows[j] and move the rest to the front (generation's
        context shift: generation/decoder.py). move_keys(keys, n): the kept keys (n_layer, nh, L, hs) as
        they are n positions earlier (rotary keys turn back); None: keys do not depend on their position."""
        lengths = list(self.lengths)
        for row, n in zip(rows, drops):
            kept = lengths[row] - n
            if kept > 0:  # clone: the kept part and its new place overlap
                keys = self.k[:, row, :, n : lengths[row]].clone()  # (n_layer, nh, kept, hs)
                self.k[:, row, :, :kept] = keys if move_keys is None else move_keys(keys, n)
                self.v[:, row, :, :kept] = self.v[:, row, :, n : lengths[row]].clone()
            lengths[row] = max(kept, 0)
        self.set_lengths(lengths)

    def keep(self, rows: list[int]):
        """Keep these rows, in this order; a row may come more than once (beam search continues one
        beam several ways). Copies every row kept: `remove` is the cheap way to drop a few."""
        index = torch.tensor(rows, device=self.k.device)
        self.buffer_k, self.buffer_v = self.k.index_select(1, index), self.v.index_select(1, index)
        self._use(len(rows))
        self.set_lengths([self.lengths[r] for r in rows])

    def clear(self):
        """No rows, but keep the buffers for the rows that come next (a server's batch empties and
        refills all the time; allocating them anew each time fragments the process's memory)."""
        self._use(0)
        self.set_lengths([])

    def room(self, rows: int) -> "KVCache":
        """A cache for `rows` more rows, kept in this one's spare rows: a prefill into it writes where
        `extend` then takes the rows from, so joining allocates and copies nothing."""
        B = len(self.lengths)
        self._reserve(B + rows)
        other = KVCache.__new__(KVCache)
        other.buffer_k, other.buffer_v = self.buffer_k[:, B : B + rows], self.buffer_v[:, B : B + rows]
        other.max_len = self.max_len
        other._use(rows)
        other.set_lengths([0] * rows)
        other.home = (self, B)
        return other

    def extend(self, other: "KVCache"):
        """Append another cache's rows after these (rows that joined the batch later)."""
        B, extra = len(self.lengths), len(other.lengths)
        if other.home != (self, B):  # made elsewhere: copy its rows in
            self._reserve(B + extra)
            self.buffer_k[:, B : B + extra] = other.k
            self.buffer_v[:, B : B + extra] = other.v
        self._use(B + extra)
        self.set_lengths(self.lengths + other.lengths)

    def _reserve(self, rows: int):
        """Make the buffers hold at least `rows` rows, growing by doubling (so rows that join one at a
        time cost a copy of the batch only now and then). New rows are zeros, never uninitialised
        memory: a masked-out key still enters the attention sums multiplied by 0, and 0 * NaN is NaN."""
        if rows <= self.buffer_k.size(1):
            return
        B = len(self.lengths)
        shape = (self.k.size(0), max(rows, 2 * self.buffer_k.size(1)), *self.k.shape[2:])
        buffer_k, buffer_v = self.k.new_zeros(shape), self.v.new_zeros(shape)
        buffer_k[:, :B], buffer_v[:, :B] = self.k, self.v
        self.buffer_k, self.buffer_v = buffer_k, buffer_v
        self._use(B)
