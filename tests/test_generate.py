"""Generation: the KV cache changes speed, never tokens; a batch of different prompts gives each
prompt the tokens it gets alone; each sampling knob does what its name says; stop strings cut the
text; streamed pieces join into exactly the returned text, never splitting a character."""

import pytest
import torch

import tinygpt
from tinygpt.app.run import Run
from tinygpt.config import ModelConfig
from tinygpt.core.errors import TinyGPTError
from tinygpt.generation import Decoder, Row, SamplingConfig, TextStream, generate_ids, next_token
from tinygpt.generation.text import CONTEXT
from tinygpt.model import build_model
from tinygpt.model.cached import rotate_rows
from tinygpt.model.layers import Rotary
from tinygpt.tokenizers import CharTokenizer, HFTokenizer

SAMPLERS = [
    SamplingConfig(40, temperature=1.0),
    SamplingConfig(40, temperature=0.8, top_k=5),
    SamplingConfig(40, temperature=1.2, top_p=0.9),
    SamplingConfig(40, temperature=1.0, top_k=8, top_p=0.8, repetition_penalty=1.3),
    SamplingConfig(40, temperature=0.0),
]
PATHS = [{}, {"attention": "heads"}, {"pos_emb": "rope", "qk_norm": True}]


def small_model(vocab_size=17, block_size=8, **extra):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16, init="torch",
                      **extra)
    return build_model(cfg.validate()).eval()


# ---- the KV cache gives exactly the uncached tokens --------------------------------------------------

@pytest.mark.parametrize("extra", PATHS)
@pytest.mark.parametrize("sampling", SAMPLERS, ids=["plain", "top_k", "top_p", "all", "greedy"])
def test_cached_generation_gives_the_uncached_tokens_past_the_context(extra, sampling):
    model = small_model(**extra)
    prompt = torch.randint(17, (2, 3))
    cached = generate_ids(model, prompt, sampling, torch.Generator().manual_seed(5), use_cache=True)
    plain = generate_ids(model, prompt, sampling, torch.Generator().manual_seed(5), use_cache=False)
    assert cached.shape == (2, 43)  # 40 new tokens: the window slid 35 times past block_size 8
    assert torch.equal(cached, plain)
    assert torch.equal(cached[:, :3], prompt)


def test_a_trained_run_samples_the_same_text_with_and_without_the_cache(rhyme_run):
    run = tinygpt.load(rhyme_run.out_dir)
    for seed in range(3):
        kwargs = dict(max_new_tokens=30, temperature=1.0, top_k=10, seed=seed)  # block_size is 6
        assert run.generate("mary", **kwargs) == run.generate("mary", use_cache=False, **kwargs)


def test_the_same_seed_gives_the_same_sample_and_another_seed_another(char_run):
    run = tinygpt.load(char_run)
    a = run.generate("mary", max_new_tokens=60, temperature=1.0, seed=1)
    assert a == run.generate("mary", max_new_tokens=60, temperature=1.0, seed=1)
    assert a != run.generate("mary", max_new_tokens=60, temperature=1.0, seed=2)
    assert len(a) == 60  # a character model: one character per token


# ---- a batch of different prompts ----------------------------------------------------------------------

@pytest.mark.parametrize("extra", PATHS)
def test_rows_at_different_positions_compute_the_logits_they_compute_alone(extra):
    model = small_model(**extra)
    prompts = [[3, 1], [4, 1, 5, 9, 2], [6, 5, 3]]
    cache = model.new_cache(3)
    with torch.inference_mode():
        model(torch.tensor([p + [0] * (5 - len(p)) for p in prompts]), cache=cache)  # right-padded prefill
        cache.set_lengths([2, 5, 3])
        assert cache.pos is None
        batch, _ = model(torch.tensor([[7], [8], [10]]), cache=cache)  # each row's next token at its own position
        assert cache.lengths == [3, 6, 4]
        for row, (prompt, token) in enumerate(zip(prompts, [7, 8, 10])):
            alone, _ = model(torch.tensor([prompt + [token]]))  # (1, T, V)
            # Equal to float rounding: BLAS sums a 3-row product in another order than a 1-row one.
            torch.testing.assert_close(batch[row, 0], alone[0, -1], rtol=0, atol=1e-5)


