"""The networks: a GPT (fast and teaching paths), the bigram baseline and the reward model."""

from ..config import ModelConfig
from .bigram import BigramLM
from .gpt import GPT
from .reward import RewardModel


def build_model(cfg: ModelConfig):
    """A freshly initialised model for a validated config (vocab_size already set)."""
    if cfg.arch == "reward":
        return RewardModel(cfg)
    return BigramLM(cfg) if cfg.arch == "bigram" else GPT(cfg)


__all__ = ["GPT", "BigramLM", "RewardModel", "build_model"]
