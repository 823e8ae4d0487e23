"""`tinygpt dpo`: an sft run learns from preference pairs (TRL's format) with Direct Preference Optimization
against itself frozen, through the same loop as every objective (resume, metrics, run directory); the
loss is DPO's on hand-computed numbers, the metrics carry TRL's names, `tinygpt eval` reports held-out
accuracy and margin, and bad input is one line that leaves every saved file as it was."""

import json
import math
from pathlib import Path

import pytest
import torch
from refusals import checksums, one_line, run_cli

import tinygpt
from tinygpt.cli import main
from tinygpt.config import TrainConfig
from tinygpt.config.dpo import DPOConfig
from tinygpt.core.tokens import IGNORE
from tinygpt.objectives.dpo import DirectPreference, dpo_loss, sequence_logps
from tinygpt.store.checkpoint import tensors_checksum
from tinygpt.store.rundir import RunDir
from tinygpt.training import TrainingInterrupted
from tinygpt.training.runtime import Runtime

DPO = dict(max_iters=10, eval_interval=5, warmup_iters=0, lr=3e-3, threads=1, progress=False, batch_size=8,
           sample_tokens=0)


def write_jsonl(path: Path, *lines) -> Path:
    """One line per item: a dict becomes its JSON, a string is written as it is."""
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


def lamb_pairs(path: Path) -> Path:
    """40 pairs that are easy to separate: the chosen reply holds "lamb" where the rejected holds "snow"."""
    pairs = []
    for prompt in ("mary ", "it ", "the ", "to "):
        for word in ("was", "went", "had", "see", "play"):
            for chosen in (f"{word} lamb", f"lamb {word}"):
                pairs.append({"prompt": prompt, "chosen": chosen, "rejected": chosen.replace("lamb", "snow")})
    return write_jsonl(path, *pairs)


def objective_for(base, data, block_size=16, **settings) -> DirectPreference:
    cfg = TrainConfig(data=str(data), init_from=str(base), val_fraction=0.0, batch_size=4)
    return DirectPreference.prepare(cfg, DPOConfig(**settings), block_size, RunDir(Path(data).parent / "unused"))


# ---- the loss -------------------------------------------------------------------------------------------

def test_the_dpo_loss_of_a_hand_computed_pair():
    # The policy raised the chosen reply by 1 nat over the reference and lowered the rejected one by 1: margin 2.
    logp = torch.tensor([-3.0]), torch.tensor([-5.0])
    ref = torch.tensor([-4.0]), torch.tensor([-4.0])
    sigmoid = dpo_loss(*logp, *ref, DPOConfig(beta=0.1))
    assert sigmoid.item() == pytest.approx(math.log(1 + math.exp(-0.2)), abs=1e-7)  # -log sigmoid(0.1 x 2) = 0.5981
    # IPO on per-token means: chosen 1 nat over 2 tokens, rejected -1 over 4: (0.5 + 0.25 - 1 / 0.2)^2 = 18.0625
    ipo = dpo_loss(*logp, *ref, DPOConfig(beta=0.1, loss_type="ipo"), torch.tensor([2]), torch.tensor([4]))
    assert ipo.item() == pytest.approx(18.0625, abs=1e-5)
    assert dpo_loss(*ref, *ref, DPOConfig()).item() == pytest.approx(math.log(2))  # the policy is the reference


def test_a_replys_log_probability_sums_its_own_tokens_only(char_run, tmp_path):
    data = write_jsonl(tmp_path / "one.jsonl", {"prompt": "mary ", "chosen": "had a", "rejected": "was"})
    objective = objective_for(char_run, data)
    encode = objective.tokenizer.encode
    assert objective.rows["chosen_x"][0, :9].tolist() == encode("mary had ")
    assert objective.rows["chosen_y"][0, :9].tolist() == [IGNORE] * 4 + encode("had a")  # the reply's 5 tokens
    assert objective.rows["rejected_y"][0, :7].tolist() == [IGNORE] * 4 + encode("was")
    model = tinygpt.load(char_run).model.eval()
    with torch.no_grad():
        logits, _ = model(torch.tensor([encode("mary had a")]))  # (1, 10, V)
        by_hand = sum(torch.log_softmax(logits[0, t], -1)[token].item()
                      for t, token in zip(range(4, 9), encode("had a")))
        x, y = objective.rows["chosen_x"][:1].long(), objective.rows["chosen_y"][:1].long()
        assert sequence_logps(model, x, y).item() == pytest.approx(by_hand, abs=1e-5)