def test_rotary_at_a_position_per_row_is_each_rows_own_rotary():
    rotary = Rotary(8, 16)
    x = torch.randn(3, 2, 4, 8)  # (B, nh, T, hs)
    starts = [0, 5, 2]
    positions = torch.tensor(starts)[:, None] + torch.arange(4)  # (3, 4)
    rotated = rotate_rows(rotary, x, positions)
    for b, start in enumerate(starts):
        assert torch.equal(rotated[b : b + 1], rotary(x[b : b + 1], start))


MIXED = [SamplingConfig(25, temperature=0.9, top_k=6, top_p=0.9), SamplingConfig(7, temperature=0.0),
         SamplingConfig(14, temperature=1.0, repetition_penalty=1.3), SamplingConfig(0),
         SamplingConfig(30, temperature=1.1, top_p=0.7)]


@pytest.mark.parametrize("extra", PATHS + [{"arch": "bigram"}])
@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_each_row_of_a_ragged_batch_gets_the_tokens_it_gets_alone(extra, use_cache):
    model = small_model(**extra)
    prompts = [[3, 1], [4, 1, 5, 9, 2, 6, 5], [3, 5, 8, 9], [7], [9, 3, 2, 3, 8, 4, 6, 2, 6]]  # block_size 8
    for seed in range(2):
        alone = [generate_ids(model, torch.tensor([p]), s, torch.Generator().manual_seed(seed + i), use_cache)
                 [0].tolist() for i, (p, s) in enumerate(zip(prompts, MIXED))]
        rows = [Row(p, s, torch.Generator().manual_seed(seed + i)) for i, (p, s) in enumerate(zip(prompts, MIXED))]
        decoder = Decoder(model, rows[:3], use_cache)
        for _ in range(3):
            decoder.step()
        decoder.add(rows[3])  # rows may join a running batch, as a server's requests arrive
        decoder.step()
        decoder.add(rows[4])
        while not decoder.done:
            decoder.step()
        assert decoder.ids == alone
        assert [len(ids) - len(p) for ids, p in zip(decoder.ids, prompts)] == [25, 7, 14, 0, 30]


@pytest.mark.parametrize("knobs", [dict(temperature=0.9, top_k=8, top_p=0.9), dict(temperature=0.0)],
                         ids=["sampled", "greedy"])
@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_a_list_of_prompts_is_sampled_in_one_batch_as_each_is_alone(char_run, knobs, use_cache):
    run = tinygpt.load(char_run)
    prompts = ["m", "mary had a", "its fleece was white"]  # 1, 10 and 20 characters; block_size is 16
    seeds = [1, 2, 3]
    batch = run.generate(prompts, max_new_tokens=40, seed=seeds, use_cache=use_cache, **knobs)
    alone = [run.generate(p, max_new_tokens=40, seed=s, use_cache=use_cache, **knobs) for p, s in zip(prompts, seeds)]
    assert batch == alone
    assert [len(text) for text in batch] == [40, 40, 40]
    assert run.generate(prompts, max_new_tokens=40, seed=5, **knobs) == [
        run.generate(p, max_new_tokens=40, seed=5, **knobs) for p in prompts]  # one seed for every prompt


def test_rows_that_stop_at_different_times_give_their_lone_text(rhyme_run):
    run = tinygpt.load(rhyme_run.out_dir)
    prompts = ["it", "mary had", "", "and everywhere that"]
    configs = [SamplingConfig(30, temperature=0.9, stop=["school"]), SamplingConfig(5, temperature=0.0),
               SamplingConfig(40, temperature=1.0, top_k=5, stop=["<END>"]),
               SamplingConfig(25, temperature=1.0, repetition_penalty=1.5)]
    batch = run.generate(prompts, seed=7, sampling=configs)
    assert batch == [run.generate(p, seed=7, sampling=c) for p, c in zip(prompts, configs)]
    assert batch[0] == " followed her to "
    assert batch[1] == " a little lamb <END> its"
    assert not batch[2].startswith(" ") and "<END>" not in batch[2]
    assert len(batch[3].split()) == 25


