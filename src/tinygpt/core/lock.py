"""One writer per folder: an OS lock (flock) on a lock file inside it, which the kernel releases when its
process ends, however it ends (kill -9 included), so a lock is never left stale.

    if take(folder / ".lock"):     # True: taken now; False: this process already held it
        ...                        # check, then claim it: write our pid and command for whoever is refused
        claim(folder / ".lock")
    release(folder / ".lock")

`take` raises `Busy` when another process holds the lock; its message names that process (its pid
and command, from the lock file). The lock file is only opened to be refused, never written, so a
refused command changes nothing in the folder it was refused. Readers never take the lock.

A process holds each lock once, however many times it takes it (flock locks belong to an open file,
so a second open of the same file would be refused by the first one, in the same process).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from .errors import TinyGPTError

LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # lock file -> the open file that holds its lock


class Busy(TinyGPTError):
    """Another process holds the lock; the message names it, and `holder` is that process in words."""

    def __init__(self, message: str, holder: str):
        super().__init__(message)
        self.holder = holder


def take(path: Path, what: str) -> bool:
    """Take the lock of `path` (a lock file, created if missing); True if taken now, False if this process
    held it already. Busy if another process holds it: `what` says what it guards, for the message."""
    key = Path(os.path.abspath(path))
    if key in _held:
        return False
    fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise Busy(f"{what} is in use: {holder} is writing it; let it finish (or stop it) first, or write "
                   "somewhere else", holder) from None
    except OSError:
        os.close(fd)
        raise
    _held[key] = fd
    return True


def claim(path: Path):
    """Write this process's pid, command and start time into the lock file it holds (for `Busy`'s message)."""
    fd = _held.get(Path(os.path.abspath(path)))
    if fd is None:
        return
    note = {"pid": os.getpid(), "command": command_line(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    payload = (json.dumps(note) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, payload, 0)


def release(path: Path):
    """Let go of the lock of `path`, if this process holds it (the lock file stays: it is never stale)."""
    fd = _held.pop(Path(os.path.abspath(path)), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor of the open file releases its flock


def holds(path: Path) -> bool:
    return Path(os.path.abspath(path)) in _held


def command_line() -> str:
    """How this process was started, as the user typed it: 'tinygpt train --out runs/x'."""
    argv = list(sys.argv) or ["python"]
    first = Path(argv[0]).name
    if first in ("tinygpt", "__main__.py") or argv[0].endswith("tinygpt/__main__.py"):
        first = "tinygpt"
    text = " ".join([first, *argv[1:]])
    return text if len(text) <= 160 else text[:157] + "..."


def _holder(fd: int) -> str:
    """'process 4242 (tinygpt train --out runs/x, since 2026-12-07 06:40:01)', from the lock file's note."""
    try:
        note = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        pid = int(note["pid"])
        os.kill(pid, 0)  # alive: the note is the holder's, not one left by a process that has ended
        return f"process {pid} ({note['command']}, since {note['since']})"
    except PermissionError:  # alive, another user's
        return f"process {pid} ({note['command']}, since {note['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (still starting)"
