"""What a setting is: a dataclass field with a default, a help text and (maybe) a list of choices.

Every field of `ModelConfig` and `TrainConfig` is made with `setting(...)`, so the command line
can turn each one into a flag with its help (`n_embd` -> `--n-embd`) and validation can check
choices in one place.
"""

from __future__ import annotations

import re
from dataclasses import field, fields
from typing import Any

from ..core.errors import TinyGPTError


def setting(default: Any, help: str, choices: tuple | None = None):
    return field(default=default, metadata={"help": help, "choices": choices})


def check_choices(cfg) -> None:
    for f in fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices and value not in choices:
            raise TinyGPTError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")


def parse_duration(text: str) -> float:
    """'90s' -> 90.0, '3m' -> 180.0, '1h' -> 3600.0, '45' -> 45.0 (seconds)."""
    m = _DURATION.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise TinyGPTError(f"time budget {text!r} is not a duration; write e.g. 90s, 3m or 1h")
    scale = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[m.group(2)]
    return float(m.group(1)) * scale
