"""The exceptions users see; this module imports nothing, so that any module may raise them.

Anything wrong with what the user gave us (a file, a setting, a prompt) raises `TinyGPTError`
with a message that names the problem and how to fix it. The command line prints that message
as one line and exits non-zero; programming errors keep their traceback. A run stopped on request
(Ctrl-C) raises `TrainingInterrupted` after saving, and the command line exits with 130.
"""

from __future__ import annotations

from pathlib import Path


class TinyGPTError(Exception):
    """A problem with the user's input, explained in one line."""


class TrainingInterrupted(Exception):
    """Training stopped on request (Ctrl-C); `step` is the saved step it can resume from (None: none).

    `quit_at` is the step it was at when a second Ctrl-C quit without saving, if that was later.
    """

    def __init__(self, step: int | None, out_dir: Path, quit_at: int | None = None, verb: str = "train"):
        resume = f"tinygpt {verb} --resume {out_dir}"
        if step is None:
            message = f"quit at step {quit_at} before the first checkpoint was saved; nothing to resume"
        elif quit_at is not None and quit_at != step:
            message = f"quit at step {quit_at} without saving; continue from the step-{step} checkpoint: {resume}"
        else:
            message = f"stopped at step {step}; saved. Continue with: {resume}"
        super().__init__(message)
        self.step = step
        self.out_dir = out_dir
