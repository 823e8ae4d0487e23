"""Settings in layers: defaults < preset < `--config` YAML < command-line flags, later wins.

Every value arrives as YAML or command-line text and is coerced to its field's type here, so a
typo or a wrong type is one clear line, whatever layer it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import fields
from typing import Any

from ..core.errors import TinyGPTError
from .model import ModelConfig
from .train import TrainConfig

DERIVED = ("vocab_size", "source_vocab_size")  # the model's, from its tokenizers; never a user setting
MODEL_FIELDS = {f.name: f for f in fields(ModelConfig) if f.name not in DERIVED}
TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}
# `vocab_size` as a user setting means the BPE target; the model's is derived from the tokenizer.
ALL_FIELDS = {**MODEL_FIELDS, **TRAIN_FIELDS}

# Model settings a fine-tuning run may change: they leave the trained function as it is.
FINE_TUNE_MODEL_CHANGES = ("dropout", "attention")
# Training settings that the run a fine-tuning verb (sft, reward, rl) starts from fixes (its tokenizer, how
# its text was marked up), that belong to another objective, or that only a model trained from scratch wants
# (embedding_lr: fresh tables learning faster in a short run; trained ones are fine-tuned at lr; window_schedule:
# windows cut from a text, where the fine-tuning verbs train on whole examples).
NOT_FOR_FINE_TUNING = ("tokenizer", "source_tokenizer", "vocab_size", "sentence_end", "mask_fraction", "init_from",
                       "embedding_lr", "window_schedule")
WRITES_TEXT = ("sample_tokens", "num_samples", "sample_prompts")  # the samples after training: not a reward model's
LORA = ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets")  # adapters of a language model: not a reward model's


def accepted_settings(verb: str) -> set[str]:
    """The settings `tinygpt VERB` accepts (its flags): all of them for train; for a fine-tuning verb, the
    training settings it may change and the model settings that leave the function alone."""
    if verb == "train":
        return set(ALL_FIELDS)
    names = {name for name in TRAIN_FIELDS if name not in NOT_FOR_FINE_TUNING} | set(FINE_TUNE_MODEL_CHANGES)
    return names - set(WRITES_TEXT) - set(LORA) if verb == "reward" else names


def coerce(name: str, value: Any) -> Any:
    """Convert a value from YAML or the command line to the type of setting `name`."""
    f = ALL_FIELDS.get(name)
    if f is None:
        close = difflib.get_close_matches(name, ALL_FIELDS, n=3) or [k for k in ALL_FIELDS if k.startswith(name[:3])]
        hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
        raise TinyGPTError(f"unknown setting {name!r}{hint}; `tinygpt train --help` lists them all")
    kind = type(f.default)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, str) and not re.fullmatch(r"\s*-?\d+\s*", value):
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise TinyGPTError(f"setting {name} expects {kind.__name__}, got {value!r}") from None


def build_configs(*layers: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """Apply setting dictionaries in order (later wins) over the defaults and validate."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            merged[name] = coerce(name, value)
    model = ModelConfig(**{k: v for k, v in merged.items() if k in MODEL_FIELDS})
    train = TrainConfig(**{k: v for k, v in merged.items() if k in TRAIN_FIELDS})
    return model.validate(), train.validate()


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Rebuild a saved ModelConfig; unknown keys mean the file is not ours (or from a newer version)."""
    known = {f.name for f in fields(ModelConfig)}
    unknown = set(d) - known
    if unknown:
        raise TinyGPTError(f"config.json has settings this tinygpt does not know: {', '.join(sorted(unknown))}")
    try:
        cfg = ModelConfig(**{k: coerce(k, v) if k not in DERIVED else int(v) for k, v in d.items()})
    except (TypeError, ValueError) as e:
        raise TinyGPTError(f"config.json is not a valid model config: {e}") from None
    if cfg.vocab_size < 1:
        raise TinyGPTError("config.json has no vocab_size; the run directory is incomplete")
    return cfg.validate()


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
