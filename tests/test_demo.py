"""`tinygpt demo assistant`: built-in data that is the same for the same seed and keeps its held-out
questions out of every stage's training data, a grader that means what it says, and the whole
pipeline (pretrain, sft, reward, rl; and dpo) run through the command on a tiny setting."""

import json

import pytest

from tinygpt.cli import main
from tinygpt.demo.arithmetic import World, exact_answer, grade
from tinygpt.demo.assistant import Recipe, write_data


def test_the_same_seed_gives_the_same_world_and_another_seed_another_split():
    a, b, other = World(seed=3), World(seed=3), World(seed=4)
    assert a.held_out == b.held_out and a.documents() == b.documents()
    assert len(a.held_out) == 68 and len(a.train) == 157  # three tenths of the 225 sums of 0..14
    assert set(a.held_out) != set(other.held_out)
    assert set(a.held_out) | set(a.train) == {(x, y) for x in range(15) for y in range(15)}


def test_held_out_questions_appear_in_no_file_a_stage_trains_on(tmp_path):
    world = World(seed=0)
    files = write_data(world, Recipe(), tmp_path)
    held_out = [f"What is {a} + {b}?" for a, b in world.held_out]
    for name in ("sft", "prompts"):
        text = files[name].read_text(encoding="utf-8")
        assert not [q for q in held_out if q in text], name
    asked = [json.loads(line)["prompt"] for line in files["prompts"].read_text().splitlines()]
    assert len(asked) == 157 and len(files["sft"].read_text().splitlines()) == 90
    # Pretraining states every sum, but never as the question or the answer sentence.
    documents = files["documents"].read_text(encoding="utf-8")
    assert "What is" not in documents and "The answer is" not in documents
    assert all(f"{a} + {b} = {a + b}." in documents for a, b in world.held_out)


def test_the_grader_accepts_only_the_exact_answer_sentence():
    assert grade("What is 3 + 4?", "The answer is 7.") == "right"
    assert grade("What is 3 + 4?", "  The answer is 7. ") == "right"  # the whitespace around a reply is not read
    assert grade("What is 9 + 9?", "The answer is 18.") == "right"
    assert grade("What is 3 + 4?", "The answer is 8.") == "wrong"
    assert grade("What is 3 + 4?", "The answer is 70.") == "wrong"
    for malformed in ("7", "The answer is 7", "The answer is seven.", "3 + 4 = 7.", "The answer is 7.7.", ""):
        assert grade("What is 3 + 4?", malformed) == "malformed", malformed
    assert exact_answer("What is 3 + 4?", "The answer is 7.") == 1.0
    assert exact_answer("What is 3 + 4?", "The answer is 6.") == 0.0
    assert exact_answer("What is 3 + 4?", "7") == 0.0
    with pytest.raises(ValueError, match="not a question of the demo"):
        grade("What is 3 times 4?", "The answer is 12.")


def test_near_misses_are_answer_sentences_a_little_off_and_never_negative():
    pairs = World.near_misses([(3, 4), (0, 0), (9, 9)], per_question=2, seed=0)
    assert len(pairs) == 6 and pairs == World.near_misses([(3, 4), (0, 0), (9, 9)], per_question=2, seed=0)
    for p, (a, b) in zip(pairs, [(3, 4), (3, 4), (0, 0), (0, 0), (9, 9), (9, 9)]):
        wrong = int(p["rejected"][0]["content"].removeprefix("The answer is ").removesuffix("."))
        assert p["chosen"][0]["content"] == f"The answer is {a + b}."
        assert wrong >= 0 and wrong - (a + b) in (-10, -2, -1, 1, 2, 10)


def test_a_preference_pair_chooses_the_answer_sentence_over_the_reply_given():
    assert World.preference_pair(3, 4, "The answer is 8.") == {
        "prompt": [{"role": "user", "content": "What is 3 + 4?"}],
        "chosen": [{"role": "assistant", "content": "The answer is 7."}],
        "rejected": [{"role": "assistant", "content": "The answer is 8."}]}


