"""The context shift (context="shift", --context-shift): while a text fits the model's context it changes no
token; past it, each row reads what the shift says it reads (its newest block_size // 2 tokens and those
after them), exactly: a model with learned positions what a fresh run of them gives, a rotary model what its
attention gives when it stops reaching back past the window's start; each row of a batch what it reads alone."""

import io

import pytest
import torch
from refusals import one_line, run_cli

import tinygpt
from tinygpt.cli import main
from tinygpt.config import ModelConfig
from tinygpt.core.errors import TinyGPTError
from tinygpt.generation import Decoder, Row, SamplingConfig, generate_ids
from tinygpt.model import build_model
from tinygpt.model.kv_cache import KVCache
from tinygpt.serve.engine import Engine, Request, collect

BLOCK, KEPT, V = 8, 4, 17
LEARNED, HEADS, ROPE = {}, {"attention": "heads"}, {"pos_emb": "rope", "qk_norm": True}
SAMPLERS = [SamplingConfig(5, temperature=1.0), SamplingConfig(5, temperature=0.8, top_k=5, top_p=0.9),
            SamplingConfig(5, temperature=1.0, repetition_penalty=1.3), SamplingConfig(5, temperature=0.0)]


def small_model(n_layer=2, block_size=BLOCK, **extra):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, block_size=block_size, n_layer=n_layer, n_head=2, n_embd=16, init="torch", **extra)
    return build_model(cfg.validate()).eval()


def window_starts(prompt_len: int, total: int) -> dict[int, int]:
    """{m: where the context that predicts token m begins}: the shift's schedule, written out on its own.
    A row starts from its prompt's last BLOCK tokens; when predicting m would read more than BLOCK tokens,
    the context begins again KEPT tokens before m."""
    start, starts = max(0, prompt_len - BLOCK), {}
    for m in range(prompt_len, total):
        if m - start > BLOCK:
            start = m - KEPT
        starts[m] = start
    return starts


def shifted_steps(model, prompt, n_new, seed=3):
    """Sample n_new tokens in shift mode; returns the ids and, for each step, the model's log-probabilities
    of every token (V,) as the decoder reported them."""
    row = Row(prompt, SamplingConfig(n_new, temperature=1.0), torch.Generator().manual_seed(seed), logprobs=V)
    decoder = Decoder(model, [row], context="shift")
    steps = []
    while not decoder.done:
        decoder.step()
        logp = torch.empty(V)
        for token, value in decoder.logprobs[0][1]:
            logp[token] = value
        steps.append(logp)
    return decoder.ids[0], steps


def fresh_run(model, ids):
    """The log-probabilities of the token after `ids`, from a run of ids alone with no cache: (V,)."""
    with torch.inference_mode():
        logits, _ = model(torch.tensor([ids]))
    return torch.log_softmax(logits[0, -1], dim=-1)


# ---- while the text fits, nothing changes ------------------------------------------------------------

@pytest.mark.parametrize("extra", [LEARNED, HEADS, ROPE], ids=["learned", "heads", "rope"])
@pytest.mark.parametrize("sampling", SAMPLERS, ids=["plain", "top", "penalty", "greedy"])
def test_shift_mode_gives_the_exact_tokens_while_the_text_fits(extra, sampling):
    model = small_model(**extra)
    prompt = torch.randint(V, (3, 3))
    exact = generate_ids(model, prompt, sampling, [torch.Generator().manual_seed(i) for i in range(3)])
    shift = generate_ids(model, prompt, sampling, [torch.Generator().manual_seed(i) for i in range(3)], context="shift")
    assert exact.shape == (3, BLOCK) and torch.equal(shift, exact)


# ---- past the context: what each kind of model reads -------------------------------------------------

@pytest.mark.parametrize("extra, n_layer", [(LEARNED, 2), (HEADS, 2), (ROPE, 1)], ids=["learned", "heads", "rope-1"])
def test_past_the_context_each_token_is_what_a_fresh_run_of_the_kept_window_gives(extra, n_layer):
    """Learned positions: the kept tokens are re-run, so every step is a fresh run of the window. A one-layer
    rotary model equals it too: its keys depend on their token and position only, and turning one back by n
    positions is the rotation a fresh run at the earlier position gives."""
    model = small_model(n_layer, **extra)
    prompt = [3, 1, 4, 1, 5, 9]
    ids, steps = shifted_steps(model, prompt, 30)
    starts = window_starts(len(prompt), len(ids))
    assert sorted({m - s for m, s in starts.items()}) == list(range(KEPT, BLOCK + 1))  # it cycles from 4 to 8
    for m, logp in zip(range(len(prompt), len(ids)), steps):
        torch.testing.assert_close(logp, fresh_run(model, ids[starts[m] : m]), rtol=0, atol=2e-5)


