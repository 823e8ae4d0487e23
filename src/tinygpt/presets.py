"""Named recipes: YAML files in tinygpt/presets/, one per system we reproduce or recommend.

Each file has a one-line `description`, what it `reproduces` (the published number), what to
`expect` from tinygpt, and the `settings` it sets (any setting of `tinygpt train --help`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from .errors import TinyGPTError


def _preset_files() -> dict[str, object]:
    folder = resources.files("tinygpt").joinpath("presets")
    return {f.name[: -len(".yaml")]: f for f in folder.iterdir() if f.name.endswith(".yaml")}


def preset_names() -> list[str]:
    return sorted(_preset_files())


def load_preset(name: str) -> dict:
    """The whole preset document: description, reproduces, expect, settings."""
    files = _preset_files()
    if name not in files:
        raise TinyGPTError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(files))} "
                           "(`tinygpt presets` describes them)")
    doc = yaml.safe_load(files[name].read_text(encoding="utf-8"))
    doc.setdefault("settings", {})
    return doc


def load_yaml_settings(path: str | Path) -> dict:
    """Settings from a user's YAML file: either flat, or under a `settings:` key like a preset."""
    path = Path(path)
    if not path.is_file():
        raise TinyGPTError(f"config file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TinyGPTError(f"config file {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise TinyGPTError(f"config file {path} must be a mapping of setting: value")
    settings = doc.get("settings", doc)
    if not isinstance(settings, dict):
        raise TinyGPTError(f"config file {path}: `settings` must be a mapping of setting: value")
    return {k: v for k, v in settings.items() if k not in ("description", "reproduces", "expect")}


def resolve(preset: str = "", config_file: str = "", overrides: dict | None = None, resume: str = ""):
    """Settings for a run, later layers winning: defaults < preset < config file < overrides.

    With no preset, no config file and no data, the run is the `rhyme` preset (tinygpt's main job).
    Resuming starts from the run's saved settings; only non-model settings may change.
    Returns (model_config, train_config, out_dir, preset_name).
    """
    from .config import MODEL_FIELDS, build_configs
    from .data import corpus_name

    overrides = dict(overrides or {})
    if overrides.get("time_budget") and "max_iters" not in overrides:
        overrides["max_iters"] = 0  # a time budget alone decides when to stop
    if resume:
        from .run import read_run_config

        doc = read_run_config(Path(resume))
        saved_model = {k: v for k, v in doc["model"].items() if k != "vocab_size"}
        changed = [k for k in overrides if k in MODEL_FIELDS and overrides[k] != saved_model.get(k)]
        if changed:
            raise TinyGPTError(f"cannot change model setting(s) {', '.join(changed)} when resuming; "
                               "start a new run instead")
        fixed = ("data", "tokenizer", "vocab_size", "sentence_end", "val_fraction", "seed", "batch_size", "init_from")
        changed = [k for k in overrides if k in fixed and str(overrides[k]) != str(doc["train"].get(k))]
        if changed:
            raise TinyGPTError(f"cannot change {', '.join(changed)} when resuming; start a new run instead")
        overrides.pop("out", None)
        model, train = build_configs(saved_model, doc["train"], overrides)
        return model, train, Path(resume), doc.get("preset", "")
    if overrides.get("init_from"):
        return _fine_tune(preset, config_file, overrides)
    if not preset and not config_file and "data" not in overrides:
        preset = "rhyme"
    base = load_preset(preset)["settings"] if preset else {}
    from_file = load_yaml_settings(config_file) if config_file else {}
    model, train = build_configs(base, from_file, overrides)
    out = Path(train.out) if train.out else _fresh_dir(Path("runs") / (preset or corpus_name(train.data)))
    train.out = str(out)
    return model, train, out, preset


# Model settings a fine-tuning run may change: they leave the trained function as it is.
FINE_TUNE_MODEL_CHANGES = ("dropout", "attention")


def _fine_tune(preset: str, config_file: str, overrides: dict):
    """Settings for a run that starts from another run's weights: its model and tokenizer, new training.

    Training settings come from the usual layers (preset < config file < flags); the model's shape
    and the tokenizer come from the run, and its own text is the default data.
    """
    from .config import MODEL_FIELDS, build_configs
    from .data import corpus_name
    from .run import read_run_config

    source = Path(overrides["init_from"])
    doc = read_run_config(source)
    saved_model = {k: v for k, v in doc["model"].items() if k != "vocab_size"}
    base = load_preset(preset)["settings"] if preset else {}
    from_file = load_yaml_settings(config_file) if config_file else {}
    asked = {**base, **from_file, **overrides}
    changed = [k for k in asked if k in MODEL_FIELDS and k not in FINE_TUNE_MODEL_CHANGES
               and asked[k] != saved_model.get(k)]
    if changed:
        raise TinyGPTError(f"cannot change model setting(s) {', '.join(changed)} when fine-tuning {source}: the "
                           "weights fix them (only " + ", ".join(FINE_TUNE_MODEL_CHANGES) + " may change)")
    saved_train = doc["train"]
    if "tokenizer" in asked and str(asked["tokenizer"]) != str(saved_train.get("tokenizer")):
        raise TinyGPTError(f"the tokenizer comes from {source} when fine-tuning it; leave --tokenizer out")
    # The run's tokenizer (and how its corpus was marked up) goes with its weights; its text is the default.
    inherited = {k: saved_train[k] for k in ("tokenizer", "vocab_size", "sentence_end") if k in saved_train}
    if "data" not in asked and not saved_train.get("data"):
        raise TinyGPTError(f"{source} has no training text of its own (it was imported); pass --data FILE")
    data = {} if "data" in asked else {"data": saved_train["data"]}
    model, train = build_configs(base, from_file, saved_model, inherited, data,
                                 {k: v for k, v in overrides.items() if k not in MODEL_FIELDS},
                                 {k: v for k, v in asked.items() if k in FINE_TUNE_MODEL_CHANGES})
    out = Path(train.out) if train.out else _fresh_dir(Path("runs") / f"{corpus_name(train.data)}-finetuned")
    train.out = str(out)
    return model, train, out, preset


def _fresh_dir(base: Path) -> Path:
    """base, or base-2, base-3, ...: the first that does not exist, so no earlier run is touched."""
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
