"""Masked-token prediction, the encoder's objective (BERT's recipe), for `tinygpt train --arch encoder`.

    objective = MaskedLanguageModeling.prepare(train_cfg, block_size, RunDir(out), resume, log)

The text is read, tokenised and split as for language modelling (language.py), and the tokenizer
gets one special token, `<mask>`. A batch is random windows of the training text in which each token
is chosen with probability mask_fraction; of the chosen ones 80% become `<mask>`, 10% a random
token and 10% stay as they are, so that the model must also check tokens that look fine. The target
is the original token at the chosen positions and -100 (not scored) everywhere else: the loss is the
mean cross-entropy over the hidden tokens only.

Evaluation masks the validation windows the same way from a fixed seed (seed + 1), so every
evaluation hides the same tokens and the losses are comparable across a run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import distributed as ddp
from ..core.tokens import IGNORE, MASK
from ..data import eval_windows
from ..store.rundir import RunDir
from ..training.objective import Evaluation
from .language import LanguageModeling


def mask_tokens(x: torch.Tensor, mask_id: int, fraction: float, generator: torch.Generator):
    """Hide tokens of x (B, T) as BERT does; returns the inputs (B, T) and targets (B, T), -100 where
    nothing is hidden. Random replacements are ids below mask_id (the text's own tokens)."""
    chosen = torch.rand(x.shape, generator=generator) < fraction  # (B, T)
    how = torch.rand(x.shape, generator=generator)  # (B, T): < 0.8 mask, < 0.9 random, else keep
    random_ids = torch.randint(mask_id, x.shape, generator=generator)  # (B, T)
    inputs = torch.where(chosen & (how < 0.8), mask_id, x)
    inputs = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_ids, inputs)
    targets = torch.where(chosen, x, IGNORE)
    return inputs, targets


class MaskedLanguageModeling(LanguageModeling):
    """Predict hidden tokens from both sides, on random windows of one text."""

    generates_text = False

    @classmethod
    def prepare(cls, cfg, block_size: int, run: RunDir, resume: bool, log, fixed_context: bool = False,
                saved_sha256: str | None = None) -> "MaskedLanguageModeling":
        objective = super().prepare(cfg, block_size, run, resume, log, fixed_context, saved_sha256)
        objective.mask_id = objective.tokenizer.add_special_tokens([MASK])[0]  # appended: no id moves
        objective.data_info["objective"] = "masked tokens"
        return objective

    def describe(self) -> str:
        return super().describe() + f", {self.cfg.mask_fraction:.0%} of tokens hidden"

    def batch(self, generator, done: float = 0.0):
        x, _ = super().batch(generator, done)  # (B, T): random windows, shorter early under --window-schedule
        return mask_tokens(x, self.mask_id, self.cfg.mask_fraction, generator)  # inputs, targets: (B, T)

    def periodic_is_whole(self) -> bool:
        return True

    def evaluate(self, model, runtime, final: bool = False) -> Evaluation:
        """The mean loss on the hidden tokens of the validation windows (and of as many training tokens),
        the same tokens hidden at every evaluation."""
        losses = {}
        cap = self.cfg.eval_max_tokens
        if self.val_data is not None:
            cap = min(cap or len(self.val_data), len(self.val_data))
        for split, data in (("train", self.train_data), ("val", self.val_data)):
            if data is None:
                losses[f"{split}_loss"] = None
                continue
            total, count = masked_loss(model, data, self.block_size, self.mask_id, self.cfg.mask_fraction,
                                       self.cfg.seed + 1, runtime, cap)
            total, count = ddp.sum_across(runtime.dist, total, count)
            losses[f"{split}_loss"] = total / max(count, 1)
        score = losses["val_loss"] if losses["val_loss"] is not None else losses["train_loss"]
        return Evaluation(losses, score)

    def report(self, record: dict) -> str:
        return super().report(record) + " (on the hidden tokens)"


@torch.no_grad()
def masked_loss(model, data: torch.Tensor, block_size: int, mask_id: int, fraction: float, seed: int, runtime,
                max_tokens: int = 0) -> tuple[float, int]:
    """(sum of the losses on the hidden tokens, their number) over the non-overlapping windows of data,
    hidden from a generator seeded with `seed`; the windows are shared round-robin among processes."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    rank, world = runtime.dist.rank, runtime.dist.world_size
    chunk = max(1, 1024 // block_size) if runtime.device.type == "cpu" else 64
    total, count, k = 0.0, 0, 0
    first = None
    for windows, _ in eval_windows(data, block_size, max_tokens):
        for start in range(0, len(windows), chunk):
            # Every chunk is masked, in order, on every process, so the masks do not depend on the world size.
            inputs, targets = mask_tokens(windows[start : start + chunk], mask_id, fraction, generator)
            first = first if first is not None else inputs
            k += 1
            if (k - 1) % world != rank:
                continue
            with runtime.autocast():
                logits, _ = model(inputs.to(runtime.device))  # (b, T, V)
            targets = targets.to(runtime.device)
            total += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                     reduction="sum").item()
            count += int((targets != IGNORE).sum())
    for _ in range(ddp.padding(k, rank, world, runtime.dist.lockstep)):  # FSDP: as many forwards as the busiest
        with runtime.autocast():
            model(first.to(runtime.device))
    model.train(was_training)
    return total, count
