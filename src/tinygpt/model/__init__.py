"""The networks: a GPT (fast and teaching paths) and the bigram baseline."""

from ..config import ModelConfig
from .bigram import BigramLM
from .gpt import GPT


def build_model(cfg: ModelConfig):
    """A freshly initialised model for a validated config (vocab_size already set)."""
    return BigramLM(cfg) if cfg.arch == "bigram" else GPT(cfg)


__all__ = ["GPT", "BigramLM", "build_model"]
