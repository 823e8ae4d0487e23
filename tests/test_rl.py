"""`tinygpt rl`: an sft run learns from its own replies, scored by a reward, with PPO or GRPO, through
the same loop as every run (exact resume, metrics, the run directory), kept near the frozen sft model
by a KL penalty."""

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch

import tinygpt
from tinygpt.app.launch import reward, rl, sft
from tinygpt.cli import main
from tinygpt.model import build_model
from tinygpt.objectives.rollouts import gae, group_advantages, score_tokens
from tinygpt.store.checkpoint import load_checkpoint, load_tensors
from tinygpt.store.rundir import RunDir
from tinygpt.training import TrainingInterrupted

# Two replies the sft model knows for each prompt; the toy reward likes the ones with a "w".
PAIRS = [("mary", "had a"), ("mary", "was"), ("its", "lamb"), ("its", "went")]
TOY_REWARD = '''\
LIMIT = 3


def has_w(prompt, reply):
    return "w" in reply


def one_argument(reply):
    return 1.0


def says_yes(prompt, reply):
    return "yes"


def fails(prompt, reply):
    return 1 / 0
'''
RL = dict(max_iters=1, eval_interval=1, warmup_iters=0, lr=1e-3, threads=1, progress=False, sample_tokens=0,
          batch_size=8, max_new_tokens=8, val_fraction=0.0, epochs=1)


def write_jsonl(path: Path, *lines) -> Path:
    """One line per item: a dict becomes its JSON, a string is written as it is."""
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sft_run(char_run, tmp_path_factory) -> Path:
    """char_run fine-tuned to answer "mary" and "its" with either of two replies each."""
    folder = tmp_path_factory.mktemp("rl-sft")
    data = write_jsonl(folder / "chats.jsonl", *[{"prompt": p, "completion": c} for p, c in PAIRS * 3])
    return sft(char_run, data, out=folder / "run", max_iters=60, eval_interval=30, warmup_iters=0, lr=1e-2, threads=1,
               progress=False, sample_tokens=0, batch_size=4, val_fraction=0.0).out_dir


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """toy.py (the reward functions) and prompts.jsonl, side by side."""
    folder = tmp_path_factory.mktemp("rl-toy")
    (folder / "toy.py").write_text(TOY_REWARD, encoding="utf-8")
    write_jsonl(folder / "prompts.jsonl", *[{"prompt": p} for p in ["mary", "its"] * 3])
    return folder


def train(sft_run, toy, out, **settings):
    """An rl run on the toy prompts (and reward, unless another is given); returns (result, the objective,
    the rollouts it sampled)."""
    seen = {"rollouts": []}

    def keep(trainer):
        seen["objective"] = objective = trainer.objective
        if not seen["rollouts"] or seen["rollouts"][-1] is not objective.rollout:
            seen["rollouts"].append(objective.rollout)
        if settings.get("on_step"):
            settings["on_step"](trainer)

    knobs = {**RL, "reward": f"{toy / 'toy.py'}:has_w", **{k: v for k, v in settings.items() if k != "on_step"}}
    result = rl(sft_run, prompts=toy / "prompts.jsonl", out=out, on_step=keep, **knobs)
    return result, seen["objective"], seen["rollouts"]


def reply_logprobs(model, rollout) -> torch.Tensor:
    """(N,): each reply's log-probability under `model`, the sum over its tokens."""
    logp, _ = score_tokens(model, rollout.ids, 1.0, contextlib.nullcontext)
    return (logp * rollout.mask).sum(dim=1)


# ---- one step moves the policy towards the reward ----------------------------------------------------

@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_one_step_raises_the_rewarded_replies_and_lowers_the_others(sft_run, toy, tmp_path, algorithm):
    result, objective, rollouts = train(sft_run, toy, tmp_path / algorithm, algorithm=algorithm)
    assert result.step == 1 and len(rollouts) == 1
    rollout = rollouts[0]
    rewarded = rollout.rewards == 1.0
    assert 0 < rewarded.sum() < len(rewarded)  # the rollout holds both kinds, so the step has something to learn
    before = reply_logprobs(tinygpt.load(sft_run).model, rollout)
    after = reply_logprobs(tinygpt.load(result.out_dir, checkpoint="latest").model, rollout)
    change = after - before  # (8,), in nats
    assert change[rewarded].mean() > 0.1 and change[~rewarded].mean() < -0.1
    # Each reply is what the toy reward says of its text.
    texts = [objective.reply_text(ids[1:][mask.bool()].tolist()) for ids, mask in zip(rollout.ids, rollout.mask)]
    assert rewarded.tolist() == ["w" in text for text in texts]


