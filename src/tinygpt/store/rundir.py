"""The run directory: every path of a run, and the one reader and writer of its config.json.

    RUN/
      config.json                    model settings, training settings, data fingerprint, version
      tokenizer.json                 the exact tokenizer (Hugging Face format for BPE)
      source_tokenizer.json          an encoder-decoder's tokenizer for its sources, when they have their own
      chat_template.jinja            how conversations are written (runs fine-tuned on them: `tinygpt sft`)
      model.safetensors              best weights so far (what `tinygpt sample/eval` load; a LoRA run's merged)
      adapter/                       a LoRA run's adapters at the best step, in PEFT's format (model/lora.py)
      metrics.jsonl                  one JSON object per evaluation
      checkpoints/latest.safetensors weights + optimizer + random state + progress (+ the objective's own
                                     tensors: `tinygpt rl`'s rollout and value head), for --resume
      checkpoints/best.safetensors   the same, at the best validation loss
      loss.png, tensorboard/         pictures and logs, when asked for
      .lock                          held (flock) by the one process writing the run: train, sft, reward, rl

No other module builds these paths from strings or parses config.json: they ask a `RunDir`. A run has one
writer: `ready_for` takes the directory's lock before it checks anything, and a second writer (a second
training into the same --out, a --resume or --overwrite of a run still training) is refused naming the
process that holds it. Readers (sample, serve, eval, export, plot) never take it.
The files themselves (safetensors with checksums, atomic writes) are `checkpoint.py`'s business.
"""

from __future__ import annotations

import errno
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ModelConfig, TrainConfig, build_configs, model_config_from_dict, to_dict
from ..config.saved import DPO_KEYS, MODEL_KEYS, RL_KEYS, TRAIN_KEYS, check_section, check_value
from ..core import lock as writer_lock
from ..core.errors import TinyGPTError
from ..core.version import __version__
from .checkpoint import (
    append_metrics,
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    load_tensors,
    read_metrics,
    save_checkpoint,
    save_weights,
    truncate_metrics,
)

CHECKPOINTS = ("latest", "best")
DISK_REFUSED = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


@dataclass
class RunConfig:
    """config.json, parsed and validated: what a run is and how it was made."""

    model: ModelConfig
    train: TrainConfig
    data: dict = field(default_factory=dict)  # name, sha256, characters, tokens, splits, notes
    preset: str = ""
    num_params: int = 0
    imported_from: str = ""  # for `tinygpt import`: the checkpoint it came from
    tinygpt_version: str = __version__

    @property
    def verb(self) -> str:
        """The command that made the run (train, sft, reward, rl), which is also the one that resumes it."""
        return self.data.get("verb", "train")

    def to_json(self) -> dict:
        doc = {"tinygpt_version": self.tinygpt_version, "preset": self.preset, "model": to_dict(self.model),
               "train": to_dict(self.train), "data": self.data, "num_params": self.num_params}
        if self.imported_from:
            doc["imported_from"] = self.imported_from
        return doc


