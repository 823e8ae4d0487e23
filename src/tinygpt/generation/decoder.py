"""The decoding loop: a batch of rows, of any lengths, extended one token per step.

Each row gets the tokens it gets when generated alone:

- A row's text is right-padded to the batch's longest, so every row starts at position 0 as it
  does alone. Causal attention keeps a real token from seeing the pads after it, and each row's
  logits are read at its own last real position.
- With the KV cache, the prompts run once (a prefill), then every step runs each row's newest
  token at that row's own position (see model/kv_cache.py).
- Once a row's text outgrows block_size, what it reads is its `context`:
  exact (the default): its last block_size tokens, as when it is alone. Its positions shift by one per
  token, so that window is re-run from scratch every step (block_size tokens of work per token); the
  other rows keep their cache.
  shift: a context shift, as llama.cpp does. When the row's window is full it keeps its newest
  block_size // 2 tokens and forgets the older ones; the kept tokens move to positions 0.. and the row
  decodes with its cache until the window is full again. A model with learned positions re-runs the
  kept tokens once (a prefill: they are what a fresh run of them gives). A rotary model (pos_emb rope)
  runs nothing: its cached keys turn back by the positions dropped (model/cached.py `rotate_back`), and
  since rotary scores depend only on distances, each kept key scores as before. Those keys were made
  when the forgotten tokens were still in view, so past the first layer they are not what a re-run
  would give: the row goes on as if its attention had stopped reaching back past the window's start.
  Without the cache (use_cache False) the window runs from scratch every step, on either kind of
  model. A prompt longer than block_size starts from its last block_size tokens, as in exact mode.
  The context cycles between block_size // 2 and block_size tokens instead of always block_size:
  less to read, far less work (benchmarks/README.md, "Long samples: context shift").
- Each row draws from its own torch.Generator, one (1, V) draw per row, so the other rows of the
  batch cannot change its random numbers.

The model's sums are not bit-identical across batch shapes (BLAS reduces a 3-row product in
another order than a 1-row one), so the logits agree with a row's lone run to float rounding;
the tokens agree unless a draw falls within that rounding of a boundary (tests/test_generate.py
compares every row with its lone run).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import TinyGPTError
from ..model.cached import rotate_back
from ..model.decode_plan import DecodePlan
from .sampling import SamplingConfig, next_token

CONTEXTS = ("exact", "shift")  # what a row reads once its text outgrows block_size (see the docstring)


@dataclass
class Row:
    """One sequence to extend: its ids so far (the prompt), its knobs, its random numbers."""

    ids: list[int]
    sampling: SamplingConfig
    generator: torch.Generator | None = None  # None: torch's global generator
    logprobs: int | None = None  # k: report the chosen token's log-probability and the k likeliest tokens'


class Decoder:
    """Extends rows by one token per `step()`, all in one batch; `finish(row)` stops one early.

    A server keeps one Decoder running: `add()` each request's row as it arrives (its prompt runs at
    the next step, beside the others' newest tokens), `step()`, hand each (row, token) to its client
    (a TextStream turns them into text), and `finish()` a row whose client has what it wants;
    `drop_finished()` then forgets the finished rows, so the batch stays as small as its live rows.
    """

    def __init__(self, model, rows: list[Row] = (), use_cache: bool = True, context: str = "exact"):
        self.model = model
        self.block_size = model.config.block_size
        self.use_cache = use_cache and model.supports_cache
        self.shift = check_context(context) == "shift"
        self.kept = max(1, self.block_size // 2)  # the tokens a shift keeps, the newest included
        self.device = next(model.parameters()).device
        self.no_autograd = autograd_off(model)
        self.ids: list[list[int]] = []  # each row's tokens, prompt first
        self.starts: list[int] = []  # where each row's window begins in its ids (moved only by a shift)
        self.rows: list[Row] = []
        self.new: list[int] = []  # tokens generated so far, per row
        self.finished: list[bool] = []
        self.seen = None  # (rows, V) booleans: the tokens in each row's text, for the repetition penalty
        self.cache = None  # the keys and values of the rows in `self.cached`, in that order (kept when empty)
        self.cached: list[int] = []
        self.plan: DecodePlan | None | bool = False  # the model's one-token step taken apart (False: not yet made)
        self.fresh: list[int] = []  # rows whose prompt has not run yet
        # After each step, for the rows that ask (Row.logprobs): row -> (the chosen token's log-probability,
        # [(token, log-probability), ...] of the likeliest), from the model's own distribution.
        self.logprobs: dict[int, tuple[float, list[tuple[int, float]]]] = {}
        # After each step: row -> why its next token could not be chosen. Such a row is finished and its
        # token not returned; the rows beside it go on (a server's other requests are not its fault).
        self.failed: dict[int, str] = {}
        for row in rows:
            self.add(row)

    def add(self, row: Row) -> int:
        """Take another row into the batch (from the next step on); returns its index."""
        index = len(self.rows)
        self.rows.append(row)
        self.ids.append(list(row.ids))
        # A shifting row starts from its prompt's last block_size tokens, which exact mode reads too.
        self.starts.append(max(0, len(row.ids) - self.block_size) if self.shift else 0)
        self.new.append(0)
        self.finished.append(row.sampling.max_new_tokens == 0)
        self.fresh.append(index)
        if row.sampling.repetition_penalty != 1.0 or self.seen is not None:
            self._track_seen()
        return index

    @property
    def done(self) -> bool:
        return all(self.finished)

    def finish(self, row: int):
        self.finished[row] = True

    def step(self) -> list[tuple[int, int]]:
        """Run the model once and choose every unfinished row's next token: [(row, token), ...]."""
        live = [i for i, done in enumerate(self.finished) if not done]
        self.failed = {}
        if not live:
            return []
        with self.no_autograd():
            logits = self._next_logits(live)  # (len(live), V)
            tokens = self._choose(live, logits)
            self.logprobs = self._logprobs(live, logits, tokens)
        for i, token in zip(live, tokens):
            self.ids[i].append(token)  # a failed row's too, so its cached keys stay in step with its ids
            self.new[i] += 1
            self.finished[i] = i in self.failed or self.new[i] >= self.rows[i].sampling.max_new_tokens
        return [(i, token) for i, token in zip(live, tokens) if i not in self.failed]

    def drop_finished(self) -> dict[int, int]:
        """Forget the finished rows, so a batch that rows keep joining and leaving stays as small as its
        live rows; returns {old index: new index} of the rows kept."""
        keep = [i for i, done in enumerate(self.finished) if not done]
        where = {old: new for new, old in enumerate(keep)}
        self.rows = [self.rows[i] for i in keep]
        self.ids = [self.ids[i] for i in keep]
        self.starts = [self.starts[i] for i in keep]
        self.new = [self.new[i] for i in keep]
        self.finished = [False] * len(keep)
        with self.no_autograd():  # the cache and `seen` were made in it
            if self.seen is not None:
                self.seen = self.seen[keep]
            if self.cached:
                self._uncache(set(where))
        self.cached = [where[i] for i in self.cached]
        self.fresh = [where[i] for i in self.fresh if i in where]
        self.logprobs, self.failed = {}, {}
        return where

    # ---- the model --------------------------------------------------------------------------------

    def _next_logits(self, live: list[int]):
        """Each live row's logits for its next token, (len(live), V) in the order of `live`."""
        if self.shift:
            self._shift_full(live)  # afterwards every row's window has room for its newest token
        if not self.use_cache:
            return self._windows(live)
        # The newest token has a position left (exact: rows shorter than block_size; shift: every row).
        fits = {i for i in live if len(self.ids[i]) - self.starts[i] <= self.block_size}
        fresh = [i for i in self.fresh if i in fits]  # the others run as windows from the start
        self.fresh = []
        decoding = [i for i in self.cached if i in fits]
        groups = []  # (rows, their logits)
        if decoding:
            logits = self._decode(decoding)
            groups.append((list(self.cached), logits))  # the cache's order: leaving rows may have moved others
        elif self.cached:
            self._uncache(set())
        if fresh:
            groups.append((fresh, self._prefill(fresh)))
        window = [i for i in live if i not in fits]
        if window:
            groups.append((window, self._windows(window)))
        if len(groups) == 1 and groups[0][0] == live:
            return groups[0][1]
        order = {row: j for j, row in enumerate(live)}
        out = torch.empty(len(live), groups[0][1].size(-1), device=self.device, dtype=groups[0][1].dtype)
        for rows, logits in groups:
            out[torch.tensor([order[r] for r in rows], device=self.device)] = logits
        return out

    def _shift_full(self, live: list[int]):
        """Shift the window of every live row that has no position left for its newest token: keep its
        newest `kept` tokens. A cached row of a rotary model moves its keys (their positions turned back);
        one of a model with learned positions leaves the cache and its kept tokens prefill again."""
        full = [i for i in live if len(self.ids[i]) - self.starts[i] > self.block_size]
        drops = {}
        for i in full:
            drops[i] = len(self.ids[i]) - self.kept - self.starts[i]
            self.starts[i] += drops[i]
        moving = [i for i in self.cached if i in drops]  # the cache holds each one's window before the newest
        if not moving:
            return
        rotary = self.model.rotary if self.model.config.pos_emb == "rope" else None
        if rotary is not None:
            self.cache.shift([self.cached.index(i) for i in moving], [drops[i] for i in moving],
                             lambda keys, n: rotate_back(rotary, keys, n))
        else:
            self._uncache(set(self.cached) - set(moving))
            self.fresh += moving

    def _window(self, i: int) -> list[int]:
        """Row i's tokens that the model reads: at most its last block_size, none before its window's start."""
        ids = self.ids[i]
        return ids[max(self.starts[i], len(ids) - self.block_size) :]

    def _prefill(self, rows: list[int]):
        """Run these rows' windows (none longer than block_size), right-padded, into a new cache."""
        windows = [self._window(i) for i in rows]
        lengths = [len(w) for w in windows]
        cache = self.model.new_cache(len(rows)) if self.cache is None else self.cache.room(len(rows))
        logits, _ = self.model(self._padded(windows), cache=cache)  # (n, T, V)
        cache.set_lengths(lengths)  # the pads' keys stay unseen until each row's tokens overwrite them
        if self.cache is None:
            self.cache, self.cached = cache, list(rows)
        else:
            self.cache.extend(cache)
            self.cached += rows
        return self._last(logits, lengths)

    def _decode(self, rows: list[int]):
        """Run these cached rows' newest tokens, each at its own row's position; the logits come in the
        order of `self.cached`, which holds exactly these rows afterwards."""
        if rows != self.cached:  # rows finished or outgrew the context: drop their keys
            self._uncache(set(rows))
        newest = torch.tensor([self.ids[i][-1] for i in self.cached], device=self.device)  # (n,)
        if self.plan is False or (self.plan is not None and not self.plan.current()):
            self.plan = DecodePlan.build(self.model)  # made here, in the step's inference mode, as it must be
        if self.plan is not None and self.plan.fits(self.cache):
            return self.plan.step(newest, self.cache)  # the same logits as the general path's, faster
        logits, _ = self.model(newest[:, None], cache=self.cache)  # (n, 1, V)
        return logits[:, -1, :]

    def _uncache(self, keep: set[int]):
        """Drop the keys of the cached rows not in `keep` (the others may change places in the cache)."""
        gone = [j for j, i in enumerate(self.cached) if i not in keep]
        if len(gone) == len(self.cached):
            self.cache.clear()
            self.cached = []
        elif gone:
            self.cached = [self.cached[j] for j in self.cache.remove(gone)]

    def _windows(self, rows: list[int]):
        """Run these rows' windows from scratch, right-padded, with no cache."""
        windows = [self._window(i) for i in rows]
        logits, _ = self.model(self._padded(windows))  # (n, T, V)
        return self._last(logits, [len(w) for w in windows])

    def _padded(self, texts: list[list[int]]):
        """(n, T) ids, each text followed by pads (token 0) up to the longest: T = longest length."""
        T = max(len(t) for t in texts)
        return torch.tensor([t + [0] * (T - len(t)) for t in texts], device=self.device)

    def _last(self, logits, lengths: list[int]):
        """Each row's logits at its last real position: (n, T, V) -> (n, V)."""
        if len(set(lengths)) == 1:
            return logits[:, -1, :]
        last = torch.tensor(lengths, device=self.device) - 1  # (n,)
        return logits[torch.arange(len(lengths), device=self.device), last]

    # ---- the choice ---------------------------------------------------------------------------------

    def _choose(self, live: list[int], logits) -> list[int]:
        """Each live row's next token; rows with the same knobs are filtered together."""
        groups: dict[tuple, list[int]] = {}  # knobs -> positions in `live`
        for j, i in enumerate(live):
            groups.setdefault(self.rows[i].sampling.choice, []).append(j)
        tokens = [0] * len(live)
        for members in groups.values():
            rows = [live[j] for j in members]
            part = logits if len(members) == len(live) else logits[members]  # (n, V)
            seen = self.seen[rows] if self.seen is not None else None
            try:
                picked = next_token(part, self.rows[rows[0]].sampling, [self.rows[i].generator for i in rows], seen)
            except Exception as e:  # noqa: BLE001 (knobs the sampler could not use: these rows fail, alone)
                self.failed.update({i: f"{type(e).__name__}: {e}" for i in rows})
                picked = part.argmax(dim=-1, keepdim=True)  # any token: the rows are finished
            for j, token in zip(members, picked.flatten().tolist()):
                tokens[j] = token
        if self.seen is not None:
            self.seen[live, tokens] = True
        return tokens

    def _logprobs(self, live: list[int], logits, tokens: list[int]) -> dict:
        asking = [j for j, i in enumerate(live) if self.rows[i].logprobs is not None]
        if not asking:
            return {}
        logp = torch.log_softmax(logits[asking].float(), dim=-1)  # (n, V)
        k = min(max(self.rows[live[j]].logprobs for j in asking), logp.size(-1))
        top_values, top_ids = torch.topk(logp, k) if k else (logp[:, :0], logp[:, :0].long())  # (n, k)
        chosen = logp[torch.arange(len(asking)), torch.tensor([tokens[j] for j in asking])]  # (n,)
        out = {}
        for n, j in enumerate(asking):
            wanted = self.rows[live[j]].logprobs
            top = list(zip(top_ids[n, :wanted].tolist(), top_values[n, :wanted].tolist()))
            out[live[j]] = (chosen[n].item(), top)
        return out

    def _track_seen(self):
        """(rows, V) booleans of the tokens in each row's text, rebuilt when a row joins."""
        V = self.model.config.vocab_size
        with self.no_autograd():
            self.seen = torch.zeros(len(self.ids), V, dtype=torch.bool, device=self.device)
            for i, ids in enumerate(self.ids):
                self.seen[i, torch.tensor(ids, dtype=torch.long, device=self.device)] = True


