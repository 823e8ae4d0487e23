"""Training: one loop for every objective, and each of its jobs in a module of its own.

    loop.py         Trainer: the loop, top to bottom; TrainResult
    objective.py    Objective, the interface every objective implements (batches, loss, evaluation),
                    and Evaluation, what one evaluation found; the objectives themselves: objectives/
    losses.py       exact loss over a split (or a fixed subset of it), random-batch estimates
    state.py        what a checkpoint holds besides weights: optimizer, random state, progress
    progress.py     the clock, the time budget, Ctrl-C, the progress bar
    records.py      metrics.jsonl, TensorBoard, the loss picture
    runtime.py      device, torchrun processes, CPU threads, precision (core/devices.py, core/distributed.py)
    optim.py        AdamW and Muon, parameter groups, the learning-rate schedule
"""

from ..core.errors import TrainingInterrupted
from .loop import Trainer, TrainResult
from .objective import Evaluation, Objective

__all__ = ["Trainer", "TrainResult", "TrainingInterrupted", "Objective", "Evaluation"]
