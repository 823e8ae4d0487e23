"""What the training loop trains for: an objective yields batches, computes the loss, and knows what
an evaluation measures.

    objective = LanguageModeling.prepare(train_cfg, block_size, run_dir, resume=False, log=print)
    batch = objective.batch(generator)        # a tuple of (B, ...) tensors: the global batch
    loss = objective.loss(model, batch)       # a scalar to minimise
    result = objective.evaluate(model, runtime, final=False)

The loop (loop.py) knows nothing else about the data, so supervised fine-tuning on conversations,
a reward model on preference pairs or a sequence-to-sequence task is a new `Objective`, not a new
loop. Next-token language modelling on a text corpus is the first one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TrainConfig
from ..convert.hub import hub_name
from ..data import (
    PreparedData,
    describe_corpus,
    encode_corpus,
    first_tokens,
    fit_context,
    pass_windows,
    random_batch,
    read_corpus,
    split_ids,
    subset_windows,
)
from ..errors import TinyGPTError
from ..rundir import RunDir
from ..tokenizers import bpe_shortfall, train_tokenizer
from . import distributed as ddp
from .evaluation import estimate_loss, split_loss


@dataclass
class Evaluation:
    """What one evaluation found.

    losses: what metrics.jsonl records (`train_loss`, `val_loss`; None where there is no such split).
    score: the number "best" is chosen on, lower is better, comparable across evaluations of a run.
    whole: whether the validation split was scored whole (else the run ends with a final evaluation).
    final_cost: how many times this evaluation's work the final one will take (for the time budget).
    """

    losses: dict[str, float | None]
    score: float
    whole: bool = True
    final_cost: float = 1.0


class Objective(ABC):
    """The interface the loop trains through. Subclasses set `tokenizer`, `block_size` (the context
    the data allows), `tokens_per_batch` (the tokens of the batch `batch()` last drew, counted in the
    metrics and the throughput: fixed for text, the real tokens of each batch for padded
    conversations), `data_info` (recorded in config.json) and `notes`."""

    tokenizer = None
    block_size: int = 0
    tokens_per_batch: int = 0
    data_info: dict = {}
    notes: list[str] = []
    has_validation: bool = False
    generates_text: bool = True  # the run's model continues text (the loop samples it at the end)
    verb: str = "train"  # the tinygpt command that trains it, and resumes it (`tinygpt VERB --resume RUN`)

    @abstractmethod
    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """The next global batch, drawn only from `generator` (so a resumed run draws the same ones).

        Every tensor's first dimension is the batch; the loop gives each process its slice of rows.
        """

    def loss(self, model, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The mean loss of `model` on `batch` (already on the model's device)."""
        _, loss = model(*batch)
        return loss

    @abstractmethod
    def evaluate(self, model, runtime, final: bool = False) -> Evaluation:
        """Measure `model`; `final` is the run's last evaluation."""

    def describe(self) -> str:
        """The data part of the run's opening line."""
        return self.data_info.get("name", "")

    def initial_weights(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weights a fine-tuning run starts from, given its source run's (`init_from`): as they are,
        unless the objective changes the model's shape (new special tokens grow the embeddings)."""
        return state

    def model_settings(self) -> dict:
        """Model settings the data decides, beside vocab_size (a source vocabulary of its own); none here."""
        return {}

    def write_files(self, run: RunDir):
        """Files of the objective's own that a new run directory keeps (a chat template); none here."""
        return None

    def periodic_is_whole(self) -> bool:
        """Whether an evaluation during training measures everything a final one would."""
        return True

    def bind(self, model, runtime) -> torch.nn.Module:
        """Called once the model is built and on its device, before the optimizer is: returns the module
        the loop trains (optimizer, gradient clipping, DDP), `model` itself unless the objective trains
        weights of its own beside it (PPO's value head). An objective that samples from the model
        while it trains (reinforcement learning) keeps it here."""
        return model

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors of the objective's own that every checkpoint keeps, so a resumed run continues exactly
        (reinforcement learning: the rollout being learnt from); none here."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        """Take back, from the checkpoint a run resumes from, what `state_dict` gave."""
        return None

    def report(self, record: dict) -> str:
        """An evaluation's line in the log, after `step N: ` (`record`: its line in metrics.jsonl)."""
        val = f"{record['val_loss']:.4f}" if record.get("val_loss") is not None else "n/a"
        return f"train loss {record['train_loss']:.4f}, val loss {val}"

    def status(self) -> dict[str, str]:
        """What the progress bar shows beside the loss (reinforcement learning: the latest reward); nothing here."""
        return {}


def text_objective(arch: str) -> type[Objective]:
    """What `tinygpt train --data FILE` trains a model of this arch for: next tokens (a GPT), hidden tokens
    (an encoder: masked.py) or targets from sources (an encoder-decoder: seq2seq.py)."""
    if arch == "encoder":
        from .masked import MaskedLanguageModeling

        return MaskedLanguageModeling
    if arch == "encoder-decoder":
        from .seq2seq import Translation

        return Translation
    return LanguageModeling


def resumed_config(resume: str, verb: str):
    """The saved settings of the run `resume`, which the verb `verb` (sft, reward, rl) must have made:
    a run continues only with the command that started it."""
    saved = RunDir(resume).read_config()
    made_by = saved.data.get("verb", "train")
    if made_by != verb:
        raise TinyGPTError(f"{resume} was made by `tinygpt {made_by}`; continue it with "
                           f"`tinygpt {made_by} --resume {resume}`")
    return saved


def from_base_run(verb: str, base: str, data: str, out: str, resume: str, settings: dict, *, usage: str,
                  needs_data: str, arch_problem) -> str | None:
    """Fill `settings` for a run that `tinygpt VERB` trains from the run `base` on the file `data`
    (sft, reward): `init_from` and `data`, and a fresh `out` (runs/BASE-VERB) unless given. A new run
    checks its inputs (`usage` when no base is named, `needs_data` when no data is, `arch_problem(arch)`
    what is wrong with the base's architecture, or None); a resumed one must be the verb's own.
    Returns the sha256 of the data a resumed run began with (None for a new run)."""
    if data:
        settings["data"] = str(data)
    if base:
        settings["init_from"] = str(base)
    if resume:
        return resumed_config(resume, verb).data.get("sha256")
    if not base:
        raise TinyGPTError(usage)
    base_run = RunDir(base).require(make=f"tinygpt train --data TEXT --out {base}")
    problem = arch_problem(base_run.read_config().model.arch)
    if problem:
        raise TinyGPTError(f"{base} is {problem}")
    if not data:
        raise TinyGPTError(needs_data)
    settings["out"] = str(out) if out else str(Path("runs") / f"{RunDir(base).name}-{verb}")
    return None


def choose_tokenizer(cfg: TrainConfig, run: RunDir, resume: bool, text_for, log):
    """The run's tokenizer and its text: a resumed run keeps its own, a fine-tuning run takes its
    source's, a pretrained one is loaded, and char/word/bpe are trained on the text.

    `text_for(kind)` reads the training text as a tokenizer of that kind reads it.
    """
    if resume:
        tokenizer = run.read_tokenizer()
    elif cfg.init_from:  # fine-tuning: the tokenizer goes with the weights
        tokenizer = RunDir(cfg.init_from).read_tokenizer()
    elif cfg.tokenizer in ("char", "word", "bpe"):
        text = text_for(cfg.tokenizer)
        tokenizer = train_tokenizer(cfg.tokenizer, text, cfg.vocab_size, cfg.sentence_end)
        if cfg.tokenizer == "bpe" and (short := bpe_shortfall(cfg.vocab_size, tokenizer.vocab_size)):
            log(f"note: {short}")
        return tokenizer, text
    else:
        if (repo := hub_name(cfg.tokenizer)) is not None:
            log(f"fetching the tokenizer {repo} from the Hugging Face Hub (or its cache)")
        tokenizer = train_tokenizer(cfg.tokenizer, "", cfg.vocab_size, cfg.sentence_end)
    return tokenizer, text_for(tokenizer.kind)


class LanguageModeling(Objective):
    """Next-token prediction on one text: random windows to train, exact passes (or random batches)
    over the training and validation splits to evaluate."""

    def __init__(self, cfg: TrainConfig, tokenizer, train: torch.Tensor, val: torch.Tensor | None,
                 block_size: int, data_info: dict, notes: list[str]):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.train_data, self.val_data = train, val  # (N_train,), (N_val,) or None
        self.block_size = block_size
        self.data_info = data_info
        self.notes = notes
        self.has_validation = val is not None
        self.tokens_per_batch = cfg.batch_size * block_size
        self.notes = [*notes, *self.evaluation_notes()]

    @classmethod
    def prepare(cls, cfg: TrainConfig, block_size: int, run: RunDir, resume: bool, log,
                fixed_context: bool = False, saved_sha256: str | None = None) -> "LanguageModeling":
        """Read, tokenise and split the run's text (or open a prepared folder's tokens). `fixed_context`: the
        weights fix block_size (fine-tuning), so a text too short for it is refused rather than the context
        shortened."""
        if (prepared := PreparedData.open(cfg.data)) is not None:
            return cls.from_prepared(cfg, prepared, block_size, run, resume, fixed_context, saved_sha256)
        tokenizer, text = choose_tokenizer(cfg, run, resume, lambda kind: read_corpus(cfg.data, kind, cfg.sentence_end),
                                           log)
        ids = encode_corpus(tokenizer, text)  # (N,)
        info = describe_corpus(cfg.data, text, ids)
        if saved_sha256 is not None and info["sha256"] != saved_sha256:
            raise TinyGPTError(f"the training text ({cfg.data}) changed since this run started; "
                               "resume with the same data or start a new run")
        splits = split_ids(ids, cfg.val_fraction, block_size, val_windows=cfg.eval_iters > 0)
        if fixed_context and splits.block_size != block_size:
            raise TinyGPTError(f"{cfg.data} is too short for the context of {cfg.init_from}'s model "
                               f"({block_size} tokens); fine-tune on a longer text")
        notes = list(splits.notes)
        info.update(train_tokens=len(splits.train), val_tokens=0 if splits.val is None else len(splits.val),
                    notes=splits.notes)
        return cls(cfg, tokenizer, splits.train, splits.val, splits.block_size, info, notes)

    @classmethod
    def from_prepared(cls, cfg: TrainConfig, prepared: PreparedData, block_size: int, run: RunDir, resume: bool,
                      fixed_context: bool, saved_sha256: str | None) -> "LanguageModeling":
        """The tokens of a folder of `tinygpt prepare`: train.bin read a window at a time, val.bin whole, and
        its own tokenizer."""
        owner = run if resume else RunDir(cfg.init_from) if cfg.init_from else None  # whose tokenizer it must be
        if owner is None:
            tokenizer = prepared.tokenizer()
        else:
            tokenizer = owner.read_tokenizer()
            prepared.require_tokenizer(tokenizer, str(owner), owner.tokenizer_path)
        info = prepared.describe()
        if saved_sha256 is not None and info["sha256"] != saved_sha256:
            raise TinyGPTError(f"the prepared data ({cfg.data}) changed since this run started; "
                               "resume with the same data or start a new run")
        train, val = prepared.train_tokens(), prepared.val_tokens(whole=False)  # (N_train,), (N_val,): both on disk
        fitted, notes = fit_context(len(train), len(val), block_size, cfg.eval_iters > 0)
        if fixed_context and fitted != block_size:
            raise TinyGPTError(f"{cfg.data} is too short for the context of {cfg.init_from}'s model "
                               f"({block_size} tokens); fine-tune on a longer text")
        info.update(train_tokens=len(train), val_tokens=len(val), notes=notes)
        return cls(cfg, tokenizer, train, val, fitted, info, notes)

    def describe(self) -> str:
        d = self.data_info
        where = " (prepared: train.bin read from disk)" if d.get("prepared") else ""
        final = self.final_tokens()
        subset = f" (the final evaluation scores a fixed {final:,} of them)" if final < d["val_tokens"] - 1 else ""
        return f"data {d['name']}{where}: {d['train_tokens']:,} train / {d['val_tokens']:,} val tokens{subset}"

    def evaluation_notes(self) -> list[str]:
        """What the evaluations of a long validation split score, said before training starts."""
        if self.cfg.eval_iters or self.val_data is None or not self.val_cap():
            return []
        n, first, final = len(self.val_data), self.val_cap(), self.final_tokens()
        last = (f"the final one {final:,}: those and a fixed subset of the rest's windows (--final-eval-tokens; 0 = "
                "all)" if final < n - 1 else "the final one all of them (a lower --val-fraction shortens it)")
        return [f"the validation split has {n:,} tokens: evaluations during training score its first {first:,} "
                f"(--eval-max-tokens), {last}"]

    def final_windows(self) -> list[tuple[int, int]]:
        """The windows of the validation split that the final evaluation scores (exact passes)."""
        return subset_windows(len(self.val_data), self.block_size, self.val_cap(), self.cfg.final_eval_tokens)

    def final_tokens(self) -> int:
        """How many validation tokens the final evaluation scores."""
        if self.val_data is None or self.cfg.eval_iters:
            return 0 if self.val_data is None else len(self.val_data) - 1
        return sum(length for _, length in self.final_windows())

    def batch(self, generator):
        return random_batch(self.train_data, self.cfg.batch_size, self.block_size, generator)  # x, y: (B, T)

    def periodic_is_whole(self) -> bool:
        return self.val_cap() == 0

    def val_cap(self) -> int:
        """Tokens of the validation split scored by a periodic evaluation (0 = all of it).

        A multiple of block_size, so the capped windows are exactly the first windows of a whole pass.
        """
        if self.cfg.eval_iters or self.val_data is None:
            return 0
        return first_tokens(len(self.val_data), self.block_size, self.cfg.eval_max_tokens)

    def evaluate(self, model, runtime, final: bool = False) -> Evaluation:
        """Train and validation loss: exact passes (eval_iters 0) or averages of random batches.

        With eval_max_tokens, periodic passes score only the first tokens of each split, but the
        `final` evaluation scores the whole validation split; its score is then the loss on the same
        first tokens, so that the best checkpoint is chosen on one footing.
        """
        cfg, block = self.cfg, self.block_size
        shard = (runtime.dist.rank, runtime.dist.world_size)
        # On a CPU, batches of ~1,024 tokens score faster than bigger ones (cache-sized) and need ~40 MB
        # less memory (speedrun-cpu: 3.1 s against 4.8 s for the whole split at 64 windows of 64, 1 thread).
        windows = max(1, 1024 // block) if runtime.device.type == "cpu" else 64
        losses, capped, scored = {}, None, 0
        for split, data in (("train", self.train_data), ("val", self.val_data)):
            if data is None:
                losses[f"{split}_loss"] = None
                continue
            if cfg.eval_iters:
                total, count = estimate_loss(model, data, cfg.batch_size, block, cfg.eval_iters, cfg.seed + 1,
                                             runtime.device, runtime.autocast, shard,
                                             runtime.dist.lockstep)
            else:
                # The training split is measured on a slice as long as the validation split.
                cap = cfg.eval_max_tokens or 0
                if split == "train" and self.val_data is not None:
                    cap = min(cap or len(self.val_data), len(self.val_data))
                if split == "val":
                    cap = self.val_cap()
                total, count = split_loss(model, data, block, runtime.device, windows, max_tokens=cap,
                                          autocast=runtime.autocast, shard=shard,
                                          lockstep=runtime.dist.lockstep)
                if split == "val" and cap and final:
                    # The rest of the split (or the fixed subset of it), in the windows a whole pass would use.
                    rest_windows = self.final_windows()[len(pass_windows(len(data), block, cap)):]
                    rest, rest_count = split_loss(model, data, block, runtime.device, windows,
                                                  autocast=runtime.autocast, shard=shard,
                                                  lockstep=runtime.dist.lockstep, windows=rest_windows)
                    head, head_count = ddp.sum_across(runtime.dist, total, count)
                    capped = head / head_count
                    total, count = total + rest, count + rest_count
                scored += count
            total, count = ddp.sum_across(runtime.dist, total, count)
            losses[f"{split}_loss"] = total / count
        score = losses["val_loss"] if losses["val_loss"] is not None else losses["train_loss"]
        cap = self.val_cap()
        # The final evaluation scores the rest of the validation split (or a subset) too: predict what it costs.
        rest = 0 if final or not cap else (self.final_tokens() - cap) / runtime.dist.world_size
        return Evaluation(losses, capped if capped is not None else score, whole=not cap or final,
                          final_cost=1 + rest / max(scored, 1))