def test_conversational_pairs_score_the_assistants_reply_after_the_shared_prompt(chat_run, tmp_path):
    user = [{"role": "user", "content": "mary"}]
    data = write_jsonl(tmp_path / "chat.jsonl",
                       {"prompt": user, "chosen": [{"role": "assistant", "content": "had a"}],
                        "rejected": [{"role": "assistant", "content": "was"}]},
                       {"chosen": user + [{"role": "assistant", "content": "lamb"}],  # implicit prompt
                        "rejected": user + [{"role": "assistant", "content": "snow"}]})
    objective = objective_for(chat_run, data)
    tok = objective.tokenizer
    for row, reply in ((0, "had a"), (1, "lamb")):
        y = objective.rows["chosen_y"][row]
        assert tok.decode([t for t in y.tolist() if t != IGNORE]) == reply + "<|end|>"


# ---- training -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dpo_run(char_run, tmp_path_factory) -> Path:
    """char_run trained 30 steps by `tinygpt dpo` on the lamb pairs, a quarter held out."""
    folder = tmp_path_factory.mktemp("dpo")
    data = lamb_pairs(folder / "pairs.jsonl")
    code = main(["dpo", str(char_run), "--data", str(data), "--out", str(folder / "run"), "--max-iters", "30",
                 "--eval-interval", "10", "--warmup-iters", "0", "--lr", "3e-3", "--batch-size", "8",
                 "--val-fraction", "0.25", "--threads", "1", "--no-progress", "--sample-tokens", "0"])
    assert code == 0
    return folder / "run"


def test_dpo_steps_raise_the_held_out_margin_while_the_reference_stays_frozen(char_run, dpo_run):
    records = RunDir(dpo_run).read_metrics()
    first, last = records[0], records[-1]
    # Step 0: the policy is the reference, so every implicit reward is 0 and every pair's loss log 2.
    assert first["val_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["eval_rewards/margins"] == 0.0 and first["eval_rewards/accuracies"] == 0.0
    assert last["eval_rewards/accuracies"] == 1.0 and last["eval_rewards/margins"] > 0.5
    assert last["eval_rewards/chosen"] > 0 > last["eval_rewards/rejected"]
    assert last["logps/chosen"] > first["logps/chosen"] and last["logps/rejected"] < first["logps/rejected"]
    assert set(last) >= {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                         "logps/chosen", "logps/rejected"}  # TRL's names, for the training pairs too
    # The reference is the sft run as it was: its weights, and the log-probabilities the run kept of them.
    base, policy = tinygpt.load(char_run).model.state_dict(), tinygpt.load(dpo_run).model.state_dict()
    assert not torch.equal(base["tok_emb.weight"], policy["tok_emb.weight"])
    objective = DirectPreference.prepare(RunDir(dpo_run).read_config().train, DPOConfig(), 16, RunDir(dpo_run),
                                         resume=True)
    objective.score_reference(tinygpt.load(char_run).model, Runtime.local(torch.device("cpu")))
    kept = RunDir(dpo_run).read_checkpoint("latest")["objective"]["reference_logps"]
    assert torch.equal(kept, objective.reference)
    # ... and the sft run's weights are still the ones the reference was scored from.
    weights, _ = RunDir(char_run).read_weights("best")
    assert RunDir(dpo_run).read_config().data["reference_checksum"] == tensors_checksum(weights, {})


def test_a_dpo_run_stopped_and_resumed_equals_one_never_stopped(char_run, tmp_path):
    data = lamb_pairs(tmp_path / "pairs.jsonl")
    straight = tinygpt.dpo(char_run, data, out=tmp_path / "straight", val_fraction=0.25, **DPO)

    def stop_at_5(trainer):
        if trainer.step == 5:
            trainer.request_stop()

    with pytest.raises(TrainingInterrupted, match="tinygpt dpo --resume"):
        tinygpt.dpo(char_run, data, out=tmp_path / "stopped", on_step=stop_at_5, val_fraction=0.25, **DPO)
    resumed = tinygpt.dpo("", "", resume=tmp_path / "stopped", threads=1)
    assert resumed.step == straight.step == 10
    assert resumed.val_loss == straight.val_loss and resumed.train_loss == straight.train_loss  # bit for bit
    strip = lambda records: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]
    assert strip(RunDir(tmp_path / "stopped").read_metrics()) == strip(RunDir(tmp_path / "straight").read_metrics())
    assert straight.val_loss < math.log(2)  # it learnt
    saved = [RunDir(tmp_path / name).read_config().data for name in ("straight", "stopped")]
    assert saved[0]["reference_checksum"] == saved[1]["reference_checksum"]  # kept for `tinygpt eval`


def test_ipo_trains_through_the_same_loop(char_run, tmp_path):
    data = lamb_pairs(tmp_path / "pairs.jsonl")
    result = tinygpt.dpo(char_run, data, out=tmp_path / "ipo", loss_type="ipo", beta=0.5, val_fraction=0.25, **DPO)
    first, last = RunDir(result.out_dir).read_metrics()[0], RunDir(result.out_dir).read_metrics()[-1]
    assert first["val_loss"] == pytest.approx(1.0, abs=1e-6)  # (0 - 1 / (2 x 0.5))^2
    assert last["val_loss"] < first["val_loss"] and last["eval_rewards/margins"] > 0
    assert RunDir(result.out_dir).read_config().data["dpo"] == {"beta": 0.5, "loss_type": "ipo", "sft_weight": 0.0}


