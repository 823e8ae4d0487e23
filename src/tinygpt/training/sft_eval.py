"""`tinygpt eval` on a run of `tinygpt sft`: the loss on the assistant's tokens of its held-out
conversations, as its training measured it (sft.py), in one exact pass.

The conversations are read and encoded again through the run's own tokenizer and chat template, so
the split is the one the run held out; a file that changed since is refused (its held-out
conversations would no longer be known), and `data` scores every conversation of another file.
"""

from __future__ import annotations

import dataclasses
import math

from ..errors import TinyGPTError
from ..rundir import RunDir
from .runtime import Runtime
from .sft import SupervisedFineTuning, reply_loss


def evaluate_sft_run(run, data: str | None = None) -> dict:
    """The mean loss per assistant token on the run's validation conversations (when it held none out,
    on its training conversations), or on every conversation in `data`."""
    cfg = run.config.train
    if data is not None:
        cfg = dataclasses.replace(cfg, data=str(data), val_fraction=0.0)
    objective = SupervisedFineTuning.prepare(cfg, run.model_config.block_size, RunDir(run.dir), resume=True)
    if data is None and objective.data_info["sha256"] != run.config.data.get("sha256"):
        raise TinyGPTError(f"the conversations ({cfg.data}) changed since {run.dir} was trained, so which were held "
                           "out is not known; evaluate on a file of conversations with --data FILE")
    if objective.has_validation:
        split, x, y = "val", objective.val_x, objective.val_y
    else:
        split, x, y = ("all" if data is not None else "train"), objective.train_x, objective.train_y
    runtime = Runtime.local(run.device)
    total, count = reply_loss(run.model, x, y, runtime)
    loss = total / count
    return {"split": split, "loss": loss, "tokens": count, "conversations": len(x), "perplexity": math.exp(loss)}
