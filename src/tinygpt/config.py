"""Typed settings for a model and for a training run, with validation.

Two dataclasses hold every setting tinygpt has:

- `ModelConfig` describes the network (the lecture's names: `block_size`, `n_embd`, `n_head`,
  `n_layer`, ...). It is saved as `config.json` in every run directory and is all that is needed
  to rebuild the model.
- `TrainConfig` describes how to train it: data, tokenizer, optimizer, schedule, evaluation.

Settings are resolved in layers, later wins: dataclass defaults < preset < `--config` YAML <
command-line flags. Every field is a flag (`n_embd` -> `--n-embd`), documented by its `help`
metadata, so `tinygpt train --help` lists them all.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import TinyGPTError


def _setting(default: Any, help: str, choices: tuple | None = None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class ModelConfig:
    """The shape and wiring of a decoder-only GPT (or the bigram baseline)."""

    arch: str = _setting("gpt", "model family: a GPT, or the lecture's bigram lookup table", ("gpt", "bigram"))
    vocab_size: int = _setting(0, "number of token ids; set from the tokenizer, never by hand")
    block_size: int = _setting(64, "context length: how many tokens the model sees at once")
    n_layer: int = _setting(4, "number of transformer blocks")
    n_head: int = _setting(4, "attention heads per block (n_embd must divide by it)")
    n_embd: int = _setting(128, "width of the embeddings and the residual stream")
    dropout: float = _setting(0.0, "dropout probability in [0, 1) (attention weights, projections, MLP)")
    bias: bool = _setting(True, "biases in projections, MLP, norms and head (query/key/value: see qkv_bias)")
    qkv_bias: bool = _setting(False, "biases on the query/key/value projections (GPT-2 has them)")
    head_bias: bool = _setting(True, "a bias on the output head, when bias is on (GPT-2's tied head has none)")
    # The teaching path and the fast path compute the same function; see model/attention.py.
    attention: str = _setting(
        "fused", "fused: one scaled_dot_product_attention call; heads: one module per head, as taught",
        ("fused", "heads"))
    norm: str = _setting(
        "layernorm", "normalisation before attention/MLP and after the last block",
        ("layernorm", "handwritten", "rmsnorm", "none"))
    # Switches that let the lecture's build-up steps be expressed as configurations.
    residual: bool = _setting(True, "add each block's attention and MLP output to its input")
    attn_proj: bool = _setting(True, "project the concatenated heads back to n_embd")
    mlp_ratio: int = _setting(4, "MLP hidden width as a multiple of n_embd; 0 removes the MLP")
    mlp_proj: bool = _setting(True, "MLP output projection (without it the MLP is one linear + activation)")
    activation: str = _setting(
        "relu", "MLP non-linearity; gelu_tanh is GELU's tanh approximation (GPT-2's)",
        ("relu", "gelu", "gelu_tanh", "relu2"))
    attn_scale: str = _setting(
        "head_size", "divide attention scores by sqrt(head_size) (correct) or sqrt(n_embd) "
        "(the lecture's early code)", ("head_size", "n_embd"))
    # Modern levers (see benchmarks/README.md for what each buys).
    pos_emb: str = _setting("learned", "position information: learned table or rotary (RoPE)", ("learned", "rope"))
    rope_base: float = _setting(10000.0, "rotary embedding base frequency")
    qk_norm: bool = _setting(False, "RMS-normalise queries and keys per head before attention")
    tie_weights: bool = _setting(False, "share the token embedding with the output head")
    init: str = _setting(
        "normal", "weight initialisation: normal(0, 0.02) as in GPT-2, or PyTorch's layer defaults",
        ("normal", "torch"))
    zero_init_proj: bool = _setting(False, "start residual projections at zero (each block begins as identity)")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def validate(self) -> "ModelConfig":
        _check_choices(self)
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise TinyGPTError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.vocab_size < 0:
            raise TinyGPTError(f"vocab_size must be positive, got {self.vocab_size}")
        if self.n_embd % self.n_head:
            raise TinyGPTError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}")
        if not 0.0 <= self.dropout < 1.0:
            raise TinyGPTError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.mlp_ratio < 0:
            raise TinyGPTError(f"mlp_ratio must be 0 or more, got {self.mlp_ratio}")
        if self.mlp_ratio and not self.mlp_proj and self.mlp_ratio != 1:
            raise TinyGPTError("an MLP without an output projection needs mlp_ratio 1")
        if not self.residual and self.zero_init_proj:
            raise TinyGPTError("zero_init_proj needs residual connections (the block would output zeros)")
        if self.pos_emb == "rope" and self.head_size % 2:
            raise TinyGPTError(f"rotary embeddings need an even head size, got {self.head_size}")
        return self


@dataclass
class TrainConfig:
    """Everything about a training run except the network's shape."""

    # Data and tokenizer.
    data: str = _setting("rhyme", "text to train on: a UTF-8 file, a folder of .txt files, or 'rhyme' or 'shakespeare'")
    tokenizer: str = _setting("char", "how text becomes token ids: char, word or bpe, built from the training text; "
                                      "or pretrained: the path of a tokenizer.json, or hf:NAME from the Hugging "
                                      "Face Hub (e.g. hf:gpt2)")
    vocab_size: int = _setting(512, "vocabulary size for --tokenizer bpe")
    sentence_end: str = _setting("", "word tokenizer: mark the end of each line with this token, e.g. '<END>'")
    val_fraction: float = _setting(0.1, "fraction of the text (its end) held out for validation; 0 = none")
    init_from: str = _setting(
        "", "fine-tune: start from this run's best weights, with its model settings and tokenizer (new "
        "optimizer, schedule and run directory; --data defaults to the run's own text)")
    # Where and how.
    out: str = _setting("", "run directory (default: runs/<preset or data name>)")
    device: str = _setting("auto", "cuda, mps or cpu; auto picks the first available in that order")
    dtype: str = _setting(
        "auto", "compute precision; auto = bfloat16 autocast on GPUs that support it, else float32",
        ("auto", "float32", "bfloat16"))
    compile: bool = _setting(False, "torch.compile the model (worth it for long GPU runs)")
    threads: int = _setting(0, "CPU threads for PyTorch; 0 = one per core (one in all if a probe finds the cores busy)")
    seed: int = _setting(1337, "random seed for initialisation, batches and dropout")
    # Optimisation.
    batch_size: int = _setting(12, "sequences per micro-batch, summed over all processes")
    grad_accum: int = _setting(1, "micro-batches per optimizer step")
    max_iters: int = _setting(2000, "optimizer steps")
    time_budget: str = _setting(
        "", "stop after this much wall time (e.g. 90s, 3m, 1h); the learning-rate schedule follows time")
    optimizer: str = _setting(
        "adamw", "adamw for everything, or muon for 2-D block weights with AdamW for the rest", ("adamw", "muon"))
    lr: float = _setting(1e-3, "peak learning rate (AdamW)")
    min_lr: float = _setting(1e-4, "learning rate at the end of a cosine or wsd schedule")
    lr_schedule: str = _setting(
        "cosine", "constant, cosine decay, or warmup-stable-decay", ("constant", "cosine", "wsd"))
    warmup_iters: int = _setting(100, "linear warmup steps")
    cooldown_frac: float = _setting(0.3, "wsd: final fraction of training spent decaying to min_lr")
    weight_decay: float = _setting(0.1, "AdamW weight decay, applied to 2-D weights only")
    beta1: float = _setting(0.9, "AdamW beta1")
    beta2: float = _setting(0.99, "AdamW beta2")
    grad_clip: float = _setting(1.0, "clip the gradient norm to this; 0 = no clipping")
    muon_lr: float = _setting(0.02, "muon: learning rate for the 2-D block weights")
    muon_momentum: float = _setting(0.95, "muon: momentum")
    # Evaluation, logging, saving.
    eval_interval: int = _setting(250, "evaluate (and save) every this many steps")
    eval_iters: int = _setting(
        0, "estimate losses from this many random batches; 0 = one exact pass over each split")
    eval_max_tokens: int = _setting(
        131072, "exact pass: periodic evaluations score at most this many tokens of each split (0 = all; "
        "tiny Shakespeare's 111,539 fit); the final evaluation and `tinygpt eval` score the whole validation split")
    log_interval: int = _setting(10, "update the progress bar every this many steps")
    sample_tokens: int = _setting(100, "after training, print samples of this many tokens (0 = none)")
    num_samples: int = _setting(2, "how many samples to print after training")
    sample_prompts: str = _setting("", "comma-separated prompts for the samples after training")
    progress: bool = _setting(True, "show a progress bar (loss, tokens/s, time left)")
    tensorboard: bool = _setting(
        False, "also write TensorBoard logs to RUN/tensorboard (needs pip install 'tinygpt[tensorboard]'); "
        "metrics.jsonl stays the record")
    plot_every: int = _setting(
        0, "redraw RUN/loss.png at the first evaluation after every this many steps, and at the end; 0 = never")

    def validate(self) -> "TrainConfig":
        _check_choices(self)
        positive = ("batch_size", "grad_accum", "eval_interval", "log_interval", "vocab_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise TinyGPTError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "eval_iters", "eval_max_tokens", "sample_tokens",
                     "num_samples", "threads", "plot_every"):
            if getattr(self, name) < 0:
                raise TinyGPTError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "muon_lr"):
            if getattr(self, name) < 0:
                raise TinyGPTError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise TinyGPTError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.cooldown_frac <= 1.0:
            raise TinyGPTError(f"cooldown_frac must be in [0, 1], got {self.cooldown_frac}")
        for name in ("beta1", "beta2", "muon_momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TinyGPTError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.time_budget:
            parse_duration(self.time_budget)
        if not self.tokenizer.strip():
            raise TinyGPTError("tokenizer is empty; use char, word, bpe, a tokenizer.json path or hf:NAME")
        if self.tokenizer == "bpe" and self.vocab_size < 257:
            raise TinyGPTError(f"--vocab-size for a byte-level BPE must be at least 257, got {self.vocab_size}")
        return self

    @property
    def time_budget_s(self) -> float | None:
        return parse_duration(self.time_budget) if self.time_budget else None


def _check_choices(cfg) -> None:
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


# ----------------------------------------------------------------------------- merging layers

MODEL_FIELDS = {f.name: f for f in fields(ModelConfig) if f.name != "vocab_size"}
TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}
# `vocab_size` as a user setting means the BPE target; the model's is derived from the tokenizer.
ALL_FIELDS = {**MODEL_FIELDS, **TRAIN_FIELDS}


