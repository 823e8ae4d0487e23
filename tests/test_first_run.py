"""The first ten minutes of a new user: run names that stay put, help that tells the truth, and hints that
name the command to run next."""

import pytest

from tinygpt.app.settings import resolve
from tinygpt.cli import main


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default run directories (runs/...) land here


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def help_text(capsys, *verb) -> str:
    with pytest.raises(SystemExit) as e:
        main([*verb, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--threads", "1", "--no-progress", "--sample-tokens", "0", "--max-iters", "2"]


# ---- run names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["speedrun-cpu", "lecture", "nanogpt-cpu"])
def test_the_default_run_directory_is_named_after_the_data_whatever_the_preset(preset):
    *_, out, _ = resolve(preset)
    assert str(out) == "runs/shakespeare"


def test_a_prepared_folder_names_the_run_after_itself(tmp_path):
    folder = tmp_path / "data" / "shakespeare"
    assert str(resolve("", "", {"data": str(folder)})[2]) == "runs/shakespeare"


def test_no_arguments_and_data_rhyme_train_the_same_model():
    plain, named = resolve(), resolve("", "", {"data": "rhyme"})
    assert plain[0] == named[0] and plain[1] == named[1]
    assert plain[3] == named[3] == "rhyme"
    assert plain[0].block_size == 6 and plain[1].tokenizer == "word"  # the tutorial's word-level model


def test_a_rerun_into_an_existing_name_is_refused_with_how_to_resume_or_overwrite(capsys, tiny_corpus):
    assert run_cli(capsys, "train", "--data", tiny_corpus, *TINY)[0] == 0
    run = "runs/tiny"
    first = (tmp_metrics := __import__("pathlib").Path(run) / "metrics.jsonl").read_text()
    code, _, err = run_cli(capsys, "train", "--data", tiny_corpus, *TINY)
    assert code == 2
    assert err.strip() == (f"tinygpt: error: {run} already holds a run; continue it with `tinygpt train --resume "
                           f"{run}`, start it again with --overwrite, or choose another --out")
    assert tmp_metrics.read_text() == first  # nothing of the first run was touched
    assert not __import__("pathlib").Path("runs/tiny-2").exists()
    code, out, _ = run_cli(capsys, "train", "--data", tiny_corpus, *TINY, "--overwrite", "--max-iters", "4")
    assert code == 0 and "saved in runs/tiny" in out
    assert [r for r in tmp_metrics.read_text().splitlines()][-1].startswith('{"step": 4')


def test_overwrite_leaves_a_folder_that_holds_no_run_alone(capsys, tmp_path, tiny_corpus):
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "latest.safetensors").write_text("not a run of ours")
    (folder / "notes.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "train", "--data", tiny_corpus, "--out", folder, *TINY, "--overwrite")
    assert code == 2 and "holds no tinygpt run, so --overwrite leaves it alone" in err
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("verb, made_by", [
    (["sample", "runs/shakespeare"], "`tinygpt train --data TEXT --out runs/shakespeare`"),
    (["chat", "runs/shakespeare-sft"], "`tinygpt sft BASE_RUN --data CHATS.jsonl --out runs/shakespeare-sft`"),
    (["translate", "runs/dates", "--source", "2001-09-30"],
     "`tinygpt train --arch encoder-decoder --data PAIRS --out runs/dates`"),
    (["fill", "runs/enc", "--prompt", "a <mask>"], "`tinygpt train --arch encoder --data TEXT --out runs/enc`"),
])
def test_a_missing_run_names_the_command_that_makes_that_kind_of_run(capsys, verb, made_by):
    code, _, err = run_cli(capsys, *verb)
    assert code == 2
    assert err.strip() == f"tinygpt: error: run directory {verb[1]} does not exist; make it with {made_by}"


def test_a_missing_run_names_the_runs_beside_it_with_close_names(capsys, tiny_corpus):
    assert run_cli(capsys, "train", "--data", tiny_corpus, "--out", "runs/shakespeare-2", *TINY)[0] == 0
    code, _, err = run_cli(capsys, "sample", "runs/shakespeare")
    assert code == 2 and err.strip().endswith("(runs/ holds: shakespeare-2)")


# ---- help ------------------------------------------------------------------------------------------------

MODEL_SHAPE = ["--n-embd", "--n-head", "--n-layer", "--block-size", "--arch", "--tokenizer", "--vocab-size",
               "--init-from"]


@pytest.mark.parametrize("verb", ["sft", "reward", "rl", "dpo"])
def test_fine_tuning_verbs_list_only_the_settings_they_accept(capsys, verb):
    text = help_text(capsys, verb)
    for flag in MODEL_SHAPE:
        assert f"{flag} " not in text and f"{flag}\n" not in text, flag
    for flag in ["--lr", "--max-iters", "--batch-size", "--dropout", "--seed", "--overwrite"]:
        assert flag in text, flag
    assert len(text.splitlines()) < 200


def test_a_model_setting_given_to_a_fine_tuning_verb_says_why_it_is_not_there(capsys):
    code, _, err = run_cli(capsys, "sft", "runs/base", "--data", "c.jsonl", "--n-embd", "64")
    assert code == 2
    assert err.strip() == ("tinygpt: error: --n-embd is not a setting of `tinygpt sft`: the model's shape and "
                           "tokenizer come from the run it starts from")
    code, _, err = run_cli(capsys, "dpo", "runs/sft", "--data", "p.jsonl", "--window-schedule", "16:0.5")
    assert code == 2
    assert err.strip() == ("tinygpt: error: --window-schedule shortens the windows `tinygpt train` cuts from a text; "
                           "`tinygpt dpo` trains on whole examples, so leave it out")


def test_train_help_says_which_defaults_the_no_argument_run_uses(capsys):
    text = " ".join(help_text(capsys, "train").split())
    assert "`tinygpt train` and `tinygpt train --data rhyme` use the rhyme preset" in text
    assert "default: rhyme" not in text
    for kind in ("a folder of .txt files", "a folder made by `tinygpt prepare`", "'shakespeare'", "'dates'"):
        assert kind in text, kind


def test_chat_help_names_the_verb_that_writes_its_run(capsys):
    assert "run directory written by `tinygpt sft`" in " ".join(help_text(capsys, "chat").split())


def test_version_and_help_answer_without_importing_pytorch():
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom tinygpt.cli import main\n"
            "for argv in (['--version'], ['--help'], ['train', '--help'], ['lesson', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n            main(argv)\n        except SystemExit:\n            pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# ---- budgets -------------------------------------------------------------------------------------------

def test_a_time_budget_too_short_to_train_says_so_instead_of_done_alone(capsys, tiny_corpus):
    code, out, _ = run_cli(capsys, "train", "--data", tiny_corpus, *TINY[:-2], "--time-budget", "0.01s")
    assert code == 0  # the model is saved; the run says what it is worth
    lines = out.splitlines()
    warning = next(line for line in lines if line.startswith("warning: "))
    assert warning.startswith("warning: the 0.01s time budget ended after 0 optimizer steps, too few to learn much; "
                              "setup and the first evaluation took ")
    assert warning.endswith("for more steps give it a longer --time-budget, evaluate less (--eval-interval, "
                            "--eval-max-tokens), or set --max-iters instead")
    assert lines.index(warning) < [i for i, line in enumerate(lines) if line.startswith("done: step 0")][0]


def test_a_time_budget_that_trains_enough_gives_no_warning(tmp_path, tiny_corpus):
    import tinygpt

    lines = []
    result = tinygpt.train(data=str(tiny_corpus), out=str(tmp_path / "run"), time_budget="2s", warmup_iters=2,
                           n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, threads=1, progress=False,
                           sample_tokens=0, log=lines.append)
    assert result.step >= 20 and not [line for line in lines if line.startswith("warning")]


# ---- threads -------------------------------------------------------------------------------------------

def test_the_thread_rule_gives_small_models_one_thread_and_big_ones_every_core(monkeypatch):
    from tinygpt.core import devices

    monkeypatch.setattr(devices, "cpu_cores", lambda: 8)
    assert devices.choose_threads(0, 1, work=1.5e7) == 1  # the rhyme model's step
    assert devices.choose_threads(0, 1, work=1.9e9) == 1
    assert devices.choose_threads(0, 1, work=3.1e9) == 8  # speedrun-cpu's
    assert devices.choose_threads(0, 2, work=1.5e11) == 4  # the node's cores, shared by its processes
    assert devices.choose_threads(3, 1, work=1.5e7) == 3  # asked for: taken as it is
    monkeypatch.setattr(devices, "cpu_cores", lambda: 1)
    assert devices.choose_threads(0, 1, work=1e12) == 1


def test_the_work_of_a_step_counts_the_linear_layers_and_attention():
    import torch

    from tinygpt.config import ModelConfig
    from tinygpt.core.devices import step_work
    from tinygpt.model import build_model

    model = build_model(ModelConfig(vocab_size=35, n_layer=2, n_head=2, n_embd=32, block_size=6).validate())
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert linear == 2 * (32 * 96 + 32 * 32 + 2 * 32 * 128) + 32 * 35  # qkv, proj, mlp; the head
    assert step_work(model, 96) == 96 * (6 * linear + 12 * 2 * 32 * 6)


def test_a_small_run_takes_one_thread_and_a_big_one_every_core_whatever_the_load(tmp_path, monkeypatch):
    import torch

    import tinygpt
    from tinygpt.core import devices

    before = torch.get_num_threads()
    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    try:
        lines = []
        tinygpt.train(out=str(tmp_path / "rhyme"), max_iters=1, progress=False, sample_tokens=0, log=lines.append)
        assert "on cpu, 1 thread; out" in lines[0]
        lines = []
        tinygpt.train(data="rhyme", out=str(tmp_path / "wide"), tokenizer="char", n_embd=256, n_head=4, n_layer=2,
                      block_size=64, batch_size=32, max_iters=1, progress=False, sample_tokens=0, log=lines.append)
        assert "on cpu, 2 threads; out" in lines[0]
    finally:
        torch.set_num_threads(before)


# ---- names and numbers ------------------------------------------------------------------------------------

def test_eval_of_a_run_trained_on_random_batch_estimates_says_why_its_number_differs(capsys, rhyme_run):
    code, out, _ = run_cli(capsys, "eval", rhyme_run.out_dir)
    assert code == 0
    first, note = out.splitlines()
    assert first.startswith("train loss ") and " over 105 tokens;" in first
    assert note == ("note: training logged another number, the mean loss of 50 random batches of windows; this pass "
                    "scores each token once, in the window it falls in (tokens 0-5, 6-11, ...), and on a short text "
                    "what a token sees before it depends on where the windows fall")


def test_a_bpe_tokenizer_smaller_than_asked_says_why(tmp_path, capsys):
    import tinygpt

    text = tmp_path / "small.txt"
    text.write_text("mary had a little lamb, its fleece was white as snow.\n" * 20)
    lines = []
    tinygpt.prepare(str(text), str(tmp_path / "prepared"), tokenizer="bpe", vocab_size=2000, log=lines.append)
    assert lines[0] == f"training a BPE tokenizer of up to 2,000 tokens on {len(text.read_text()):,} characters"
    assert lines[1].startswith("  the BPE tokenizer has ") and lines[1].endswith(
        " tokens, not the 2,000 asked for: by then every word of the text is one token and nothing is left to "
        "merge (a longer or more varied text gives more)")


def test_params_of_a_preset_on_tiny_shakespeare_needs_no_copy_of_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGPT_DATA_DIR", str(tmp_path))  # no tinyshakespeare.txt here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    code, out, err = run_cli(capsys, "params", "--preset", "lecture")
    assert code == 0, err
    assert out.startswith("preset lecture: 10,788,929 parameters")


def test_eval_refuses_a_negative_token_budget_in_one_line(capsys, char_run):
    code, _, err = run_cli(capsys, "eval", char_run, "--max-tokens", "-5")
    assert code == 2
    assert err.strip() == "tinygpt: error: --max-tokens must be 0 (all) or more, got -5"
