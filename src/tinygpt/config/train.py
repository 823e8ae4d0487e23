"""`TrainConfig`: everything about a training run except the network's shape.

Data and tokenizer, where and how to compute, the optimizer and its schedule, evaluation,
logging and saving. Saved as the `train` section of a run's config.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import TinyGPTError
from .fields import check_choices, check_numbers, parse_duration
from .fields import setting as _setting

MOST_LR = 10.0  # no learning rate past this trains anything (the presets use 1e-4 to 3e-3; Muon 0.02)
MOST_THREADS = 1024  # PyTorch spawns every thread asked for: 10**6 of them crash the process
LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")  # what --lora-targets may name, in a block's order


@dataclass
class TrainConfig:
    """Everything about a training run except the network's shape."""

    # Data and tokenizer.
    data: str = _setting("rhyme", "text to train on: a UTF-8 file, a folder of .txt files, a folder made by `tinygpt "
                         "prepare`, or 'rhyme' or 'shakespeare' (built in); an encoder-decoder: source/target pairs, "
                         "a .jsonl or TSV file, or 'dates'")
    tokenizer: str = _setting("char", "how text becomes token ids: char, word or bpe, built from the training text; "
                                      "or pretrained: the path of a tokenizer.json, or hf:NAME from the Hugging "
                                      "Face Hub (e.g. hf:gpt2)")
    vocab_size: int = _setting(512, "vocabulary size for --tokenizer bpe")
    source_tokenizer: str = _setting(
        "", "encoder-decoder: a tokenizer of its own for the sources (char, word or bpe built from them, or "
        "pretrained, as --tokenizer); empty: one tokenizer, built from both sides, for both")
    sentence_end: str = _setting("", "word tokenizer: mark the end of each line with this token, e.g. '<END>'")
    val_fraction: float = _setting(0.1, "fraction of the text (its end) held out for validation; 0 = none")
    mask_fraction: float = _setting(
        0.15, "--arch encoder: fraction of tokens hidden and predicted from both sides (BERT's recipe: of those, "
        "8 in 10 become <mask>, 1 in 10 a random token, 1 in 10 stay)")
    init_from: str = _setting(
        "", "fine-tune: start from this run's best weights, with its model settings and tokenizer (new "
        "optimizer, schedule and run directory; --data defaults to the run's own text)")
    # LoRA: fine-tune low-rank adapters beside frozen weights (model/lora.py).
    lora_rank: int = _setting(
        0, "LoRA: train rank-r adapters B @ A beside frozen weights; 0 = full fine-tuning")
    lora_alpha: float = _setting(8.0, "LoRA: the update's scale is lora_alpha / lora_rank (PEFT's)")
    lora_dropout: float = _setting(0.0, "LoRA: dropout on the adapters' input")
    lora_targets: str = _setting(
        "attn.qkv,attn.proj", "LoRA: which projections (attn.qkv, attn.proj, mlp.fc, mlp.proj, all)")
    # Where and how.
    out: str = _setting("", "run directory (default: runs/<data name>)")
    device: str = _setting("auto", "cuda, mps or cpu; auto picks the first available in that order")
    dtype: str = _setting(
        "auto", "compute precision; auto = bfloat16 autocast on GPUs that support it, else float32",
        ("auto", "float32", "bfloat16"))
    compile: bool = _setting(False, "torch.compile the model (worth it for long GPU runs)")
    parallel: str = _setting(
        "ddp", "under torchrun: ddp (a whole model per process) or fsdp (FSDP2: weights, gradients and optimizer "
        "state sharded, for a model too big for one GPU)", ("ddp", "fsdp"))
    threads: int = _setting(
        0, "CPU threads; 0 = by the model's size (one under 2 GFLOP a step, else one per core), fixed for the "
        "run so its numbers never depend on the load; 1 is often faster on a busy machine")
    seed: int = _setting(1337, "random seed for initialisation, batches and dropout")
    # Optimisation.
    batch_size: int = _setting(12, "sequences per micro-batch, summed over all processes")
    grad_accum: int = _setting(1, "micro-batches per optimizer step")
    window_schedule: str = _setting(
        "", "train on shorter windows first, for cheaper early steps: 'T:F,...' = windows of T tokens until "
        "fraction F of training (e.g. 16:0.25,32:0.5), then block_size; empty = block_size throughout")
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
    embedding_lr: float = _setting(
        0.0, "peak AdamW learning rate of the embedding tables (tokens, learned positions); 0 = the same as lr")
    # Evaluation, logging, saving.
    eval_interval: int = _setting(250, "evaluate (and save) every this many steps")
    eval_iters: int = _setting(
        0, "estimate losses from this many random batches; 0 = one exact pass over each split")
    eval_max_tokens: int = _setting(
        131072, "exact pass: periodic evaluations score the first this many tokens of each split (0 = all)")
    final_eval_tokens: int = _setting(
        262144, "exact pass: the final evaluation scores at most this many validation tokens (the periodic ones' "
        "and a fixed subset of the rest, the same for every run on that split; 0 = the whole split)")
    log_interval: int = _setting(10, "update the progress bar every this many steps")
    sample_tokens: int = _setting(100, "after training, print samples of this many tokens (0 = none)")
    num_samples: int = _setting(2, "how many samples to print after training")
    sample_prompts: str = _setting("", "comma-separated prompts for the samples after training")
    progress: bool = _setting(True, "show a progress bar (loss, tokens/s, time left)")
    tensorboard: bool = _setting(
        False, "also write TensorBoard logs to RUN/tensorboard (pip install 'tinygpt[tensorboard]')")
    plot_every: int = _setting(
        0, "redraw RUN/loss.png every this many steps (at the next evaluation) and at the end; 0 = never")

    def validate(self) -> "TrainConfig":
        check_choices(self)
        check_numbers(self)
        positive = ("batch_size", "grad_accum", "eval_interval", "log_interval", "vocab_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise TinyGPTError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "eval_iters", "eval_max_tokens", "final_eval_tokens",
                     "sample_tokens", "num_samples", "threads", "plot_every"):
            if getattr(self, name) < 0:
                raise TinyGPTError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "muon_lr", "embedding_lr"):
            if getattr(self, name) < 0:
                raise TinyGPTError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise TinyGPTError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.mask_fraction < 1.0:
            raise TinyGPTError(f"mask_fraction must be in (0, 1), got {self.mask_fraction}")
        if not 0.0 <= self.cooldown_frac <= 1.0:
            raise TinyGPTError(f"cooldown_frac must be in [0, 1], got {self.cooldown_frac}")
        for name in ("beta1", "beta2", "muon_momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TinyGPTError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("lr", "min_lr", "muon_lr", "embedding_lr"):
            if getattr(self, name) > MOST_LR:
                raise TinyGPTError(f"{name} {getattr(self, name)} is past {MOST_LR:g}: a step that large throws the "
                                   "weights far from anything learnt (AdamW moves each weight by about lr per step); "
                                   "try 1e-3")
        for name in ("lr", "muon_lr", "embedding_lr"):
            if getattr(self, name) * self.weight_decay >= 1:
                raise TinyGPTError(f"{name} x weight_decay is {getattr(self, name) * self.weight_decay:g}: each step "
                                   f"multiplies the weights by 1 - {name} x weight_decay, which must stay above 0; "
                                   "lower --weight-decay (default 0.1)")
        if self.threads > MOST_THREADS:
            raise TinyGPTError(f"threads must be from 0 (chosen by the model's size) to {MOST_THREADS}, got "
                               f"{self.threads}; more threads than cores only slows a step down")
        if self.time_budget:
            parse_duration(self.time_budget)
        self.window_stages()
        if not self.tokenizer.strip():
            raise TinyGPTError("tokenizer is empty; use char, word, bpe, a tokenizer.json path or hf:NAME")
        if self.parallel == "fsdp" and self.optimizer == "muon":
            raise TinyGPTError("Muon orthogonalises whole matrices, which --parallel fsdp splits across processes; "
                               "use --optimizer adamw with fsdp, or --parallel ddp")
        if self.lora_rank < 0:
            raise TinyGPTError(f"lora_rank must be 1 or more (8 is common), or 0 for full fine-tuning; got "
                               f"{self.lora_rank}")
        if self.lora_rank and not self.init_from:
            raise TinyGPTError(f"--lora-rank {self.lora_rank} adapts a trained model, and a random one has nothing "
                               "worth keeping frozen; pass --init-from RUN (or use tinygpt sft), or leave --lora-rank "
                               "out")
        if self.lora_rank and not self.lora_alpha > 0:
            raise TinyGPTError(f"lora_alpha must be above 0 (the update's scale is lora_alpha / lora_rank), got "
                               f"{self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise TinyGPTError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        named = [t.strip() for t in self.lora_targets.split(",") if t.strip()]
        unknown = [] if named == ["all"] else [t for t in named if t not in LORA_TARGETS]
        if unknown or not named:
            what = ("names no projection" if not named else "names all beside other projections (all names every one)"
                    if unknown[0] == "all" else f"names {unknown[0]!r}, not a projection LoRA adapts")
            raise TinyGPTError(f"--lora-targets {what}; name some of {', '.join(LORA_TARGETS)} (comma-separated), "
                               "or all")
        if self.lora_rank and self.optimizer == "muon":
            raise TinyGPTError("Muon orthogonalises the update of a whole weight matrix, and LoRA trains two thin "
                               "factors of one; use --optimizer adamw with --lora-rank (PEFT's choice too)")
        if self.lora_rank and self.parallel == "fsdp":
            raise TinyGPTError("LoRA keeps the whole frozen base on every process: use --parallel ddp with "
                               "--lora-rank, not fsdp")
        if self.tokenizer == "bpe" and self.vocab_size < 257:
            raise TinyGPTError(f"--vocab-size for a byte-level BPE must be at least 257, got {self.vocab_size}")
        return self

    def window_stages(self) -> list[tuple[int, float]]:
        """--window-schedule as (window length, until this fraction of training) pairs, in order; checked."""
        stages = []
        for part in filter(None, (p.strip() for p in self.window_schedule.split(","))):
            length, _, until = part.partition(":")
            try:
                stage = int(length), float(until)
            except ValueError:
                stage = None
            if stage is None or stage[0] < 1 or not 0.0 < stage[1] <= 1.0:
                raise TinyGPTError(f"--window-schedule stage {part!r} is not LENGTH:FRACTION (a window of LENGTH "
                                   "tokens until FRACTION of training, between 0 and 1); e.g. 16:0.25,32:0.5")
            if stages and not (stage[0] > stages[-1][0] and stage[1] > stages[-1][1]):
                raise TinyGPTError(f"--window-schedule stages must grow, in length and in fraction: {part!r} comes "
                                   f"after {stages[-1][0]}:{stages[-1][1]:g}; e.g. 16:0.25,32:0.5")
            stages.append(stage)
        return stages

    @property
    def lora_scaling(self) -> float:
        """What LoRA multiplies its update B @ A by: lora_alpha / lora_rank (0: no LoRA)."""
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

    @property
    def time_budget_s(self) -> float | None:
        return parse_duration(self.time_budget) if self.time_budget else None


