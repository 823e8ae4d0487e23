"""`RLConfig`: the settings of reinforcement learning (`tinygpt rl`) beside the training ones.

Recorded in an rl run's config.json (`data.rl`); a resumed run keeps them. What each one does is
explained in objectives/rl.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core.errors import TinyGPTError
from .fields import check_choices, check_numbers, setting


@dataclass
class RLConfig:
    """The settings of reinforcement learning beside the training ones (recorded in config.json)."""

    reward: str = setting("", "what a reply is worth: a reward run (tinygpt reward), or module:function, a Python "
                              "function f(prompt, reply) -> float (a module name or a path/to/file.py)")
    algorithm: str = setting("ppo", "ppo: clipped objective, value head, KL penalty in the reward; grpo: advantages "
                                    "relative to the other replies to the same prompt, no value model",
                             ("ppo", "grpo"))
    group_size: int = setting(4, "replies sampled for each prompt of a rollout (grpo: at least 2)")
    rollout_batches: int = setting(1, "a rollout is this many batches of --batch-size replies")
    epochs: int = setting(2, "passes over each rollout, one optimizer step per batch, before sampling the next")
    max_new_tokens: int = setting(32, "the longest reply in tokens (the model's context may cut it shorter)")
    temperature: float = setting(1.0, "sampling temperature of the replies learnt from")
    kl_coef: float = setting(0.05, "weight of the KL penalty that keeps the policy near the sft model")
    clip_range: float = setting(0.2, "how far one rollout may move a token's probability ratio (PPO's epsilon)")
    vf_coef: float = setting(0.1, "ppo: weight of the value head's loss")
    gamma: float = setting(1.0, "ppo: discount per token")
    lam: float = setting(0.95, "ppo: GAE's lambda (0: one-step estimates, 1: whole returns)")

    def validate(self, batch_size: int) -> "RLConfig":
        check_choices(self)
        check_numbers(self)
        for name in ("group_size", "rollout_batches", "epochs", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise TinyGPTError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.algorithm == "grpo" and self.group_size < 2:
            raise TinyGPTError(f"grpo compares the replies to one prompt: group_size must be at least 2, got "
                               f"{self.group_size}")
        replies = batch_size * self.rollout_batches
        if replies % self.group_size:
            raise TinyGPTError(f"a rollout of {replies} replies (batch_size {batch_size} x rollout_batches "
                               f"{self.rollout_batches}) does not split into groups of {self.group_size}; make "
                               "group_size divide it")
        if self.temperature <= 0:
            raise TinyGPTError(f"temperature must be positive (replies are sampled), got {self.temperature}")
        for name in ("kl_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise TinyGPTError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.clip_range <= 0:
            raise TinyGPTError(f"clip_range must be positive, got {self.clip_range}")
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TinyGPTError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        return self


RL_FIELDS = {f.name: f for f in dataclasses.fields(RLConfig)}
