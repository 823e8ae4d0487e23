"""The networks: a GPT (fast and teaching paths), the bigram baseline, the reward model, the encoder
and the encoder-decoder."""

from ..config import ModelConfig
from .bigram import BigramLM
from .encoder import Encoder
from .encoder_decoder import EncoderDecoder
from .gpt import GPT
from .reward_model import RewardModel

ARCHS = {"gpt": GPT, "bigram": BigramLM, "reward": RewardModel, "encoder": Encoder, "encoder-decoder": EncoderDecoder}


def build_model(cfg: ModelConfig):
    """A freshly initialised model for a validated config (vocab_size already set)."""
    return ARCHS[cfg.arch](cfg)


__all__ = ["GPT", "BigramLM", "RewardModel", "Encoder", "EncoderDecoder", "build_model"]
