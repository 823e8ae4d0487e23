"""Bad settings and damaged files are one line each, naming what is wrong and the fix, before any work starts
(issue 24): training settings that cannot be computed, a damaged config.json or metrics.jsonl, a damaged
or swapped prepared folder, and a prepare that never finished."""

import json
import subprocess
import sys
import time

import pytest
import torch
from refusals import checksums, one_line, run_cli

import tinygpt
from tinygpt.data import prepared as prepared_module
from tinygpt.data.prepared import PreparedData, prepare

# ---- training settings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, fragment", [
    (["--lr", "nan"], "lr must be a finite number, got nan"),
    (["--lr", "inf"], "lr must be a finite number, got inf"),
    (["--lr", "1e30"], "lr 1e+30 is past 10"),
    (["--grad-clip", "nan"], "grad_clip must be a finite number"),
    (["--grad-clip=-inf"], "grad_clip must be a finite number"),
    (["--weight-decay", "1e300"], "lr x weight_decay is 1e+297"),
    (["--rope-base", "0", "--pos-emb", "rope"], "rope_base must be above 1"),
    (["--rope-base", "nan"], "rope_base must be a finite number"),
    (["--dropout", "nan"], "dropout must be a finite number, got nan"),
    (["--beta2", "inf"], "beta2 must be a finite number"),
    (["--seed", str(2**64)], "seed must fit in 64 bits"),
    (["--threads", "1000000"], "threads must be from 0 (chosen by the model's size) to 1024"),
    (["--threads", "-1"], "threads must be 0 or more"),
    (["--n-embd", str(2**40)], "n_embd is 1,099,511,627,776, past the largest count"),
    (["--vocab-size", "-5", "--tokenizer", "bpe"], "vocab_size must be a positive integer, got -5"),
])
def test_a_setting_that_cannot_be_computed_is_refused_before_any_work(capsys, tmp_path, flags, fragment):
    code, out, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--max-iters", "2", *flags)
    one_line(code, err, fragment)
    assert out == "" and not (tmp_path / "run").exists()


def test_prepare_refuses_a_vocabulary_size_it_cannot_build(capsys, tmp_path):
    code, _, err = run_cli(capsys, "prepare", "rhyme", "--out", tmp_path / "p", "--tokenizer", "bpe",
                           "--vocab-size", "-5")
    one_line(code, err, "vocab_size must be a whole number from 1")
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.part").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["serve", "RUN", "--port", "70000"], "argument --port: a port is a whole number from 0 to 65535, got 70000"),
    (["serve", "RUN", "--port", "-1"], "a port is a whole number from 0 to 65535, got -1"),
    (["serve", "RUN", "--port", "http"], "got 'http'"),
    (["serve", "RUN", "--threads", "0"], "argument --threads: a thread count is a whole number from 1 to 1024"),
    (["sample", "RUN", "--seed", str(2**64)], "argument --seed: a seed is a whole number"),
    (["chat", "RUN", "--seed", str(-(2**63) - 1)], "argument --seed: a seed is a whole number"),
    (["demo", "assistant", "--seed", str(2**64)], "argument --seed: a seed is a whole number"),
    (["sample", "RUN", "--max-new-tokens", str(10**30)], "max_new_tokens is 1,000,000,000,000,000,000,000,000,000,"),
    (["sample", "RUN", "--top-k", str(2**31)], "top_k is 2,147,483,648, past the largest count"),
])
def test_ports_seeds_thread_counts_and_counts_out_of_range_are_one_line(capsys, rhyme_run, argv, fragment):
    code, _, err = run_cli(capsys, *[rhyme_run.out_dir if a == "RUN" else a for a in argv])
    one_line(code, err, fragment)


