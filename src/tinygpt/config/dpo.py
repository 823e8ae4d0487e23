"""`DPOConfig`: the settings of Direct Preference Optimization (`tinygpt dpo`) beside the training ones.

Recorded in a dpo run's config.json (`data.dpo`); a resumed run keeps them. What each one does is
explained in objectives/dpo.py. The defaults are TRL's DPOConfig's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core.errors import TinyGPTError
from .fields import check_choices, check_numbers, setting


@dataclass
class DPOConfig:
    """The settings of DPO beside the training ones (recorded in config.json)."""

    beta: float = setting(0.1, "how far from the reference (the sft run) the policy may move: larger keeps it "
                               "nearer; the implicit reward of a reply is beta x its log-probability ratio")
    loss_type: str = setting("sigmoid", "sigmoid: DPO's -log sigmoid(beta x margin) (TRL's default); ipo: the "
                                        "squared loss of IPO on per-token log-ratios", ("sigmoid", "ipo"))
    sft_weight: float = setting(0.0, "weight of an SFT term beside the preference loss: the chosen replies' mean "
                                     "loss per token (RPO; TRL's loss_type [sigmoid, sft]); 0: none")

    def validate(self) -> "DPOConfig":
        check_choices(self)
        check_numbers(self)
        if not self.beta > 0:
            raise TinyGPTError(f"beta must be a positive number, got {self.beta}; its default is 0.1")
        if self.sft_weight < 0:
            raise TinyGPTError(f"sft_weight must be 0 or more, got {self.sft_weight}")
        return self


DPO_FIELDS = {f.name: f for f in dataclasses.fields(DPOConfig)}
