"""Writing down what a run did: metrics.jsonl (the record), TensorBoard events and the loss picture.

Only the main process writes. On resume, records after the checkpoint's step are dropped, from
metrics.jsonl and from the TensorBoard log alike, so a resumed run's record reads as if it had
never stopped.
"""

from __future__ import annotations

from ..config import TrainConfig
from ..store.rundir import RunDir


class Records:
    """One evaluation's record goes to every place that keeps it."""

    def __init__(self, run: RunDir, cfg: TrainConfig, step: int, resumed: bool):
        self.run_dir, self.cfg = run, cfg
        self.plotted_at = step
        self.tensorboard = None
        if resumed:
            run.truncate_metrics(step)
        if cfg.tensorboard:
            from .tensorboard import TensorBoardLog

            self.tensorboard = TensorBoardLog(run.tensorboard_dir, step + 1 if resumed else None)

    def last(self) -> dict | None:
        records = self.run_dir.read_metrics()
        return records[-1] if records else None

    def write(self, record: dict):
        self.run_dir.append_metrics(record)
        if self.tensorboard is not None:
            self.tensorboard.write(record)
        if self.cfg.plot_every and record["step"] - self.plotted_at >= self.cfg.plot_every:
            self.plot(record["step"])

    def plot(self, step: int):
        """Redraw RUN/loss.png from metrics.jsonl (--plot-every)."""
        from .curves import plot_loss

        plot_loss([self.run_dir.path], self.run_dir.loss_plot_path, title=f"Loss curves of {self.run_dir.name}")
        self.plotted_at = step

    def close(self):
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