class WindowCache(KVCache):
    """A cache as long as the whole text, whose token t's queries see only the keys from starts[t] on: one
    forward pass over the text is then what the shift computes, every token with the window it had when it
    was run, without moving a key. (A rotary model's scores depend on distances only.)"""

    def __init__(self, model, starts: list[int]):
        cfg = model.config
        super().__init__(cfg.n_layer, 1, cfg.n_head, len(starts), cfg.head_size, "cpu", torch.float32)
        self.starts = torch.tensor(starts)

    def set_lengths(self, lengths):
        super().set_lengths(lengths)
        self.pos = None  # the path with a mask per row and token, whatever the lengths

    def prepare(self, T):
        super().prepare(T)  # positions (1, T), visible (1, T, L): causal
        keys = torch.arange(self.visible.size(-1))
        self.visible = self.visible & (keys >= self.starts[self.positions][..., None])


def test_a_rotary_models_shift_turns_keys_back_which_equals_attention_that_stops_at_the_window():
    """Past the first layer a kept key was made while the forgotten tokens were in view, so turning it back
    is not a re-run of the kept window. What it equals: the same weights over the whole text (a longer
    rotary table: rotary learns no positions), each token attending only from its own window's start."""
    model = small_model(2, **ROPE)
    prompt = [3, 1, 4, 1, 5, 9]
    ids, steps = shifted_steps(model, prompt, 30)
    starts = window_starts(len(prompt), len(ids))
    # Token t is run when token t + 1 is predicted: it reads that prediction's window (prompt: from 0).
    runs_from = [0] * (len(prompt) - 1) + [starts[t + 1] for t in range(len(prompt) - 1, len(ids) - 1)]
    long = small_model(2, block_size=len(ids), **ROPE)
    long.load_state_dict(model.state_dict())
    with torch.inference_mode():
        logits, _ = long(torch.tensor([ids[:-1]]), cache=WindowCache(long, runs_from))  # (1, T, V)
    whole = torch.log_softmax(logits[0], dim=-1)  # (T, V): position t predicts token t + 1
    rerun_gap = 0.0
    for m, logp in zip(range(len(prompt), len(ids)), steps):
        torch.testing.assert_close(logp, whole[m - 1], rtol=0, atol=2e-5)
        rerun_gap = max(rerun_gap, (logp - fresh_run(model, ids[starts[m] : m])).abs().max().item())
    assert rerun_gap > 1e-3  # and it is not a re-run of the window (that would be the learned models' way)


# ---- a batch -----------------------------------------------------------------------------------------

MIXED = [SamplingConfig(25, temperature=0.9, top_k=6, top_p=0.9), SamplingConfig(7, temperature=0.0),
         SamplingConfig(14, temperature=1.0, repetition_penalty=1.3), SamplingConfig(0),
         SamplingConfig(30, temperature=1.1, top_p=0.7)]


@pytest.mark.parametrize("extra", [LEARNED, HEADS, ROPE, {"arch": "bigram"}],
                         ids=["learned", "heads", "rope", "bigram"])
@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_each_row_of_a_ragged_batch_shifts_on_its_own_and_gets_its_lone_tokens(extra, use_cache):
    model = small_model(**extra)
    prompts = [[3, 1], [4, 1, 5, 9, 2, 6, 5], [3, 5, 8, 9], [7], [9, 3, 2, 3, 8, 4, 6, 2, 6]]  # the last: > BLOCK
    for seed in range(2):
        gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
        alone = [generate_ids(model, torch.tensor([p]), s, g, use_cache, "shift")[0].tolist()
                 for p, s, g in zip(prompts, MIXED, gens)]
        rows = [Row(p, s, torch.Generator().manual_seed(seed + i)) for i, (p, s) in enumerate(zip(prompts, MIXED))]
        decoder = Decoder(model, rows[:3], use_cache, context="shift")
        at = {0: 0, 1: 1, 2: 2}  # each row -> its index in the decoder
        for _ in range(3):
            decoder.step()
        at[3] = decoder.add(rows[3])  # rows join a running batch, as a server's requests do
        decoder.step()
        at[4] = decoder.add(rows[4])
        for _ in range(8):
            decoder.step()
        got = {row: decoder.ids[i] for row, i in at.items() if decoder.finished[i]}
        where = decoder.drop_finished()  # rows leave it and the others move up, in the cache too
        at = {row: where[i] for row, i in at.items() if i in where}
        while not decoder.done:
            decoder.step()
        got |= {row: decoder.ids[i] for row, i in at.items()}
        assert [got[row] for row in range(5)] == alone
        assert [len(ids) - len(p) for ids, p in zip(alone, prompts)] == [25, 7, 14, 0, 30]


