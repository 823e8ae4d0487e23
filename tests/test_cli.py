"""The `tinygpt` command as a user meets it: help that lists every flag, settings from a YAML file that
flags override, and every bad input answered by one line on stderr and exit status 2 - never a
traceback, and never at the cost of a run already saved."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinygpt.cli import main
from tinygpt.config.presets import preset_names


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run directory (runs/...) never lands in the repository


def run_cli(capsys, *args):
    """(exit status, stdout, stderr) of `tinygpt ARGS`."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tinygpt: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def tiny(corpus, out, *extra):
    return ["train", "--data", corpus, "--out", out, "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--block-size", "16", "--batch-size", "4", "--threads", "1", "--no-progress", "--sample-tokens", "0",
            *extra]


# ---- help, presets, settings ------------------------------------------------------------------------

def test_train_help_lists_every_flag_a_user_needs(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ["--preset", "--data", "--tokenizer", "--out", "--max-iters", "--device", "--seed", "--resume",
                 "--config", "--vocab-size", "--time-budget", "--n-embd", "--n-head", "--n-layer", "--block-size",
                 "--lr", "--dropout", "--batch-size", "--eval-interval"]:
        assert flag in text, flag
    assert "(default: 4)" in text  # n_layer's default is shown beside its help


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "train" in out and "sample" in out and "eval" in out


def test_presets_lists_each_preset_on_its_own_line(capsys):
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    starts = [line.split()[0] for line in out.splitlines() if line and not line[0].isspace()]
    for name in preset_names():
        assert name in starts, name
    assert "rhyme" in preset_names() and "27,747 parameters" in out


def test_config_file_is_applied_and_flags_override_it(capsys, tiny_corpus, tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text("settings:\n  n_embd: 24\n  n_head: 3\n  max_iters: 9\n  dropout: 0.1\n", encoding="utf-8")
    args = ["train", "--config", config, "--data", tiny_corpus, "--out", tmp_path / "run", "--max-iters", "2",
            "--n-layer", "1", "--block-size", "8", "--batch-size", "2", "--threads", "1", "--no-progress",
            "--sample-tokens", "0"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0, out
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (doc["model"]["n_embd"], doc["model"]["n_head"], doc["model"]["dropout"]) == (24, 3, 0.1)  # from the file
    assert doc["train"]["max_iters"] == 2  # the flag wins over the file's 9
    assert "done: step 2" in out


def test_a_tiny_corpus_still_trains_with_a_note(capsys, tmp_path):
    (tmp_path / "hello.txt").write_text("hello there\n", encoding="utf-8")
    code, out, err = run_cli(capsys, *tiny(tmp_path / "hello.txt", tmp_path / "run", "--block-size", "64",
                                           "--max-iters", "3"))
    assert code == 0, err
    assert "note: block_size reduced from 64 to 9: the training split has only 10 tokens" in out
    assert "done: step 3" in out
    (tmp_path / "hi.txt").write_text("hi there\n", encoding="utf-8")  # 9 tokens: 10% is not one prediction
    code, out, err = run_cli(capsys, *tiny(tmp_path / "hi.txt", tmp_path / "run2", "--max-iters", "3"))
    assert code == 0, err
    assert "note: the corpus (9 tokens) is too short to hold out a validation split" in out
    assert "note: block_size reduced from 16 to 8: the text has only 9 tokens" in out


# ---- bad input: one line, exit 2, no traceback ----------------------------------------------------------

@pytest.fixture
def bad_files(tmp_path):
    files = {"empty": b"", "blank": b"  \n\n", "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00",
             "latin1": "caf\u00e9 au lait\n".encode("latin-1"), "two": b"ab"}
    for name, payload in files.items():
        (tmp_path / f"{name}.txt").write_bytes(payload)
    (tmp_path / "nothing").mkdir()
    return tmp_path


@pytest.mark.parametrize("args, fragments", [
    (["--data", "missing.txt"], ["data file missing.txt does not exist"]),
    (["--data", "empty.txt"], ["data file empty.txt is empty"]),
    (["--data", "blank.txt"], ["data file blank.txt is empty"]),
    (["--data", "binary.txt"], ["binary.txt looks binary"]),
    (["--data", "latin1.txt"], ["latin1.txt is not valid UTF-8 (bad byte at offset 3)", "iconv"]),
    (["--data", "two.txt"], ["the corpus is only 2 token(s); it needs at least 3"]),
    (["--data", "nothing"], ["nothing is a folder with no .txt files; pass a UTF-8 text file or a folder of them"]),
    (["--data", "."], ["data file binary.txt looks binary"]),  # a folder's files are read, the bad one named
    (["--preset", "nope"], ["unknown preset 'nope'; choose one of: ", "rhyme"]),
    (["--n-embed", "64"], ["unknown option --n-embed (did you mean --n-embd?)", "`tinygpt train --help`"]),
    (["--n-embd", "-8"], ["n_embd must be a positive integer, got -8"]),
    (["--n-layer", "0"], ["n_layer must be a positive integer, got 0"]),
    (["--batch-size", "-1"], ["batch_size must be a positive integer, got -1"]),
    (["--n-embd", "30", "--n-head", "4"], ["n_embd (30) must be divisible by n_head (4); try n_embd=32"]),
    (["--dropout", "1.5"], ["dropout must be in [0, 1), got 1.5"]),
    (["--max-iters", "lots"], ["setting max_iters expects int, got 'lots'"]),
    (["--tokenizer", "sentencepiece"], ["unknown tokenizer 'sentencepiece'", "hf:NAME"]),
    (["--tokenizer", "bpe", "--vocab-size", "100"], ["must be at least 257, got 100"]),
    (["--time-budget", "soon"], ["time budget 'soon' is not a duration"]),
    (["--config", "nope.yaml"], ["config file nope.yaml does not exist"]),
    (["--device", "tpu"], ["unknown device 'tpu'"]),
    (["--out", "two.txt"], ["cannot make the run directory two.txt (Not a directory); choose another --out"]),
    (["--resume", "nowhere"], ["run directory nowhere does not exist"]),
    (["--resume", "."], ["is not a tinygpt run directory (it has no config.json)"]),
])
def test_bad_train_input_is_one_line_and_exit_2(capsys, bad_files, args, fragments):
    code, _, err = run_cli(capsys, "train", *args)
    assert_one_line_error(code, err, *fragments)


def test_a_config_file_with_an_unknown_setting_is_refused(capsys, tmp_path):
    (tmp_path / "c.yaml").write_text("n_embed: 64\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "train", "--config", tmp_path / "c.yaml")
    assert_one_line_error(code, err, "unknown setting 'n_embed' (did you mean n_embd")


@pytest.mark.parametrize("args, fragments", [
    (["--prompt", "Mary"], ["unknown word(s) 'Mary'; this model knows only: <END> a against and as at"]),
    (["--prompt", "mary had a dog"], ["unknown word(s) 'dog'", "lamb"]),
    (["--prompt", "mary", "--top-p", "0"], ["top_p must be in (0, 1], got 0.0"]),
    (["--prompt", "mary", "--top-p", "1.5"], ["top_p must be in (0, 1], got 1.5"]),
    (["--prompt", "mary", "--temperature", "-1"], ["temperature must be 0 (greedy) or more, got -1.0"]),
    (["--prompt", "mary", "--num-samples", "0"], ["num_samples must be at least 1, got 0"]),
    (["--prompt", "mary", "--stop", ""], ["a stop string cannot be empty"]),
    (["--top-k", "many"], ["argument --top-k: invalid int value: 'many'"]),
])
def test_bad_sample_input_is_one_line_exit_2_and_prints_nothing(capsys, rhyme_run, args, fragments):
    code, out, err = run_cli(capsys, "sample", rhyme_run.out_dir, *args)
    assert_one_line_error(code, err, *fragments)
    assert out == ""  # not even the prompt


def test_unknown_characters_in_a_prompt_are_named(capsys, char_run):
    code, out, err = run_cli(capsys, "sample", char_run, "--prompt", "Mary!")
    assert_one_line_error(code, err, "2 character(s) this model never saw in training: '!', 'M'")


def test_a_directory_that_is_not_a_run_is_refused(capsys, tmp_path):
    (tmp_path / "notes").mkdir()
    for verb in ("sample", "eval"):
        code, _, err = run_cli(capsys, verb, tmp_path / "notes")
        assert_one_line_error(code, err, "notes is not a tinygpt run directory (it has no config.json)")
    code, _, err = run_cli(capsys, "eval", tmp_path / "nothing-here")
    assert_one_line_error(code, err, "nothing-here does not exist")


@pytest.mark.parametrize("damage, fragments", [
    (lambda run: (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:300]),
     ["model.safetensors is truncated or corrupted"]),
    (lambda run: (run / "model.safetensors").write_bytes(b"\xff" * 64),
     ["model.safetensors is truncated or corrupted"]),
    (lambda run: (run / "config.json").write_text("{not json", encoding="utf-8"), ["config.json is not valid JSON"]),
    (lambda run: (run / "tokenizer.json").unlink(), ["tokenizer.json is missing"]),
    (lambda run: (run / "tokenizer.json").write_text('{"tinygpt_tokenizer": "char", "vocab": ["a"]}'),
     ["tokenizer.json has 1 tokens but the model expects 23"]),
])
def test_a_damaged_run_is_a_clear_error_naming_the_file(capsys, char_run, copy_run, damage, fragments):
    run = copy_run(char_run)
    damage(run)
    for verb in (["sample", run, "--prompt", "mary"], ["eval", run]):
        code, _, err = run_cli(capsys, *verb)
        assert_one_line_error(code, err, *fragments)


def test_the_command_line_itself_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tinygpt", "train", "--data", str(tmp_path / "missing.txt")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"tinygpt: error: data file {tmp_path / 'missing.txt'} does not exist; "
                                        "pass a UTF-8 text file, 'rhyme' or 'shakespeare'"]
    assert proc.stdout == ""


# ---- nothing already saved is lost ----------------------------------------------------------------------

def checksums(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file()}


def test_failing_commands_leave_an_existing_run_untouched(capsys, char_run, copy_run, bad_files, tiny_corpus):
    run = copy_run(char_run)
    before = checksums(run)
    assert len(before) >= 6
    failing = [
        tiny(tiny_corpus, run),  # the directory already holds a run
        ["train", "--resume", run, "--n-embd", "32"],  # a model setting cannot change
        ["train", "--resume", run, "--data", bad_files / "two.txt"],  # nor the data
        ["train", "--resume", run, "--lr", "-1"],
        ["sample", run, "--prompt", "mary", "--top-p", "0"],
        ["eval", run, "--data", bad_files / "binary.txt"],
        ["eval", run, "--data", bad_files / "latin1.txt"],
    ]
    for args in failing:
        code, _, err = run_cli(capsys, *args)
        assert_one_line_error(code, err)
        assert checksums(run) == before, args


def test_resume_refuses_changed_training_text(capsys, tmp_path, tiny_corpus):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tiny_corpus.read_text())
    assert run_cli(capsys, *tiny(corpus, tmp_path / "run", "--max-iters", "2"))[0] == 0
    before = checksums(tmp_path / "run")
    corpus.write_text(tiny_corpus.read_text() + "one more line\n")
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "run", "--max-iters", "4")
    assert_one_line_error(code, err, "changed since this run started")
    assert checksums(tmp_path / "run") == before


