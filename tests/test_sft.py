"""`tinygpt sft`: a trained run fine-tuned on conversations learns only the assistant's replies, in a
chat format saved in the run (special tokens and a Jinja chat template), through the same loop as
pretraining (resume, metrics, run directory)."""

import io
import json
from pathlib import Path

import jinja2
import pytest
import torch
import torch.nn.functional as F

import tinygpt
from tinygpt.app.launch import sft
from tinygpt.cli import main
from tinygpt.config import TrainConfig
from tinygpt.objectives.sft import SupervisedFineTuning
from tinygpt.store.rundir import RunDir
from tinygpt.training import TrainingInterrupted

SFT = dict(max_iters=10, eval_interval=5, warmup_iters=0, lr=3e-3, threads=1, progress=False, sample_tokens=0,
           batch_size=4)
CHAT_IDS = [23, 24, 25, 26]  # <|system|> <|user|> <|assistant|> <|end|>, after char_run's 23 characters


def messages(*turns):
    """messages("user", "mary had", "assistant", "a lamb") -> the list of role/content dicts."""
    return [{"role": role, "content": text} for role, text in zip(turns[::2], turns[1::2])]


def write_jsonl(path: Path, *lines) -> Path:
    """One line per item: a dict becomes its JSON, a string is written as it is."""
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


def conversations(tmp_path, n=10) -> Path:
    return write_jsonl(tmp_path / "chats.jsonl", *[
        {"messages": messages("user", "mary", "assistant", "had a")} if i % 2 else
        {"messages": messages("system", "be", "user", "its", "assistant", "was")}
        for i in range(n)])


def render(run: Path, conversation: list[dict], add_generation_prompt=False) -> str:
    """The run's chat_template.jinja rendered as Hugging Face tools render a chat_template."""
    source = (run / "chat_template.jinja").read_text(encoding="utf-8")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source).render(messages=conversation, add_generation_prompt=add_generation_prompt)


def objective_for(base, data, val_fraction=0.0, block_size=16) -> SupervisedFineTuning:
    cfg = TrainConfig(data=str(data), init_from=str(base), val_fraction=val_fraction, batch_size=4)
    return SupervisedFineTuning.prepare(cfg, block_size, RunDir(Path(data).parent / "unused"))


def rows(objective) -> list[tuple[list[int], list[int]]]:
    """Each training conversation as (inputs, targets) without the padding."""
    out = []
    for x, y in zip(objective.train_x.tolist(), objective.train_y.tolist()):
        n = max(i for i, t in enumerate(y) if t != -100) + 1
        out.append((x[:n], y[:n]))
    return out


# ---- the chat format ---------------------------------------------------------------------------------

