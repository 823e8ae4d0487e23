"""`tinygpt serve RUN --watch`: serve a run that `tinygpt train` is still writing, and follow it.

    watcher = Watcher(engine, "rhyme", "runs/rhyme").start()
    watcher.status()   # {"step": 250, "loaded_at": ..., "written_at": ..., "metrics": [...]}

A thread looks at RUN/checkpoints/latest.safetensors a few times a second. When a new one is there, it
reads it whole and checks it against the checksum saved in it (training writes a checkpoint to a
temporary name and renames it, so a reader never meets half a file at that path; a copy or a disk
that went wrong fails the checksum and is not loaded), then puts its weights into the served model on
the engine's thread, between two decoding steps, so no request ever reads half old and half new weights.

Watching costs the training little: one stat() per look, and one read of the checkpoint per new one.
"""

from __future__ import annotations

import os
import threading
import time

from ..core.errors import TinyGPTError
from ..model.lora import merge_lora
from ..store.checkpoint import load_weights_into
from ..store.rundir import RunDir
from .engine import Engine

EVERY = 0.25  # seconds between looks at the checkpoint


class Watcher:
    """Follows one served run's newest checkpoint (see the module's docstring)."""

    def __init__(self, engine: Engine, name: str, run_dir, every: float = EVERY):
        self.engine, self.name, self.run = engine, name, RunDir(run_dir)
        self.every = every
        self.seen: tuple | None = None  # (inode, size, mtime) of the checkpoint last read
        self.step: int | None = None  # the step of the weights being served
        self.loaded_at: float | None = None  # when they went in (time.time())
        self.written_at: float | None = None  # when training wrote them (the file's mtime)
        self.problem = ""  # why the newest checkpoint was not loaded, if it was not
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> "Watcher":
        self.look()  # the run as it is now, before the first request
        self.thread = threading.Thread(target=self._loop, name=f"tinygpt-watch-{self.name}", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()

    def _loop(self):
        while not self.stopping.wait(self.every):
            self.look()

    def look(self) -> bool:
        """Load the newest checkpoint if it is new; True if weights went in."""
        path = self.run.checkpoint_path("latest")
        try:
            stat = os.stat(path)
        except OSError:
            return False  # not written yet (or being replaced this instant): the next look sees it
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if seen == self.seen:
            return False
        try:
            checkpoint = self.run.read_checkpoint("latest")
        except TinyGPTError as e:  # damaged: keep serving the weights we have, and say why
            self.seen, self.problem = seen, str(e)
            return False
        state = checkpoint["model"]
        config = self.engine.runs[self.name].config
        if config.train.lora_rank:  # base and adapters apart in a checkpoint; the served model is merged
            state = merge_lora(state, config.train.lora_scaling)
        model, step = self.engine.runs[self.name].model, int(checkpoint["progress"].get("step", 0))

        def swap():  # on the engine's thread: a look inside reads the weights and their step together
            load_weights_into(model, state, path)
            self.step, self.written_at, self.loaded_at = step, stat.st_mtime_ns / 1e9, time.time()

        try:
            self.engine.call(swap).result()
        except TinyGPTError as e:  # another model in the folder now (a new run over it): keep the old weights
            self.seen, self.problem = seen, f"{e}; restart tinygpt serve to serve the new run"
            return False
        self.seen, self.problem = seen, ""
        return True

    def status(self) -> dict:
        """What /watch answers: the served weights' step, when they were written and loaded, and the run's
        metrics.jsonl so far (the loss curves)."""
        try:
            metrics = self.run.read_metrics()
        except TinyGPTError as e:
            metrics, self.problem = [], str(e)
        return {"model": self.name, "step": self.step, "written_at": self.written_at, "loaded_at": self.loaded_at,
                "problem": self.problem or None, "metrics": metrics}
