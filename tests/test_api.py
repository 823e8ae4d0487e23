"""The Python face of tinygpt: `tinygpt.train(...)`, `tinygpt.load(dir).generate(...)` and `.evaluate()`,
each documented where a user will look for it."""

import importlib
import inspect
import pkgutil

import pytest

import tinygpt
from tinygpt.app.run import Run
from tinygpt.training import TrainResult


def test_train_from_code_returns_what_the_run_reached(tiny_corpus, tmp_path, tiny_settings):
    messages = []
    result = tinygpt.train(data=str(tiny_corpus), out=str(tmp_path / "run"), max_iters=10, eval_interval=5,
                           log=messages.append, **tiny_settings)
    assert isinstance(result, TrainResult)
    assert (result.out_dir, result.step, result.tokens) == (tmp_path / "run", 10, 10 * 4 * 16)
    assert result.num_params == 4_279 and result.samples == []
    assert result.val_loss == result.best_val_loss < 3.2  # from ln 23 = 3.14, a little better after 10 steps
    assert result.elapsed_s > 0
    # Every line the trainer says goes to `log`: the description and one line per evaluation.
    assert messages[0].startswith("tinygpt 0.1.0: 4,279 parameters")
    assert [m.split(":")[0] for m in messages[1:]] == ["step 0", "step 5", "step 10"]


def test_train_from_code_with_a_preset_and_overrides(tmp_path):
    result = tinygpt.train(preset="rhyme", out=str(tmp_path / "run"), max_iters=5, eval_interval=5,
                           progress=False, sample_tokens=3, num_samples=2, threads=1, log=lambda m: None)
    assert result.num_params == 27_747 and result.step == 5
    assert [s.split()[0] for s in result.samples] == ["mary", "the"]  # the preset's sample prompts


def test_train_from_code_refuses_bad_settings_with_a_tinygpt_error(tmp_path):
    with pytest.raises(tinygpt.TinyGPTError, match="unknown setting 'n_embed'"):
        tinygpt.train(out=str(tmp_path / "run"), n_embed=64)
    with pytest.raises(tinygpt.TinyGPTError, match="n_embd .30. must be divisible by n_head .4."):
        tinygpt.train(out=str(tmp_path / "run"), n_embd=30, n_head=4)
    assert not (tmp_path / "run").exists()


def test_load_then_generate(rhyme_run):
    run = tinygpt.load(rhyme_run.out_dir)
    assert isinstance(run, Run)
    assert run.model_config.vocab_size == 35 and not run.model.training
    assert run.generate("mary had", max_new_tokens=3, temperature=0) == " a little lamb"
    several = run.generate("mary", max_new_tokens=4, num_samples=3, seed=0)
    assert isinstance(several, list) and len(several) == 3 and all(len(s.split()) == 4 for s in several)
    assert run.decode(run.encode("mary had a little lamb")) == "mary had a little lamb"


def test_load_then_evaluate(char_run, rhyme_run):
    result = tinygpt.load(char_run).evaluate()
    assert set(result) == {"split", "loss", "tokens", "characters", "bits_per_char", "perplexity"}
    assert result["split"] == "val" and result["tokens"] == result["characters"] == 135
    assert result["perplexity"] == pytest.approx(2.718281828 ** result["loss"], rel=1e-5)
    rhyme = tinygpt.load(rhyme_run.out_dir).evaluate()
    assert rhyme["split"] == "train" and rhyme["tokens"] == 105 and rhyme["loss"] < 0.5


def test_evaluate_on_another_file(char_run, tiny_corpus):
    run = tinygpt.load(char_run)
    result = run.evaluate(data=str(tiny_corpus))
    assert result["split"] == "all" and result["tokens"] == 1353 - 1


def test_the_public_api_is_documented():
    for obj in (tinygpt, tinygpt.train, tinygpt.load, tinygpt.TinyGPTError, Run, Run.generate, Run.evaluate,
                Run.start_ids, TrainResult):
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, obj
    assert "max_iters" in tinygpt.train.__doc__ and "checkpoint" in tinygpt.load.__doc__
    assert set(tinygpt.__all__) >= {"train", "load", "Run", "TinyGPTError", "__version__"}


def test_every_module_and_main_entry_point_says_what_it_is_for():
    undocumented = []
    for info in pkgutil.walk_packages(tinygpt.__path__, "tinygpt."):
        if info.name == "tinygpt.__main__":
            continue
        module = importlib.import_module(info.name)
        if not (module.__doc__ or "").strip():
            undocumented.append(info.name)
    assert undocumented == []
    from tinygpt.cli import main
    from tinygpt.model import GPT, build_model
    from tinygpt.tokenizers import load_tokenizer, train_tokenizer
    from tinygpt.training import Trainer

    for obj in (main, GPT, build_model, load_tokenizer, train_tokenizer, Trainer, Trainer.train,
                Trainer.request_stop):
        assert inspect.getdoc(obj), obj


def test_the_assistant_stages_are_package_functions_that_check_their_input(char_run, tmp_path):
    for stage, kwargs in ((tinygpt.sft, dict(base=str(char_run), data=str(tmp_path / "none.jsonl"))),
                          (tinygpt.reward, dict(base=str(char_run), data=str(tmp_path / "none.jsonl"))),
                          (tinygpt.rl, dict(sft_run=str(char_run), prompts=str(tmp_path / "none.jsonl"),
                                            reward="no_such_module:f"))):
        with pytest.raises(tinygpt.TinyGPTError) as e:
            stage(**kwargs, out=str(tmp_path / stage.__name__))
        assert "\n" not in str(e.value)
        assert not (tmp_path / stage.__name__).exists()  # nothing written