def coerce(name: str, value: Any) -> Any:
    """Convert a value from YAML or the command line to the type of setting `name`."""
    f = ALL_FIELDS.get(name)
    if f is None:
        close = [k for k in ALL_FIELDS if k.startswith(name[:3])]
        hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
        raise TinyGPTError(f"unknown setting {name!r}{hint}; `tinygpt train --help` lists them all")
    kind = type(f.default)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, str) and not re.fullmatch(r"\s*-?\d+\s*", value):
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise TinyGPTError(f"setting {name} expects {kind.__name__}, got {value!r}") from None


def build_configs(*layers: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """Apply setting dictionaries in order (later wins) over the defaults and validate."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            merged[name] = coerce(name, value)
    model = ModelConfig(**{k: v for k, v in merged.items() if k in MODEL_FIELDS})
    train = TrainConfig(**{k: v for k, v in merged.items() if k in TRAIN_FIELDS})
    return model.validate(), train.validate()


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Rebuild a saved ModelConfig; unknown keys mean the file is not ours (or from a newer version)."""
    known = {f.name for f in fields(ModelConfig)}
    unknown = set(d) - known
    if unknown:
        raise TinyGPTError(f"config.json has settings this tinygpt does not know: {', '.join(sorted(unknown))}")
    try:
        cfg = ModelConfig(**{k: coerce(k, v) if k != "vocab_size" else int(v) for k, v in d.items()})
    except (TypeError, ValueError) as e:
        raise TinyGPTError(f"config.json is not a valid model config: {e}") from None
    if cfg.vocab_size < 1:
        raise TinyGPTError("config.json has no vocab_size; the run directory is incomplete")
    return cfg.validate()


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
