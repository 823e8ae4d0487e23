"""Generation: the KV cache changes speed, never tokens; each sampling knob does what its name says;
stop strings cut the text, and streaming shows exactly the text that is returned."""

import pytest
import torch

import tinygpt
from tinygpt.config import ModelConfig
from tinygpt.errors import TinyGPTError
from tinygpt.generate import SamplingConfig, TextStream, generate_ids, next_token
from tinygpt.model import build_model
from tinygpt.tokenizers import CharTokenizer

SAMPLERS = [
    SamplingConfig(40, temperature=1.0),
    SamplingConfig(40, temperature=0.8, top_k=5),
    SamplingConfig(40, temperature=1.2, top_p=0.9),
    SamplingConfig(40, temperature=1.0, top_k=8, top_p=0.8, repetition_penalty=1.3),
    SamplingConfig(40, temperature=0.0),
]


# ---- the KV cache gives exactly the uncached tokens --------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"attention": "heads"}, {"pos_emb": "rope", "qk_norm": True}])
@pytest.mark.parametrize("sampling", SAMPLERS, ids=["plain", "top_k", "top_p", "all", "greedy"])
def test_cached_generation_gives_the_uncached_tokens_past_the_context(extra, sampling):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16, init="torch", **extra)
    model = build_model(cfg.validate()).eval()
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
    history = torch.tensor([[0, 2, 0]])
    assert next_token(logits, SamplingConfig(temperature=0.0), None, history).item() == 0
    # 2.0 / 2 = 1.0 falls below the unseen 1.5; a negative logit is multiplied, so it falls too.
    assert next_token(logits, SamplingConfig(temperature=0.0, repetition_penalty=2.0), None, history).item() == 1
    freq = draw([2.0, 1.5, -1.0], n=4000, repetition_penalty=2.0)  # no history given: no penalty
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
])
def test_invalid_sampling_settings_are_refused(char_run, knobs, message):
    with pytest.raises(TinyGPTError) as e:
        tinygpt.load(char_run).generate("mary", **knobs)
    assert str(e.value) == message


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
    full = run.generate("it", max_new_tokens=20, temperature=0.0)
    assert full.startswith(" followed her to school")
    cut = run.generate("it", max_new_tokens=20, temperature=0.0, stop=["school", "lamb"])
    assert cut == " followed her to "


@pytest.mark.parametrize("stop", [["lamb"], ["ma", "a l"], ["\n"], ["zzz"]])
def test_streamed_pieces_join_into_exactly_the_returned_text(char_run, stop):
    run = tinygpt.load(char_run)
    for seed in range(4):
        pieces = []
        text = run.generate("mary", max_new_tokens=80, temperature=1.0, seed=seed, stop=stop, stream=pieces.append)
        full = run.generate("mary", max_new_tokens=80, temperature=1.0, seed=seed)
        assert "".join(pieces) == text  # nothing shown that was later cut, nothing missing
        assert full.startswith(text)
        hit = [s for s in stop if full[len(text):].startswith(s)]
        assert hit or text == full  # it stopped exactly at a stop string, or never met one
        assert not any(s in text for s in stop)


@pytest.mark.parametrize("prompt, stop", [("mary", ["<END>"]), ("and", ["that mary went"]), ("", ["school"])])
def test_streamed_words_join_into_exactly_the_returned_text(rhyme_run, prompt, stop):
    run = tinygpt.load(rhyme_run.out_dir)
    for seed in range(3):
        pieces = []
        text = run.generate(prompt, max_new_tokens=25, seed=seed, stop=stop, stream=pieces.append)
        assert "".join(pieces) == text
        assert not any(s in text for s in stop)
        assert text.startswith(" ") == bool(prompt)  # a space after the prompt's last word, none from no prompt


def test_streaming_holds_back_what_could_become_a_stop_string():
    stream = TextStream(CharTokenizer(list("abcd")), [0], ["bcd", "dd"])
    assert stream.printable("aab", done=False) == "aa"  # 'b' may start 'bcd'
    assert stream.printable("aabc", done=False) == "aa"
    assert stream.printable("aabca", done=False) == "aabca"
    assert stream.printable("ad", done=False) == "a"  # 'd' may start 'dd'
    assert stream.completion([0, 0, 1, 2, 3, 0]) == ("a", True)  # after the prompt 'a': 'abcda' -> 'a'
    assert stream.completion([0, 0, 0]) == ("aa", False)
