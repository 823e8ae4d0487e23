"""The training loop, top to bottom, for every objective.

    trainer = Trainer(model_cfg, train_cfg, out_dir, objective)    # objective: prepared on its data
    result = trainer.train()

The launchers (app/launch.py: `tinygpt train`, `sft`, `reward`, `rl`) prepare the objective and hand it
here. `train()` sets up (runtime, model, optimizer, or all of them restored from the run's latest
checkpoint), evaluates step 0, then steps until max_iters or the time budget, evaluating and saving
every eval_interval steps, and ends with a final evaluation. Each job it calls has its own module:
objective.py (the interface an objective implements: batches, loss, evaluation), state.py
(checkpoints), progress.py (time budget, Ctrl-C, progress bar), records.py (metrics), runtime.py
(device, processes, threads).

A run can be stopped at any step (Ctrl-C, a kill, a time budget) and resumed with
`Trainer(..., resume=True)`; the resumed run computes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig, TrainConfig
from ..core import distributed as ddp
from ..core.devices import choose_threads, step_work
from ..core.errors import TinyGPTError, TrainingInterrupted
from ..core.sharding import WholeModel, WholeOptimizer, shard, whole_state
from ..core.version import __version__
from ..generation import SamplingConfig
from ..generation.complete import complete
from ..model import build_model
from ..model.gpt import Block
from ..model.lora import Merged, add_lora, peft_adapter
from ..store.checkpoint import load_weights_into
from ..store.rundir import RunConfig, RunDir
from .objective import Evaluation, Objective
from .optim import build_optimizer, lr_factor, set_lr
from .progress import Clock, ProgressBar, Schedule, StopRequest
from .records import Records
from .runtime import setup_runtime
from .state import Progress, restore_state, save_state


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
    """One training run of `objective` (default: language modelling on train_cfg.data).

    `train()` returns a TrainResult, or raises TrainingInterrupted after saving when asked to stop.
    `on_step(trainer)` is called after every optimizer step (tests, tools); `trainer.step` counts them.
    """

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, out_dir: str | Path, objective: Objective,
                 resume: bool = False, log=None, on_step=None, preset: str = "", started_at: float | None = None,
                 overwrite: bool = False):
        self.model_cfg = dataclasses.replace(model_cfg)
        self.cfg = train_cfg
        self.run_dir = RunDir(out_dir)
        self.out_dir = self.run_dir.path
        self.resume = resume
        self.overwrite = overwrite  # a new run may replace a finished or stopped one in out_dir
        self.preset = preset
        self.on_step = on_step
        self.objective = objective
        self.clock = Clock(started_at)  # a time budget counts the setup too
        self.stop = StopRequest(self.log)
        self._log = log or print
        self._bar: ProgressBar | None = None
        self.step = 0
        self.first_step, self.setup_seconds = 0, 0.0  # where this session's training began, and when
        self.config_unsaved = False  # a resumed run's settings, not yet saved (setup)

    def log(self, message: str):
        if getattr(self, "runtime", None) is not None and not self.runtime.dist.is_main:
            return
        (self._bar.log if self._bar is not None else self._log)(message)

    def request_stop(self):
        """Finish the current step, save, and stop (what Ctrl-C does)."""
        self.stop.request()

    # ------------------------------------------------------------------ setup

    def setup(self):
        cfg, run = self.cfg, self.run_dir
        self.runtime = rt = setup_runtime(cfg)
        run.ready_for(self.objective.verb, self.resume, self.overwrite, rt.dist.is_main)

        torch.manual_seed(cfg.seed)  # the same initial weights on every process
        objective = self.objective
        if cfg.window_schedule and not objective.follows_window_schedule:
            raise TinyGPTError("--window-schedule shortens the windows of text a GPT or an encoder trains on; this "
                               "run trains on whole examples (pairs, conversations or prompts), so leave it out")
        for note in objective.notes:
            self.log(f"note: {note}")
        self.model_cfg.block_size = objective.block_size
        self.model_cfg.vocab_size = objective.tokenizer.vocab_size
        for name, value in objective.model_settings().items():
            setattr(self.model_cfg, name, value)
        self.model_cfg.validate()

        self.model = build_model(self.model_cfg).to(rt.device)
        # The thread count follows the work of a step (devices.choose_threads): known now that the model is.
        tokens = cfg.batch_size * cfg.grad_accum * self.model_cfg.block_size // rt.dist.world_size
        rt.use_threads(choose_threads(cfg.threads, rt.dist.local_world_size, step_work(self.model, tokens)))
        if cfg.init_from and not self.resume:
            state, path = RunDir(cfg.init_from).read_weights("best")
            load_weights_into(self.model, objective.initial_weights(state), path)
        # LoRA: the weights just loaded frozen, adapters beside them (a resumed run's come from its checkpoint).
        self.adapter_params = add_lora(self.model, cfg) if cfg.lora_rank else 0
        checkpoint = run.read_checkpoint("latest") if self.resume else None
        self.sharded = rt.dist.lockstep  # --parallel fsdp under torchrun
        if self.sharded and checkpoint is not None:  # the whole saved weights, before they are cut
            load_weights_into(self.model, checkpoint["model"], run.checkpoint_path("latest"))
        self.trained = objective.bind(self.model, rt)  # the model, or it and the objective's own weights
        if self.sharded:
            if self.model_cfg.arch == "encoder-decoder":
                raise TinyGPTError("--parallel fsdp does not shard the encoder-decoder yet (its cross-attention "
                                   "reads each decoder block's weights outside that block's forward); use "
                                   "--parallel ddp")
            if self.trained is not self.model:
                raise TinyGPTError("--parallel fsdp shards the model alone, and this objective trains weights of "
                                   "its own beside it (PPO's value head); use --algorithm grpo, or --parallel ddp")
            self._whole = None
            if rt.dist.is_main:  # the writer's plain copy for checkpoints, drawing nothing of the run's randomness
                with torch.random.fork_rng(devices=[]):
                    self._whole = build_model(self.model_cfg)
            shard(self.trained, [m for m in self.trained.modules() if isinstance(m, Block)])
        # AdamW (and Muon) of optim.py: PyTorch's update kernels, but not torch.optim classes (importing TorchDynamo
        # costs a small run 1 s and 70 MB), so torch's schedulers do not attach; the schedule is optim.lr_factor.
        self.optimizer = build_optimizer(self.trained, cfg, rt.device.type)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        self.progress = Progress(threads=rt.threads)
        if self.resume:
            self.progress = restore_state(run, self.model, self.optimizer, rt.device, self.batch_gen, objective,
                                          checkpoint, load_model=not self.sharded)
            # The thread count decides the order of float sums: keep the run's own unless asked.
            if not cfg.threads and self.progress.threads and rt.device.type == "cpu":
                rt.use_threads(self.progress.threads)
            self.progress.threads = rt.threads
            self.clock.before = self.progress.elapsed_s
        self.step = self.progress.step
        self.saved_step = self.step if self.resume else None  # the step of the latest checkpoint on disk

        self.train_model = torch.compile(self.trained) if cfg.compile else self.trained
        if rt.dist.enabled and not self.sharded:
            from torch.nn.parallel import DistributedDataParallel

            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
        self.records = None
        self.run_config = RunConfig(model=self.model_cfg, train=cfg, data=objective.data_info, preset=self.preset,
                                    num_params=self.model.num_params() - self.adapter_params)
        if rt.dist.is_main:
            run.create()
            run.ready_for(self.objective.verb, self.resume, self.overwrite)  # the lock, if the directory is new
            run.claim()
            self.records = Records(run, cfg, self.step, self.resume)
            # A resumed run records its settings with its first save: one that fails before (a full disk)
            # leaves the run as it was.
            self.config_unsaved = self.resume
            if not self.resume:
                run.write_config(self.run_config)
                run.write_tokenizer(objective.tokenizer)
                objective.write_files(run)

    # ------------------------------------------------------------------ one step, one evaluation

    def train_step(self) -> tuple[torch.Tensor, float, int]:
        """One optimizer step over grad_accum batches; returns the last loss, the rate and the tokens seen."""
        cfg, dist = self.cfg, self.runtime.dist
        tokens = 0
        lr = set_lr(self.optimizer, lr_factor(cfg, self.step, self.schedule.fraction(self.step)))
        per_rank = cfg.batch_size // dist.world_size
        lo = dist.rank * per_rank
        scheduled = {"done": self.schedule.done(self.step)} if cfg.window_schedule else {}  # shorter windows early
        for micro in range(cfg.grad_accum):
            batch = self.objective.batch(self.batch_gen, **scheduled)  # the global batch, the same on every process
            tokens += self.objective.tokens_per_batch  # of that batch: an objective may vary it per batch
            batch = tuple(t[lo : lo + per_rank].to(self.runtime.device) for t in batch)  # this process's rows
            # Under DDP (and FSDP), gradients are averaged across processes only on the last micro-batch.
            sync = micro == cfg.grad_accum - 1 or not dist.enabled
            if self.sharded:
                self.trained.set_requires_gradient_sync(sync)
            with self.train_model.no_sync() if not sync and not self.sharded else contextlib.nullcontext():
                with self.runtime.autocast():
                    loss = self.objective.loss(self.train_model, batch)
                (loss / cfg.grad_accum if cfg.grad_accum > 1 else loss).backward()  # one op less a step
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trained.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.progress.step = self.step
        self.progress.tokens += tokens
        return loss.detach(), lr, tokens

    def save(self, best: bool, record: dict | None = None):
        """Checkpoint this step (and write its evaluation's record, if any, before latest)."""
        self.saved_step = self.step
        self.progress.elapsed_s = self.clock.elapsed()
        model, optimizer, objective = self.model, self.optimizer, self.objective.state_dict()
        if self.sharded:  # every process gathers the whole tensors, one at a time; the main one keeps and writes them
            main = self.runtime.dist.is_main
            model, optimizer = WholeModel(self._whole, self.model), WholeOptimizer(self.optimizer, main)
            objective = whole_state(objective, main)
        if self.runtime.dist.is_main:
            write = (lambda: self.records.write(record)) if record is not None else None
            lora = {}
            if self.adapter_params:  # model.safetensors: the merged weights; RUN/adapter: the adapters alone
                lora = dict(weights=Merged(self.model, self.cfg.lora_scaling),
                            adapter=lambda: peft_adapter(self.model, self.cfg))
            save_state(self.run_dir, model, optimizer, self.runtime.device, self.batch_gen, self.progress, best, write,
                       objective, **lora)
            if self.config_unsaved:
                self.run_dir.write_config(self.run_config)
                self.config_unsaved = False

    def evaluate_and_save(self, lr: float, final: bool = False) -> dict:
        t0 = time.perf_counter()
        result: Evaluation = self.objective.evaluate(self.model, self.runtime, final)
        seconds = time.perf_counter() - t0
        self.val_whole = result.whole
        self._refuse_diverged(result.losses)
        self.schedule.final_eval_seconds = seconds * result.final_cost  # the time budget keeps room for it
        p = self.progress
        # The same step evaluated again (a whole pass after a capped one) is the same model.
        improved = p.best_score is None or result.score < p.best_score or p.best_step == self.step
        if improved:
            p.best_val_loss = result.losses.get("val_loss") or result.score
            p.best_score, p.best_step = result.score, self.step
        record = {"step": self.step, "tokens": p.tokens, "elapsed_s": round(self.clock.elapsed(), 3), "lr": lr,
                  **result.losses}
        self.save(best=improved, record=record)
        if self.records is not None:
            self.log(f"step {self.step}: {self.objective.report(record)}")
        return record

    # ------------------------------------------------------------------ the loop

    def train(self) -> TrainResult:
        """Run to max_iters or the time budget; returns a TrainResult (TrainingInterrupted if stopped). The run
        directory's writer lock, taken when it was checked, is let go however training ends."""
        try:
            return self._train()
        finally:
            self.run_dir.unlock()

    def _train(self) -> TrainResult:
        self.setup()
        cfg, dist = self.cfg, self.runtime.dist
        self.schedule = Schedule(cfg, self.clock, dist)
        self.val_whole = self.objective.periodic_is_whole()
        # A resumed run starts from the restored optimizer's rate, and from the evaluation of the
        # step it resumes at if that was recorded (so resuming a finished run adds no duplicate).
        lr, last = self.optimizer.param_groups[0]["lr"], None
        if self.resume:
            previous = self.records.last() if self.records is not None else None  # the main process reads it
            last = self._agree_on(previous if previous and previous.get("step") == self.step else None)
        try:
            with self.stop:
                if dist.is_main:
                    self.log(self.describe())
                self._bar = ProgressBar(cfg, self.schedule, self.step, cfg.progress and dist.is_main, self._log,
                                        self.objective.verb)
                if self.step == 0 and not self.resume:
                    last = self.evaluate_and_save(set_lr(self.optimizer, lr_factor(cfg, 0, 0.0)))
                self.first_step, self.setup_seconds = self.step, self.clock.elapsed() - self.clock.before
                while not self.done():
                    step_start = time.perf_counter()
                    loss, lr, tokens = self.train_step()
                    self.schedule.step_seconds = time.perf_counter() - step_start
                    self._bar.update(self.step, tokens, loss, lr,
                                     self.objective.status())
                    if self.step % cfg.eval_interval == 0:
                        last = self.evaluate_and_save(lr)
                    if self.on_step is not None:
                        self.on_step(self)
                if self.stop.requested:
                    self.save(best=False)
                    raise TrainingInterrupted(self.step, self.out_dir, verb=self.objective.verb)
                if last is None or last["step"] != self.step or not self.val_whole:
                    last = self.evaluate_and_save(lr, final=True)
        except KeyboardInterrupt:  # a second Ctrl-C: quit now, the last checkpoint stays as it was
            raise TrainingInterrupted(self.saved_step, self.out_dir, self.step, self.objective.verb) from None
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if self.records is not None:
                self.records.close()
        if self.records is not None and cfg.plot_every:
            self.records.plot(self.step)
        if (warning := self.budget_warning()) and dist.is_main:
            self.log(warning)
        # Under FSDP every forward is a collective: all processes write the (seeded, so the same) samples.
        samples = self.final_samples() if dist.is_main or self.sharded else []
        self.train_model = self.model  # the DDP wrapper holds the process group: let it go first
        ddp.teardown(dist)
        best = self.progress.best_val_loss if self.objective.has_validation else None
        return TrainResult(self.out_dir, self.step, self.progress.tokens, self.clock.elapsed(), last["train_loss"],
                           last.get("val_loss"), best, self.model.num_params() - self.adapter_params, samples)

    def _refuse_diverged(self, losses: dict):
        """A loss that is NaN or infinite means the weights are too (a learning rate too high for this model):
        stop before they are saved over the last good checkpoint, and say what to change."""
        bad = {name: value for name, value in losses.items() if value is not None and not math.isfinite(value)}
        if bad:
            name, value = next(iter(bad.items()))
            kept = f"; the step-{self.saved_step} checkpoint is intact" if self.saved_step is not None else ""
            raise TinyGPTError(f"training diverged: at step {self.step} the {name} is {value}{kept}; lower --lr "
                               f"(now {self.cfg.lr:g}) or --weight-decay, or keep --grad-clip on")

    def _agree_on(self, last: dict | None) -> dict | None:
        """Under torchrun only the main process reads metrics.jsonl; the others follow its answer."""
        if not self.runtime.dist.enabled:
            return last
        had = ddp.sum_across(self.runtime.dist, float(last is not None and self.runtime.dist.is_main))[0] > 0
        return (last or {"step": self.step, "train_loss": float("nan")}) if had else None

    def done(self) -> bool:
        over = self.schedule.steps_done(self.step) or self.schedule.time_is_up()
        return ddp.any_across(self.runtime.dist, bool(over) or self.stop.requested)

    def budget_warning(self) -> str:
        """A time budget that ended before training meant anything (fewer steps than the warmup, or than
        MIN_BUDGET_STEPS) says so, and how to get more steps, instead of letting "done" stand alone."""
        cfg = self.cfg
        steps = self.step - self.first_step
        if cfg.time_budget_s is None or steps >= max(cfg.warmup_iters, MIN_BUDGET_STEPS):
            return ""
        setup = f"; setup and the first evaluation took {self.setup_seconds:.1f} s of it" if self.setup_seconds else ""
        threads = ", --threads 1 on a busy machine" if self.runtime.threads > 1 else ""
        return (f"warning: the {cfg.time_budget} time budget ended after {_count(steps, 'optimizer step')}, too few to "
                f"learn much{setup}; for more steps give it a longer --time-budget, evaluate less (--eval-interval, "
                f"--eval-max-tokens){threads}, or set --max-iters instead")

    def describe(self) -> str:
        m, c, rt = self.model_cfg, self.cfg, self.runtime
        where = f"{rt.device}" + (f" x{rt.dist.world_size} processes" if rt.dist.enabled else "")
        layers = (f"{m.encoder_layers} encoder + {m.n_layer} decoder layers" if m.arch == "encoder-decoder"
                  else _count(m.n_layer, "layer"))
        shape = "bigram table" if m.arch == "bigram" else f"{layers}, {_count(m.n_head, 'head')}, n_embd {m.n_embd}"
        budget = f"time budget {c.time_budget}" if c.time_budget else _count(c.max_iters, "step")
        if c.init_from:
            budget = f"fine-tuning {c.init_from}'s weights, {budget}"
        if self.adapter_params:
            budget = (f"LoRA rank {c.lora_rank} on {c.lora_targets} ({self.adapter_params:,} trainable parameters, "
                      f"the rest frozen), {budget}")
        return (f"tinygpt {__version__}: {self.model.num_params():,} parameters ({shape}, block_size {m.block_size}), "
                f"{c.tokenizer} tokenizer with {m.vocab_size:,} tokens; {self.objective.describe()}; {budget} on "
                f"{where}, {_count(rt.threads, 'thread')}; out {self.out_dir}")

    def final_samples(self) -> list[str]:
        """The seeded samples a run prints at its end (sample i draws from seed + i), through the one decoder."""
        cfg = self.cfg
        if not cfg.sample_tokens or not cfg.num_samples or not self.objective.generates_text:
            return []
        prompts = [p.strip() for p in cfg.sample_prompts.split(",") if p.strip()] or [""]
        samples = []
        self.model.eval()
        for i in range(cfg.num_samples):
            prompt = prompts[i % len(prompts)]
            sampling = SamplingConfig(cfg.sample_tokens, temperature=1.0)
            pieces = complete(self.model, self.objective.tokenizer, [prompt], [sampling], [cfg.seed + i])
            sample = prompt + "".join(piece for _, piece in pieces)
            samples.append(sample)
            self.log(f"--- sample {i + 1}" + (f" (from {prompt!r})" if prompt else "") + " ---\n" + sample)
        self.model.train()
        return samples


# A time-budgeted run that takes fewer optimizer steps than this (or than its warmup) is told it learnt little.
MIN_BUDGET_STEPS = 20


def _count(n: int, thing: str) -> str:
    """'1 layer', '2 layers'."""
    return f"{n} {thing}{'' if n == 1 else 's'}"