# ---- sample and eval ----------------------------------------------------------------------------------

def test_eval_json_is_one_deterministic_object(capsys, char_run):
    code, out, _ = run_cli(capsys, "eval", char_run, "--json")
    assert code == 0
    assert len(out.strip().splitlines()) == 1
    result = json.loads(out)
    assert result["split"] == "val" and result["tokens"] == 135
    assert 0 < result["loss"] < 4 and result["bits_per_char"] == pytest.approx(
        result["loss"] * result["tokens"] / result["characters"] / 0.6931471805599453)
    assert json.loads(run_cli(capsys, "eval", char_run, "--json")[1]) == result


def test_eval_prints_a_readable_line(capsys, rhyme_run):
    code, out, _ = run_cli(capsys, "eval", rhyme_run.out_dir)
    assert code == 0
    assert out.startswith("train loss ") and "over 105 tokens" in out and "bits per character" in out


def test_sample_streams_the_prompt_and_its_continuation_then_stops(capsys, rhyme_run):
    # "it followed" (not "it", which the rhyme continues two ways) so the greedy path is the rhyme's one
    code, out, _ = run_cli(capsys, "sample", rhyme_run.out_dir, "--prompt", "it followed", "--temperature", "0",
                           "--max-new-tokens", "30", "--stop", "school")
    assert code == 0
    assert out == "it followed her to \n"


