"""The exceptions users see; this module imports nothing of tinygpt's, so that any module may raise them.

Anything wrong with what the user gave us (a file, a setting, a prompt) raises `TinyGPTError`
with a message that names the problem and how to fix it. The command line prints that message
as one line and exits non-zero; programming errors keep their traceback. A run stopped on request
(Ctrl-C) raises `TrainingInterrupted` after saving, and the command line exits with 130.
"""

from __future__ import annotations

import errno  # errno and os are loaded with Python itself; pathlib would cost the command's start 5 ms,
import os  # during which Ctrl-C could not be caught yet (cli/__init__.py)


class TinyGPTError(Exception):
    """A problem with the user's input, explained in one line."""


class TrainingInterrupted(Exception):
    """Training stopped on request (Ctrl-C); `step` is the saved step it can resume from (None: none).

    `quit_at` is the step it was at when a second Ctrl-C quit without saving, if that was later.
    """

    def __init__(self, step: int | None, out_dir: os.PathLike, quit_at: int | None = None, verb: str = "train"):
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


# What the machine refused, in the user's words, and what to do; every tinygpt write is atomic (a temporary
# name renamed into place), so a refused write leaves the files saved before it as they were.
_REFUSED = {
    errno.ENOSPC: ("no space left on device writing {file}", "free some space and run the command again"),
    errno.EDQUOT: ("disk quota exceeded writing {file}", "free some space and run the command again"),
    errno.EROFS: ("read-only file system: cannot write {file}", "write somewhere else (e.g. another --out)"),
    errno.EACCES: ("permission denied: {file}", "use a file or folder you may read and write (e.g. another --out)"),
    errno.EPERM: ("operation not permitted: {file}", "use a file or folder you may read and write"),
}


def os_error_line(e: OSError) -> str:
    """One line for an OSError that reached the command line (a full or read-only disk, a file not allowed):
    what was refused, on which file, that nothing saved changed, and what to do."""
    file = e.filename if e.filename is not None else "a file"
    what, fix = _REFUSED.get(e.errno, (f"{e.strerror or 'failed'}: {{file}}", "check the path and run it again"))
    return f"{what.format(file=file)}; nothing saved was changed: {fix}"
