"""`tinygpt reward`: a trained run's trunk under a scalar head learns from preference pairs (TRL's format)
with the Bradley-Terry loss, through the same loop as pretraining (resume, metrics, run directory), and
`tinygpt eval` reports what each kind of run is for: pairwise accuracy on a reward run, the loss on
the assistant's tokens on an SFT run."""

import json
import math
from pathlib import Path

import pytest
import torch

import tinygpt
from tinygpt.app.launch import reward, sft
from tinygpt.cli import main
from tinygpt.config import TrainConfig
from tinygpt.model import RewardModel
from tinygpt.objectives.preference_pairs import PreferencePairs
from tinygpt.store.rundir import RunDir
from tinygpt.training import TrainingInterrupted

REWARD = dict(max_iters=10, eval_interval=5, warmup_iters=0, lr=3e-3, threads=1, progress=False, batch_size=8)
END = 26  # <|end|>: char_run's 23 characters, then <|system|> <|user|> <|assistant|> <|end|>


def messages(*turns):
    """messages("user", "mary", "assistant", "had") -> the list of role/content dicts."""
    return [{"role": role, "content": text} for role, text in zip(turns[::2], turns[1::2])]


def write_jsonl(path: Path, *lines) -> Path:
    """One line per item: a dict becomes its JSON, a string is written as it is."""
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


def lamb_pairs(path: Path) -> Path:
    """40 pairs a reward model separates easily: the chosen reply holds "lamb" where the rejected holds
    "snow". The last 10 (the validation split) follow a prompt no training pair has."""
    pairs = []
    for prompt in ("mary ", "it ", "the ", "to "):
        for word in ("was", "went", "had", "see", "play"):
            for chosen in (f"{word} lamb", f"lamb {word}"):
                pairs.append({"prompt": prompt, "chosen": chosen, "rejected": chosen.replace("lamb", "snow")})
    return write_jsonl(path, *pairs)


def objective_for(base, data, val_fraction=0.0, block_size=16) -> PreferencePairs:
    cfg = TrainConfig(data=str(data), init_from=str(base), val_fraction=val_fraction, batch_size=4)
    return PreferencePairs.prepare(cfg, block_size, RunDir(Path(data).parent / "unused"))


def rows(objective) -> list[tuple[list[int], list[int]]]:
    """Each pair as (chosen ids, rejected ids) without the padding."""
    r = objective.rows
    return [(c[:cn], j[:jn]) for c, cn, j, jn in zip(r["chosen"].tolist(), r["chosen_len"].tolist(),
                                                     r["rejected"].tolist(), r["rejected_len"].tolist())]


@pytest.fixture(scope="module")
def reward_run(char_run, tmp_path_factory) -> Path:
    """char_run's trunk trained 60 steps on the lamb pairs by `tinygpt reward`, a quarter held out."""
    folder = tmp_path_factory.mktemp("reward")
    data = lamb_pairs(folder / "pairs.jsonl")
    code = main(["reward", str(char_run), "--data", str(data), "--out", str(folder / "run"), "--max-iters", "60",
                 "--eval-interval", "20", "--warmup-iters", "0", "--lr", "3e-3", "--batch-size", "8",
                 "--val-fraction", "0.25", "--threads", "1", "--no-progress"])
    assert code == 0
    return folder / "run"


# ---- the model and the loss --------------------------------------------------------------------------

def test_a_score_is_the_value_at_the_last_real_token_whatever_the_padding(char_run):
    cfg = tinygpt.load(char_run).model_config
    model = RewardModel(cfg).eval()
    torch.nn.init.normal_(model.head.weight)  # a head that is not zero, so the scores differ
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])  # (1, 8)
    alone = model.values(ids)  # (1, 8)
    padded = torch.cat([ids, torch.tensor([[7, 7, 7]])], dim=1)  # (1, 11): three junk tokens after it
    batch = torch.cat([padded, torch.tensor([[2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4]])])  # (2, 11)
    scores = model.score(batch, torch.tensor([8, 11]))  # (2,)
    assert alone.shape == (1, 8) and model.values(batch).shape == (2, 11) and scores.shape == (2,)
    assert torch.allclose(scores[0], alone[0, -1], atol=1e-6)
    assert torch.allclose(scores[1], model.values(batch[1:])[0, -1], atol=1e-6)
    assert not torch.allclose(scores[0], model.values(padded)[0, -1])  # the padding's own value is another


