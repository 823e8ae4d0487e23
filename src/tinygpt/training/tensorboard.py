"""An optional TensorBoard mirror of a run's metrics (`tinygpt train --tensorboard`).

metrics.jsonl stays the record of a run; this only copies each evaluation into TensorBoard's event
files under RUN/tensorboard, for people who already watch their runs there. TensorBoard is an extra
(`pip install 'tinygpt[tensorboard]'`), imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import TinyGPTError


class TensorBoardLog:
    def __init__(self, log_dir: Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch.utils.tensorboard needs the tensorboard package itself
            raise TinyGPTError("--tensorboard needs the tensorboard package; "
                               "install it with: pip install 'tinygpt[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, record: dict):
        """One evaluation record of metrics.jsonl, as scalars at its step."""
        step = record["step"]
        for key, tag in (("train_loss", "loss/train"), ("val_loss", "loss/val"), ("lr", "lr"),
                         ("tokens", "progress/tokens"), ("elapsed_s", "progress/seconds")):
            if record.get(key) is not None:
                self.writer.add_scalar(tag, record[key], step)
        self.writer.flush()

    def close(self):
        self.writer.close()
