"""What a reply is worth, for reinforcement learning (`tinygpt rl --reward SPEC`).

    reward = load_reward("checks.py:exact_answer")    # or "mypackage.checks:exact_answer", or a reward run
    scores = reward.score(prompts, replies, ids, lengths)   # one float per reply

- `module:function` (or `path/to/file.py:function`): a verifiable reward, a Python function
  `f(prompt: str, reply: str) -> float` (a bool counts as 0 or 1), as nanochat scores arithmetic.
  `prompt` is the prompt as the prompts file writes it (a conversation: its last message); `reply`
  is the reply's text, without the token that ended it and the whitespace around it. A module is
  imported from the current directory too, as `python -m` would.
- a run directory made by `tinygpt reward`: the reward model's score of the prompt and the reply
  as the policy wrote them (the same token ids, the chat template's), read at the reply's last token.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from pathlib import Path

import torch

from ..core.errors import TinyGPTError
from ..store.rundir import RunDir


class Reward:
    """Scores replies. `to(device)` places what it computes with (a reward model) once."""

    spec: str

    def score(self, prompts: list[str], replies: list[str], ids: torch.Tensor, lengths: torch.Tensor) -> list[float]:
        """One reward per reply. ids: (N, T) each prompt and its reply as token ids, padded on the right;
        lengths: (N,) the real tokens of each row."""
        raise NotImplementedError

    def to(self, device) -> "Reward":
        return self

    def check(self, chat, block_size: int):
        """Refuse a reward that cannot read what the policy writes (`chat`: its ChatFormat, block_size: its
        context): other token ids, another chat template, longer texts."""
        return None


class FunctionReward(Reward):
    """A Python function of the prompt's and the reply's text."""

    def __init__(self, spec: str, function):
        self.spec = spec
        self.function = function

    def score(self, prompts, replies, ids=None, lengths=None) -> list[float]:
        return [self._one(prompt, reply) for prompt, reply in zip(prompts, replies)]

    def _one(self, prompt: str, reply: str) -> float:
        try:
            value = self.function(prompt, reply)
        except Exception as e:  # the user's code: any failure is theirs to fix, named in one line
            raise TinyGPTError(f"the reward function {self.spec} failed on the reply {reply!r} "
                               f"({type(e).__name__}: {e})") from None
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, (int, float)):
            raise TinyGPTError(f"the reward function {self.spec} returned {value!r} (a {type(value).__name__}) for "
                               f"the reply {reply!r}; it must return a number")
        if not math.isfinite(value):
            raise TinyGPTError(f"the reward function {self.spec} returned {value} for the reply {reply!r}; it must "
                               "return a finite number")
        return float(value)


class RewardModelScore(Reward):
    """The score of a reward model (`tinygpt reward`) at each reply's last token."""

    def __init__(self, spec: str, run: RunDir):
        from ..model import build_model
        from ..store.checkpoint import load_weights_into

        self.spec = spec
        self.run = run
        config = run.read_config()
        self.model = build_model(config.model)
        state, path = run.read_weights("best")
        load_weights_into(self.model, state, path)
        self.model.requires_grad_(False).eval()
        self.tokenizer = run.read_tokenizer()

    def to(self, device) -> "RewardModelScore":
        self.model.to(device)
        return self

    def check(self, chat, block_size: int):
        if self.tokenizer.to_json() != chat.tokenizer.to_json():
            raise TinyGPTError(f"the reward model {self.spec} reads other token ids than the policy writes (its "
                               "tokenizer.json differs); train the reward model from the sft run")
        if self.run.read_chat_template() != chat.source:
            raise TinyGPTError(f"the reward model {self.spec} did not learn conversations written in the policy's "
                               "chat template; train it on conversational pairs from the sft run")
        if self.model.config.block_size < block_size:
            raise TinyGPTError(f"the reward model {self.spec} reads at most {self.model.config.block_size} tokens, "
                               f"fewer than the policy's {block_size}; train it from the sft run")

    @torch.no_grad()
    def score(self, prompts, replies, ids, lengths) -> list[float]:
        device = next(self.model.parameters()).device
        return self.model.score(ids.to(device), lengths.to(device)).float().cpu().tolist()


def load_reward(spec: str) -> Reward:
    """The reward `spec` names: a reward run's directory, or module:function; a bad one is one line."""
    if not spec:
        raise TinyGPTError("pass the reward: --reward REWARD_RUN (made by `tinygpt reward`) or --reward "
                           "module:function (a Python function f(prompt, reply) -> float)")
    path = Path(spec)
    if path.is_dir():
        run = RunDir(path)
        run.require()
        arch = run.read_config().model.arch
        if arch != "reward":
            raise TinyGPTError(f"--reward {spec} is a {arch} run, not a reward model; train one with "
                               f"`tinygpt reward {spec} --data PAIRS.jsonl`, or pass --reward module:function")
        return RewardModelScore(spec, run)
    module_name, colon, name = spec.rpartition(":")
    if not colon or not module_name or not name:
        raise TinyGPTError(f"--reward {spec} is neither a reward run directory nor module:function (a Python "
                           "function f(prompt, reply) -> float, e.g. checks.py:exact_answer)")
    module = _import(spec, module_name)
    function = getattr(module, name, None)
    if function is None:
        raise TinyGPTError(f"--reward {spec}: {module_name} has no function {name!r}")
    if not callable(function):
        raise TinyGPTError(f"--reward {spec}: {module_name}.{name} is not a function (it is {function!r})")
    try:
        inspect.signature(function).bind("prompt", "reply")
    except TypeError:
        raise TinyGPTError(f"--reward {spec}: {name} must take two arguments, the prompt and the reply "
                           f"(it is {name}{inspect.signature(function)})") from None
    except ValueError:  # a builtin without a signature: calls will tell
        pass
    return FunctionReward(spec, function)


def _import(spec: str, module_name: str):
    """The module of `spec`: a .py file by its path, or a module importable from here or sys.path."""
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise TinyGPTError(f"--reward {spec}: there is no file {file}")
            module_spec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
        here = str(Path.cwd())
        added = here not in sys.path
        if added:  # as `python -m` would: a module beside the user is found
            sys.path.insert(0, here)
        try:
            return importlib.import_module(module_name)
        finally:
            if added:
                sys.path.remove(here)
    except TinyGPTError:
        raise
    except ModuleNotFoundError as e:
        raise TinyGPTError(f"--reward {spec}: cannot import {module_name} ({e}); pass a module on the Python path "
                           "or the path of a .py file") from None
    except Exception as e:  # the user's module failed to import: say how, in one line
        raise TinyGPTError(f"--reward {spec}: importing {module_name} failed ({type(e).__name__}: {e})") from None
