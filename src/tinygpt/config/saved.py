"""Settings read back from a file tinygpt wrote (a run's config.json): checked key by key as they are read.

A damaged or hand-edited file is one line naming the file, the key and the fix, never a traceback
further on: every key of a section must be a setting this tinygpt knows, of its JSON type (a string
is not a number, a number is not a flag), and the keys every run has written since the first
version must be there.

    check_section(doc["model"], MODEL_KEYS, "model", path)    # the section, checked, or TinyGPTError
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

from ..core.errors import TinyGPTError
from .dpo import DPOConfig
from .model import ModelConfig
from .rl import RLConfig
from .train import TrainConfig

# What no run has ever been written without: without them the model cannot be rebuilt or its run resumed.
REQUIRED = {"model": ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"),
            "train": ("data", "tokenizer", "max_iters", "seed", "batch_size"),
            "data.rl": (), "data.dpo": ()}
KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
DAMAGED = "the file is damaged: put back the value the run was made with, or make the run again"


def _defaults(cls) -> dict[str, object]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


MODEL_KEYS, TRAIN_KEYS, RL_KEYS = _defaults(ModelConfig), _defaults(TrainConfig), _defaults(RLConfig)
DPO_KEYS = _defaults(DPOConfig)


def has_kind(value, kind: type) -> bool:
    """Whether a JSON value is of a setting's type (an int is a float; a bool is neither)."""
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def check_section(values, known: dict[str, object], section: str, path: str | Path) -> dict:
    """`values` (the `section` of the file `path`), if each key is one of `known` (name -> default) with a value
    of its default's type and the required keys are there; otherwise the one-line error."""
    if not isinstance(values, dict):
        raise TinyGPTError(f"{path}: `{section}` should be a mapping of setting: value, got {_show(values)}; "
                           f"{DAMAGED}")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TinyGPTError(f"{path} has settings this tinygpt does not know: "
                           f"{', '.join(f'{section}.{k}' for k in unknown)} (written by a newer tinygpt? upgrade it)")
    for key, value in values.items():
        kind = type(known[key])
        if not has_kind(value, kind):
            raise TinyGPTError(f"{path}: {section}.{key} should be {KINDS[kind]}, got {_show(value)}; {DAMAGED}")
    if missing := [key for key in REQUIRED.get(section, ()) if key not in values]:
        raise TinyGPTError(f"{path} lacks {', '.join(f'{section}.{k}' for k in missing)}; {DAMAGED}")
    return values


def check_value(value, kind: type, key: str, path: str | Path):
    """One top-level value of the file (`key`), of JSON type `kind`."""
    if not has_kind(value, kind):
        raise TinyGPTError(f"{path}: {key} should be {KINDS.get(kind, 'a mapping')}, got {_show(value)}; {DAMAGED}")
    return value


def _show(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