# ---- a reward model ----------------------------------------------------------------------------------

def conversational_pairs(path: Path) -> Path:
    """The replies with a "w" preferred, as conversations (what the policy writes)."""
    turn = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    return write_jsonl(path, *[{"prompt": turn("user", p), "chosen": turn("assistant", good),
                                "rejected": turn("assistant", bad)}
                               for p, good, bad in [("mary", "was", "had a"), ("its", "went", "lamb")] * 4])


@pytest.fixture(scope="module")
def reward_run(sft_run, tmp_path_factory) -> Path:
    """A reward model trained from the sft run on conversational pairs."""
    folder = tmp_path_factory.mktemp("rl-reward")
    return reward(sft_run, conversational_pairs(folder / "pairs.jsonl"), out=folder / "run", max_iters=30,
                  eval_interval=15, warmup_iters=0, lr=1e-2, threads=1, progress=False, batch_size=4,
                  val_fraction=0.0).out_dir


def test_a_reward_run_scores_each_reply_as_the_policy_wrote_it(sft_run, toy, reward_run, tmp_path):
    _, _, rollouts = train(sft_run, toy, tmp_path / "grpo", algorithm="grpo", reward=str(reward_run))
    rollout = rollouts[0]
    config = RunDir(reward_run).read_config()
    model = build_model(config.model)
    model.load_canonical_state_dict(RunDir(reward_run).read_weights()[0])
    lengths = (rollout.mask * torch.arange(rollout.mask.shape[1])).argmax(dim=1) + 2  # prompt and reply
    with torch.no_grad():
        expected = model.eval().score(rollout.ids, lengths)  # (8,): at each reply's last token
    assert torch.allclose(rollout.rewards, expected) and rollout.rewards.std() > 0.5  # real, varied scores


def test_a_reward_run_that_reads_other_ids_is_refused(char_run, sft_run, toy, tmp_path):
    plain = write_jsonl(tmp_path / "plain.jsonl", *[{"prompt": "mary", "chosen": " was", "rejected": " had"}] * 4)
    other = reward(char_run, plain, out=tmp_path / "plain-reward", max_iters=1, threads=1, progress=False,
                   val_fraction=0.0, batch_size=4).out_dir
    with pytest.raises(tinygpt.TinyGPTError, match=f"^the reward model {other} reads other token ids than the "
                                                   "policy writes"):
        train(sft_run, toy, tmp_path / "out", reward=str(other))


# ---- the KL to the frozen reference ------------------------------------------------------------------

def test_the_kl_is_taken_against_the_frozen_sft_model(sft_run, toy, tmp_path):
    # Two steps per rollout, an evaluation after each rollout: each record is one rollout's numbers.
    result, objective, rollouts = train(sft_run, toy, tmp_path / "ppo", max_iters=6, eval_interval=2, epochs=2,
                                        lr=3e-3)
    assert len(rollouts) == 3
    first, last = rollouts[0], rollouts[-1]
    # Before the first update the policy is the reference: the same log-probabilities, a KL of exactly 0.
    assert torch.equal(first.old_logp, first.ref_logp) and first.kl.abs().max() == 0
    records = RunDir(result.out_dir).read_metrics()
    assert [r["step"] for r in records] == [0, 2, 4, 6]
    assert records[0]["kl"] is None and records[1]["kl"] == 0.0
    # Later the reference's log-probabilities are still the sft model's, and the policy has moved away.
    sft_model = tinygpt.load(sft_run).model
    assert torch.allclose(last.ref_logp, score_tokens(sft_model, last.ids, 1.0, contextlib.nullcontext)[0] * last.mask)
    assert records[3]["kl"] == pytest.approx(last.kl.mean().item()) and last.kl.mean() > 0.01
    # The reference's weights are the sft run's, untouched; the policy's are not.
    for name, tensor in sft_model.state_dict().items():
        assert torch.equal(objective.reference.state_dict()[name], tensor)
    assert not torch.equal(objective.policy.state_dict()["tok_emb.weight"], sft_model.state_dict()["tok_emb.weight"])
    assert not any(p.requires_grad for p in objective.reference.parameters())