def test_the_quick_demo_runs_every_stage_and_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "assistant", "--quick", "--out", str(out), "--seed", "1"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    results = json.loads((out / "results.json").read_text())
    # Each stage says what it does, shows its progress as training does, and what it reached.
    for number, stage in enumerate(("base", "sft", "reward", "rl", "dpo"), start=1):
        assert f"stage {number}/5, {stage}: " in printed
        assert f"  {stage}: " in printed
    for verb in ("train", "sft", "reward", "rl", "dpo"):
        assert f"{verb}: 100%" in captured.err, verb
    for stage in ("base", "sft", "rl", "dpo"):
        assert 0.0 <= results[stage]["score"] <= 100.0 and results[stage]["seconds"] > 0
        assert f"{results[stage]['score']:.1f}" in printed
    test_pairs = (out / "data" / "test_pairs.jsonl").read_text().splitlines()
    unseen_pairs = (out / "data" / "unseen_pairs.jsonl").read_text().splitlines()
    assert 0.0 <= results["reward_accuracy"] <= 1.0 and results["reward"]["pairs"] == len(test_pairs)
    assert 0.0 <= results["reward"]["unseen_questions_accuracy"] <= 1.0
    assert results["reward"]["unseen_questions_pairs"] == len(unseen_pairs)
    assert results["rl"]["kl"] >= -1.0  # a sample of the KL; reported, not yet trained toward
    assert "pairwise accuracy" in printed and "KL to sft" in printed and "pair accuracy" in printed
    # The two roads from sft, each with its wall time: both need the pairs sampled from the sft model.
    paths = results["paths"]
    assert paths["dpo_seconds"] == pytest.approx(paths["pairs_seconds"] + results["dpo"]["seconds"])
    assert paths["reward_and_rl_seconds"] == pytest.approx(results["reward"]["seconds"] + results["rl"]["seconds"])
    assert f"from sft: reward model + rl {paths['reward_and_rl_seconds']:.1f}s, dpo" in printed
    assert 0.0 <= results["dpo"]["pair_accuracy"] <= 1.0
    assert len(results["samples"]) == results["held_out_questions"] == 8  # the 25 sums of 0..4, 3/10 held out
    assert all(set(replies) == {"base", "sft", "rl", "dpo"} for replies in results["samples"].values())
    for stage in ("base", "sft", "reward", "rl", "dpo"):
        assert (out / stage / "config.json").is_file()
    # The preference pairs are the sft model's own replies that the grader does not call right (and near
    # misses): those to training questions to learn from, new ones to them and those to held-out
    # questions to score the reward model on, none of them trained on.
    world = World(seed=1, size=5)
    held_out = {f"What is {a} + {b}?" for a, b in world.held_out}
    found = {}
    for name, unseen in (("pairs", False), ("test_pairs", False), ("unseen_pairs", True)):
        pairs = [json.loads(line) for line in (out / "data" / f"{name}.jsonl").read_text().splitlines()]
        asked = {p["prompt"][0]["content"] for p in pairs}
        assert pairs and (asked <= held_out if unseen else not asked & held_out), name
        for p in pairs:
            assert grade(p["prompt"][0]["content"], p["chosen"][0]["content"]) == "right"
            assert grade(p["prompt"][0]["content"], p["rejected"][0]["content"]) != "right"
        found[name] = {json.dumps(p) for p in pairs}
    assert not found["test_pairs"] & found["pairs"]
    for name in ("sft", "prompts"):
        text = (out / "data" / f"{name}.jsonl").read_text()
        assert not [q for q in held_out if q in text], name
    # A second demo into the same folder is refused, in one line.
    assert main(["demo", "assistant", "--quick", "--out", str(out)]) == 2
    assert "already holds a demo" in capsys.readouterr().err