def test_sample_continues_a_prompt_file_as_it_continues_the_same_prompt(capsys, char_run, tmp_path):
    prompt = "mary had a little lamb\nits fleece"
    (tmp_path / "prompt.txt").write_text(prompt, encoding="utf-8")
    args = ["--temperature", "0", "--max-new-tokens", "20"]
    code, from_file, _ = run_cli(capsys, "sample", char_run, "--prompt-file", tmp_path / "prompt.txt", *args)
    assert code == 0 and from_file.startswith(prompt)
    assert run_cli(capsys, "sample", char_run, "--prompt", prompt, *args)[1] == from_file


@pytest.mark.parametrize("make, fragment", [
    (None, "prompt file missing.txt does not exist; pass a UTF-8 text file"),
    (lambda path: path.write_bytes(b"caf\xe9"), "prompt file missing.txt is not valid UTF-8 (bad byte at offset 3)"),
])
def test_a_bad_prompt_file_is_one_line(capsys, char_run, tmp_path, make, fragment):
    if make:
        make(tmp_path / "missing.txt")
    code, out, err = run_cli(capsys, "sample", char_run, "--prompt-file", "missing.txt")
    assert_one_line_error(code, err, fragment)
    assert out == ""
    code, _, err = run_cli(capsys, "sample", char_run, "--prompt", "m", "--prompt-file", "missing.txt")
    assert_one_line_error(code, err, "give the prompt with --prompt or --prompt-file, not both")


