"""The first ten minutes of a new user: run names that stay put, help that tells the truth, and hints that
name the command to run next."""

import pytest

from tinygpt.cli import main
from tinygpt.config.resolve import resolve


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


@pytest.mark.parametrize("verb", ["sft", "reward", "rl"])
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


def test_train_help_says_which_defaults_the_no_argument_run_uses(capsys):
    text = " ".join(help_text(capsys, "train").split())
    assert "`tinygpt train` and `tinygpt train --data rhyme` use the rhyme preset" in text
    assert "default: rhyme" not in text
    for kind in ("a folder of .txt files", "a folder made by `tinygpt prepare`", "'shakespeare'", "'dates'"):
        assert kind in text, kind


def test_chat_help_names_the_verb_that_writes_its_run(capsys):
    assert "run directory written by `tinygpt sft`" in " ".join(help_text(capsys, "chat").split())
