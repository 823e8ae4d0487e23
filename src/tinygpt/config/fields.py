"""What a setting is: a dataclass field with a default, a help text and (maybe) a list of choices.

Every field of `ModelConfig` and `TrainConfig` is made with `setting(...)`, so the command line
can turn each one into a flag with its help (`n_embd` -> `--n-embd`) and validation can check
choices and number ranges in one place (`check_choices`, `check_numbers`).
"""

from __future__ import annotations

import math
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


# Integer settings count things (steps, tokens, layers, threads): past 2**31 - 1 they overflow PyTorch's 32-bit
# arguments or ask for memory no machine has, so they are refused before any work starts. The seed is 64 bits.
MOST = 2**31 - 1
SEED_RANGE = (-(2**63), 2**63 - 1)  # what torch.manual_seed takes, with room for the seed + i of each sample


def check_numbers(cfg) -> None:
    """Every float setting is a finite number (NaN and infinities compute nothing), every integer setting fits
    what PyTorch takes; one line naming the setting and its default otherwise."""
    for f in fields(cfg):
        value, default = getattr(cfg, f.name), f.default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(default, float) and not math.isfinite(value):
            raise TinyGPTError(f"{f.name} must be a finite number, got {value}; its default is {default}")
        if type(default) is int and f.name == "seed" and not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
            raise TinyGPTError(f"seed must fit in 64 bits (torch's generators), from -2**63 to 2**63 - 1; got {value}")
        if type(default) is int and f.name != "seed" and abs(value) > MOST:
            raise TinyGPTError(f"{f.name} is {value:,}, past the largest count tinygpt takes ({MOST:,}); its "
                               f"default is {default}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")


def parse_duration(text: str) -> float:
    """'90s' -> 90.0, '3m' -> 180.0, '1h' -> 3600.0, '45' -> 45.0 (seconds)."""
    m = _DURATION.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise TinyGPTError(f"time budget {text!r} is not a duration; write e.g. 90s, 3m or 1h")
    scale = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[m.group(2)]
    return float(m.group(1)) * scale