def test_sample_from_no_prompt_starts_with_a_word(capsys, rhyme_run):
    code, out, _ = run_cli(capsys, "sample", rhyme_run.out_dir, "--temperature", "0", "--max-new-tokens", "5")
    assert code == 0
    assert out[0].isalpha() and len(out.split()) == 5


def test_sample_several_with_a_seed_is_repeatable(capsys, char_run):
    args = ["sample", char_run, "--prompt", "mary", "--num-samples", "3", "--seed", "4", "--max-new-tokens", "20"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("---")] == [f"--- sample {i} ---" for i in (1, 2, 3)]
    samples = [block.strip("\n") for block in re.split(r"--- sample \d ---\n", out)[1:]]
    assert len(samples) == 3 and all(sample.startswith("mary") for sample in samples)
    assert len(set(samples)) == 3  # independent samples
    assert run_cli(capsys, *args)[1] == out


def test_the_executable_freezes_what_it_imported_and_main_in_a_process_that_goes_on_does_not(capsys):
    # `command` (the executable, `python -m tinygpt`) freezes what it imported and everything at the end, so
    # the collector skips PyTorch's objects during the run and at exit (0.55 s -> 0.13 s after a command).
    code = ("import gc, sys\nfrom tinygpt.cli import command\nsys.argv = ['tinygpt', 'presets']\n"
            "status = command()\nprint(status, gc.get_freeze_count())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    status, frozen = map(int, done.stdout.split()[-2:])
    assert status == 0 and frozen > 50_000, done.stderr[-2000:]
    # main's hook runs once, with PyTorch imported (command passes gc.freeze); without one nothing is frozen.
    import gc

    seen = []
    assert main(["presets"], on_import=lambda: seen.append("torch" in sys.modules)) == 0
    assert seen == [True]
    before = gc.get_freeze_count()
    assert run_cli(capsys, "presets")[0] == 0
    assert gc.get_freeze_count() == before