def test_the_sft_term_adds_the_chosen_replies_mean_loss_per_token(char_run, tmp_path):
    data = write_jsonl(tmp_path / "two.jsonl", {"prompt": "mary ", "chosen": "had a", "rejected": "was"},
                       {"prompt": "it ", "chosen": "was", "rejected": "had a"})
    plain, rpo = objective_for(char_run, data), objective_for(char_run, data, sft_weight=0.5)
    model = tinygpt.load(char_run).model.eval()
    batch = plain.take(torch.arange(2))
    with torch.no_grad():
        logp = sequence_logps(model, batch[0], batch[1])  # (2,): the chosen replies, 5 and 3 tokens
        expected = plain.loss(model, batch).item() + 0.5 * -logp.sum().item() / 8
        assert rpo.loss(model, batch).item() == pytest.approx(expected, abs=1e-6)


# ---- eval and resume -----------------------------------------------------------------------------------

def test_eval_on_a_dpo_run_reports_held_out_accuracy_and_margin(capsys, dpo_run):
    assert main(["eval", str(dpo_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    last = RunDir(dpo_run).read_metrics()[-1]
    assert result["split"] == "val" and result["pairs"] == 10
    assert result["accuracy"] == last["eval_rewards/accuracies"] == 1.0
    assert result["margin"] == pytest.approx(last["eval_rewards/margins"], abs=1e-6)
    assert main(["eval", str(dpo_run)]) == 0
    assert capsys.readouterr().out.startswith("val accuracy 1.0000 over 10 preference pairs")


def test_a_dpo_run_resumes_only_as_a_dpo_run_with_its_own_beta(capsys, dpo_run):
    assert main(["reward", "--resume", str(dpo_run)]) == 2
    assert "continue it with `tinygpt dpo --resume" in capsys.readouterr().err
    before = checksums(dpo_run)
    code, _, err = run_cli(capsys, "dpo", "--resume", dpo_run, "--beta", "0.5")
    one_line(code, err, "cannot change beta when resuming")
    assert checksums(dpo_run) == before


# ---- bad input: one line, nothing saved changed ----------------------------------------------------------

def test_bad_input_is_one_line_and_changes_nothing_saved(capsys, char_run, tmp_path):
    before = checksums(char_run)
    pairs = lamb_pairs(tmp_path / "pairs.jsonl")
    chat = write_jsonl(tmp_path / "chat.jsonl", {"prompt": [{"role": "user", "content": "mary"}],
                                                  "chosen": "had a", "rejected": "was"})
    long = write_jsonl(tmp_path / "long.jsonl", {"prompt": "mary", "chosen": "had", "rejected": "was"},
                       {"prompt": "mary had a little lamb", "chosen": "its", "rejected": "the"})
    garbled = write_jsonl(tmp_path / "garbled.jsonl", {"prompt": "mary", "chosen": "had", "rejected": "was"},
                          '{"prompt": "mary", "chosen": ')
    out = tmp_path / "out"
    cases = [
        ([chat], f"{chat}:1: the pair is a conversation, but {char_run} has no chat_template.jinja"),
        ([long], f"{long}:2: the prompt is 22 tokens, and the model's context is 16: no token of the chosen reply"),
        ([tmp_path / "missing.jsonl"], "missing.jsonl"),
        ([garbled], f"{garbled}:2"),
        ([pairs, "--beta", "nan"], "beta must be a finite number, got nan"),
        ([pairs, "--beta", "-0.1"], "beta must be a positive number, got -0.1"),
        ([pairs, "--loss-type", "hinge"], "invalid choice: 'hinge'"),
        ([pairs, "--sft-weight", "-1"], "sft_weight must be 0 or more, got -1.0"),
    ]
    for extra, fragment in cases:
        code, _, err = run_cli(capsys, "dpo", char_run, "--data", *extra, "--out", out, "--threads", 1, "--no-progress")
        one_line(code, err, fragment)
        assert not out.exists()
    one_line(*run_cli(capsys, "dpo", char_run, "--out", out)[::2], "pass the preference pairs to learn from")
    one_line(*run_cli(capsys, "dpo", "--data", pairs)[::2], "name the sft run to train: tinygpt dpo SFT_RUN")
    assert checksums(char_run) == before


def test_eval_needs_the_reference_the_run_was_trained_against(capsys, char_run, copy_run, tmp_path):
    base = copy_run(char_run)
    run = tinygpt.dpo(base, lamb_pairs(tmp_path / "pairs.jsonl"), out=tmp_path / "d", val_fraction=0.25,
                      **dict(DPO, max_iters=2, eval_interval=2)).out_dir
    base.rename(tmp_path / "moved")
    code, _, err = run_cli(capsys, "eval", run)
    one_line(code, err, f"{run} is scored against its reference, {base}, which is no longer there")