def test_a_streamed_batch_interleaves_rows_whose_pieces_join_into_their_texts(rhyme_run):
    run = tinygpt.load(rhyme_run.out_dir)
    prompts = ["mary", "it", "lamb"]
    knobs = dict(max_new_tokens=12, temperature=1.0, seed=[3, 4, 5], stop=["school"])
    pieces = list(run.stream(prompts, **knobs))
    order = [row for row, _ in pieces]
    assert order[:3] == [0, 1, 2]  # one token for every row per step
    joined = ["".join(piece for row, piece in pieces if row == i) for i in range(3)]
    assert joined == run.generate(prompts, **knobs)


def test_sample_j_of_num_samples_uses_seed_plus_j(rhyme_run):
    run = tinygpt.load(rhyme_run.out_dir)
    knobs = dict(max_new_tokens=10, temperature=1.0)
    samples = run.generate("mary", num_samples=3, seed=5, **knobs)
    assert samples == [run.generate("mary", seed=5 + j, **knobs) for j in range(3)]
    both = run.generate(["mary", "it"], num_samples=2, seed=[5, 9], **knobs)
    assert both == [samples[:2], [run.generate("it", seed=9 + j, **knobs) for j in range(2)]]


# ---- each knob on crafted logits -------------------------------------------------------------------

def draw(logits, n=4000, **knobs):
    """Token frequencies of n draws from next_token on one row of logits."""
    rows = torch.tensor([logits], dtype=torch.float32).repeat(n, 1)
    ids = next_token(rows, SamplingConfig(**knobs), torch.Generator().manual_seed(0))
    return torch.bincount(ids.flatten(), minlength=len(logits)).float() / n


def test_plain_sampling_follows_the_softmax():
    freq = draw([0.0, 1.0, 2.0])
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), -1)
    assert torch.allclose(freq, expected, atol=0.03)


def test_top_k_keeps_only_the_k_likeliest_renormalised():
    freq = draw([3.0, 2.0, 1.0, 0.0], top_k=2)
    assert freq[2] == freq[3] == 0
    assert freq[0].item() == pytest.approx(1 / (1 + torch.e ** -1), abs=0.03)  # 0.731