def test_the_loss_on_one_pair_is_minus_log_sigmoid_of_the_reward_difference(char_run, tmp_path):
    data = write_jsonl(tmp_path / "one.jsonl", {"prompt": "mary ", "chosen": "had a", "rejected": "was"})
    objective = objective_for(char_run, data)
    model = RewardModel(tinygpt.load(char_run).model_config)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head.weight)
    encode = objective.tokenizer.encode
    r_chosen = model.score(torch.tensor([encode("mary had a")]), torch.tensor([10])).item()
    r_rejected = model.score(torch.tensor([encode("mary was")]), torch.tensor([8])).item()
    assert abs(r_chosen - r_rejected) > 0.1
    batch = objective.batch(torch.Generator().manual_seed(0))  # four copies of the one pair, padded to 10
    assert batch[0].shape == batch[2].shape == (4, 10)
    assert batch[1].tolist() == [10] * 4 and batch[3].tolist() == [8] * 4
    loss = objective.loss(model, batch)
    assert math.isclose(loss.item(), -math.log(1 / (1 + math.exp(-(r_chosen - r_rejected)))), rel_tol=1e-5)
    # The other way round, the loss is the same number for the opposite difference.
    flipped = objective.loss(model, (batch[2], batch[3], batch[0], batch[1]))
    assert math.isclose(flipped.item(), -math.log(1 / (1 + math.exp(r_chosen - r_rejected))), rel_tol=1e-5)


def test_a_reward_model_starts_from_the_runs_trunk_with_a_zero_head(char_run, tmp_path):
    data = lamb_pairs(tmp_path / "pairs.jsonl")
    out = reward(char_run, data, out=tmp_path / "rw", **dict(REWARD, max_iters=0)).out_dir
    base, state = tinygpt.load(char_run).model.state_dict(), tinygpt.load(out).model.state_dict()
    assert set(base) - set(state) == {"lm_head.weight", "lm_head.bias"}
    assert set(state) - set(base) == {"head.weight", "head.bias"}
    assert all(torch.equal(state[k], base[k]) for k in base if not k.startswith("lm_head."))
    assert state["head.weight"].abs().sum() == 0
    first = RunDir(out).read_metrics()[0]  # every reward is 0, so every pair's loss is log 2
    assert first["train_loss"] == first["val_loss"] == pytest.approx(math.log(2), abs=1e-7)
    assert first["val_accuracy"] == 0.0  # a tie is not a win


# ---- learning ----------------------------------------------------------------------------------------

def test_held_out_accuracy_reaches_0_9_on_an_easy_separable_set(reward_run):
    records = RunDir(reward_run).read_metrics()
    assert [r["step"] for r in records] == [0, 20, 40, 60]
    last = records[-1]
    assert last["val_accuracy"] >= 0.9 and last["train_accuracy"] >= 0.9
    assert last["val_loss"] < 0.3 < math.log(2)
    info = RunDir(reward_run).read_config().data
    assert (info["verb"], info["train_pairs"], info["val_pairs"], info["longest"]) == ("reward", 30, 10, 14)


# ---- input formats -----------------------------------------------------------------------------------

def test_plain_pairs_are_the_prompts_tokens_then_the_replys(char_run, tmp_path):
    explicit = objective_for(char_run, write_jsonl(tmp_path / "a.jsonl",
                                                   {"prompt": "mary ", "chosen": "had", "rejected": "was", "id": 3}))
    implicit = objective_for(char_run, write_jsonl(tmp_path / "b.jsonl",
                                                   {"chosen": "mary had", "rejected": "mary was"}))
    encode = explicit.tokenizer.encode
    assert rows(explicit) == rows(implicit) == [(encode("mary had"), encode("mary was"))]
    assert explicit.tokenizer.vocab_size == 23 and explicit.chat is None  # plain text needs no chat tokens
    folder = tmp_path / "folder"
    (folder / "b").mkdir(parents=True)
    write_jsonl(folder / "b" / "2.jsonl", {"chosen": "mary had", "rejected": "mary was"})
    write_jsonl(folder / "1.jsonl", {"prompt": "it ", "chosen": "was", "rejected": "had"}, "")  # blank: skipped
    (folder / "notes.txt").write_text("not pairs")
    assert rows(objective_for(char_run, folder)) == [(encode("it was"), encode("it had")), *rows(implicit)]


def test_conversational_pairs_are_written_through_the_chat_template(char_run, tmp_path):
    forms = [
        {"prompt": messages("user", "mary"), "chosen": messages("assistant", "had"),
         "rejected": messages("assistant", "was")},
        {"chosen": messages("user", "mary", "assistant", "had"),
         "rejected": messages("user", "mary", "assistant", "was")},
        {"prompt": messages("user", "mary"), "chosen": "had", "rejected": "was"},  # a string reply is the assistant's
    ]
    seen = [objective_for(char_run, write_jsonl(tmp_path / f"{i}.jsonl", doc)) for i, doc in enumerate(forms)]
    encode = seen[0].tokenizer.encode
    expected = [(encode("<|user|>mary<|end|><|assistant|>had<|end|>"),
                 encode("<|user|>mary<|end|><|assistant|>was<|end|>"))]
    assert rows(seen[0]) == rows(seen[1]) == rows(seen[2]) == expected
    assert expected[0][0][-1] == END and seen[0].tokenizer.vocab_size == 27  # the base had no chat tokens: added
    seen[0].write_files(RunDir(tmp_path))  # the reward run keeps the template it read with
    assert (tmp_path / "chat_template.jinja").read_text() == seen[0].chat.source


