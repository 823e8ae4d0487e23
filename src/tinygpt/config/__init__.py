"""Settings: the model's shape (`ModelConfig`), how to train it (`TrainConfig`), and where they come from.

    model.py    ModelConfig, saved in every run's config.json
    train.py    TrainConfig
    fields.py   what a setting is (default, help, choices), durations
    precedence.py  merging defaults < preset < YAML file < flags, with type coercion; what each verb accepts
    presets.py  the named recipes in tinygpt/presets/*.yaml, and users' YAML files
    rl.py       RLConfig: reinforcement learning's own settings (tinygpt rl)
    dpo.py      DPOConfig: Direct Preference Optimization's own settings (tinygpt dpo)
"""

from .fields import parse_duration
from .model import ModelConfig
from .precedence import ALL_FIELDS, MODEL_FIELDS, TRAIN_FIELDS, build_configs, coerce, model_config_from_dict, to_dict
from .train import TrainConfig

__all__ = ["ModelConfig", "TrainConfig", "ALL_FIELDS", "MODEL_FIELDS", "TRAIN_FIELDS", "build_configs", "coerce",
           "model_config_from_dict", "to_dict", "parse_duration"]
