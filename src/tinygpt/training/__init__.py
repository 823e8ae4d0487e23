"""Training: one loop for every objective, and each of its jobs in a module of its own.

    loop.py         Trainer: the loop, top to bottom; TrainResult, TrainingInterrupted
    objectives.py   Objective (batches, loss, evaluation) and LanguageModeling, the first one
    evaluation.py   exact loss over a split, random-batch estimates, `tinygpt eval`'s report
    state.py        what a checkpoint holds besides weights: optimizer, random state, progress
    progress.py     the clock, the time budget, Ctrl-C, the progress bar
    records.py      metrics.jsonl, TensorBoard, the loss picture
    runtime.py      device, torchrun processes, CPU threads, precision (devices.py, distributed.py)
    optim.py        AdamW and Muon, parameter groups, the learning-rate schedule
"""

from .loop import Trainer, TrainingInterrupted, TrainResult
from .objectives import Evaluation, LanguageModeling, Objective

__all__ = ["Trainer", "TrainResult", "TrainingInterrupted", "Objective", "LanguageModeling", "Evaluation"]