class RunDir:
    """A run directory on disk (it may not exist yet): its paths and its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def source_tokenizer_path(self) -> Path:
        return self.path / "source_tokenizer.json"

    @property
    def chat_template_path(self) -> Path:
        return self.path / "chat_template.jinja"

    @property
    def weights_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_path(self, which: str = "latest") -> Path:
        if which not in CHECKPOINTS:
            raise TinyGPTError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
        return self.checkpoints_dir / f"{which}.safetensors"

    @property
    def loss_plot_path(self) -> Path:
        return self.path / "loss.png"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    # ------------------------------------------------------------------ what is there

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path("latest").exists()

    def require(self, make: str = "") -> "RunDir":
        """This directory, if it is a run; otherwise the one-line error that says what it is instead.

        make: the command that makes the kind of run the caller needs (a missing run's hint names it).
        """
        if not self.path.exists():
            make = make or f"tinygpt train --data TEXT --out {self.path}"
            raise TinyGPTError(f"run directory {self.path} does not exist; make it with `{make}`{self._nearby()}")
        if not self.path.is_dir():
            raise TinyGPTError(f"{self.path} is a file, not a tinygpt run directory")
        if not self.is_run():
            raise TinyGPTError(f"{self.path} is not a tinygpt run directory (it has no config.json)")
        return self

    def _nearby(self) -> str:
        """' (runs/ holds: shakespeare-2, ...)': runs beside a missing one whose names are close to its name."""
        import difflib

        parent = self.path.parent
        try:
            names = [p.name for p in parent.iterdir() if (p / "config.json").is_file()]
        except OSError:
            return ""
        close = difflib.get_close_matches(self.name, names, n=3, cutoff=0.5)
        return f" ({parent}/ holds: {', '.join(close)})" if close else ""

    def _names_taken(self) -> list[str]:
        """The files of another kind in this folder (not a run) that a run's own files would replace."""
        own = (self.tokenizer_path, self.source_tokenizer_path, self.chat_template_path, self.weights_path,
               self.metrics_path, self.loss_plot_path, self.checkpoint_path("best"))
        return [path.name for path in own if path.exists()]

    def clear(self):
        """Remove the run's own files (`--overwrite`), and nothing else: a folder that holds other files but no
        run is refused, so a mistyped --out cannot delete someone's work."""
        import shutil

        if not self.path.exists():
            return
        if not self.is_run():
            raise TinyGPTError(f"{self.path} holds no tinygpt run, so --overwrite leaves it alone; "
                               "choose another --out")
        for path in (self.config_path, self.tokenizer_path, self.source_tokenizer_path, self.chat_template_path,
                     self.weights_path, self.metrics_path, self.loss_plot_path):
            path.unlink(missing_ok=True)
        for folder in (self.checkpoints_dir, self.tensorboard_dir, self.adapter_dir):
            shutil.rmtree(folder, ignore_errors=True)

    def resumable_by(self, verb: str) -> RunConfig:
        """The saved settings of this run, which `tinygpt VERB` must have made: a run continues only with
        the command that started it."""
        saved = self.read_config()
        if (made_by := saved.verb) != verb:
            raise TinyGPTError(f"{self} was made by `tinygpt {made_by}`; continue it with "
                               f"`tinygpt {made_by} --resume {self}`")
        return saved

    def ready_for(self, verb: str, resume: bool, overwrite: bool, main: bool = True) -> RunConfig | None:
        """Check that `tinygpt VERB` may train here: nothing else writes here (the main process takes the
        directory's lock, once it exists, and keeps it until `unlock`; `claim` says who holds it); a resumed
        run must be the verb's own (its saved settings are returned); a new run may not land on a run
        already here unless `overwrite` (the main process then removes the old run's files)."""
        taken = main and self.path.is_dir() and self.lock()
        try:
            return self._checked_for(verb, resume, overwrite, main)
        except BaseException:
            if taken:
                self.unlock()
            raise

    def _checked_for(self, verb: str, resume: bool, overwrite: bool, main: bool) -> RunConfig | None:
        if resume:
            return self.resumable_by(verb)
        if main and not self.is_run() and (taken := self._names_taken()):
            raise TinyGPTError(f"{self} holds no tinygpt run but has {', '.join(taken)}, which a run would write "
                               "over; choose another --out")
        if main and self.has_checkpoint():
            if not overwrite:
                made_by = self.read_config().verb if self.is_run() else verb
                raise TinyGPTError(f"{self} already holds a run; continue it with `tinygpt {made_by} --resume "
                                   f"{self}`, start it again with --overwrite, or choose another --out")
            self.clear()
        return None

    # ------------------------------------------------------------------ one writer

    @property
    def lock_path(self) -> Path:
        return self.path / writer_lock.LOCK_FILE

    def lock(self) -> bool:
        """Take the run's writer lock (True: taken now; False: this process held it). A run another process
        is writing (training, resuming, overwriting it) is one line naming that process. The lock lasts until
        `unlock`, or until this RunDir is gone: a launch that fails after the check (its data, say) does not
        leave a Python session holding the run."""
        taken = writer_lock.take(self.lock_path, f"run directory {self.path}")
        if taken:
            weakref.finalize(self, writer_lock.release, self.lock_path)
        return taken

    def claim(self):
        """Write this process's pid and command into the lock file it holds, once it starts writing the run (a
        command refused before leaves the directory as it was), for the message of whoever is refused."""
        writer_lock.claim(self.lock_path)

    def unlock(self):
        writer_lock.release(self.lock_path)

    def create(self) -> "RunDir":
        try:
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # --out names a file (a full or read-only disk: the command line's one line)
            if e.errno in DISK_REFUSED:
                raise
            raise TinyGPTError(f"cannot make the run directory {self.path} ({e.strerror}); "
                               "choose another --out") from None
        return self

    # ------------------------------------------------------------------ config.json

    def read_config(self) -> RunConfig:
        """config.json, checked as it is read: a damaged or foreign file is one line naming the key and the fix."""
        self.require()
        path = self.config_path
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TinyGPTError(f"{path} is not valid JSON ({e}); the run directory is damaged") from None
        sections = isinstance(doc, dict) and isinstance(doc.get("model"), dict) and isinstance(doc.get("train"), dict)
        if not sections:
            raise TinyGPTError(f"{path} is not a tinygpt run config (no model/train sections)")
        model = check_section(doc["model"], MODEL_KEYS, "model", path)
        train = check_section(doc["train"], TRAIN_KEYS, "train", path)
        data = check_value(doc.get("data") or {}, dict, "data", path)
        if "rl" in data:
            check_section(data["rl"], RL_KEYS, "data.rl", path)
        if "dpo" in data:
            check_section(data["dpo"], DPO_KEYS, "data.dpo", path)
        check_value(data.get("verb", "train"), str, "data.verb", path)
        try:
            model_cfg = model_config_from_dict(model)
            _, train_cfg = build_configs(train)
        except TinyGPTError as e:
            raise TinyGPTError(f"{path}: {e}; the file is damaged: put back the value the run was made with") from None
        return RunConfig(model=model_cfg, train=train_cfg, data=data,
                         preset=check_value(doc.get("preset", ""), str, "preset", path),
                         num_params=check_value(doc.get("num_params", 0), int, "num_params", path),
                         imported_from=check_value(doc.get("imported_from", ""), str, "imported_from", path),
                         tinygpt_version=check_value(doc.get("tinygpt_version", ""), str, "tinygpt_version", path))

    def write_config(self, config: RunConfig):
        atomic_write_json(self.config_path, config.to_json())

    # ------------------------------------------------------------------ tokenizer

    def read_tokenizer(self):
        from ..tokenizers import load_tokenizer

        return load_tokenizer(self.tokenizer_path)

    def write_tokenizer(self, tokenizer):
        atomic_write_json(self.tokenizer_path, tokenizer.to_json())

    def read_source_tokenizer(self):
        """An encoder-decoder's tokenizer for its sources, or None: the sources use tokenizer.json too."""
        if not self.source_tokenizer_path.is_file():
            return None
        from ..tokenizers import load_tokenizer

        return load_tokenizer(self.source_tokenizer_path)

    def write_source_tokenizer(self, tokenizer):
        atomic_write_json(self.source_tokenizer_path, tokenizer.to_json())

    # ------------------------------------------------------------------ chat template

    def read_chat_template(self) -> str | None:
        """The Jinja source of the run's chat template, or None: the run has no chat format."""
        path = self.chat_template_path
        if not path.is_file():
            return None
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise TinyGPTError(f"{path} is not valid UTF-8; the run directory is damaged") from None

    def write_chat_template(self, source: str):
        atomic_write_bytes(self.chat_template_path, source.encode("utf-8"))

    # ------------------------------------------------------------------ weights and checkpoints

    def instead_of(self, path: Path) -> str:
        """Which other file of the run may still load in place of a damaged `path`, and how."""
        latest, best = self.checkpoint_path("latest"), self.checkpoint_path("best")
        if path == self.weights_path and latest.is_file():
            return "checkpoints/latest.safetensors may still load (--checkpoint latest, or checkpoint='latest')"
        if path == latest and best.is_file():
            return ("checkpoints/best.safetensors may still load: copy it over latest.safetensors to resume "
                    "from its step")
        if path == best and latest.is_file():
            return "checkpoints/latest.safetensors may still load"
        return ""

    def read_weights(self, which: str = "best") -> tuple[dict, Path]:
        """The model's tensors from model.safetensors ('best') or the latest checkpoint, and their file."""
        if which == "best":
            state, _ = load_tensors(self.weights_path, instead=self.instead_of(self.weights_path))
            return state, self.weights_path
        return self.read_checkpoint(which)["model"], self.checkpoint_path(which)

    def write_weights(self, model, metadata: dict[str, str] | None = None):
        save_weights(self.weights_path, model, metadata)

    def write_adapter(self, config: dict, tensors: dict):
        """adapter/adapter_config.json and adapter/adapter_model.safetensors, as PEFT's save_pretrained names them."""
        self.adapter_dir.mkdir(exist_ok=True)
        atomic_save_tensors(self.adapter_dir / "adapter_model.safetensors", tensors, {"format": "pt"})
        atomic_write_json(self.adapter_dir / "adapter_config.json", config)

    def read_checkpoint(self, which: str = "latest") -> dict:
        path = self.checkpoint_path(which)
        return load_checkpoint(path, instead=self.instead_of(path))

    def write_checkpoint(self, which: str, model, optimizer, rng: dict, progress: dict, objective: dict | None = None):
        save_checkpoint(self.checkpoint_path(which), model, optimizer, rng, progress, objective=objective)

    # ------------------------------------------------------------------ metrics

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics_path)

    def append_metrics(self, record: dict):
        append_metrics(self.metrics_path, record)

    def truncate_metrics(self, last_step: int):
        truncate_metrics(self.metrics_path, last_step)

    def finished(self) -> bool:
        """Trained to its last step (a run stopped half-way is resumed, not used)."""
        if not self.weights_path.is_file() or not self.is_run():
            return False
        records = self.read_metrics()
        return bool(records) and records[-1]["step"] >= self.read_config().train.max_iters
