"""The settings of a run: a new one, one resumed from its directory, or one fine-tuning another run.

    model_cfg, train_cfg, out_dir, preset = resolve(preset, config_file, flags, resume)

- a new run layers defaults < preset < `--config` YAML < flags (no preset, file or data: `rhyme`);
  it goes to `--out`, or to runs/<the data's name> (a rerun there is refused: the loop says how to
  resume or overwrite);
- a resumed run starts from its config.json; only settings that leave the computation's meaning
  alone may change (steps, time budget, evaluation, logging);
- a fine-tuning run (`init_from`) takes the source run's model settings and tokenizer and new
  training settings from the usual layers; with `lora_rank` it trains adapters (model/lora.py), and a
  request the model cannot take is refused here, before any run is overwritten.
"""

from __future__ import annotations

from pathlib import Path

from ..config.precedence import DERIVED, FINE_TUNE_MODEL_CHANGES, MODEL_FIELDS, build_configs, coerce
from ..config.presets import load_preset, load_yaml_settings
from ..core.errors import TinyGPTError
from ..data.corpus import corpus_name
from ..model.lora import check_lora
from ..store.rundir import RunDir

# Settings that fix what a resumed run computes: changing them would not continue the same run.
FIXED_ON_RESUME = ("data", "tokenizer", "source_tokenizer", "vocab_size", "sentence_end", "val_fraction", "seed",
                   "batch_size", "init_from", "lora_rank", "lora_alpha", "lora_dropout", "lora_targets")


def resolve(preset: str = "", config_file: str = "", overrides: dict | None = None, resume: str = ""):
    """Settings for a run; returns (model_config, train_config, out_dir, preset_name)."""
    overrides = dict(overrides or {})
    if overrides.get("time_budget") and "max_iters" not in overrides:
        overrides["max_iters"] = 0  # a time budget alone decides when to stop
    if resume:
        return resume_settings(RunDir(resume), overrides)
    if "lora_rank" in overrides and coerce("lora_rank", overrides["lora_rank"]) == 0:
        raise TinyGPTError("--lora-rank 0 trains no adapter; give a rank of 1 or more (8 is common), or leave "
                           "--lora-rank out to fine-tune every weight")
    if overrides.get("init_from"):
        return fine_tune_settings(preset, config_file, overrides)
    if not preset and not config_file and overrides.get("data", "rhyme") == "rhyme":
        preset = "rhyme"  # `tinygpt train` and `tinygpt train --data rhyme`: the tutorial's model
    base = load_preset(preset)["settings"] if preset else {}
    from_file = load_yaml_settings(config_file) if config_file else {}
    model, train = build_configs(base, from_file, overrides)
    adopt_prepared(model, train, {**from_file, **overrides}, PREPARED_FIXES)
    out = Path(train.out) if train.out else Path("runs") / corpus_name(train.data)
    train.out = str(out)
    return model, train, out, preset


def resume_settings(run: RunDir, overrides: dict):
    """The saved settings of `run`, with the changes a resumed run allows."""
    saved = run.read_config()
    saved_model = {k: v for k, v in saved.model.__dict__.items() if k not in DERIVED}
    changed = [k for k in overrides if k in MODEL_FIELDS and coerce(k, overrides[k]) != saved_model.get(k)]
    if changed:
        raise TinyGPTError(f"cannot change model setting(s) {', '.join(changed)} when resuming; "
                           "start a new run instead")
    saved_train = saved.train.__dict__
    changed = [k for k in overrides if k in FIXED_ON_RESUME and coerce(k, overrides[k]) != saved_train.get(k)]
    if changed:
        raise TinyGPTError(f"cannot change {', '.join(changed)} when resuming; start a new run instead")
    overrides.pop("out", None)
    model, train = build_configs(saved_model, saved_train, overrides)
    return model, train, run.path, saved.preset


def fine_tune_settings(preset: str, config_file: str, overrides: dict):
    """Settings for a run that starts from another run's weights: its model and tokenizer, new training.

    Training settings come from the usual layers (preset < config file < flags); the model's shape
    and the tokenizer come from the run, and its own text is the default data.
    """
    source = RunDir(overrides["init_from"])
    saved = source.read_config()
    saved_model = {k: v for k, v in saved.model.__dict__.items() if k not in DERIVED}
    base = load_preset(preset)["settings"] if preset else {}
    from_file = load_yaml_settings(config_file) if config_file else {}
    asked = {**base, **from_file, **overrides}
    changed = [k for k in asked if k in MODEL_FIELDS and k not in FINE_TUNE_MODEL_CHANGES
               and coerce(k, asked[k]) != saved_model.get(k)]
    if changed:
        raise TinyGPTError(f"cannot change model setting(s) {', '.join(changed)} when fine-tuning {source}: the "
                           "weights fix them (only " + ", ".join(FINE_TUNE_MODEL_CHANGES) + " may change)")
    saved_train = saved.train
    if "tokenizer" in asked and str(asked["tokenizer"]) != saved_train.tokenizer:
        raise TinyGPTError(f"the tokenizer comes from {source} when fine-tuning it; leave --tokenizer out")
    # The run's tokenizer (and how its corpus was marked up) goes with its weights; its text is the default.
    inherited = {"tokenizer": saved_train.tokenizer, "source_tokenizer": saved_train.source_tokenizer,
                 "vocab_size": saved_train.vocab_size,
                 "sentence_end": saved_train.sentence_end}
    if "data" not in asked and not saved_train.data:
        raise TinyGPTError(f"{source} has no training text of its own (it was imported); pass --data FILE")
    data = {} if "data" in asked else {"data": saved_train.data}
    model, train = build_configs(base, from_file, saved_model, inherited, data,
                                 {k: v for k, v in overrides.items() if k not in MODEL_FIELDS},
                                 {k: v for k, v in asked.items() if k in FINE_TUNE_MODEL_CHANGES})
    adopt_prepared(model, train, asked, ("val_fraction",))  # the tokenizer is the source's: the objective checks
    check_lora(model, train, str(source))  # before a run is overwritten or its data read
    out = Path(train.out) if train.out else Path("runs") / f"{corpus_name(train.data)}-finetuned"
    train.out = str(out)
    return model, train, out, preset


def adopt_prepared(model, train, asked: dict, fixed: tuple[str, ...]):
    """A folder of `tinygpt prepare` as the data fixes the tokenizer and the split: the run takes the
    folder's (so config.json says what was trained on), over a preset's; a flag or config file that
    asks for others is refused."""
    from ..data import PreparedData

    prepared = PreparedData.open(train.data)
    if prepared is None:
        return
    if model.arch in ("encoder", "encoder-decoder"):
        raise TinyGPTError(f"{train.data} holds prepared tokens, which train a GPT; an {model.arch} reads its "
                           "text itself: pass --data FILE")
    for name, value in prepared.settings().items():
        if name not in fixed:
            continue
        if name in asked and coerce(name, asked[name]) != value:
            raise TinyGPTError(f"{train.data} was prepared with {name} {value!r}; leave out --{name.replace('_', '-')} "
                               f"(the prepared tokens fix it) or prepare the text again with the {name} you want")
        setattr(train, name, value)


PREPARED_FIXES = ("tokenizer", "vocab_size", "sentence_end", "val_fraction")
