"""Knowing when to stop and showing how far along a run is: the clock, the time budget, Ctrl-C, the bar.

A time budget counts everything from the command's start (Python's start-up, data, model) to the
end of the final evaluation, and the learning-rate schedule follows time instead of steps.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time

from tqdm.auto import tqdm

from ..config import TrainConfig
from ..core import distributed as ddp


class Clock:
    """Seconds of training: those of earlier sessions of the run plus this session's so far."""

    def __init__(self, started_at: float | None = None):
        # When this session began, on time.perf_counter()'s clock. The command line passes its
        # process's start, so `--time-budget 3m` covers the whole command.
        self.started_at = time.perf_counter() if started_at is None else started_at
        self.before = 0.0  # restored from a checkpoint

    def elapsed(self) -> float:
        return self.before + (time.perf_counter() - self.started_at)


class Schedule:
    """When the run is over, and how far along it is (what the learning-rate schedule reads).

    With a time budget, room is kept for one more step and the final evaluation (both measured as
    the run goes), so the run ends on time with its decay complete.
    """

    def __init__(self, cfg: TrainConfig, clock: Clock, dist: ddp.DistInfo | None = None):
        self.cfg, self.clock, self.dist = cfg, clock, dist
        self.step_seconds = 0.0  # the latest optimizer step's duration
        self.final_eval_seconds = 0.0  # the predicted duration of the final evaluation
        self._time_progress = (None, 0.0)  # (step, its progress through a time budget): read once a step

    def steps_done(self, step: int) -> bool:
        cfg = self.cfg
        # max_iters 0 means no steps at all (evaluate the untrained model), unless a time budget decides.
        return step >= cfg.max_iters and (cfg.max_iters > 0 or cfg.time_budget_s is None)

    def time_is_up(self) -> bool:
        budget = self.cfg.time_budget_s
        if budget is None:
            return False
        return self.clock.elapsed() + self.final_eval_seconds + self.step_seconds >= budget

    def fraction(self, step: int) -> float:
        """How far along the learning-rate schedule is, past its warmup (what optim.lr_factor reads)."""
        cfg = self.cfg
        if cfg.time_budget_s is not None:
            return self._time_done(step)
        return (step - cfg.warmup_iters) / max(cfg.max_iters - cfg.warmup_iters, 1)

    def done(self, step: int) -> float:
        """How much of the training is behind, 0 to 1: of the steps, or of the time budget's training time
        (what --window-schedule reads)."""
        if self.cfg.time_budget_s is not None:
            return min(self._time_done(step), 1.0)
        return min(step / max(self.cfg.max_iters, 1), 1.0)

    def _time_done(self, step: int) -> float:
        """Progress through a time budget at `step`, measured once a step: the learning rate and the window
        length read the same number, and under torchrun the processes agree on it in one exchange."""
        if self._time_progress[0] == step:
            return self._time_progress[1]
        # The last step starts one step before the final evaluation: there the decay is complete.
        left_for_training = self.cfg.time_budget_s - self.final_eval_seconds - self.step_seconds
        done = self.clock.elapsed() / max(left_for_training, 1e-9)
        if self.dist is not None and self.dist.enabled:  # each process has its own clock: all take the mean,
            done = ddp.sum_across(self.dist, done)[0] / self.dist.world_size  # so all use one rate and one window
        self._time_progress = (step, done)
        return done

    def time_left(self) -> str:
        """What is left of the time budget, as the progress bar shows it (m:ss)."""
        left = max(math.ceil(self.cfg.time_budget_s - self.clock.elapsed()), 0)
        return f"{left // 60}:{left % 60:02d}"


class StopRequest:
    """Ctrl-C asks the run to finish its step, save and stop; a second Ctrl-C quits at once.

    Used as a context manager around the loop; outside the main thread (where signals cannot be
    caught) it only records `request()` calls.
    """

    def __init__(self, say):
        self.requested = False
        self._say = say
        self._previous = None

    def request(self):
        self.requested = True

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._say("\ninterrupted: finishing this step and saving (Ctrl-C again to quit at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class ProgressBar:
    """The progress bar: steps, loss, tokens per second, learning rate and the budget left.

    `log` prints a line above the bar (the bar steps aside), and works the same when it is hidden.
    """

    def __init__(self, cfg: TrainConfig, schedule: Schedule, initial_step: int, show: bool, log, desc: str = "train"):
        self.cfg, self.schedule, self._log = cfg, schedule, log
        # A terminal redraws the bar often; a log file (not a terminal) gets a line every few seconds.
        self.interactive = sys.stderr.isatty()
        self.bar = tqdm(total=cfg.max_iters or None, initial=initial_step, disable=not show, dynamic_ncols=True,
                        desc=desc, unit="step", mininterval=0.1 if self.interactive else 5.0)
        self.window_start, self.window_tokens = time.perf_counter(), 0

    def log(self, message: str):
        with tqdm.external_write_mode() if self.bar is not None else contextlib.nullcontext():
            self._log(message)

    def update(self, step: int, tokens: int, loss, lr: float, extra: dict[str, str] | None = None):
        """One optimizer step done (of `tokens` tokens); the numbers refresh every log_interval steps.

        extra: more numbers to show, from the objective (`Objective.status`)."""
        self.bar.update(1)
        self.window_tokens += tokens
        if step % self.cfg.log_interval:
            return
        now = time.perf_counter()
        rate = self.window_tokens / max(now - self.window_start, 1e-9)
        postfix = dict(loss=f"{loss.item():.4f}", **(extra or {}), tok_s=f"{rate:,.0f}", lr=f"{lr:.2e}")
        if self.cfg.time_budget_s is not None:  # tqdm's own estimate counts steps, not the budget
            postfix["budget_left"] = self.schedule.time_left()
        # A terminal shows every refresh; a log file (not a terminal) only one per mininterval.
        self.bar.set_postfix(postfix, refresh=self.interactive)
        self.window_start, self.window_tokens = now, 0

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