def test_a_run_whose_loss_turns_nan_stops_before_saving_over_its_last_checkpoint(tmp_path, tiny_settings):
    def poison(trainer):  # what a learning rate far too high does to the weights, at once
        if trainer.step == 3:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    out = tmp_path / "run"
    with pytest.raises(tinygpt.TinyGPTError, match="training diverged: at step 4 the train_loss is nan; the step-2 "
                                                   "checkpoint is intact; lower --lr"):
        tinygpt.train(data="rhyme", out=str(out), max_iters=6, eval_interval=2, on_step=poison, **tiny_settings)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2]
    tinygpt.load(out).generate("mary", max_new_tokens=3)  # the last good weights load and sample


# ---- config.json ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage, fragment", [
    (lambda d: d["model"].update(n_embd="sixteen"), 'model.n_embd should be a whole number, got "sixteen"'),
    (lambda d: d["train"].update(lr="fast"), 'train.lr should be a number, got "fast"'),
    (lambda d: d["train"].update(progress="yes"), 'train.progress should be true or false, got "yes"'),
    (lambda d: d["model"].pop("n_head"), "lacks model.n_head"),
    (lambda d: d["train"].pop("max_iters"), "lacks train.max_iters"),
    (lambda d: d["train"].update(lr=float("nan")), "lr must be a finite number, got nan"),
    (lambda d: d.update(data=[1, 2]), "data should be a mapping, got [1, 2]"),
    (lambda d: d.update(num_params="many"), 'num_params should be a whole number, got "many"'),
    (lambda d: d["model"].update(warp_drive=True), "settings this tinygpt does not know: model.warp_drive"),
])
def test_a_damaged_config_json_is_one_line_naming_the_file_and_key(capsys, char_run, copy_run, damage, fragment):
    run = copy_run(char_run)
    doc = json.loads((run / "config.json").read_text())
    damage(doc)
    (run / "config.json").write_text(json.dumps(doc))
    before = checksums(run)
    for argv in (["eval", run], ["train", "--resume", run], ["sample", run, "--prompt", "m"]):
        code, _, err = run_cli(capsys, *argv)
        one_line(code, err, f"{run / 'config.json'}", fragment)
    assert checksums(run) == before


# ---- metrics.jsonl ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("lines, fragment", [
    (b"\x00\xff\xfe binary\n", "line 1 is not UTF-8 text"),
    (b"42\n", "line 1: 42 is not a record"),
    (b'{"tokens": 1, "elapsed_s": 0.1, "train_loss": 3.0}\n', "line 1: the record has no step"),
    (b'{"step": "ten", "tokens": 1, "elapsed_s": 0.1, "train_loss": 3.0}\n', 'step should be a whole number'),
    (b'{"step": 10, "tokens": 1, "elapsed_s": 0.1, "train_loss": "low"}\n', 'train_loss should be a number'),
    (b'{"step": 10, "tokens": 1, "elap\n{"step": 20}\n', "line 1 is not a JSON record"),
])
def test_a_damaged_metrics_jsonl_is_one_line_naming_the_line(capsys, tmp_path, char_run, copy_run, lines, fragment):
    run = copy_run(char_run)
    (run / "metrics.jsonl").write_bytes(lines)
    before = checksums(run)
    for argv in (["plot", run, "-o", tmp_path / "loss.png"], ["train", "--resume", run, "--max-iters", "50"]):
        code, _, err = run_cli(capsys, *argv)
        one_line(code, err, f"{run / 'metrics.jsonl'} ", fragment, "fix or delete that line")
    assert checksums(run) == before and not (tmp_path / "loss.png").exists()


def test_a_half_written_last_record_is_what_a_kill_leaves_and_is_skipped(capsys, tmp_path, char_run, copy_run):
    run = copy_run(char_run)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 60, "tok')  # no newline: the write a kill interrupted
    code, out, _ = run_cli(capsys, "plot", run, "-o", tmp_path / "loss.png")
    assert code == 0 and "drew 2 curve(s) of 1 run(s)" in out


# ---- prepared folders -------------------------------------------------------------------------------------

@pytest.fixture
def prepared(tmp_path):
    return prepare("rhyme", tmp_path / "data", log=None)


