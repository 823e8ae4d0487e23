"""What a checkpoint holds beyond the weights, so a resumed run computes exactly what an
uninterrupted one would: the optimizer, every random generator, and the progress counters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..core.errors import TinyGPTError
from ..store.rundir import RunDir


@dataclass
class Progress:
    """The counters of a run, saved in every checkpoint."""

    step: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    best_val_loss: float | None = None
    best_score: float | None = None  # what "best" compares (the capped validation loss, when capped)
    best_step: int | None = None
    threads: int = 0  # the CPU threads the run computes with (0: not recorded, older checkpoints)

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        p = cls(**{k: d[k] for k in ("step", "tokens", "elapsed_s", "best_val_loss", "best_step") if k in d})
        p.best_score = d.get("best_score", p.best_val_loss)
        p.threads = int(d.get("threads", 0))
        return p


def rng_state(device: torch.device, batch_gen: torch.Generator) -> dict[str, torch.Tensor]:
    rng = {"batch": batch_gen.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def save_state(run: RunDir, model, optimizer, device, batch_gen, progress: Progress, best: bool, record=None,
               objective: dict[str, torch.Tensor] | None = None, weights=None, adapter=None):
    """Save a step: at a new best checkpoints/best and model.safetensors, then `record()` (the
    evaluation's line in metrics.jsonl), and checkpoints/latest last. `objective`: the objective's own
    tensors, kept in both checkpoints (model.safetensors holds the model alone). A LoRA run: `weights`, what
    model.safetensors holds (the merged weights), and `adapter`, () -> (config, tensors) for RUN/adapter.

    latest is what --resume continues from, so it is written when everything else of the step is
    on disk: a kill at any moment leaves either the previous step complete (and the rest of this
    step is redone, as resume drops records after latest's step) or this one.
    """
    rng, counters = rng_state(device, batch_gen), asdict(progress)
    if best:
        run.write_checkpoint("best", model, optimizer, rng, counters, objective)
        run.write_weights(weights or model, {"step": str(progress.step)})
        if adapter is not None:
            run.write_adapter(*adapter())
    if record is not None:
        record()
    run.write_checkpoint("latest", model, optimizer, rng, counters, objective)


def restore_state(run: RunDir, model, optimizer, device, batch_gen, objective=None, state: dict | None = None,
                  load_model: bool = True) -> Progress:
    """Load checkpoints/latest (or `state`, already read from it) into the model (unless `load_model` is
    False: a sharded run loads the whole weights before it cuts them), the optimizer, the generators and
    the objective (its own tensors, `Objective.load_state_dict`); return its progress."""
    from ..store.checkpoint import load_weights_into

    state = state if state is not None else run.read_checkpoint("latest")
    if load_model:
        load_weights_into(model, state["model"], run.checkpoint_path("latest"))
    try:
        optimizer.load_state_dicts(state["optimizer"])
    except (ValueError, KeyError) as e:
        raise TinyGPTError(f"the checkpoint's optimizer state does not fit this run ({e}); "
                           "resume with the optimizer settings it was started with") from None
    if objective is not None:
        objective.load_state_dict(state["objective"])
    batch_gen.set_state(state["rng"]["batch"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    return Progress.from_dict(state["progress"])
