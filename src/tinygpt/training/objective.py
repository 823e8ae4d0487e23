"""The interface every training objective implements, and what an evaluation reports.

    objective = LanguageModeling.prepare(train_cfg, block_size, run_dir, resume=False, log=print)
    batch = objective.batch(generator)        # a tuple of (B, ...) tensors: the global batch
    loss = objective.loss(model, batch)       # a scalar to minimise
    result = objective.evaluate(model, runtime, final=False)

The loop (loop.py) knows nothing else about the data, so next-token prediction on a text, supervised
fine-tuning on conversations, a reward model on preference pairs, reinforcement learning or a
sequence-to-sequence task is a new `Objective` (the objectives/ package), not a new loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..store.rundir import RunDir


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
    # batch(generator, done=...) shortens its windows early under --window-schedule (refused for the others).
    follows_window_schedule = False
    verb: str = "train"  # the tinygpt command that trains it, and resumes it (`tinygpt VERB --resume RUN`)

    @abstractmethod
    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """The next global batch, drawn only from `generator` (so a resumed run draws the same ones).

        Every tensor's first dimension is the batch; the loop gives each process its slice of rows. An
        objective that follows --window-schedule also takes `done=`: how much of training is behind, 0 to 1.
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