# ---- advantages, by value ----------------------------------------------------------------------------

def test_grpo_advantages_are_each_reward_against_its_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.1, 0.1, 0.1, 0.1, 3.0, 0.0, 0.0, 0.0])
    advantages = group_advantages(rewards, group_size=4)
    # Mean 0.5 and standard deviation 0.5; a group that all scored alike teaches nothing (not +-1 from
    # rounding in its mean); mean 0.75 and deviation sqrt(1.6875) = 1.299.
    r3 = 1 / math.sqrt(3)
    expected = [1, -1, -1, 1, 0, 0, 0, 0, math.sqrt(3), -r3, -r3, -r3]
    assert advantages.tolist() == pytest.approx(expected, abs=1e-6)
    assert advantages[4:8].tolist() == [0.0] * 4


def test_gae_over_a_reply_by_hand():
    # Row 0: a prompt action (masked), three reply actions, then padding. Row 1: a two-token reply.
    mask = torch.tensor([[0.0, 1, 1, 1, 0], [0, 0, 1, 1, 0]])
    rewards = torch.tensor([[5.0, -0.1, 0.0, 1.0, 7.0], [0, 0, 0.0, 2.0, 0]])  # masked values must not count
    values = torch.tensor([[9.0, 0.5, 0.2, 0.6, 9.0], [0, 0, 1.0, 0.5, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # Row 0, backwards: d3 = 1 - 0.6 = 0.4, A3 = 0.4; d2 = 0.9 * 0.6 - 0.2 = 0.34, A2 = 0.34 + 0.45 * 0.4 = 0.52;
    # d1 = -0.1 + 0.9 * 0.2 - 0.5 = -0.42, A1 = -0.42 + 0.45 * 0.52 = -0.186.
    # Row 1: d3 = 2 - 0.5 = 1.5, A3 = 1.5; d2 = 0.9 * 0.5 - 1 = -0.55, A2 = -0.55 + 0.45 * 1.5 = 0.125.
    assert advantages.tolist()[0] == pytest.approx([0, -0.186, 0.52, 0.4, 0])
    assert advantages.tolist()[1] == pytest.approx([0, 0, 0.125, 1.5, 0])
    assert returns.tolist()[0] == pytest.approx([0, 0.314, 0.72, 1.0, 0])  # A + V on the reply
    assert returns.tolist()[1] == pytest.approx([0, 0, 1.125, 2.0, 0])


# ---- the same loop as every run ----------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_an_rl_run_stopped_and_resumed_equals_one_never_stopped(sft_run, toy, tmp_path, algorithm):
    # Rollouts of two batches, two passes each: stopping at step 3 stops halfway through the second pass.
    settings = dict(algorithm=algorithm, max_iters=6, eval_interval=2, epochs=2, lr=3e-3, batch_size=4,
                    rollout_batches=2)
    straight, _, _ = train(sft_run, toy, tmp_path / "straight", **settings)

    def stop_at_3(trainer):
        if trainer.step == 3:
            trainer.request_stop()

    with pytest.raises(TrainingInterrupted, match="tinygpt rl --resume"):
        train(sft_run, toy, tmp_path / "stopped", on_step=stop_at_3, **settings)
    resumed = rl(resume=tmp_path / "stopped", threads=1)
    assert resumed.step == straight.step == 6
    strip = lambda records: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]  # noqa: E731
    a, b = RunDir(tmp_path / "straight").read_metrics(), RunDir(tmp_path / "stopped").read_metrics()
    assert strip(a) == strip(b) and a[-1]["reward"] is not None  # bit for bit
    one, two = (load_checkpoint(Path(d) / "checkpoints" / "latest.safetensors") for d in (straight.out_dir,
                                                                                          tmp_path / "stopped"))
    for part in ("model", "objective"):  # the policy, and the rollout with (PPO) the value head
        assert one[part].keys() == two[part].keys()
        assert all(torch.equal(one[part][k], two[part][k]) for k in one[part])
    assert ("value_head.weight" in one["objective"]) == (algorithm == "ppo")


def test_the_run_is_a_plain_policy_that_sample_and_chat_load(capsys, sft_run, toy, tmp_path):
    result, _, _ = train(sft_run, toy, tmp_path / "ppo", max_iters=2)
    weights, _ = load_tensors(Path(result.out_dir) / "model.safetensors")
    assert weights.keys() == load_tensors(Path(sft_run) / "model.safetensors")[0].keys()  # no value head
    template = (Path(sft_run) / "chat_template.jinja").read_text()
    assert (Path(result.out_dir) / "chat_template.jinja").read_text() == template
    run = tinygpt.load(result.out_dir, checkpoint="latest")
    assert run.chat([{"role": "user", "content": "mary"}], temperature=0, max_new_tokens=8) in ("had a", "was")
    assert main(["sample", str(result.out_dir), "--checkpoint", "latest", "--prompt", "m",
                 "--max-new-tokens", "3"]) == 0
    assert main(["train", "--resume", str(result.out_dir)]) == 2
    assert f"continue it with `tinygpt rl --resume {result.out_dir}`" in capsys.readouterr().err


def test_the_command_shows_reward_kl_and_reply_length(capsys, monkeypatch, sft_run, toy, tmp_path):
    monkeypatch.chdir(toy)  # toy:has_w is imported from the current directory, as `python -m` would
    out = tmp_path / "grpo"
    code = main(["rl", str(sft_run), "--prompts", "prompts.jsonl", "--reward", "toy:has_w", "--algorithm", "grpo",
                 "--out", str(out), "--max-iters", "4", "--eval-interval", "2", "--batch-size", "8", "--threads", "1",
                 "--max-new-tokens", "8", "--no-progress", "--sample-tokens", "0", "--warmup-iters", "0"])
    stdout = capsys.readouterr().out
    assert code == 0
    records = RunDir(out).read_metrics()
    assert {"reward", "kl", "reply_tokens", "train_loss", "eval_reward", "eval_reply_tokens"} <= records[-1].keys()
    last = records[-1]
    assert (f"step 4: reward {last['reward']:.3f}, kl {last['kl']:.4f}, reply {last['reply_tokens']:.1f} tokens"
            in stdout)
    assert f"done: step 4, reward {last['reward']:.3f}, kl {last['kl']:.4f}, held-out reward" in stdout
    assert 0.0 <= last["reward"] <= 1.0 and 1 <= last["reply_tokens"] <= 8
    assert RunDir(out).read_config().data["rl"]["algorithm"] == "grpo"


def test_resuming_keeps_the_rl_settings_it_began_with(sft_run, toy, tmp_path):
    result, _, _ = train(sft_run, toy, tmp_path / "ppo", max_iters=1)
    with pytest.raises(tinygpt.TinyGPTError, match="^cannot change algorithm, kl_coef when resuming"):
        rl(resume=result.out_dir, algorithm="grpo", kl_coef=0.5)


# ---- bad input ---------------------------------------------------------------------------------------

BAD_PROMPTS = {
    "not JSON": ('{"prompt": ', "not valid JSON"),
    "no prompt": ({"question": "mary"}, 'expected an object with "prompt"'),
    "an empty prompt": ({"prompt": "  "}, "the prompt is empty"),
    "a number": ({"prompt": 3}, "the prompt must be a string or a list of messages, not int"),
    "an unknown role": ({"prompt": [{"role": "tool", "content": "mary"}]}, "unknown role 'tool'"),
    "ends with the reply": ({"prompt": [{"role": "user", "content": "mary"}, {"role": "assistant", "content": "had"}]},
                            "the prompt ends with an assistant message"),
    "an unknown character": ({"prompt": "Mary"}, "'M'"),
    "too long for the context": ({"prompt": "mary had a lamb"}, "leaving no room for a reply in the model's context"),
}


@pytest.mark.parametrize("case", BAD_PROMPTS)
def test_a_bad_prompt_line_is_named_by_file_and_line(capsys, sft_run, toy, tmp_path, case):
    line, problem = BAD_PROMPTS[case]
    prompts = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "mary"}, "", line)
    code = main(["rl", str(sft_run), "--prompts", str(prompts), "--reward", f"{toy / 'toy.py'}:has_w",
                 "--out", str(tmp_path / "out"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"tinygpt: error: {prompts}:3: ") and problem in err
    assert not (tmp_path / "out").exists()  # nothing written


def bad_rewards(toy, char_run):
    return {
        "no colon": ("has_w", "is neither a reward run directory nor module:function"),
        "no such module": ("no_such_module_here:has_w", "cannot import no_such_module_here"),
        "no such file": (f"{toy / 'nope.py'}:has_w", f"there is no file {toy / 'nope.py'}"),
        "no such function": (f"{toy / 'toy.py'}:missing", "toy.py has no function 'missing'"),
        "not a function": (f"{toy / 'toy.py'}:LIMIT", "toy.py.LIMIT is not a function (it is 3)"),
        "one argument": (f"{toy / 'toy.py'}:one_argument", "one_argument must take two arguments, the prompt and the "
                                                           "reply (it is one_argument(reply))"),
        "a language model": (str(char_run), "is a gpt run, not a reward model"),
        "none": ("", "pass the reward: --reward REWARD_RUN"),
    }


@pytest.mark.parametrize("case", ["no colon", "no such module", "no such file", "no such function", "not a function",
                                  "one argument", "a language model", "none"])
def test_a_bad_reward_is_one_line_before_anything_is_written(capsys, sft_run, toy, char_run, tmp_path, case):
    spec, problem = bad_rewards(toy, char_run)[case]
    code = main(["rl", str(sft_run), "--prompts", str(toy / "prompts.jsonl"), "--reward", spec,
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and problem in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("function, problem", [
    ("says_yes", "the reward function {spec} returned 'yes' (a str) for the reply"),
    ("fails", "the reward function {spec} failed on the reply"),
])
def test_a_reward_function_that_misbehaves_is_named(sft_run, toy, tmp_path, function, problem):
    spec = f"{toy / 'toy.py'}:{function}"
    with pytest.raises(tinygpt.TinyGPTError, match=problem.format(spec=spec).replace("(", r"\(").replace(")", r"\)")):
        rl(sft_run, prompts=toy / "prompts.jsonl", reward=spec, out=tmp_path / "out", **RL)


def test_bad_rl_settings_are_refused(sft_run, char_run, toy, tmp_path):
    for settings, problem in ((dict(algorithm="grpo", group_size=1), "group_size must be at least 2"),
                              (dict(group_size=3), "a rollout of 8 replies (batch_size 8 x rollout_batches 1) does not "
                                                   "split into groups of 3"),
                              (dict(algorithm="a2c"), "algorithm must be one of ppo, grpo"),
                              (dict(temperature=0.0), "temperature must be positive")):
        with pytest.raises(tinygpt.TinyGPTError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            train(sft_run, toy, tmp_path / "out", **settings)
    with pytest.raises(tinygpt.TinyGPTError, match=f"^{char_run} has no chat_template.jinja: it was not fine-tuned"):
        rl(char_run, prompts=toy / "prompts.jsonl", reward=f"{toy / 'toy.py'}:has_w", out=tmp_path / "out")


def test_eval_scores_the_greedy_replies_to_the_held_out_prompts(sft_run, toy, tmp_path, capsys):
    result, objective, _ = train(sft_run, toy, tmp_path / "run", algorithm="grpo")
    run = tinygpt.load(tmp_path / "run")
    report = run.evaluate()
    # The same measure as the run's own final evaluation (the best weights are what `load` reads).
    best = [r for r in RunDir(tmp_path / "run").read_metrics() if r["step"] == result.step][-1]
    assert report["reward"] == best["eval_reward"] and report["prompts"] == len(objective.eval_prompts)
    everything = run.evaluate(data=str(toy / "prompts.jsonl"))
    assert everything["split"] == "all" and everything["prompts"] == 6
    assert main(["eval", str(tmp_path / "run")]) == 0
    assert f"reward {report['reward']:.4f} (mean over {report['prompts']} greedy replies" in capsys.readouterr().out


def test_a_reward_run_cannot_be_sampled_inspected_or_trained_as_text(reward_run, capsys):
    for argv in (["sample", str(reward_run), "--prompt", "mary"], ["inspect", str(reward_run), "--prompt", "mary"],
                 ["explain", str(reward_run), "--prompt", "mary"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "is a reward model: it scores a text with one number and writes none" in err and "\n" not in err
    assert main(["train", "--arch", "reward", "--data", "rhyme", "--max-iters", "1"]) == 2
    assert "tinygpt reward RUN --data PAIRS.jsonl" in capsys.readouterr().err
