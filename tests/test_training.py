"""Training: models learn, the run directory describes itself without pickle, and a run stopped at
any step (by code or by Ctrl-C) resumes to exactly the numbers of a run that was never stopped."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import tinygpt
from tinygpt.data import encode_corpus, rhyme_text, split_ids
from tinygpt.store.checkpoint import load_checkpoint, read_metrics
from tinygpt.training import TrainingInterrupted
from tinygpt.training.losses import split_loss

RUN_FILES = ["config.json", "tokenizer.json", "model.safetensors", "metrics.jsonl", "checkpoints/latest.safetensors",
             "checkpoints/best.safetensors"]


# ---- models learn ----------------------------------------------------------------------------------

def test_rhyme_model_learns_the_rhyme(rhyme_run):
    records = read_metrics(rhyme_run.out_dir / "metrics.jsonl")
    assert records[0]["step"] == 0 and records[0]["train_loss"] > 3.0  # ln 35 = 3.56 before training
    assert rhyme_run.step == 1500
    assert rhyme_run.train_loss < 0.5
    assert rhyme_run.val_loss is None and rhyme_run.best_val_loss is None  # it trains on the whole text


def test_a_small_gpt_beats_the_bigram_on_tiny_shakespeare_after_300_steps(shakespeare_file, tmp_path):
    common = dict(data="shakespeare", tokenizer="char", block_size=32, batch_size=16, max_iters=300,
                  eval_interval=300, eval_max_tokens=8192, lr=3e-3, warmup_iters=30, progress=False,
                  sample_tokens=0, threads=1)
    gpt = tinygpt.train(out=str(tmp_path / "gpt"), n_layer=2, n_head=4, n_embd=64, **common)
    bigram = tinygpt.train(out=str(tmp_path / "bigram"), arch="bigram", **common)
    assert bigram.num_params == 65 * 65
    assert gpt.val_loss < bigram.val_loss - 0.1
    assert gpt.val_loss < 2.7  # from ln 65 = 4.17
    first = read_metrics(tmp_path / "gpt" / "metrics.jsonl")[0]
    assert first["val_loss"] == pytest.approx(4.17, abs=0.1)


def test_zero_steps_evaluates_the_untrained_model_and_stops(tiny_corpus, tmp_path, tiny_settings):
    result = tinygpt.train(data=str(tiny_corpus), out=str(tmp_path / "run"), max_iters=0, **tiny_settings)
    assert result.step == 0
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [0]


# ---- the run directory -------------------------------------------------------------------------------

def test_metrics_has_one_record_per_evaluation(char_run):
    records = read_metrics(char_run / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 20, 40]
    for r in records:
        assert set(r) == {"step", "tokens", "elapsed_s", "lr", "train_loss", "val_loss"}
        assert r["tokens"] == r["step"] * 4 * 16  # batch_size x block_size per step
        assert r["val_loss"] > 0 and r["train_loss"] > 0 and r["lr"] > 0
    assert records[-1]["val_loss"] < records[0]["val_loss"]
    assert records[0]["elapsed_s"] <= records[1]["elapsed_s"] <= records[2]["elapsed_s"]


def test_run_directory_describes_itself(char_run, tiny_corpus):
    for name in RUN_FILES:
        assert (char_run / name).is_file(), name
    doc = json.loads((char_run / "config.json").read_text())
    assert doc["model"]["vocab_size"] == 23 and doc["model"]["n_embd"] == 16
    assert doc["train"]["max_iters"] == 40 and doc["train"]["data"] == str(tiny_corpus)
    assert doc["data"]["characters"] == 1353
    assert (doc["data"]["train_tokens"], doc["data"]["val_tokens"]) == (1217, 136)  # int(0.9 * 1353) train
    assert doc["num_params"] == tinygpt.load(char_run).model.num_params()
    assert json.loads((char_run / "tokenizer.json").read_text())["tinygpt_tokenizer"] == "char"


def test_no_file_of_a_run_is_a_pickle(char_run, rhyme_run):
    for run in (char_run, rhyme_run.out_dir):
        files = [p for p in Path(run).rglob("*") if p.is_file()]
        assert len(files) >= len(RUN_FILES)
        for path in files:
            if path.suffix == ".safetensors":  # its first 8 bytes are a header length, whatever they look like
                with safe_open(str(path), framework="pt") as f:
                    assert f.keys()
                continue
            head = path.read_bytes()[:4]
            assert not (head[:1] == b"\x80" and 2 <= head[1] <= 5), f"{path} is a pickle"
            assert head != b"PK\x03\x04", f"{path} is a zip (torch.save) archive"


def test_loading_and_resuming_never_unpickle(char_run, copy_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert tinygpt.load(char_run).generate("mary", max_new_tokens=5, seed=0)
    assert tinygpt.load(char_run, checkpoint="latest").evaluate()["loss"] > 0
    run = copy_run(char_run)
    assert tinygpt.train(resume=str(run), max_iters=42).step == 42


def test_eval_of_the_saved_model_equals_the_best_validation_loss_of_training(char_run):
    records = read_metrics(char_run / "metrics.jsonl")
    best = min(r["val_loss"] for r in records)
    result = tinygpt.load(char_run).evaluate()
    assert result["split"] == "val" and result["tokens"] == 136 - 1  # the last 10%: every token but the first
    assert result["loss"] == pytest.approx(best, abs=1e-5)


# ---- resume equals uninterrupted ---------------------------------------------------------------------

@pytest.mark.parametrize("optimizer, stop_at, windows", [("adamw", 7, ""), ("adamw", 10, ""), ("muon", 13, ""),
                                                         ("muon", 7, "4:0.2,8:0.5")])
def test_a_run_stopped_and_resumed_computes_exactly_the_uninterrupted_run(tiny_corpus, tmp_path, tiny_settings,
                                                                          optimizer, stop_at, windows):
    # Dropout consumes random numbers and cosine decay depends on the step: both must be restored. A window
    # schedule stopped in its second stage resumes in it.
    settings = dict(tiny_settings, data=str(tiny_corpus), max_iters=20, eval_interval=5, dropout=0.2, grad_accum=2,
                    lr_schedule="cosine", warmup_iters=3, optimizer=optimizer, window_schedule=windows)
    tinygpt.train(out=str(tmp_path / "straight"), **settings)

    out = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted) as e:
        tinygpt.train(out=str(out), on_step=lambda t: t.request_stop() if t.step == stop_at else None, **settings)
    assert e.value.step == stop_at and f"--resume {out}" in str(e.value)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")][-1] == stop_at // 5 * 5
    resumed = tinygpt.train(resume=str(out))

    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    stopped = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in stopped] == [0, 5, 10, 15, 20]
    for a, b in zip(straight, stopped):
        assert (a["step"], a["tokens"], a["lr"]) == (b["step"], b["tokens"], b["lr"])
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]  # bit for bit
    assert resumed.step == 20
    straight_w = tinygpt.load(tmp_path / "straight", checkpoint="latest").model.state_dict()
    resumed_w = tinygpt.load(out, checkpoint="latest").model.state_dict()
    assert all(torch.equal(straight_w[k], resumed_w[k]) for k in straight_w)


def test_resuming_a_finished_run_changes_nothing(char_run, copy_run):
    run = copy_run(char_run)
    before = (run / "metrics.jsonl").read_text()
    result = tinygpt.train(resume=str(run))
    assert result.step == 40
    assert (run / "metrics.jsonl").read_text() == before  # no duplicate record for the last step


def test_resuming_can_extend_a_run(char_run, copy_run):
    run = copy_run(char_run)
    result = tinygpt.train(resume=str(run), max_iters=60)
    assert result.step == 60
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [0, 20, 40, 60]


def test_ctrl_c_saves_exits_130_and_names_resume(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinygpt", "train", "--data", str(tiny_corpus), "--out", str(out),
           "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
           "--max-iters", "1000000", "--eval-interval", "5", "--threads", "1", "--no-progress",
           "--sample-tokens", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # Interrupt once the evaluation at step 5 is recorded (its checkpoint is written just before).
        metrics = out / "metrics.jsonl"
        while not (metrics.exists() and '"step": 5,' in metrics.read_text()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "training never saved a checkpoint"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert f"Continue with: tinygpt train --resume {out}" in stderr
    assert "Traceback" not in stderr
    step = load_checkpoint(out / "checkpoints" / "latest.safetensors")["progress"]["step"]
    assert step >= 5
    run = tinygpt.load(out, checkpoint="latest")
    assert len(run.generate("mary", max_new_tokens=10, seed=0)) == 10
    assert tinygpt.train(resume=str(out), max_iters=step + 2).step == step + 2


def test_a_second_ctrl_c_quits_at_once_and_says_which_checkpoint_remains(tiny_corpus, tmp_path, tiny_settings):
    out = tmp_path / "run"

    def press_ctrl_c_twice(trainer):
        if trainer.step == 7:
            os.kill(os.getpid(), signal.SIGINT)  # finish the step and save...
            os.kill(os.getpid(), signal.SIGINT)  # ...no: quit now

    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as e:
        tinygpt.train(data=str(tiny_corpus), max_iters=20, eval_interval=5, out=str(out), on_step=press_ctrl_c_twice,
                      **tiny_settings)
    assert e.value.step == 5  # the last evaluation saved step 5; step 7 was never saved
    assert str(e.value) == f"quit at step 7 without saving; continue from the step-5 checkpoint: " \
                           f"tinygpt train --resume {out}"
    assert load_checkpoint(out / "checkpoints" / "latest.safetensors")["progress"]["step"] == 5
    assert signal.getsignal(signal.SIGINT) is handler_before  # the trainer's handler is gone again
    assert tinygpt.train(resume=str(out)).step == 20


# ---- damaged files -----------------------------------------------------------------------------------

def test_a_leftover_temporary_file_does_not_matter(char_run, copy_run):
    run = copy_run(char_run)
    (run / ".model.safetensors.tmp").write_bytes(b"half a file from a killed save")
    (run / "checkpoints" / ".latest.safetensors.tmp").write_bytes(b"\x00" * 10)
    assert tinygpt.load(run).generate("mary", max_new_tokens=5, seed=0) == \
        tinygpt.load(char_run).generate("mary", max_new_tokens=5, seed=0)


@pytest.mark.parametrize("keep", [0, 7, 100, -50])
def test_a_truncated_weights_file_is_a_clear_error_naming_it(char_run, copy_run, keep):
    run = copy_run(char_run)
    path = run / "model.safetensors"
    payload = path.read_bytes()
    path.write_bytes(payload[:keep])
    with pytest.raises(tinygpt.TinyGPTError) as e:
        tinygpt.load(run)
    assert f"{path} is truncated or corrupted" in str(e.value)
    assert tinygpt.load(run, checkpoint="latest").generate("mary", max_new_tokens=3, seed=0)


def test_a_missing_weights_file_is_named(char_run, copy_run):
    run = copy_run(char_run)
    (run / "model.safetensors").unlink()
    with pytest.raises(tinygpt.TinyGPTError, match="model.safetensors is missing"):
        tinygpt.load(run)


# ---- fine-tuning ------------------------------------------------------------------------------------

FINE_TUNE = dict(max_iters=10, eval_interval=5, warmup_iters=0, lr=3e-3, threads=1, progress=False, sample_tokens=0)


@pytest.fixture
def new_text(tmp_path) -> Path:
    """The rhyme's lines in reverse order: new text, in characters the char_run model knows."""
    path = tmp_path / "new.txt"
    path.write_text("\n".join(reversed(rhyme_text().splitlines())) * 3, encoding="utf-8")
    return path