def test_a_base_runs_own_chat_template_writes_the_conversations(char_run, tmp_path):
    chats = write_jsonl(tmp_path / "chats.jsonl", {"prompt": "mary", "completion": "had"})
    base = sft(char_run, chats, out=tmp_path / "sft", **dict(REWARD, max_iters=0, sample_tokens=0)).out_dir
    template = RunDir(base).chat_template_path
    template.write_text(template.read_text().replace("<|end|>'", "<|end|>\n'"))  # a line break after each turn
    pair = {"prompt": messages("user", "mary"), "chosen": "had", "rejected": "was"}
    objective = objective_for(base, write_jsonl(tmp_path / "pairs.jsonl", pair))
    encode = objective.tokenizer.encode
    assert rows(objective)[0][0] == encode("<|user|>mary<|end|>\n<|assistant|>had<|end|>\n")
    assert objective.tokenizer.vocab_size == 27  # the sft run's tokens, none added


def test_a_sequence_longer_than_the_context_keeps_its_end(char_run, tmp_path):
    data = write_jsonl(tmp_path / "long.jsonl", {"prompt": "mary had a little ", "chosen": "lamb", "rejected": "dog"},
                       {"prompt": "it ", "chosen": "was", "rejected": "had"})
    objective = objective_for(char_run, data)
    encode = objective.tokenizer.encode
    assert rows(objective)[0] == (encode("ad a little lamb"), encode("had a little dog"))  # the last 16 tokens
    assert objective.notes == [f"1 of 2 pairs have a sequence longer than the context (16 tokens): they keep their "
                               f"last 16 tokens, the reply's end (first: {data}:1)"]


