"""The training loop, top to bottom: data, model, optimizer, steps, evaluations, checkpoints.

    trainer = Trainer(model_cfg, train_cfg, out_dir)
    result = trainer.train()

A run can be stopped at any step (Ctrl-C, a kill, a time budget) and resumed with
`Trainer(..., resume=True)`: the checkpoint holds the weights, the optimizer, the random state of
both the batch sampler and dropout, and the progress counters, so the resumed run computes exactly
what an uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import __version__
from . import distributed as ddp
from .checkpoint import (
    append_metrics,
    atomic_write_json,
    load_checkpoint,
    load_tensors,
    load_weights_into,
    read_metrics,
    save_checkpoint,
    save_weights,
    truncate_metrics,
)
from .config import ModelConfig, TrainConfig, to_dict
from .data import corpus_name, encode_corpus, fingerprint, load_corpus, random_batch, split_ids
from .devices import autocast_for, keep_freed_memory, pick_device, set_threads
from .errors import TinyGPTError
from .evaluate import split_loss
from .hub import hub_name
from .model import build_model
from .optim import build_optimizer, lr_factor, set_lr
from .tokenizers import load_tokenizer, mark_sentence_ends, train_tokenizer


class TrainingInterrupted(Exception):
    """Training stopped on request (Ctrl-C); `step` is the saved step it can resume from (None: none).

    `quit_at` is the step it was at when a second Ctrl-C quit without saving, if that was later.
    """

    def __init__(self, step: int | None, out_dir: Path, quit_at: int | None = None):
        resume = f"tinygpt train --resume {out_dir}"
        if step is None:
            message = f"quit at step {quit_at} before the first checkpoint was saved; nothing to resume"
        elif quit_at is not None and quit_at != step:
            message = f"quit at step {quit_at} without saving; continue from the step-{step} checkpoint: {resume}"
        else:
            message = f"stopped at step {step}; saved. Continue with: {resume}"
        super().__init__(message)
        self.step = step
        self.out_dir = out_dir


@dataclass
class TrainResult:
    """What a finished run reached: where it is saved, steps, tokens, seconds, losses, samples."""

    out_dir: Path
    step: int
    tokens: int
    elapsed_s: float
    train_loss: float
    val_loss: float | None
    best_val_loss: float | None
    num_params: int
    samples: list[str]


class Trainer:
    """One training run: set up data, model and optimizer (or restore them), loop, evaluate, save.

    `train()` returns a TrainResult, or raises TrainingInterrupted after saving when asked to stop.
    """

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, out_dir: str | Path,
                 resume: bool = False, log=None, on_step=None, preset: str = "", started_at: float | None = None):
        self.model_cfg = dataclasses.replace(model_cfg)
        # When the run began, on time.perf_counter()'s clock: a time budget counts from here. The
        # command line passes its process's start, so `--time-budget 3m` covers the whole command.
        self.started_at = started_at
        self.cfg = train_cfg
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.preset = preset
        self.on_step = on_step  # called as on_step(trainer) after every optimizer step (tests, tools)
        self._log = log or print
        self._stop_requested = False

    # ------------------------------------------------------------------ helpers

    def log(self, message: str):
        if not self.dist.is_main:
            return
        # Every message goes to the caller's `log`; a live progress bar steps aside while it prints.
        with tqdm.external_write_mode() if self._bar is not None else contextlib.nullcontext():
            self._log(message)

    def request_stop(self):
        """Finish the current step, save, and stop (what Ctrl-C does)."""
        self._stop_requested = True

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    # ------------------------------------------------------------------ setup

    def _prepare_data(self):
        cfg = self.cfg
        text = load_corpus(cfg.data)
        if cfg.tokenizer == "word" and cfg.sentence_end:
            text = mark_sentence_ends(text, cfg.sentence_end)
        if self.resume:
            self.tokenizer = load_tokenizer(self.out_dir / "tokenizer.json")
            saved = self.saved_doc["data"]["sha256"]
            if fingerprint(text) != saved:
                raise TinyGPTError(f"the training text ({cfg.data}) changed since this run started; "
                                   "resume with the same data or start a new run")
        elif cfg.init_from:  # fine-tuning: the tokenizer goes with the weights
            self.tokenizer = load_tokenizer(Path(cfg.init_from) / "tokenizer.json")
        else:
            if (repo := hub_name(cfg.tokenizer)) is not None:
                self.log(f"fetching the tokenizer {repo} from the Hugging Face Hub (or its cache)")
            self.tokenizer = train_tokenizer(cfg.tokenizer, text, cfg.vocab_size, cfg.sentence_end)
        ids = encode_corpus(self.tokenizer, text)  # (N,)
        splits = split_ids(ids, cfg.val_fraction, self.model_cfg.block_size, val_windows=cfg.eval_iters > 0)
        if cfg.init_from and splits.block_size != self.model_cfg.block_size:
            raise TinyGPTError(f"{cfg.data} is too short for the context of {cfg.init_from}'s model "
                               f"({self.model_cfg.block_size} tokens); fine-tune on a longer text")
        notes = list(splits.notes)
        cap = cfg.eval_max_tokens
        if cfg.eval_iters == 0 and cap and splits.val is not None and len(splits.val) > cap:
            notes.append(f"the validation split has {len(splits.val):,} tokens: evaluations during training score "
                         f"its first {cap:,} (--eval-max-tokens), the final one all of them "
                         "(a lower --val-fraction shortens it)")
        for note in notes:
            self.log(f"note: {note}")
        self.model_cfg.block_size = splits.block_size
        self.model_cfg.vocab_size = self.tokenizer.vocab_size
        self.train_data, self.val_data = splits.train, splits.val
        self.data_info = {"name": corpus_name(cfg.data), "sha256": fingerprint(text), "characters": len(text),
                          "tokens": len(ids), "train_tokens": len(splits.train),
                          "val_tokens": 0 if splits.val is None else len(splits.val), "notes": splits.notes}

    def _setup(self):
        cfg = self.cfg
        self.device = pick_device(cfg.device)
        self.dist = ddp.setup(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.threads = set_threads(cfg.threads, self.dist.world_size, probe=self.device.type == "cpu")
        self._threads_checked_at = time.perf_counter()
        if self.device.type == "cpu":
            keep_freed_memory()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if cfg.batch_size % self.dist.world_size:
            raise TinyGPTError(f"batch_size {cfg.batch_size} must divide evenly among {self.dist.world_size} processes")
        self._bar = None
        if self.resume:
            path = self.out_dir / "config.json"
            if not path.is_file():
                raise TinyGPTError(f"cannot resume: {self.out_dir} is not a tinygpt run directory (no config.json)")
            self.saved_doc = json.loads(path.read_text(encoding="utf-8"))
        elif self.dist.is_main and (self.out_dir / "checkpoints" / "latest.safetensors").exists():
            raise TinyGPTError(f"{self.out_dir} already holds a run; continue it with --resume {self.out_dir} "
                               "or choose another --out")

        torch.manual_seed(cfg.seed)  # the same initial weights on every process
        self._prepare_data()
        self.model_cfg.validate()
        self.model = build_model(self.model_cfg).to(self.device)
        if cfg.init_from and not self.resume:
            source = Path(cfg.init_from) / "model.safetensors"
            state, _ = load_tensors(source)
            load_weights_into(self.model, state, source)
        self.optimizer = build_optimizer(self.model, cfg, self.device.type)
        self.autocast = autocast_for(self.device, cfg.dtype)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        self.step, self.tokens, self.elapsed_before = 0, 0, 0.0
        self.best_val, self.best_score, self.best_step = None, None, None
        self._eval_tokens = 0  # tokens scored by the latest evaluation (it predicts the final one's cost)
        self._val_whole = self._val_cap() == 0  # whether the latest evaluation scored the whole split
        self.saved_step = None  # the step of the latest checkpoint on disk
        if self.resume:
            self._restore()
            self.saved_step = self.step
        self.train_model = torch.compile(self.model) if cfg.compile else self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
        if self.dist.is_main:
            try:
                self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # --out names a file, or a place we may not write
                raise TinyGPTError(f"cannot make the run directory {self.out_dir} ({e.strerror}); "
                                   "choose another --out") from None
            if cfg.tensorboard:
                from .viz.tensorboard import TensorBoardLog

                # On resume, events after the checkpoint's step are dropped, as they are from metrics.jsonl.
                self.tb = TensorBoardLog(self.out_dir / "tensorboard", self.step + 1 if self.resume else None)
            self._plotted_at = self.step
            self.run_doc = {"tinygpt_version": __version__, "preset": self.preset, "model": to_dict(self.model_cfg),
                            "train": to_dict(cfg), "data": self.data_info,
                            "num_params": self.model.num_params()}
            atomic_write_json(self.out_dir / "config.json", self.run_doc)
            if not self.resume:
                atomic_write_json(self.out_dir / "tokenizer.json", self.tokenizer.to_json())

    def _restore(self):
        state = load_checkpoint(self.ckpt_dir / "latest.safetensors")
        load_weights_into(self.model, state["model"], self.ckpt_dir / "latest.safetensors")
        try:
            self.optimizer.load_state_dicts(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise TinyGPTError(f"the checkpoint's optimizer state does not fit this run ({e}); "
                               "resume with the optimizer settings it was started with") from None
        self.batch_gen.set_state(state["rng"]["batch"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        p = state["progress"]
        self.step, self.tokens, self.elapsed_before = p["step"], p["tokens"], p["elapsed_s"]
        self.best_val, self.best_step = p["best_val_loss"], p["best_step"]
        self.best_score = p.get("best_score", self.best_val)
        if self.dist.is_main:
            truncate_metrics(self.out_dir / "metrics.jsonl", self.step)

    # ------------------------------------------------------------------ evaluation and saving

    def _val_cap(self) -> int:
        """Tokens of the validation split scored by a periodic evaluation (0 = all of it).

        A multiple of block_size, so the capped windows are exactly the first windows of a whole pass.
        """
        cap = self.cfg.eval_max_tokens
        if self.cfg.eval_iters or not cap or self.val_data is None or cap >= len(self.val_data) - 1:
            return 0
        block = self.model_cfg.block_size
        return max(block, cap // block * block)

    def estimate_losses(self, final: bool = False) -> dict[str, float | None]:
        """Train and validation loss: exact passes (eval_iters=0) or averages of random batches.

        With eval_max_tokens, periodic passes score only the first tokens of each split, but the
        `final` evaluation scores the whole validation split. It then also reports `val_capped`, the
        loss on the same first tokens, so that the best checkpoint is chosen on one footing.
        """
        cfg, block = self.cfg, self.model_cfg.block_size
        shard = (self.dist.rank, self.dist.world_size)
        # On a CPU, batches of ~1,024 tokens score faster than bigger ones (cache-sized) and need ~40 MB
        # less memory (speedrun-cpu: 3.1 s against 4.8 s for the whole split at 64 windows of 64, 1 thread).
        windows = max(1, 1024 // block) if self.device.type == "cpu" else 64
        out = {}
        for split, data in (("train", self.train_data), ("val", self.val_data)):
            if data is None:
                out[split] = None
                continue
            if cfg.eval_iters == 0:
                # The training split is measured on a slice as long as the validation split.
                cap = cfg.eval_max_tokens or 0
                if split == "train" and self.val_data is not None:
                    cap = min(cap or len(self.val_data), len(self.val_data))
                if split == "val":
                    cap = self._val_cap()
                total, count = split_loss(self.model, data, block, self.device, windows, max_tokens=cap,
                                          autocast=self.autocast, shard=shard)
                if split == "val" and cap and final:
                    # The rest of the split, in the same windows a whole pass would use.
                    rest, rest_count = split_loss(self.model, data[cap:], block, self.device, windows,
                                                  autocast=self.autocast, shard=shard)
                    head, head_count = ddp.sum_across(self.dist, total, count)
                    out["val_capped"] = head / head_count
                    total, count = total + rest, count + rest_count
                self._eval_tokens += count
                if split == "val":
                    self._val_whole = not cap or final
            else:
                gen = torch.Generator().manual_seed(cfg.seed + 1)  # the same batches at every evaluation
                total, count = 0.0, 0
                self.model.eval()
                with torch.no_grad():
                    for i in range(cfg.eval_iters):
                        x, y = random_batch(data, cfg.batch_size, block, gen)
                        if i % self.dist.world_size != self.dist.rank:
                            continue
                        with self.autocast():
                            _, loss = self.model(x.to(self.device), y.to(self.device))
                        total, count = total + loss.item(), count + 1
                self.model.train()
            total, count = ddp.sum_across(self.dist, total, count)
            out[split] = total / count
        return out

    def _rng_state(self) -> dict[str, torch.Tensor]:
        rng = {"batch": self.batch_gen.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def _progress(self) -> dict:
        return {"step": self.step, "tokens": self.tokens, "elapsed_s": self.elapsed(),
                "best_val_loss": self.best_val, "best_score": self.best_score, "best_step": self.best_step}

    def save(self, best: bool):
        self.saved_step = self.step
        if not self.dist.is_main:
            return
        rng, progress = self._rng_state(), self._progress()
        save_checkpoint(self.ckpt_dir / "latest.safetensors", self.model, self.optimizer, rng, progress)
        if best:
            save_checkpoint(self.ckpt_dir / "best.safetensors", self.model, self.optimizer, rng, progress)
            save_weights(self.out_dir / "model.safetensors", self.model, {"step": str(self.step)})

    def _recheck_threads(self, now: bool = False):
        """With threads 0 on a CPU, probe the cores again every 5 s (every 1 s before an evaluation, `now`):
        other work can take them away mid-run, and then one thread is far faster than two."""
        if self.cfg.threads or self.device.type != "cpu" or self.dist.enabled:
            return
        if time.perf_counter() - self._threads_checked_at >= (1.0 if now else 5.0):
            self.threads = set_threads(0, probe=True)
            self._threads_checked_at = time.perf_counter()

    def evaluate_and_save(self, lr: float, final: bool = False) -> dict:
        self._recheck_threads(now=True)
        t0 = time.perf_counter()
        self._eval_tokens = 0
        losses = self.estimate_losses(final)
        self.eval_seconds = time.perf_counter() - t0
        # The final evaluation scores the whole validation split; the time budget keeps room for it.
        cap = self._val_cap()
        rest = 0 if final or not cap else (len(self.val_data) - 1 - cap) / self.dist.world_size
        self.final_eval_seconds = self.eval_seconds * (1 + rest / max(self._eval_tokens, 1))
        score = losses["val"] if losses["val"] is not None else losses["train"]
        score = losses.get("val_capped", score)  # compare like with like
        # The same step evaluated again (a whole pass after a capped one) is the same model.
        improved = self.best_score is None or score < self.best_score or self.best_step == self.step
        if improved:
            self.best_val, self.best_score, self.best_step = losses["val"] or score, score, self.step
        self.save(best=improved)
        record = {"step": self.step, "tokens": self.tokens, "elapsed_s": round(self.elapsed(), 3), "lr": lr,
                  "train_loss": losses["train"], "val_loss": losses["val"]}
        if self.dist.is_main:
            append_metrics(self.out_dir / "metrics.jsonl", record)
            if self.tb is not None:
                self.tb.write(record)
            if self.cfg.plot_every and self.step - self._plotted_at >= self.cfg.plot_every:
                self.plot_loss()
            val = f"{losses['val']:.4f}" if losses["val"] is not None else "n/a"
            self.log(f"step {self.step}: train loss {losses['train']:.4f}, val loss {val}")
        return record

    # ------------------------------------------------------------------ the loop

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t0)

    def _time_is_up(self) -> bool:
        budget = self.cfg.time_budget_s
        if budget is None:
            return False
        # Leave room for the final evaluation, which is part of the budget too.
        return self.elapsed() + self.final_eval_seconds + self._step_seconds >= budget

    def _progress_fraction(self) -> float:
        cfg = self.cfg
        if cfg.time_budget_s is not None:
            # The last step starts one step before the final evaluation: there the decay is complete.
            left_for_training = cfg.time_budget_s - self.final_eval_seconds - self._step_seconds
            return self.elapsed() / max(left_for_training, 1e-9)
        return (self.step - cfg.warmup_iters) / max(cfg.max_iters - cfg.warmup_iters, 1)

    def _done(self) -> bool:
        cfg = self.cfg
        # max_iters 0 means no steps at all (evaluate the untrained model), unless a time budget decides.
        steps_done = self.step >= cfg.max_iters and (cfg.max_iters > 0 or cfg.time_budget_s is None)
        limit_reached = steps_done or self._time_is_up()
        return ddp.any_across(self.dist, bool(limit_reached) or self._stop_requested)

    def train_step(self) -> tuple[torch.Tensor, float]:
        cfg, block = self.cfg, self.model_cfg.block_size
        lr = set_lr(self.optimizer, lr_factor(cfg, self.step, self._progress_fraction()))
        per_rank = cfg.batch_size // self.dist.world_size
        lo = self.dist.rank * per_rank
        for micro in range(cfg.grad_accum):
            x, y = random_batch(self.train_data, cfg.batch_size, block, self.batch_gen)  # (B, T): global batch
            x, y = x[lo : lo + per_rank].to(self.device), y[lo : lo + per_rank].to(self.device)  # this rank's share
            # Under DDP, gradients are averaged across processes only on the last micro-batch.
            sync = micro == cfg.grad_accum - 1 or not self.dist.enabled
            with self.train_model.no_sync() if not sync else contextlib.nullcontext():
                with self.autocast():
                    _, loss = self.train_model(x, y)
                (loss / cfg.grad_accum).backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += cfg.batch_size * block * cfg.grad_accum
        return loss.detach(), lr

    def plot_loss(self):
        """Redraw RUN/loss.png from metrics.jsonl (--plot-every)."""
        from .viz.plots import plot_loss

        plot_loss([self.out_dir], self.out_dir / "loss.png", title=f"Loss curves of {self.out_dir.name}")
        self._plotted_at = self.step

    def _time_left(self) -> str:
        """What is left of the time budget, as the progress bar shows it (m:ss)."""
        left = max(math.ceil(self.cfg.time_budget_s - self.elapsed()), 0)
        return f"{left // 60}:{left % 60:02d}"

    def train(self) -> TrainResult:
        """Run to max_iters or the time budget; returns a TrainResult (TrainingInterrupted if stopped)."""
        self._bar = None
        self.tb = None
        # A time budget counts the setup (data, model) too, and from the command line, Python's start-up.
        self._t0 = time.perf_counter() if self.started_at is None else self.started_at
        self._setup()
        cfg = self.cfg
        self.eval_seconds, self.final_eval_seconds, self._step_seconds = 0.0, 0.0, 0.0
        previous_handler = self._install_interrupt_handler()
        # A resumed run starts from the restored optimizer's rate, and from the evaluation of the
        # step it resumes at if that was recorded (so resuming a finished run adds no duplicate).
        loss, lr, last_record = None, self.optimizer.param_groups[0]["lr"], None
        if self.resume:
            records = read_metrics(self.out_dir / "metrics.jsonl")
            if records and records[-1].get("step") == self.step:
                last_record = records[-1]
        try:
            if self.dist.is_main:
                self.log(self.describe())
                show = cfg.progress and self.dist.is_main
                self._bar = tqdm(total=cfg.max_iters or None, initial=self.step, disable=not show,
                                 dynamic_ncols=True, desc="training", unit="step",
                                 mininterval=0.1 if sys.stderr.isatty() else 5.0)
            window_start, window_tokens = time.perf_counter(), 0
            if self.step == 0 and not self.resume:
                last_record = self.evaluate_and_save(set_lr(self.optimizer, lr_factor(cfg, 0, 0.0)))
            while not self._done():
                step_start = time.perf_counter()
                loss, lr = self.train_step()
                self._step_seconds = time.perf_counter() - step_start
                self._recheck_threads()
                window_tokens += cfg.batch_size * self.model_cfg.block_size * cfg.grad_accum
                if self._bar is not None:
                    self._bar.update(1)
                    if self.step % cfg.log_interval == 0:
                        now = time.perf_counter()
                        rate = window_tokens / max(now - window_start, 1e-9)
                        postfix = dict(loss=f"{loss.item():.4f}", tok_s=f"{rate:,.0f}", lr=f"{lr:.2e}")
                        if cfg.time_budget_s is not None:  # tqdm's own estimate counts steps, not the budget
                            postfix["budget_left"] = self._time_left()
                        self._bar.set_postfix(postfix)
                        window_start, window_tokens = now, 0
                if self.step % cfg.eval_interval == 0:
                    last_record = self.evaluate_and_save(lr)
                if self.on_step is not None:
                    self.on_step(self)
            if self._stop_requested:
                self.save(best=False)
                raise TrainingInterrupted(self.step, self.out_dir)
            if last_record is None or last_record["step"] != self.step or not self._val_whole:
                last_record = self.evaluate_and_save(lr, final=True)
        except KeyboardInterrupt:  # a second Ctrl-C: quit now, the last checkpoint stays as it was
            raise TrainingInterrupted(self.saved_step, self.out_dir, quit_at=self.step) from None
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if self.tb is not None:
                self.tb.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        if self.dist.is_main and cfg.plot_every:
            self.plot_loss()
        samples = self._final_samples() if self.dist.is_main else []
        self.train_model = self.model  # the DDP wrapper holds the process group: let it go first
        ddp.teardown(self.dist)
        return TrainResult(self.out_dir, self.step, self.tokens, self.elapsed(), last_record["train_loss"],
                           last_record["val_loss"], self.best_val if self.val_data is not None else None,
                           self.model.num_params(), samples)

    def _install_interrupt_handler(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            self.log("\ninterrupted: finishing this step and saving (Ctrl-C again to quit at once)")

        return signal.signal(signal.SIGINT, handler)

    def describe(self) -> str:
        m, c, d = self.model_cfg, self.cfg, self.data_info
        where = f"{self.device}" + (f" x{self.dist.world_size} processes" if self.dist.enabled else "")
        shape = "bigram table" if m.arch == "bigram" else (
            f"{m.n_layer} layers, {m.n_head} heads, n_embd {m.n_embd}")
        budget = f"time budget {c.time_budget}" if c.time_budget else f"{c.max_iters} steps"
        if c.init_from:
            budget = f"fine-tuning {c.init_from}'s weights, {budget}"
        return (f"tinygpt {__version__}: {self.model.num_params():,} parameters ({shape}, block_size {m.block_size}), "
                f"{c.tokenizer} tokenizer with {m.vocab_size} tokens; data {d['name']}: {d['train_tokens']:,} train"
                f" / {d['val_tokens']:,} val tokens; {budget} on {where}, {self.threads} threads; out {self.out_dir}")

    def _final_samples(self) -> list[str]:
        cfg = self.cfg
        if not cfg.sample_tokens or not cfg.num_samples:
            return []
        from .run import Run

        run = Run(self.out_dir, self.model, self.tokenizer, self.run_doc, self.device)
        prompts = [p.strip() for p in cfg.sample_prompts.split(",") if p.strip()] or [""]
        samples = []
        self.model.eval()
        for i in range(cfg.num_samples):
            prompt = prompts[i % len(prompts)]
            text = run.generate(prompt, max_new_tokens=cfg.sample_tokens, seed=cfg.seed + i)
            sample = prompt + text
            samples.append(sample)
            self._log(f"--- sample {i + 1}" + (f" (from {prompt!r})" if prompt else "") + " ---\n" + sample)
        self.model.train()
        return samples