def test_fine_tuning_starts_from_the_runs_weights_with_its_model_and_tokenizer(char_run, new_text, tmp_path):
    out = tmp_path / "tuned"
    tinygpt.train(init_from=str(char_run), data=str(new_text), out=str(out), **FINE_TUNE)
    # Step 0 is the source model itself, scored on the new text's validation split.
    source = tinygpt.load(char_run)
    block = source.model_config.block_size
    val = split_ids(encode_corpus(source.tokenizer, new_text.read_text()), 0.1, block).val
    total, count = split_loss(source.model, val, block, "cpu")
    records = read_metrics(out / "metrics.jsonl")
    assert records[0]["step"] == 0 and records[0]["val_loss"] == pytest.approx(total / count, abs=1e-5)
    assert records[-1]["val_loss"] < records[0]["val_loss"] - 0.05  # and it learns the new text
    assert (out / "tokenizer.json").read_text() == (char_run / "tokenizer.json").read_text()
    doc = json.loads((out / "config.json").read_text())
    assert doc["model"] == json.loads((char_run / "config.json").read_text())["model"]
    assert doc["train"]["init_from"] == str(char_run) and doc["train"]["data"] == str(new_text)


def test_a_fine_tuned_run_resumes_to_exactly_the_uninterrupted_one(char_run, new_text, tmp_path):
    settings = dict(FINE_TUNE, lr_schedule="constant")  # the same rates whatever max_iters says
    straight = tinygpt.train(init_from=str(char_run), data=str(new_text), out=str(tmp_path / "a"), **settings)
    tinygpt.train(init_from=str(char_run), data=str(new_text), out=str(tmp_path / "b"), **dict(settings, max_iters=5))
    resumed = tinygpt.train(resume=str(tmp_path / "b"), max_iters=10)  # from its own checkpoint, not the source
    assert resumed.step == straight.step == 10
    assert resumed.val_loss == pytest.approx(straight.val_loss, abs=1e-6)
    with pytest.raises(tinygpt.TinyGPTError, match="cannot change init_from when resuming"):
        tinygpt.train(resume=str(tmp_path / "b"), init_from=str(tmp_path / "a"), max_iters=12)