BAD_LINES = {
    "not JSON": ('{"chosen": "a', "not valid JSON"),
    "no rejected reply": ({"prompt": "mary ", "chosen": "had"}, 'expected one {"prompt": ..., "chosen": ..., '),
    "a prompt that is a number": ({"prompt": 3, "chosen": "had", "rejected": "was"},
                                  "the prompt must be a string or a list of messages, got int"),
    "an empty reply": ({"prompt": "mary ", "chosen": " ", "rejected": "was"}, "the chosen reply is empty"),
    "the same reply twice": ({"prompt": "mary ", "chosen": "had", "rejected": "had"}, "the same, so the pair prefers"),
    "a user message in a reply": ({"prompt": messages("user", "mary"), "chosen": messages("user", "had"),
                                   "rejected": "was"}, "the chosen reply holds a 'user' message"),
    "a conversation that ends with the user": (
        {"chosen": messages("user", "mary", "assistant", "had", "user", "it"), "rejected": messages("user", "it")},
        "the chosen conversation ends with a 'user' message"),
    "an unknown role": ({"prompt": messages("tool", "mary"), "chosen": "had", "rejected": "was"},
                        "the chosen conversation: message 1 has the unknown role 'tool'"),
    "an unknown character": ({"prompt": "Mary ", "chosen": "had", "rejected": "was"}, "'M'"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_bad_line_is_named_by_file_and_line(capsys, char_run, tmp_path, case):
    line, problem = BAD_LINES[case]
    data = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "mary ", "chosen": "had", "rejected": "was"}, "", line)
    code = main(["reward", str(char_run), "--data", str(data), "--out", str(tmp_path / "out"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"tinygpt: error: {data}:3: ") and problem in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_no_data_a_missing_file_or_a_base_that_is_not_a_gpt_is_refused(capsys, char_run, reward_run, tmp_path):
    for args, problem in (([str(char_run)], "--data FILE.jsonl"),
                          ([str(char_run), "--data", str(tmp_path / "nope.jsonl")], "preference pair file"),
                          ([str(reward_run), "--data", str(tmp_path / "nope.jsonl")], "is a reward model; a reward "
                                                                                     "model starts from a GPT's trunk"),
                          ([str(char_run), "--data", "x.jsonl", "--sample-tokens", "5"], "leave out --sample-tokens")):
        assert main(["reward", *args]) == 2
        assert problem in capsys.readouterr().err


# ---- the same loop as pretraining --------------------------------------------------------------------

def test_a_reward_run_stopped_and_resumed_equals_one_never_stopped(char_run, tmp_path):
    data = lamb_pairs(tmp_path / "pairs.jsonl")
    straight = reward(char_run, data, out=tmp_path / "straight", val_fraction=0.25, **REWARD)

    def stop_at_5(trainer):
        if trainer.step == 5:
            trainer.request_stop()

    with pytest.raises(TrainingInterrupted, match="tinygpt reward --resume"):
        reward(char_run, data, out=tmp_path / "stopped", on_step=stop_at_5, val_fraction=0.25, **REWARD)
    resumed = reward(resume=tmp_path / "stopped", threads=1)
    assert resumed.step == straight.step == 10
    assert resumed.val_loss == straight.val_loss and resumed.train_loss == straight.train_loss  # bit for bit
    strip = lambda records: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]
    assert strip(RunDir(tmp_path / "stopped").read_metrics()) == strip(RunDir(tmp_path / "straight").read_metrics())
    assert straight.val_loss < math.log(2)  # it learnt


def test_a_reward_run_resumes_only_as_a_reward_run(capsys, reward_run):
    assert main(["train", "--resume", str(reward_run)]) == 2
    assert f"{reward_run} was made by `tinygpt reward`; continue it with `tinygpt reward --resume" in \
        capsys.readouterr().err
    assert main(["sft", "--resume", str(reward_run)]) == 2
    assert "continue it with `tinygpt reward --resume" in capsys.readouterr().err


# ---- loading and evaluating --------------------------------------------------------------------------

def test_a_reward_run_loads_and_scores_the_chosen_reply_higher(reward_run):
    run = tinygpt.load(reward_run)
    assert isinstance(run.model, RewardModel) and run.model_config.arch == "reward"
    assert not run.model_config.tie_weights and "lm_head.weight" not in run.model.state_dict()
    encode = run.tokenizer.encode
    texts = ["to had lamb", "to had snow", "to lamb see", "to snow see"]  # held-out pairs
    ids = [encode(t) for t in texts]
    idx = torch.zeros(4, 11, dtype=torch.long)  # (4, 11), right-padded
    for i, row in enumerate(ids):
        idx[i, : len(row)] = torch.tensor(row)
    with torch.no_grad():
        scores = run.model.score(idx, torch.tensor([len(r) for r in ids]))  # (4,)
        values = run.model.values(idx)  # (4, 11)
    assert scores[0] > scores[1] and scores[2] > scores[3]
    assert torch.allclose(scores[2:], values[2:, 10], atol=1e-6)  # 11 tokens each: their last position


def test_eval_on_a_reward_run_reports_its_held_out_pairwise_accuracy(capsys, reward_run, tmp_path):
    best = min(RunDir(reward_run).read_metrics(), key=lambda r: r["val_loss"])
    result = tinygpt.load(reward_run).evaluate()
    assert result == {"split": "val", "loss": pytest.approx(best["val_loss"], rel=1e-6),
                      "accuracy": best["val_accuracy"], "pairs": 10}
    assert main(["eval", str(reward_run)]) == 0
    assert capsys.readouterr().out == (f"val accuracy {best['val_accuracy']:.4f} over 10 preference pairs (the share "
                                       f"whose chosen reply scores higher); loss {best['val_loss']:.4f}\n")
    # A file of pairs: every pair counts, and a reversed preference is scored as wrong.
    flipped = write_jsonl(tmp_path / "flipped.jsonl", {"prompt": "to ", "chosen": "had snow", "rejected": "had lamb"},
                          {"prompt": "to ", "chosen": "lamb see", "rejected": "snow see"})
    assert main(["eval", str(reward_run), "--data", str(flipped), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["split"], result["pairs"], result["accuracy"]) == ("all", 2, 0.5)


def test_eval_on_an_sft_run_reports_the_assistant_token_loss_on_its_held_out_conversations(capsys, char_run, tmp_path):
    chats = [{"prompt": "mary", "completion": "had a"}, {"prompt": "its", "completion": "was"}] * 5
    data = write_jsonl(tmp_path / "chats.jsonl", *chats)
    result = sft(char_run, data, out=tmp_path / "sft", **dict(REWARD, val_fraction=0.2, sample_tokens=0))
    capsys.readouterr()  # its training log
    assert main(["eval", str(result.out_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # The last 2 conversations are held out: "had a" and "was", each with its <|end|>: 6 + 4 targets.
    assert (report["split"], report["conversations"], report["tokens"]) == ("val", 2, 10)
    assert report["loss"] == pytest.approx(result.best_val_loss, rel=1e-6)
    assert report["perplexity"] == pytest.approx(math.exp(report["loss"]))
    assert main(["eval", str(result.out_dir)]) == 0
    assert capsys.readouterr().out == (f"val loss {report['loss']:.4f} over 10 assistant tokens in 2 "
                                       f"conversations; perplexity {report['perplexity']:.2f}\n")
    one = write_jsonl(tmp_path / "one.jsonl", {"prompt": "mary", "completion": "had a"})
    assert tinygpt.load(result.out_dir).evaluate(str(one))["tokens"] == 6
