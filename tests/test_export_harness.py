"""Exports that load anywhere: a transformers export names its BOS and EOS (so EleutherAI's
lm-evaluation-harness scores it with no prefix token given by hand), survives `save_pretrained`, and
the harness's `hf` model computes tinygpt's own numbers on it.

Runs are tiny and trained for a few steps: a char model in each form (plain GPT-2 and custom code),
and char, chat, word and BPE tokenizers. The harness reads task files the tests write
(tests/harness_tasks.py), never the Hub.
"""

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait for the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from harness_tasks import task_manager, write_tasks  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.data import rhyme_text  # noqa: E402
from tinygpt.store.rundir import RunDir  # noqa: E402
from tinygpt.tokenizers import CharTokenizer, WordTokenizer  # noqa: E402
from tinygpt.tokenizers.chat_format import CHAT_TOKENS, default_template  # noqa: E402
from tinygpt.tokenizers.simple import mark_sentence_ends  # noqa: E402

TEXT = rhyme_text() * 2
TRAIN = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=150, eval_interval=150, lr=1e-2,
             threads=1, progress=False, sample_tokens=0)
# bias=False fits GPT-2 (no bias on the head); tinygpt's defaults put one there, so the custom-code form,
# here with a tied head (tie_weights true, as transformers' own tie_word_embeddings then reads).
FORMS = {"gpt2": dict(bias=False), "custom": dict(tie_weights=True)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(name) -> a run trained in under a second (once per module): char-gpt2, char-custom, chat, word, bpe."""
    folder = tmp_path_factory.mktemp("harness-runs")
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    (folder / "marked.txt").write_text(mark_sentence_ends(TEXT, "<END>"), encoding="utf-8")
    chat = CharTokenizer.train(TEXT)
    chat.add_special_tokens(CHAT_TOKENS)
    (folder / "chat.json").write_text(json.dumps(chat.to_json()), encoding="utf-8")
    word = WordTokenizer.train(mark_sentence_ends(TEXT, "<END>"), end_token="<END>")  # the tutorial's words
    (folder / "word.json").write_text(json.dumps(word.to_json()), encoding="utf-8")
    specs = {"char-gpt2": ("text.txt", "char", FORMS["gpt2"]), "char-custom": ("text.txt", "char", FORMS["custom"]),
             "chat": ("text.txt", str(folder / "chat.json"), FORMS["gpt2"]),
             "word": ("marked.txt", str(folder / "word.json"), FORMS["gpt2"]),
             "bpe": ("text.txt", "bpe", FORMS["gpt2"])}
    made = {}

    def get(name):
        if name not in made:
            data, tokenizer, settings = specs[name]
            out = folder / name
            tinygpt.train(data=str(folder / data), tokenizer=tokenizer, vocab_size=300, out=str(out),
                          **TRAIN, **settings)
            if name == "chat":
                RunDir(out).write_chat_template(default_template(RunDir(out).read_tokenizer()))
            made[name] = out
        return made[name]

    return get


def export(run_dir, out):
    done = tinygpt.export(run_dir, to="hf", out=out)
    return done.path, done.form


def test_a_custom_export_survives_save_pretrained_and_to_dict(runs, tmp_path):
    folder, form = export(runs("char-custom"), tmp_path / "hf")
    assert form == "custom"
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    model.save_pretrained(tmp_path / "saved")  # writes tie_word_embeddings beside tie_weights
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["tie_weights"] is True and "tie_word_embeddings" in saved
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    x = torch.randint(0, model.config.vocab_size, (2, model.config.block_size), generator=torch.manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x).logits, again(x).logits)
    config = model.config
    assert type(config).from_dict(config.to_dict()).to_dict() == config.to_dict()
    assert type(config)(**config.to_dict()).tie_weights is True


@pytest.mark.parametrize("name, text", [
    ("char-gpt2", "mary had a little lamb\n\nits fleece was white\n"),
    ("chat", "<|user|>mary had\n<|end|>\n<|assistant|>a little lamb<|end|>"),
    ("word", "mary had a little lamb <END> its fleece\nwas white <END>"),
    ("bpe", "mary had a little lamb\n\nits fleece was white\n"),
])
def test_the_exported_tokenizer_names_bos_and_eos_and_still_encodes_as_tinygpt(runs, tmp_path, name, text):
    run = tinygpt.load(runs(name), device="cpu")
    folder, _ = export(run.dir, tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(folder)
    start = run.tokenizer.start_ids()[0]  # a line break; the word model's sentence end
    end = run.tokenizer.token_to_id("<|end|>") if name == "chat" else start
    assert run.tokenizer.token(start) == ("<END>" if name == "word" else "\n")
    assert (tok.bos_token_id, tok.eos_token_id) == (start, end)
    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (start, end)
    # generate stops at a chat reply's end, not at a line break: tinygpt sample writes on past one
    assert (generation["bos_token_id"], generation.get("eos_token_id")) == (start, end if name == "chat" else None)

    ids = run.tokenizer.encode(text)
    assert start in ids and tok(text)["input_ids"] == ids and len(tok) == run.tokenizer.vocab_size
    assert tok.decode(ids) == run.tokenizer.decode(ids)
    # the start token is an ordinary token: kept where special tokens are skipped
    assert tok.decode(ids, skip_special_tokens=True) == run.tokenizer.decode(ids, skip_special_tokens=True)
    assert not tok.backend_tokenizer.get_added_tokens_decoder()[start].special


def tinygpt_loglikelihood(run, context: list[int], continuation: list[int]) -> float:
    """log p(continuation | context) from tinygpt's own model, fed as the harness feeds a window: the
    last block_size tokens before each one scored."""
    ids = (context + continuation)[-(run.model_config.block_size + 1):]
    with torch.no_grad():
        logits = run.model(torch.tensor([ids[:-1]]))[0][0]  # (T, vocab_size)
    logp = logits.log_softmax(-1)[-len(continuation):]
    return logp.gather(1, torch.tensor(continuation)[:, None]).sum().item()


def tinygpt_greedy(run, prompt: str, max_new_tokens: int) -> str:
    """tinygpt's model continuing `prompt` greedily up to a line break, from the harness's left-truncated
    context (the last block_size - max_new_tokens tokens)."""
    ids = run.encode(prompt)[-(run.model_config.block_size - max_new_tokens):]
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            new.append(run.model(torch.tensor([ids + new]))[0][0, -1].argmax().item())
    return run.tokenizer.decode(new).split("\n")[0]


@pytest.mark.parametrize("form", ["gpt2", "custom"])
def test_the_harness_scores_an_export_with_tinygpts_numbers_and_no_prefix_argument(runs, tmp_path, form):
    pytest.importorskip("accelerate", reason="the harness's hf model needs accelerate (lm-eval[hf])")
    import lm_eval
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    run = tinygpt.load(runs(f"char-{form}"), device="cpu")
    folder, written = export(run.dir, tmp_path / "hf")
    assert written == form
    block = run.model_config.block_size
    texts = [rhyme_text()[:60], "mary had a little lamb\n" * 3]  # several windows of block_size (16)
    questions = [("mary had a", [" little", " lamb", " snow"], 0), ("its fleece was", [" white", " school"], 0)]
    prompts = [(p, tinygpt_greedy(run, p, 8)) for p in ("mary had", "its flee")]
    assert all(answer.strip() for _, answer in prompts)  # the model writes something before a line break
    names = write_tasks(tmp_path / "tasks", texts, questions, prompts)
    args = f"pretrained={folder}" + (",trust_remote_code=True" if form == "custom" else "")
    out = lm_eval.simple_evaluate(model="hf", model_args=args, tasks=names, device="cpu", batch_size=4,
                                  task_manager=task_manager(tmp_path / "tasks"), bootstrap_iters=0)
    results, samples = out["results"], out["samples"]

    # Perplexity: each text in windows of block_size tokens after the start token. The harness found both in
    # the export (block_size as n_positions or max_position_embeddings): no max_length, no prefix_token_id.
    start = run.tokenizer.start_ids()[0]
    expected = [sum(tinygpt_loglikelihood(run, *make_disjoint_window(w))
                    for w in get_rolling_token_windows(run.encode(t), start, block, 1)) for t in texts]
    got = [s["filtered_resps"][0] for s in sorted(samples[names[0]], key=lambda s: s["doc_id"])]
    assert got == pytest.approx(expected, abs=1e-3)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    assert results[names[0]]["bits_per_byte,none"] == pytest.approx(-sum(expected) / nbytes / math.log(2), rel=1e-5)

    # Multiple choice: each choice as the question's continuation.
    for sample in samples[names[1]]:
        question, choices, _ = questions[sample["doc_id"]]
        lls = [ll for ll, _ in sample["filtered_resps"]]
        assert lls == pytest.approx([tinygpt_loglikelihood(run, run.encode(question), run.encode(c))
                                     for c in choices], abs=1e-4)

    # Generation: greedy, to the line break, what tinygpt's model writes.
    assert results[names[2]]["exact_match,none"] == 1.0