def test_the_run_keeps_a_chat_template_that_renders_the_chat_format(char_run, tmp_path):
    result = sft(char_run, conversations(tmp_path), out=tmp_path / "sft", **SFT)
    run = tinygpt.load(result.out_dir)
    conversation = messages("system", "be brief", "user", "mary had", "assistant", "a lamb")
    text = "<|system|>be brief<|end|><|user|>mary had<|end|><|assistant|>a lamb<|end|>"
    assert render(result.out_dir, conversation) == text
    assert render(result.out_dir, conversation[:2], add_generation_prompt=True).endswith("<|end|><|assistant|>")
    # Four special tokens after the base vocabulary, one id each; the base's ids keep their meaning.
    assert [run.tokenizer.token_to_id(t) for t in ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")] == CHAT_IDS
    assert run.model_config.vocab_size == 27
    assert run.tokenizer.encode("mary") == tinygpt.load(char_run).tokenizer.encode("mary")
    assert RunDir(result.out_dir).read_config().data["chat_template"] == "chat_template.jinja"


def test_the_word_template_puts_spaces_around_the_chat_tokens(rhyme_run, tmp_path):
    data = write_jsonl(tmp_path / "rhymes.jsonl", {"prompt": "mary", "completion": "had"})
    result = sft(rhyme_run.out_dir, data, out=tmp_path / "sft", val_fraction=0.0, **SFT)
    text = render(result.out_dir, messages("user", "mary", "assistant", "had"))
    assert text == "<|user|> mary <|end|> <|assistant|> had <|end|> "
    tokenizer = tinygpt.load(result.out_dir).tokenizer
    objective = objective_for(rhyme_run.out_dir, data, block_size=6)
    ids = tokenizer.encode(text)  # six words: the rhyme model's context of 6 and the next
    assert rows(objective) == [(ids[:-1], [-100, -100, -100, *tokenizer.encode("had <|end|>")])]


def test_a_rendered_conversation_encodes_to_exactly_the_ids_trained_on(char_run, tmp_path):
    data = conversations(tmp_path, n=2)
    objective = objective_for(char_run, data)
    objective.write_files(RunDir(tmp_path))
    tokenizer = objective.tokenizer
    expected = []
    for doc in map(json.loads, data.read_text().splitlines()):
        ids = tokenizer.encode(render(tmp_path, doc["messages"]))
        reply = doc["messages"][-1]["content"]
        # Targets: the reply's characters and <|end|>; everything before (system, user, role tokens) is -100.
        targets = [-100] * (len(ids) - 1 - len(reply) - 1) + tokenizer.encode(reply) + [CHAT_IDS[3]]
        expected.append((ids[:-1], targets))
    assert rows(objective) == expected
    assert expected[0][0][:3] == [CHAT_IDS[0], *tokenizer.encode("be")]
    x, y = objective.batch(torch.Generator().manual_seed(0))  # what the loop trains on
    lengths = []
    for xr, yr in zip(x.tolist(), y.tolist()):
        n = len(next(r for r in expected if r[0] == xr[: len(r[0])])[0])
        assert (xr[:n], yr[:n]) in expected and set(yr[n:]) <= {-100}  # padding is never a target
        lengths.append(n)
    # Padded to the longest conversation drawn, not to block_size; the tokens counted leave padding out.
    assert x.shape == y.shape == (4, max(lengths)) and max(lengths) < objective.block_size
    assert objective.tokens_per_batch == sum(lengths)


def test_new_token_rows_start_at_the_mean_and_leave_the_old_predictions_alone(char_run, tmp_path):
    result = sft(char_run, conversations(tmp_path), out=tmp_path / "sft", **dict(SFT, max_iters=0))
    base, tuned = tinygpt.load(char_run).model, tinygpt.load(result.out_dir).model
    for name in ("tok_emb.weight", "lm_head.weight", "lm_head.bias"):
        old, new = base.state_dict()[name], tuned.state_dict()[name]
        assert torch.equal(new[:23], old)
        assert torch.allclose(new[23:], old.mean(dim=0).expand_as(new[23:]))
    x = torch.tensor([tinygpt.load(char_run).tokenizer.encode("mary had a lit")])
    old_logits, new_logits = base(x)[0], tuned(x)[0]  # (1, T, 23), (1, T, 27)
    assert torch.allclose(new_logits[..., :23], old_logits, atol=1e-6)
    # Each new token's logit is the mean of the old ones, so its probability is at most 1/23.
    assert F.softmax(new_logits, dim=-1)[..., 23:].max() <= 1 / 23


# ---- the loss ----------------------------------------------------------------------------------------

def test_the_loss_is_the_cross_entropy_of_the_assistant_tokens_alone(char_run, tmp_path):
    data = write_jsonl(tmp_path / "one.jsonl", {"messages": messages("user", "mary", "assistant", "had a")})
    objective = objective_for(char_run, data)
    model = tinygpt.load(sft(char_run, data, out=tmp_path / "sft", **dict(SFT, max_iters=0)).out_dir).model
    x, y = objective.batch(torch.Generator().manual_seed(0))  # four copies of the one conversation
    seen = []  # the logits inside the loss, kept with their gradient

    def keep(module, inputs, out):
        out.retain_grad()
        seen.append(out)

    model.lm_head.register_forward_hook(keep)
    loss = objective.loss(model, (x, y))
    logits = seen[0]  # (4, 12, 27): the batch ends with the conversation's last target
    # "<|user|>mary<|end|><|assistant|>" is 7 tokens, so positions 6..11 predict "had a" and <|end|>.
    reply = objective.tokenizer.encode("had a") + [CHAT_IDS[3]]
    by_hand = F.cross_entropy(logits[:, 6:12].reshape(-1, 27), torch.tensor(reply).repeat(4))
    assert torch.allclose(loss, by_hand, atol=1e-6)
    loss.backward()
    grad = logits.grad.abs().sum(dim=-1)  # (4, 12): how much each position's prediction moves the loss
    assert grad.shape == (4, 12) and grad[:, 6:12].min() > 0 and grad[:, :6].max() == 0


def test_a_user_turn_is_context_not_a_target(char_run, tmp_path):
    """Changing what the user says changes no target: the targets are the reply's, wherever the reply is."""
    a = objective_for(char_run, write_jsonl(tmp_path / "a.jsonl", {"prompt": "mary", "completion": "had a"}))
    b = objective_for(char_run, write_jsonl(tmp_path / "b.jsonl", {"prompt": "its fle", "completion": "had a"}))
    (_, ya), (_, yb) = rows(a)[0], rows(b)[0]
    assert [t for t in ya if t != -100] == [t for t in yb if t != -100] == a.tokenizer.encode("had a") + [26]
    assert len(yb) - len(ya) == 3 and ya.count(-100) == 6 and yb.count(-100) == 9


# ---- input formats -----------------------------------------------------------------------------------

def test_each_input_format_gives_the_same_rows(char_run, tmp_path):
    pair = messages("user", "mary", "assistant", "had a")
    forms = {
        "messages": {"messages": pair, "id": 7},  # other keys are ignored
        "prompt-completion": {"prompt": "mary", "completion": "had a"},
        "conversational prompt-completion": {"prompt": pair[:1], "completion": pair[1:]},
    }
    seen = [rows(objective_for(char_run, write_jsonl(tmp_path / f"{i}.jsonl", doc)))
            for i, doc in enumerate(forms.values())]
    assert seen[0] == seen[1] == seen[2] and len(seen[0]) == 1
    folder = tmp_path / "folder"
    (folder / "b").mkdir(parents=True)
    write_jsonl(folder / "b" / "2.jsonl", {"prompt": "mary", "completion": "had a"})
    write_jsonl(folder / "1.jsonl", forms["messages"], "", forms["messages"])  # a blank line is skipped
    (folder / "notes.txt").write_text("not a conversation")
    assert rows(objective_for(char_run, folder / "1.jsonl")) == seen[0] * 2
    assert rows(objective_for(char_run, folder)) == seen[0] * 3


def test_in_prompt_completion_only_the_completion_is_learnt(char_run, tmp_path):
    few_shot = {"prompt": messages("user", "m", "assistant", "h", "user", "i"), "completion": "w"}
    both = {"messages": messages("user", "m", "assistant", "h", "user", "i", "assistant", "w")}
    shot, every = (rows(objective_for(char_run, write_jsonl(tmp_path / f"{i}.jsonl", d)))[0][1]
                   for i, d in enumerate((few_shot, both)))
    encode = objective_for(char_run, write_jsonl(tmp_path / "x.jsonl", both)).tokenizer.encode
    assert [t for t in shot if t != -100] == encode("w") + [26]
    assert [t for t in every if t != -100] == encode("h") + [26] + encode("w") + [26]


BAD_LINES = {
    "not JSON": ('{"messages": [', "not valid JSON"),
    "not an object": ('["user", "hi"]', 'expected an object with "messages", or with "prompt" and "completion"'),
    "unknown role": ({"messages": messages("tool", "mary", "assistant", "had")}, "unknown role 'tool'"),
    "empty content": ({"messages": messages("user", " ", "assistant", "had")}, "message 1 (user) is empty"),
    "no assistant turn": ({"messages": messages("system", "be", "user", "mary")}, "no assistant message"),
    "content not text": ({"messages": [{"role": "user", "content": 3}, *messages("assistant", "a")]},
                         "content must be a string"),
    "a chat token in the text": ({"prompt": "mary <|end|>", "completion": "had"}, "contains the chat token <|end|>"),
    "a completion by the user": ({"prompt": "mary", "completion": messages("user", "had")},
                                 "the completion holds a 'user' message"),
    "an unknown character": ({"prompt": "Mary", "completion": "had"}, "'M'"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_bad_line_is_named_by_file_and_line(capsys, char_run, tmp_path, case):
    line, problem = BAD_LINES[case]
    data = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "mary", "completion": "had"}, "", line)
    code = main(["sft", str(char_run), "--data", str(data), "--out", str(tmp_path / "out"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"tinygpt: error: {data}:3: ") and problem in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_word_the_word_tokenizer_does_not_know_is_named_with_its_line(capsys, rhyme_run, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "mary had", "completion": "a dog"})
    code = main(["sft", str(rhyme_run.out_dir), "--data", str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"tinygpt: error: {data}:1: unknown word(s) 'dog'")


def test_no_data_or_an_empty_folder_is_refused(capsys, char_run, tmp_path):
    (tmp_path / "empty").mkdir()
    for args, problem in ((["--data", str(tmp_path / "empty")], "no .jsonl files"),
                          (["--data", str(tmp_path / "nope.jsonl")], "does not exist"),
                          ([], "--data FILE.jsonl")):
        assert main(["sft", str(char_run), *args]) == 2
        assert problem in capsys.readouterr().err


# ---- conversations longer than the context -----------------------------------------------------------

def test_a_long_conversation_keeps_its_turns_up_to_the_last_reply_that_fits(char_run, tmp_path):
    # 6 + 5 tokens for the first exchange, 27 for both: the context (16 and the next) holds the first.
    long = {"messages": messages("user", "mary", "assistant", "had", "user", "a little", "assistant", "lamb")}
    data = write_jsonl(tmp_path / "long.jsonl", {"prompt": "its", "completion": "was"}, long)
    objective = objective_for(char_run, data)
    first = objective_for(char_run, write_jsonl(tmp_path / "first.jsonl", {"messages": long["messages"][:2]}))
    assert rows(objective)[1] == rows(first)[0]
    assert len(rows(objective)[1][0]) == 10
    assert objective.notes == [f"1 of 2 conversations are longer than the context (16 tokens and the next): they "
                               f"keep their turns up to the last reply that fits (first: {data}:2)"]
    assert objective.data_info["truncated"] == 1


def test_a_conversation_whose_first_reply_does_not_fit_is_refused(char_run, tmp_path):
    data = write_jsonl(tmp_path / "long.jsonl", {"prompt": "mary had a little lamb", "completion": "its"})
    with pytest.raises(tinygpt.TinyGPTError, match=rf"^{data}:1: the conversation needs 29 tokens up to the end of "
                                                   r"its first reply, but the model's context is 16 tokens"):
        objective_for(char_run, data)


# ---- the same loop as pretraining --------------------------------------------------------------------

def test_validation_holds_out_the_last_conversations(char_run, tmp_path):
    objective = objective_for(char_run, conversations(tmp_path, n=10), val_fraction=0.2)
    assert (len(objective.train_x), len(objective.val_x)) == (8, 2)
    assert objective.val_x.tolist() == objective_for(char_run, conversations(tmp_path, n=10)).train_x[8:].tolist()


def test_an_sft_run_stopped_and_resumed_equals_one_never_stopped(char_run, tmp_path):
    data = conversations(tmp_path)
    straight = sft(char_run, data, out=tmp_path / "straight", **SFT)

    def stop_at_5(trainer):
        if trainer.step == 5:
            trainer.request_stop()

    with pytest.raises(TrainingInterrupted, match="tinygpt sft --resume"):
        sft(char_run, data, out=tmp_path / "stopped", on_step=stop_at_5, **SFT)
    resumed = sft(resume=tmp_path / "stopped", threads=1)
    assert resumed.step == straight.step == 10
    assert resumed.val_loss == straight.val_loss and resumed.train_loss == straight.train_loss  # bit for bit
    strip = lambda records: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]
    assert strip(RunDir(tmp_path / "stopped").read_metrics()) == strip(RunDir(tmp_path / "straight").read_metrics())
    assert straight.val_loss < RunDir(tmp_path / "straight").read_metrics()[0]["val_loss"]  # it learnt


def test_an_sft_run_resumes_only_as_an_sft_run(capsys, char_run, tmp_path):
    out = sft(char_run, conversations(tmp_path), out=tmp_path / "sft", **dict(SFT, max_iters=2)).out_dir
    assert main(["train", "--resume", str(out)]) == 2
    assert f"{out} was made by `tinygpt sft`; continue it with `tinygpt sft --resume {out}`" in capsys.readouterr().err
    assert main(["sft", "--resume", str(char_run)]) == 2
    assert "continue it with `tinygpt train --resume" in capsys.readouterr().err


# ---- talking to it -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chat_run(char_run, tmp_path_factory) -> Path:
    """char_run fine-tuned until it knows two replies by heart."""
    folder = tmp_path_factory.mktemp("chat")
    data = write_jsonl(folder / "two.jsonl", *[{"prompt": "mary", "completion": "had a"},
                                               {"prompt": "its", "completion": "was"}] * 4)
    return sft(char_run, data, out=folder / "run", **dict(SFT, max_iters=100, lr=1e-2, val_fraction=0.0)).out_dir


def test_an_sft_run_loads_and_samples_in_the_chat_format(capsys, chat_run):
    run = tinygpt.load(chat_run)
    prompt = render(chat_run, messages("user", "mary"), add_generation_prompt=True)
    assert run.generate(prompt, max_new_tokens=6, temperature=0) == "had a<|end|>"  # it learnt the reply
    assert main(["sample", str(chat_run), "--prompt", prompt, "--max-new-tokens", "6", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == prompt + "had a<|end|>\n"


def test_run_chat_returns_the_reply_ending_at_the_end_of_turn(chat_run):
    run = tinygpt.load(chat_run)
    pieces = []
    assert run.chat(messages("user", "mary"), temperature=0, stream=pieces.append) == "had a"
    assert "".join(pieces) == "had a"
    assert run.chat(messages("user", "its"), temperature=0, max_new_tokens=50) == "was"


def test_chat_reads_one_message_per_line_and_keeps_the_history(capsys, monkeypatch, chat_run):
    monkeypatch.setattr("sys.stdin", io.StringIO("mary\n\nits\n/reset\nits\n/quit\nmary\n"))
    assert main(["chat", str(chat_run), "--temperature", "0", "--max-new-tokens", "20", "--system", "be"]) == 0
    replies = capsys.readouterr().out.splitlines()
    run, knobs = tinygpt.load(chat_run), dict(temperature=0, max_new_tokens=20)
    first = run.chat(messages("system", "be", "user", "mary"), **knobs)
    second = run.chat(messages("system", "be", "user", "mary", "assistant", first, "user", "its"), **knobs)
    after_reset = run.chat(messages("system", "be", "user", "its"), **knobs)
    assert replies == [first, second, after_reset]  # a blank line is skipped, /quit ends before the last
    assert second != after_reset  # the reply to "its" depends on the history before it


def test_chat_names_the_input_line_it_cannot_read_and_needs_a_chat_template(capsys, monkeypatch, char_run, chat_run):
    monkeypatch.setattr("sys.stdin", io.StringIO("mary\nMary\n"))
    assert main(["chat", str(chat_run), "--temperature", "0"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == ["had a"] and err.startswith("tinygpt: error: stdin:2: the text has 1 character(s)")
    assert main(["chat", str(char_run)]) == 2
    assert "has no chat template (chat_template.jinja)" in capsys.readouterr().err


def test_inspect_and_explain_look_at_a_message_through_the_chat_template(chat_run, char_run, capsys):
    assert main(["inspect", str(chat_run), "--prompt", "mary", "--chat", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ids = tinygpt.load(chat_run).tokenizer.encode("<|user|>mary<|end|><|assistant|>")
    assert result["ids"] == ids and result["tokens"][0] == "<|user|>" and result["tokens"][-1] == "<|assistant|>"
    assert result["positions"][-1]["token"] == "<|assistant|>"  # what comes next: the reply
    assert main(["explain", str(chat_run), "--prompt", "mary", "--chat"]) == 0
    assert "What this GPT does with '<|user|>mary<|end|><|assistant|>'" in capsys.readouterr().out
    assert main(["inspect", str(char_run), "--prompt", "mary", "--chat"]) == 2
    assert "has no chat template" in capsys.readouterr().err
