"""tinygpt: train small GPT language models from scratch on your own text, sample them, look inside.

    import tinygpt
    result = tinygpt.train(preset="rhyme", out="runs/rhyme")      # or data="my.txt", max_iters=500, ...
    run = tinygpt.load("runs/rhyme")
    print(run.generate("mary", max_new_tokens=12, temperature=0.8))
    print(run.evaluate())
    tinygpt.import_gpt2("hf:openai-community/gpt2", "runs/gpt2")   # GPT-2's weights, as a run
    tinygpt.export("runs/rhyme", to="hf", out="exports/rhyme")      # for transformers (or to="gguf")
    tinygpt.prepare("big.txt", "data/big", tokenizer="bpe")         # a text too big for memory, tokenised
    tinygpt.train(data="data/big", out="runs/big")                  # once; training reads its windows

    tinygpt.sft("runs/base", data="chats.jsonl", out="runs/sft")                  # from document completer
    tinygpt.reward("runs/sft", data="pairs.jsonl", out="runs/reward")             # to assistant
    tinygpt.rl("runs/sft", prompts="prompts.jsonl", reward="runs/reward", out="runs/rl")
    tinygpt.dpo("runs/sft", data="pairs.jsonl", out="runs/dpo")                   # or, no reward model
    tinygpt.load("runs/rl").chat([{"role": "user", "content": "What is 2 + 3?"}])

    tinygpt.train(preset="seq2seq-demo", out="runs/dates")                        # an encoder-decoder
    tinygpt.load("runs/dates").translate("1987-11-05")                           # '5 november 1987'
"""

from .core.errors import TinyGPTError
from .core.version import __version__


def __getattr__(name: str):
    """`tinygpt.Run` and `tinygpt.load` import PyTorch when first asked for, so that `import tinygpt` (and
    `tinygpt --version`, `--help`) does not."""
    if name in ("Run", "load"):
        from .app import run

        return getattr(run, name)
    raise AttributeError(f"module 'tinygpt' has no attribute {name!r}")


def train(preset: str = "", config: str = "", out: str = "", resume: str = "", log=None, on_step=None,
          overwrite: bool = False, **settings):
    """Train a model; the same settings as `tinygpt train` (underscored: max_iters=500, n_embd=64).

    preset: a named recipe (`tinygpt presets`); config: a YAML file of settings; out: run directory;
    resume: a run directory to continue; overwrite: replace a run already in `out` (otherwise refused);
    init_from=RUN fine-tunes that run's weights. Returns a `TrainResult` (losses, step, samples,
    out_dir). log(line): where the log lines go (default: print); on_step(trainer): called after every
    optimizer step.
    """
    from .app.launch import train as launch_train

    return launch_train(preset, config, out, resume, log=log, on_step=on_step, overwrite=overwrite, **settings)


def prepare(source: str, out: str, **settings):
    """Tokenise the text `source` (a file, a folder, a table of documents, hf:NAME) a block at a time into
    the folder `out` (`tinygpt prepare`); settings: tokenizer="char", vocab_size=512, val_fraction=0.1,
    text_field="text", ... Returns the PreparedData; train on it with `train(data=out)`."""
    from .data.prepared import prepare as write

    settings.setdefault("log", None)
    return write(source, out, **settings)


def import_gpt2(source: str, out: str):
    """Write a run directory at `out` from a GPT-2 checkpoint: a folder in Hugging Face's layout, or
    hf:NAME from the Hub (`tinygpt import`). Returns its path; `tinygpt.load` it, or fine-tune it
    with `tinygpt.train(init_from=out, data=...)`."""
    from .convert.gpt2 import import_gpt2 as write_run

    return write_run(source, out)


def export(run_dir: str, to: str = "hf", out: str | None = None, force: bool = False):
    """Write a run for use elsewhere (`tinygpt export`): to="hf", a folder Hugging Face transformers
    loads (plain GPT-2 when the run fits it, else with its own modeling file); to="gguf", one file for
    llama.cpp. out: where (default beside the run: NAME-hf, NAME.gguf); force: overwrite it. Returns
    an `Exported` (path, form, and why the custom-code form was needed)."""
    from .convert.export import export as write

    return write(run_dir, to, out, force)


def sft(base: str, data: str, **settings):
    """Supervised fine-tuning of the run `base` on the conversations in `data` (`tinygpt sft`): out=,
    resume=, and the settings of `tinygpt train`. Returns a `TrainResult`."""
    from .app.launch import sft as fine_tune

    return fine_tune(base, data, **settings)


def reward(base: str, data: str, **settings):
    """A reward model from the run `base`, trained on the preference pairs in `data` (`tinygpt reward`):
    out=, resume=, and the settings of `tinygpt train`. Returns a `TrainResult`."""
    from .app.launch import reward as train_reward

    return train_reward(base, data, **settings)


def rl(sft_run: str, prompts: str, reward: str, **settings):
    """Reinforcement learning of the sft run `sft_run` on `prompts` against `reward` (a reward run, or
    module:function) (`tinygpt rl`): algorithm="ppo" or "grpo", out=, resume=, the RL settings and
    those of `tinygpt train`. Returns a `TrainResult`."""
    from .app.launch import rl as reinforce

    return reinforce(sft_run, prompts, reward, **settings)


def dpo(sft_run: str, data: str, **settings):
    """Direct Preference Optimization of the sft run `sft_run` on the preference pairs in `data`, against
    `sft_run` frozen (`tinygpt dpo`): beta=0.1, loss_type="sigmoid" or "ipo", out=, resume=, and the
    settings of `tinygpt train`. Returns a `TrainResult`."""
    from .app.launch import dpo as optimize

    return optimize(sft_run, data, **settings)


__all__ = ["__version__", "TinyGPTError", "Run", "load", "train", "prepare", "import_gpt2", "export", "sft", "reward",
           "rl", "dpo"]