@pytest.mark.parametrize("settings, message", [
    (dict(n_embd=32), "cannot change model setting(s) n_embd when fine-tuning"),
    (dict(tokenizer="bpe"), "the tokenizer comes from"),
    (dict(data="shakespeare"), "character(s) this model never saw in training"),
])
def test_fine_tuning_refuses_what_the_weights_cannot_take(char_run, tmp_path, settings, message, shakespeare_file):
    with pytest.raises(tinygpt.TinyGPTError) as e:
        tinygpt.train(init_from=str(char_run), out=str(tmp_path / "tuned"), **dict(FINE_TUNE, **settings))
    assert message in str(e.value)
    assert not (tmp_path / "tuned").exists()


# ---- other tokenizers, time budgets -------------------------------------------------------------------

def test_a_bpe_run_saves_its_tokenizer_and_samples_text_that_round_trips(tiny_corpus, tmp_path, tiny_settings):
    out = tmp_path / "bpe"
    result = tinygpt.train(data=str(tiny_corpus), out=str(out), **dict(tiny_settings, tokenizer="bpe"), vocab_size=300,
                           max_iters=20, eval_interval=20)
    assert result.step == 20
    doc = json.loads((out / "tokenizer.json").read_text())
    assert doc["model"]["type"] == "BPE"  # the Hugging Face tokenizer file itself
    run = tinygpt.load(out)
    assert run.model_config.vocab_size == run.tokenizer.vocab_size == 300
    text = run.generate("mary had", max_new_tokens=20, seed=0)
    assert text and run.decode(run.encode("mary had" + text)) == "mary had" + text
    assert run.generate("naïve 🎉", max_new_tokens=5, seed=0) is not None  # bytes it never saw are fine