def test_a_shifted_learned_position_model_samples_with_the_cache_what_it_samples_without():
    model = small_model(**LEARNED)
    prompt, sampling = torch.randint(V, (2, 3)), SamplingConfig(40, temperature=1.0)
    cached = generate_ids(model, prompt, sampling, torch.Generator().manual_seed(5), context="shift")
    plain = generate_ids(model, prompt, sampling, torch.Generator().manual_seed(5), use_cache=False, context="shift")
    assert torch.equal(cached, plain)  # without the cache every step re-runs the window: the learned models' way


# ---- the ways in: Python, the command line, the server ------------------------------------------------

LONG = dict(max_new_tokens=60, temperature=1.0, seed=3)  # char_run's block_size is 16


@pytest.fixture
def made(monkeypatch) -> list[str]:
    """The context of every Decoder made while the test runs, in order."""
    contexts = []
    init = Decoder.__init__

    def recording(self, model, rows=(), use_cache=True, context="exact"):
        contexts.append(context)
        init(self, model, rows, use_cache, context)

    monkeypatch.setattr(Decoder, "__init__", recording)
    return contexts


def test_run_generate_takes_context_and_refuses_another_in_one_line(char_run, made):
    run = tinygpt.load(char_run)
    assert len(run.generate("mary", context="shift", **LONG)) == 60
    run.generate("mary", **LONG)
    assert made == ["shift", "exact"]  # exact is the default
    with pytest.raises(TinyGPTError, match=r"^context must be 'exact' .* or 'shift' .*, got 'sideways'$"):
        run.generate("mary", context="sideways")
    with pytest.raises(TinyGPTError, match="got 'shfit'$"):
        Engine({"char": run}, context="shfit")


def test_tinygpt_sample_context_shift_samples_what_run_generate_does(capsys, char_run, made):
    args = ["sample", char_run, "--prompt", "mary", "--max-new-tokens", "60", "--temperature", "1", "--seed", "3"]
    code, out, _ = run_cli(capsys, *args, "--context-shift")
    assert code == 0 and made == ["shift"]
    assert out == "mary" + tinygpt.load(char_run).generate("mary", context="shift", **LONG) + "\n"
    one_line(*run_cli(capsys, *args, "--context-shift=yes")[::2], "--context-shift")


def test_tinygpt_chat_and_serve_hand_context_shift_to_their_decoders(monkeypatch, chat_run, made):
    monkeypatch.setattr("sys.stdin", io.StringIO("mary\n"))
    assert main(["chat", str(chat_run), "--temperature", "0", "--context-shift"]) == 0
    assert made == ["shift"]

    pytest.importorskip("uvicorn")  # tinygpt serve's extra
    import tinygpt.serve.server as server

    def no_serving(self):  # the engine is made, with its decoders; the server does not start
        raise KeyboardInterrupt

    monkeypatch.setattr(server.Server, "run", no_serving)
    monkeypatch.setattr(server, "steady_malloc", lambda: False)  # this process's malloc is not the test's to set
    made.clear()
    assert main(["serve", str(chat_run), "--port", "0", "--threads", "1", "--context-shift"]) == 0
    assert made == ["shift"]
    made.clear()
    assert main(["serve", str(chat_run), "--port", "0", "--threads", "1"]) == 0
    assert made == ["exact"]


def test_a_server_with_context_shift_gives_each_request_its_lone_shifted_text(char_run):
    run = tinygpt.load(char_run)
    engine = Engine({"char": run}, context="shift").start()
    try:
        chunks = collect(engine, Request("char", run.encode("mary"), SamplingConfig(60), n=2, seed=3), timeout=60)
    finally:
        engine.stop()
    texts = ["".join(c.text for c in chunks if c.index == j) for j in range(2)]
    assert texts == run.generate("mary", num_samples=2, context="shift", **LONG)