@pytest.mark.parametrize("top_p, support", [(0.5, [0]), (0.7, [0, 1]), (0.8, [0, 1]), (0.81, [0, 1, 2]),
                                            (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, support):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    freq = draw(probs.log().tolist(), top_p=top_p)
    assert [i for i in range(4) if freq[i] > 0] == support
    kept = probs[support] / probs[support].sum()
    assert torch.allclose(freq[support], kept, atol=0.03)


def test_temperature_sharpens_or_flattens():
    logits = torch.tensor([0.6, 0.4]).log().tolist()
    assert draw(logits, temperature=0.5)[0].item() == pytest.approx(0.36 / 0.52, abs=0.03)  # 0.692
    assert draw(logits, temperature=2.0)[0].item() == pytest.approx(0.6**0.5 / (0.6**0.5 + 0.4**0.5), abs=0.03)


def test_temperature_zero_is_argmax_whatever_the_other_knobs():
    torch.manual_seed(0)
    logits = torch.randn(64, 50)
    greedy = next_token(logits, SamplingConfig(temperature=0.0, top_k=3, top_p=0.2), None)
    assert torch.equal(greedy.flatten(), logits.argmax(-1))


def test_repetition_penalty_shrinks_the_logits_of_tokens_already_present():
    logits = torch.tensor([[2.0, 1.5, -1.0]])
    seen = torch.tensor([[True, False, True]])  # tokens 0 and 2 are in the text
    assert next_token(logits, SamplingConfig(temperature=0.0), None, seen).item() == 0
    # 2.0 / 2 = 1.0 falls below the unseen 1.5; a negative logit is multiplied, so it falls too.
    assert next_token(logits, SamplingConfig(temperature=0.0, repetition_penalty=2.0), None, seen).item() == 1
    freq = draw([2.0, 1.5, -1.0], n=4000, repetition_penalty=2.0)  # nothing seen: no penalty
    assert freq[0] > freq[1]


@pytest.mark.parametrize("knobs, message", [
    ({"top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
    ({"top_p": 1.5}, "top_p must be in (0, 1], got 1.5"),
    ({"temperature": -0.5}, "temperature must be 0 (greedy) or more, got -0.5"),
    ({"top_k": -1}, "top_k must be 0 (off) or more, got -1"),
    ({"repetition_penalty": 0.0}, "repetition_penalty must be positive, got 0.0"),
    ({"max_new_tokens": -1}, "max_new_tokens must be 0 or more, got -1"),
    ({"stop": [""]}, "a stop string cannot be empty"),
    ({"num_samples": 0}, "num_samples must be at least 1, got 0"),
    ({"seed": [1, 2]}, "seed must be one value or a list of one per prompt (1 prompts), got [1, 2]"),
    ({"sampling": SamplingConfig(), "top_k": 3}, "give the sampling knobs as arguments or as sampling=, not both"),
    ({"sampling": [SamplingConfig(top_p=2.0)]}, "top_p must be in (0, 1], got 2.0"),
    ({"temperature": float("nan")}, "temperature must be a finite number, got nan"),
    ({"top_p": float("inf")}, "top_p must be a finite number, got inf"),
    ({"repetition_penalty": float("-inf")}, "repetition_penalty must be a finite number, got -inf"),
    ({"top_k": 2.5}, "top_k must be a whole number, got 2.5"),
])
def test_invalid_sampling_settings_are_refused(char_run, knobs, message):
    run = tinygpt.load(char_run)
    for call in (run.generate, run.stream):  # stream refuses at the call, before any text
        with pytest.raises(TinyGPTError) as e:
            call("mary", **knobs)
        assert str(e.value) == message


def test_knobs_past_the_samplers_range_are_brought_inside_it_by_one_rule(char_run):
    """1e-45 is a float32 that is almost 0: the logits divided by it are infinite and the probabilities NaN.
    A temperature that small samples greedily, top_p keeps the likeliest token, a penalty stops at 1e-6."""
    run = tinygpt.load(char_run)
    greedy = run.generate("mary", max_new_tokens=12, temperature=0)
    assert run.generate("mary", max_new_tokens=12, temperature=1e-45, seed=3) == greedy
    assert run.generate("mary", max_new_tokens=12, top_p=5e-324, seed=3) == greedy
    penalised = run.generate("mary", max_new_tokens=12, temperature=0, repetition_penalty=1e-45)
    assert penalised == run.generate("mary", max_new_tokens=12, temperature=0, repetition_penalty=1e-6)
    assert SamplingConfig(temperature=1e-7, top_p=0.0 + 1e-9, repetition_penalty=1e300).validate() == \
        SamplingConfig(temperature=0.0, top_p=1e-6, repetition_penalty=1e6)


def test_a_prompt_that_is_not_text_is_refused(char_run):
    with pytest.raises(TinyGPTError) as e:
        tinygpt.load(char_run).generate(["mary", 3])
    assert str(e.value) == "prompt must be a string or a list of strings, got ['mary', 3]"


# ---- prompts -----------------------------------------------------------------------------------------

def test_a_prompt_longer_than_the_context_is_cropped_to_its_last_block(char_run):
    run = tinygpt.load(char_run)
    block = run.model_config.block_size
    prompt = "mary had a little lamb its fleece was white as snow"
    assert len(prompt) > block
    long = run.generate(prompt, max_new_tokens=20, seed=3)
    assert long == run.generate(prompt[-block:], max_new_tokens=20, seed=3)  # the model sees only the end


def test_an_empty_prompt_starts_a_word_model_at_a_sentence_end_without_a_leading_space(rhyme_run):
    run = tinygpt.load(rhyme_run.out_dir)
    text = run.generate("", max_new_tokens=10, temperature=0.0)
    assert not text.startswith(" ")
    assert text == run.generate("<END>", max_new_tokens=10, temperature=0.0).lstrip(" ")
    assert text.split()[0] in run.tokenizer.stoi


def test_an_empty_prompt_starts_a_char_model_at_a_new_line(char_run):
    run = tinygpt.load(char_run)
    assert run.start_ids("") == run.encode("\n")
    assert run.generate("", max_new_tokens=30, seed=0) == run.generate("\n", max_new_tokens=30, seed=0)


def test_a_word_prompt_is_continued_after_a_space(rhyme_run):
    text = tinygpt.load(rhyme_run.out_dir).generate("mary had", max_new_tokens=3, temperature=0.0)
    assert text == " a little lamb"  # the rhyme, memorised


# ---- stop strings and streaming ------------------------------------------------------------------------

def test_a_stop_string_cuts_the_text_where_it_first_appears(rhyme_run):
    run = tinygpt.load(rhyme_run.out_dir)
    # "it followed", not "it", which the rhyme continues two ways ("it followed", "it made")
    full = run.generate("it followed", max_new_tokens=20, temperature=0.0)
    assert full.startswith(" her to school")
    cut = run.generate("it followed", max_new_tokens=20, temperature=0.0, stop=["school", "lamb"])
    assert cut == " her to "
    assert run.generate("it followed", max_new_tokens=20, temperature=0.0, stop="school") == cut  # one string alone


@pytest.mark.parametrize("stop", [["lamb"], ["ma", "a l"], ["\n"], ["zzz"]])
def test_streamed_pieces_join_into_exactly_the_returned_text(char_run, stop):
    run = tinygpt.load(char_run)
    for seed in range(4):
        pieces = []
        text = run.generate("mary", max_new_tokens=80, temperature=1.0, seed=seed, stop=stop, stream=pieces.append)
        full = run.generate("mary", max_new_tokens=80, temperature=1.0, seed=seed)
        assert "".join(pieces) == text  # nothing shown that was later cut, nothing missing
        assert list(run.stream("mary", max_new_tokens=80, temperature=1.0, seed=seed, stop=stop)) == pieces
        assert full.startswith(text)
        hit = [s for s in stop if full[len(text):].startswith(s)]
        assert hit or text == full  # it stopped exactly at a stop string, or never met one
        assert not any(s in text for s in stop)


@pytest.mark.parametrize("prompt, stop", [("mary", ["<END>"]), ("and", ["that mary went"]), ("", ["school"])])
def test_streamed_words_join_into_exactly_the_returned_text(rhyme_run, prompt, stop):
    run = tinygpt.load(rhyme_run.out_dir)
    for seed in range(3):
        pieces = list(run.stream(prompt, max_new_tokens=25, seed=seed, stop=stop))
        text = run.generate(prompt, max_new_tokens=25, seed=seed, stop=stop)
        assert "".join(pieces) == text
        assert not any(s in text for s in stop)
        assert text.startswith(" ") == bool(prompt)  # a space after the prompt's last word, none from no prompt


def test_streaming_holds_back_what_could_become_a_stop_string():
    stream = TextStream(CharTokenizer(list("abcd")), [0], ["bcd", "dd"])
    a, b, c, d = range(4)
    assert [stream.push(t) for t in (a, a, b)] == ["a", "a", ""]  # 'b' may start 'bcd'
    assert stream.push(c) == ""
    assert stream.push(a) == "bca"  # 'bca' is no stop string after all
    assert stream.push(d) == ""  # 'd' may start 'dd'
    assert stream.close() == "d" and not stream.stopped  # the text ended: nothing more can come
    stream = TextStream(CharTokenizer(list("abcd")), [0], ["bcd", "dd"])
    assert "".join(stream.push(t) for t in (a, b, c, d, a)) == "a" and stream.stopped  # 'abcda' -> 'a'
    assert stream.push(a) == stream.close() == ""  # nothing after the stop


UNICODE = ("café crème brûlée, naïve jalapeño piñata\n日本語のテキストは三バイトの文字です。東京、京都。\n"
           "🐑 mary had a little 🐑, its fleece was white as ❄️ snow\nαβγδε και привет мир\n") * 3


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE with few merges: most non-ASCII characters are split across tokens."""
    return HFTokenizer.train(UNICODE, vocab_size=300)


def test_byte_level_pieces_never_end_halfway_through_a_character(bpe):
    ids = bpe.encode(UNICODE)
    assert sum("\ufffd" in bpe.decode([i]) for i in ids) > 50  # tokens that are part of a character
    stream = TextStream(bpe, bpe.encode("x"), [])
    pieces = [stream.push(i) for i in ids] + [stream.close()]
    assert "".join(pieces) == UNICODE
    assert not any("\ufffd" in piece for piece in pieces)


def test_incremental_decoding_equals_decoding_the_whole_text(bpe, rhyme_run):
    words = tinygpt.load(rhyme_run.out_dir).tokenizer
    g = torch.Generator().manual_seed(0)
    for tokenizer in (bpe, words, CharTokenizer(list("ab\n "))):
        prompt = tokenizer.encode("a")
        ids = torch.randint(tokenizer.vocab_size, (300,), generator=g).tolist()  # any bytes, even invalid ones
        stream = TextStream(tokenizer, prompt, [])
        text = "".join(stream.push(i) for i in ids) + stream.close()
        assert text == tokenizer.decode(prompt + ids)[len(tokenizer.decode(prompt)) :]


class CountingTokenizer(CharTokenizer):
    def __init__(self, chars):
        super().__init__(chars)
        self.lengths = []

    def decode(self, ids, skip_special_tokens=False):
        self.lengths.append(len(ids))
        return super().decode(ids, skip_special_tokens)


def test_decoding_a_long_completion_reads_a_short_window_per_token():
    tokenizer = CountingTokenizer(list("abc "))
    stream = TextStream(tokenizer, [0, 1], ["ca b"])
    text = "".join(stream.push(i) for i in torch.randint(4, (3000,), generator=torch.Generator().manual_seed(0)))
    assert len(text) > 100
    assert max(tokenizer.lengths) <= 2 * CONTEXT + 1  # never the whole text: linear in its length
    assert sum(tokenizer.lengths) < 3000 * 2 * CONTEXT


def test_a_byte_level_run_streams_what_it_returns(bpe):
    model = small_model(vocab_size=bpe.vocab_size, block_size=16)
    run = Run(None, model, bpe, None, torch.device("cpu"))
    for seed in range(3):
        knobs = dict(max_new_tokens=60, temperature=1.0, seed=seed, stop=["é", "\n"])
        pieces = list(run.stream("café ", **knobs))
        assert "".join(pieces) == run.generate("café ", **knobs)
        decoder = Decoder(model, [Row(bpe.encode("café "), SamplingConfig(60), torch.Generator().manual_seed(seed))])
        while not decoder.done:
            decoder.step()
        full = bpe.decode(decoder.ids[0])[len("café ") :]
        assert full.startswith("".join(pieces))


# ---- the lecture's own sampler -----------------------------------------------------------------------

@pytest.mark.parametrize("extra", PATHS)
@pytest.mark.parametrize("top_k", [None, 5])
def test_the_lectures_generate_gives_the_tokens_of_the_batched_decoder(extra, top_k):
    model = small_model(**extra)
    prompt = torch.tensor([[3, 1, 4]])
    torch.manual_seed(11)
    lecture = model.generate(prompt, 30, temperature=0.9, top_k=top_k)  # crop, forward, softmax, multinomial
    torch.manual_seed(11)
    ours = generate_ids(model, prompt, SamplingConfig(30, temperature=0.9, top_k=top_k or 0), use_cache=True)
    assert lecture.shape == (1, 33)  # past block_size 8: the window slid
    assert torch.equal(lecture, ours)