def test_a_pretrained_tokenizer_file_trains_and_samples_through_the_command_line(tiny_corpus, tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    # A GPT-2-style byte-level BPE made elsewhere, trained on other text than the corpus.
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 50, trainers.BpeTrainer(
        vocab_size=280, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    source = tmp_path / "gpt2-like.json"
    hf.save(str(source))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinygpt", "train", "--data", str(tiny_corpus), "--tokenizer", str(source),
           "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
           "--max-iters", "10", "--eval-interval", "10", "--sample-tokens", "0", "--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{source} tokenizer with {hf.get_vocab_size()} tokens" in proc.stdout
    run = tinygpt.load(out)
    assert run.tokenizer.encode("mary had a lamb") == hf.encode("mary had a lamb").ids  # the file's own ids
    assert run.model_config.vocab_size == hf.get_vocab_size()
    text = run.generate("mary", max_new_tokens=10, seed=0)
    assert run.decode(run.encode("mary" + text)) == "mary" + text


def test_a_tokenizer_that_is_not_there_is_one_clear_error(tiny_corpus, tmp_path):
    cmd = [sys.executable, "-m", "tinygpt", "train", "--data", str(tiny_corpus), "--tokenizer", "gpt2.json",
           "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tinygpt: error: unknown tokenizer 'gpt2.json': use char, word or bpe (trained on your text), the path of a "
        "tokenizer.json, or hf:NAME for one from the Hugging Face Hub"]
    assert not (tmp_path / "run").exists()


def test_a_time_budget_ends_training_within_the_budget(tiny_corpus, tmp_path, tiny_settings):
    start = time.perf_counter()
    result = tinygpt.train(data=str(tiny_corpus), out=str(tmp_path / "run"), time_budget="4s", warmup_iters=0,
                           **tiny_settings)
    wall = time.perf_counter() - start
    assert result.step > 10
    assert result.elapsed_s <= 4.0 + 1.0  # the loop leaves room for its last step and evaluation
    assert wall <= 4.0 + 5.0  # plus setup (reading data, building the model)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert records[-1]["step"] == result.step
    assert records[-1]["lr"] < 2e-4  # the cosine schedule followed the clock from 1e-3 down towards min_lr 1e-4


def _batch_by_batch(model, data, batch_size, block, n_batches, seed, world=1, rank=0):
    """estimate_loss as it was written first: one forward per random batch, its mean loss added up."""
    from tinygpt.data import random_batch

    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(n_batches):
            x, y = random_batch(data, batch_size, block, gen)
            if i % world == rank:
                total, count = total + model(x, y)[1].item(), count + 1
    return total, count


@pytest.mark.parametrize("batch_size,n_batches", [(16, 50), (4, 7), (300, 3)])
def test_random_batch_losses_scored_several_to_a_forward_are_each_batch_scored_alone(batch_size, n_batches):
    import contextlib

    from tinygpt.config import ModelConfig
    from tinygpt.model import build_model
    from tinygpt.training.losses import estimate_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=11, block_size=6, n_layer=1, n_head=2, n_embd=16).validate()).eval()
    data = torch.randint(0, 11, (500,))
    for world in (1, 2, 3):
        for rank in range(world):
            got = estimate_loss(model, data, batch_size, 6, n_batches, 7, "cpu", contextlib.nullcontext, (rank, world))
            want = _batch_by_batch(model, data, batch_size, 6, n_batches, 7, world, rank)
            assert got[1] == want[1] and got[0] == pytest.approx(want[0], rel=1e-5)


def test_under_lockstep_every_process_runs_as_many_forwards_when_scoring_random_batches():
    import contextlib

    from tinygpt.config import ModelConfig
    from tinygpt.model import build_model
    from tinygpt.training.losses import estimate_loss

    model = build_model(ModelConfig(vocab_size=11, block_size=6, n_layer=1, n_head=2, n_embd=16).validate())
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    data = torch.randint(0, 11, (500,))
    for n_batches in (1, 5, 50, 51):
        forwards = []
        for rank in range(4):
            calls.clear()
            estimate_loss(model, data, 16, 6, n_batches, 0, "cpu", contextlib.nullcontext, (rank, 4), lockstep=True)
            forwards.append(len(calls))
        assert len(set(forwards)) == 1 and forwards[0] >= 1, (n_batches, forwards)
