"""Next-token prediction on one text, the first objective: random windows to train on, exact passes (or
random batches) over the training and validation splits to evaluate.

    objective = LanguageModeling.prepare(train_cfg, block_size, run_dir, resume=False, log=print)
"""

from __future__ import annotations

import torch

from ..config import TrainConfig
from ..core import distributed as ddp
from ..core.errors import TinyGPTError
from ..core.hub import hub_name
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
from ..store.rundir import RunDir
from ..tokenizers import bpe_shortfall, train_tokenizer
from ..training.losses import estimate_loss, split_loss
from ..training.objective import Evaluation, Objective


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

    follows_window_schedule = True  # --window-schedule: shorter windows first (batch's `done`)

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
        self.stages = cfg.window_stages()  # --window-schedule: (length, until this fraction of training)
        self._final_windows = None
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
        """The windows of the validation split that the final evaluation scores (exact passes). Drawn once:
        every evaluation predicts the final one's cost from them, and a long split has many."""
        if self._final_windows is None:
            self._final_windows = subset_windows(len(self.val_data), self.block_size, self.val_cap(),
                                                 self.cfg.final_eval_tokens)
        return self._final_windows

    def final_tokens(self) -> int:
        """How many validation tokens the final evaluation scores."""
        if self.val_data is None or self.cfg.eval_iters:
            return 0 if self.val_data is None else len(self.val_data) - 1
        return sum(length for _, length in self.final_windows())

    def window(self, done: float) -> int:
        """The window length of a batch drawn when `done` (0 to 1) of training is behind: --window-schedule's
        stage, or block_size. A stage as long as block_size or longer trains whole windows."""
        for length, until in self.stages:
            if done < until:
                return min(length, self.block_size)
        return self.block_size

    def batch(self, generator, done: float = 0.0):
        T = self.window(done)
        self.tokens_per_batch = self.cfg.batch_size * T
        return random_batch(self.train_data, self.cfg.batch_size, T, generator)  # x, y: (B, T)

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