def train_on(capsys, data, out):
    return run_cli(capsys, "train", "--data", data, "--out", out, "--max-iters", "2", "--n-layer", "1",
                   "--n-embd", "16", "--n-head", "2", "--block-size", "8", "--threads", "1", "--no-progress")


def test_a_damaged_val_bin_is_found_by_its_sha256(capsys, tmp_path, prepared):
    raw = bytearray((prepared.path / "val.bin").read_bytes())
    raw[3] ^= 0x01  # the same size, one bit changed
    (prepared.path / "val.bin").write_bytes(bytes(raw))
    code, _, err = train_on(capsys, prepared.path, tmp_path / "run")
    one_line(code, err, f"{prepared.path / 'val.bin'} is damaged: its sha256 differs from the one prepared.json "
                        "records; run `tinygpt prepare` again")
    assert not (tmp_path / "run").exists()


def test_a_swapped_tokenizer_is_refused(capsys, tmp_path, prepared):
    words = prepare("rhyme", tmp_path / "words", tokenizer="word", log=None)
    (prepared.path / "tokenizer.json").write_bytes((words.path / "tokenizer.json").read_bytes())
    code, _, err = train_on(capsys, prepared.path, tmp_path / "run")
    one_line(code, err, "tokenizer.json is not the tokenizer", "put the original back")


def test_ids_past_the_vocabulary_are_found_as_they_are_read_in_a_folder_too_big_to_hash(capsys, tmp_path, prepared,
                                                                                       monkeypatch):
    monkeypatch.setattr(prepared_module, "VERIFY_BYTES", 0)  # as a folder of many GB: no hashing at start
    ids = torch.from_numpy(prepared.train_tokens()[:].numpy().copy())
    ids[5:] = 60000  # the tokenizer has 23 ids
    (prepared.path / "train.bin").write_bytes(ids.numpy().astype("<u2").tobytes())
    code, _, err = train_on(capsys, prepared.path, tmp_path / "run")
    one_line(code, err, "train.bin holds the id 60000 at token", "past the tokenizer's 23 ids")


def test_a_mistyped_prepared_json_is_one_line(capsys, tmp_path, prepared):
    meta = json.loads((prepared.path / "prepared.json").read_text())
    (prepared.path / "prepared.json").write_text(json.dumps({**meta, "train_tokens": "lots"}))
    code, _, err = train_on(capsys, prepared.path, tmp_path / "run")
    one_line(code, err, 'train_tokens should be int, got "lots"')


def test_a_leftover_part_folder_is_named_when_the_user_points_at_its_folder(capsys, tmp_path):
    (tmp_path / "data.part").mkdir()
    (tmp_path / "data.part" / "train.bin").write_bytes(b"\0\0")
    code, _, err = train_on(capsys, tmp_path / "data", tmp_path / "run")
    one_line(code, err, f"{tmp_path / 'data'} does not exist, but {tmp_path / 'data.part'} does: a `tinygpt "
                        "prepare` into it was interrupted; run it again")
    # One that another process is still writing says so, and a second prepare into it is refused.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom tinygpt.core import lock\n"
                               f"lock.take(__import__('pathlib').Path({str(tmp_path / 'data.part' / '.lock')!r}), "
                               "'x')\nlock.claim(__import__('pathlib').Path("
                               f"{str(tmp_path / 'data.part' / '.lock')!r}))\nprint('held', flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = train_on(capsys, tmp_path / "data", tmp_path / "run")
        one_line(code, err, f"does not exist yet: process {holder.pid} (", "wait for it to finish")
        code, _, err = run_cli(capsys, "prepare", "rhyme", "--out", tmp_path / "data")
        one_line(code, err, f"is in use: process {holder.pid} (")
        assert (tmp_path / "data.part" / "train.bin").is_file()  # the other prepare's work is left alone
    finally:
        holder.kill()
        holder.wait()
    start = time.perf_counter()
    assert PreparedData.open(prepare("rhyme", tmp_path / "data", log=None).path) is not None  # starts over
    assert time.perf_counter() - start < 5