def autograd_off(model):
    """What a generation step runs under: inference_mode, which skips autograd's bookkeeping (version
    counters, views), a few percent per token; or no_grad for a model sharded by FSDP (--parallel fsdp,
    sampling while it trains), whose weight-gathering buffers are reused outside inference mode, where
    a tensor made in it may not be written."""
    from ..core.sharding import is_sharded

    return torch.no_grad if is_sharded(next(model.parameters())) else torch.inference_mode


def check_context(context) -> str:
    """`context` if it is one of CONTEXTS; otherwise the one-line error that names it."""
    if context not in CONTEXTS:
        raise TinyGPTError(f"context must be 'exact' (re-run the last block_size tokens for every token past the "
                           f"model's context) or 'shift' (keep the newer half once the context is full), "
                           f"got {context!r}")
    return context


def generate_ids(model, idx, sampling: SamplingConfig, generator=None, use_cache: bool = True,
                 context: str = "exact"):
    """Extend every row of idx (B, T) by `max_new_tokens` tokens; returns (B, T + n).

    generator: one for all rows (drawn as one batch) or a list of one per row.
    """
    generators = generator if isinstance(generator, (list, tuple)) else [generator] * idx.size(0)
    rows = [Row(ids, sampling, g) for ids, g in zip(idx.tolist(), generators)]
    decoder = Decoder(model, rows, use_cache, context)
    while not decoder.done:
        decoder.step()
    return torch.tensor(decoder.ids, dtype=idx.dtype, device=idx.device)
