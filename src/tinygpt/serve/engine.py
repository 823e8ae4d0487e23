"""Continuous batching: every request being served is a row of one Decoder per model, in one thread.

A request's rows join the running batch at the next step (their prompts prefill beside the others'
newest tokens) and leave it when they finish, stop, or their client goes away; nobody waits for a
batch to drain. Each row draws from its own seeded generator, so it gets the tokens it gets when
served alone (to float rounding: see generation/decoder.py).

The engine knows nothing of HTTP: a `Request` is handed `Chunk`s through its `deliver` callback,
called from the engine's thread (the server forwards them to its event loop), and `None` when it is
done. At most `max_batch` rows decode at once and at most `max_waiting` requests wait for a place;
past that `submit` raises `Busy`.

An `echo` request first gets its prompt back with every prompt token's log-probability (how the
lm-evaluation-harness scores text through an API): the prompts of the echo requests let in at one
step are scored in one batch (generation/score.py, the function `tinygpt eval --tasks` uses), then
their rows decode like any other; with max_tokens 0 they end there.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from ..core.errors import TinyGPTError
from ..generation import Decoder, Row, SamplingConfig, TextStream
from ..generation.chat import ReplyTrim
from ..generation.decoder import check_context
from ..generation.score import score


class Busy(Exception):
    """The batch and the waiting line are full: try again in a moment."""


@dataclass
class TokenInfo:
    """One generated token as the model saw it: its text, log-probability and the likeliest alternatives."""

    token: str
    logprob: float | None  # None: a prompt's first token, which nothing predicts
    top: list[tuple[str, float]] | None


@dataclass
class Chunk:
    """New text of one choice (maybe ""), the tokens that made it, and why the choice ended (or None)."""

    index: int
    text: str
    tokens: list[TokenInfo]
    finish_reason: str | None = None  # "stop" (a stop string or the end of a chat turn) or "length"
    offsets: list[int] | None = None  # where each token's text starts in `text` (None: all at its start)


@dataclass(eq=False)  # compared and hashed by identity: each request is its own
class Request:
    """n choices continuing one prompt; choice j draws from seed + j (a random seed when None)."""

    model: str
    prompt_ids: list[int]
    sampling: SamplingConfig
    n: int = 1
    seed: int | None = None
    logprobs: int | None = None  # k: each token's log-probability and its k likeliest alternatives
    chat: bool = False  # a chat reply: no whitespace around it
    echo: bool = False  # the prompt comes back first, with its tokens' log-probabilities when logprobs is set
    prompt_text: str | None = None  # the prompt as the client wrote it (echoed as is); None: decode prompt_ids
    deliver: Callable[[list[Chunk] | None], None] = print
    completion_tokens: int = 0
    cancelled: bool = False
    error: str | None = None  # set when the engine failed while decoding this request
    arrived: float = field(default_factory=time.perf_counter)

    def cancel(self):
        """The client went away: its rows leave the batch at the next step."""
        self.cancelled = True


class _Choice:
    """One row being decoded for a request: the request, which choice, and its text so far."""

    def __init__(self, request: Request, index: int, stream: TextStream):
        self.request = request
        self.index = index
        self.stream = stream
        self.trim = ReplyTrim() if request.chat else None
        self.tokens: list[TokenInfo] = []  # tokens whose text has not gone out yet

    def text(self, piece: str) -> str:
        return self.trim.push(piece) if self.trim is not None else piece


class Engine:
    """Serves requests for several loaded runs (`{name: Run}`), one decoding thread for all."""

    def __init__(self, runs: dict, max_batch: int = 64, max_waiting: int = 256, context: str = "exact"):
        if max_batch < 1 or max_waiting < 0:
            raise TinyGPTError(f"max_batch must be at least 1 and max_waiting 0 or more, got {max_batch}, "
                               f"{max_waiting}")
        self.context = check_context(context)  # what every row reads once its text outgrows block_size
        self.runs = dict(runs)
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        # Only runs that continue a text decode; an encoder or an encoder-decoder is served to look inside.
        self.writers = [name for name, run in self.runs.items() if writes_text(run)]
        self.decoders = {name: Decoder(self.runs[name].model, context=self.context) for name in self.writers}
        self.choices: dict[str, list[_Choice]] = {name: [] for name in self.writers}  # row index -> its choice
        self.waiting: deque[Request] = deque()
        self.lock = threading.Condition()
        self.tasks: deque[tuple[Callable, Future]] = deque()  # work on the models between steps (call())
        self.running = False
        self.thread: threading.Thread | None = None
        self.steps = 0

    # ---- the outside: any thread ------------------------------------------------------------------

    def start(self) -> "Engine":
        self.running = True
        self.thread = threading.Thread(target=self._loop, name="tinygpt-engine", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        with self.lock:
            self.running = False
            self.lock.notify()
        if self.thread is not None:
            self.thread.join()

    def submit(self, request: Request):
        """Queue a request; its chunks come through request.deliver. Raises Busy when the line is full."""
        if request.model not in self.runs:
            raise TinyGPTError(f"unknown model {request.model!r}")
        if request.model not in self.decoders:
            self.runs[request.model].require_text_model("continue a text")  # says what it does instead
        if request.n > self.max_batch:
            raise TinyGPTError(f"n={request.n} is more than this server's batch of {self.max_batch}")
        with self.lock:
            wanted = self.live_rows + sum(r.n for r in self.waiting) + request.n  # rows, if all were let in
            if wanted > self.max_batch and len(self.waiting) >= self.max_waiting:
                raise Busy(f"{self.live_rows} rows are decoding and {len(self.waiting)} requests wait")
            self.waiting.append(request)
            self.lock.notify()

    def call(self, work: Callable[[], object]) -> Future:
        """Run `work()` on the decoding thread between two steps, as no step is using the models (a look
        inside one, a new checkpoint's weights); its result or exception comes through the Future."""
        done: Future = Future()
        with self.lock:
            self.tasks.append((work, done))
            self.lock.notify()
        return done

    @property
    def live_rows(self) -> int:
        return sum(len(rows) for rows in self.choices.values())

    def stats(self) -> dict:
        return {"decoding": self.live_rows, "waiting": len(self.waiting), "steps": self.steps}

    # ---- the decoding thread ------------------------------------------------------------------------

    def _loop(self):
        while True:
            with self.lock:
                while self.running and not self.waiting and not self.live_rows and not self.tasks:
                    self.lock.wait()
                if not self.running:
                    break
            try:
                self.step()
            except Exception as e:  # a bug must not leave every client waiting: fail the batch, go on serving
                traceback.print_exc()
                self._fail(f"{type(e).__name__}: {e}")
        # Shutting down: tell whoever still waits.
        for request in {c.request for choices in self.choices.values() for c in choices} | set(self.waiting):
            request.deliver(None)
        for _, done in self.tasks:
            done.cancel()

    def _fail(self, reason: str):
        """End every request in the batch with an error (after an exception in a step)."""
        with self.lock:
            failed = {c.request for choices in self.choices.values() for c in choices}
            self.decoders = {name: Decoder(self.runs[name].model, context=self.context) for name in self.writers}
            self.choices = {name: [] for name in self.writers}
        for request in failed:
            request.error = reason
            request.deliver(None)

    def step(self):
        """Let waiting requests join, then run one decoding step of every model with rows (the thread's
        loop calls this; a test may too, on an engine it did not start)."""
        with self.lock:
            echoes = self._admit()
            tasks = ()
            if self.tasks:  # rare (a look inside, new weights): a decoding step allocates nothing for them
                tasks, self.tasks = self.tasks, deque()
        for work, done in tasks:
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(work())
                except Exception as e:  # the caller's to report: the batch goes on
                    done.set_exception(e)
        if echoes:
            self._echo(echoes)  # outside the lock: submit() need not wait for the scoring
        for name in self.writers:
            if self.choices[name]:
                self._step(name)

    def _admit(self) -> list[Request]:
        """Move waiting requests into their model's batch while there is room (called under the lock);
        returns the echo requests among them."""
        echoes: list[Request] = []
        while self.waiting:
            request = self.waiting[0]
            if request.cancelled:
                self.waiting.popleft()
                request.deliver(None)
                continue
            if self.live_rows + request.n > self.max_batch:
                break
            self.waiting.popleft()
            if request.echo:
                echoes.append(request)
                if request.sampling.max_new_tokens == 0:
                    continue  # nothing to decode: the echo is the whole answer
            run = self.runs[request.model]
            decoder = self.decoders[request.model]
            base_seed = request.seed if request.seed is not None else torch.Generator().seed() % 2**62
            lead = " " if run.tokenizer.kind == "word" and request.chat else ""
            for j in range(request.n):
                generator = torch.Generator(device=run.device).manual_seed(base_seed + j)
                decoder.add(Row(request.prompt_ids, request.sampling, generator, request.logprobs))
                stream = TextStream(run.tokenizer, request.prompt_ids, request.sampling.stop, drop_lead=lead)
                self.choices[request.model].append(_Choice(request, j, stream))
        return echoes

    def _echo(self, requests: list[Request]):
        """Send each echo request its prompt, scored: one batch per model. A request that decodes no
        tokens ends here."""
        for name in {r.model for r in requests}:
            run = self.runs[name]
            mine = [r for r in requests if r.model == name]
            scored = [None] * len(mine)
            if any(r.logprobs is not None for r in mine):
                scored = score(run.model, [r.prompt_ids for r in mine], top=max(r.logprobs or 0 for r in mine))
            for request, scores in zip(mine, scored):
                text, tokens, offsets = self._echoed(run.tokenizer, request, scores)
                ends = request.sampling.max_new_tokens == 0
                request.deliver([Chunk(j, text, tokens, "length" if ends else None, offsets)
                                 for j in range(request.n)])
                if ends:
                    request.deliver(None)

    @staticmethod
    def _echoed(tokenizer, request: Request, scores) -> tuple[str, list[TokenInfo], list[int]]:
        """The echoed prompt's text, its tokens (with log-probabilities when scored) and where each starts."""
        ids = request.prompt_ids
        text = request.prompt_text if request.prompt_text is not None else tokenizer.decode(ids)
        if scores is None:
            return text, [], None
        k = request.logprobs
        tokens = [TokenInfo(tokenizer.decode([ids[0]]), None, None)]
        for t, logprob, top in zip(ids[1:], scores.logprobs, scores.top or [[]] * len(scores.logprobs)):
            tokens.append(TokenInfo(tokenizer.decode([t]), logprob, [(tokenizer.decode([i]), lp) for i, lp in top[:k]]))
        offsets = [min(len(tokenizer.decode(ids[:i])), len(text)) if i else 0 for i in range(len(ids))]
        return text, tokens, offsets

    def _step(self, name: str):
        decoder, choices = self.decoders[name], self.choices[name]
        for row, choice in enumerate(choices):
            if choice.request.cancelled:
                decoder.finish(row)
        tokens = decoder.step()
        self.steps += 1
        for row, reason in decoder.failed.items():  # its knobs broke the sampler: it fails, the others go on
            failed = choices[row].request
            failed.error = failed.error or f"the sampler could not use this request's settings ({reason})"
            for other, choice in enumerate(choices):
                if choice.request is failed:
                    decoder.finish(other)
        out: dict[Request, list[Chunk]] = {}  # each request's chunks of this step
        tokenizer = self.runs[name].tokenizer
        for row, token in tokens:
            choice = choices[row]
            request = choice.request
            if request.cancelled or request.error is not None:
                continue
            request.completion_tokens += 1
            if row in decoder.logprobs:
                logprob, top = decoder.logprobs[row]
                choice.tokens.append(TokenInfo(tokenizer.decode([token]), logprob,
                                               [(tokenizer.decode([t]), lp) for t, lp in top]))
            piece = choice.stream.push(token)
            reason = None
            if choice.stream.stopped:
                decoder.finish(row)
                reason = "stop"
            elif decoder.finished[row]:
                piece += choice.stream.close()
                reason = "length"
            piece = choice.text(piece)
            if piece or reason:
                out.setdefault(request, []).append(Chunk(choice.index, piece, choice.tokens, reason))
                choice.tokens = []
        for request, chunks in out.items():
            request.deliver(chunks)
        if any(decoder.finished):
            with self.lock:
                where = decoder.drop_finished()
                left = [c for i, c in enumerate(choices) if i not in where]
                self.choices[name] = [c for i, c in enumerate(choices) if i in where]
            for request in {c.request for c in left} - {c.request for c in self.choices[name]}:
                request.deliver(None)  # all its choices are done


def writes_text(run) -> bool:
    """Whether a run continues a text (a GPT): the others are served for a look inside them only."""
    try:
        run.require_text_model("continue a text")
    except TinyGPTError:
        return False
    return True


def collect(engine: Engine, request: Request, timeout: float | None = None) -> list[Chunk]:
    """Submit a request and wait for all its chunks (for tests and scripts; the server streams them)."""
    import queue

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    request.deliver = inbox.put
    engine.submit(request)
    chunks = []
    for part in iter(lambda: inbox.get(timeout=timeout), None):
        chunks += part
    return chunks

