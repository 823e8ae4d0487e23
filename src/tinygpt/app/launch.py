"""Launching a training run: `tinygpt train`, `sft`, `reward`, `rl` and `dpo`, and their Python twins.

    result = train(preset="rhyme", out="runs/rhyme")                       # tinygpt train
    result = sft("runs/base", data="chats.jsonl", out="runs/sft")          # tinygpt sft
    result = reward("runs/sft", data="pairs.jsonl", out="runs/reward")     # tinygpt reward
    result = rl("runs/sft", prompts="prompts.jsonl", reward="runs/reward")  # tinygpt rl
    result = dpo("runs/sft", data="pairs.jsonl", out="runs/dpo")           # tinygpt dpo

Every verb is the same start-up, written once in `launch`: the run's settings (settings.py: a new run,
a resumed one, or one starting from another run's weights), the run directory checked (a new run
does not land on an old one), the verb's objective prepared on its data, then the one loop
(training/loop.py). A verb adds only what is its own: which objective, what it starts from, and
what it refuses.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..config.dpo import DPO_FIELDS, DPOConfig
from ..config.precedence import coerce
from ..config.rl import RL_FIELDS, RLConfig
from ..core.errors import TinyGPTError
from ..objectives.dpo import DirectPreference
from ..objectives.language import LanguageModeling
from ..objectives.masked import MaskedLanguageModeling
from ..objectives.preference_pairs import PreferencePairs
from ..objectives.reward_functions import load_reward
from ..objectives.rl import ReinforcementLearning
from ..objectives.sft import SupervisedFineTuning
from ..objectives.translation import Translation
from ..store.rundir import RunDir
from ..training.loop import Trainer, TrainResult
from .settings import resolve

# What `tinygpt train --data TEXT` trains each architecture for: next tokens, hidden tokens, targets.
TEXT_OBJECTIVES = {"gpt": LanguageModeling, "bigram": LanguageModeling, "encoder": MaskedLanguageModeling,
                   "encoder-decoder": Translation}


def launch(model_cfg, train_cfg, out_dir, prepare, *, verb: str, resume: bool, overwrite: bool, preset: str = "",
           log=None, on_step=None, started_at: float | None = None) -> TrainResult:
    """The start-up every verb shares: check the run directory, prepare the objective
    (`prepare(saved)`, saved: the resumed run's config or None), train. Returns the TrainResult."""
    run = RunDir(out_dir)
    saved = run.ready_for(verb, resume, overwrite, main=int(os.environ.get("RANK", "0")) == 0)
    objective = prepare(saved)
    return Trainer(model_cfg, train_cfg, out_dir, objective, resume=resume, log=log, on_step=on_step, preset=preset,
                   started_at=started_at, overwrite=overwrite).train()


def main_process_log(log):
    """`log`, or print; under torchrun only the first process speaks."""
    log = log or print
    return log if int(os.environ.get("RANK", "0")) == 0 else (lambda line: None)


def train(preset: str = "", config: str = "", out: str = "", resume: str = "", log=None, on_step=None,
          overwrite: bool = False, started_at: float | None = None, **settings) -> TrainResult:
    """Train a model on a text (`tinygpt train`): the settings of `tinygpt train --help`, underscored."""
    if out:
        settings["out"] = out
    model_cfg, train_cfg, out_dir, preset_name = resolve(preset, config, settings, resume)
    if resume:
        RunDir(resume).resumable_by("train")  # a run of another verb says which one continues it
    if model_cfg.arch == "reward":
        raise TinyGPTError("a reward model is trained on preference pairs, not on text: "
                           "tinygpt reward RUN --data PAIRS.jsonl (RUN: a trained GPT to start from)")
    objective = TEXT_OBJECTIVES[model_cfg.arch]

    def prepare(saved):
        return objective.prepare(train_cfg, model_cfg.block_size, RunDir(out_dir), bool(resume),
                                 main_process_log(log), fixed_context=bool(train_cfg.init_from),
                                 saved_sha256=saved.data.get("sha256") if saved else None)

    return launch(model_cfg, train_cfg, out_dir, prepare, verb="train", resume=bool(resume), overwrite=overwrite,
                  preset=preset_name, log=log, on_step=on_step, started_at=started_at)


def from_base_run(verb: str, base: str, data: str, out: str, resume: str, settings: dict, *, usage: str,
                  needs_data: str, make_base: str, arch_problem) -> None:
    """Fill `settings` for a run that `tinygpt VERB` trains from the run `base` on the file `data`: its
    `init_from` and `data`, and `out` (runs/BASE-VERB unless given). A new run checks its inputs (`usage`
    when no base is named, `needs_data` when no data is, `make_base` the command that makes a base that
    is missing, `arch_problem(arch)` what is wrong with the base's architecture, or None)."""
    if data:
        settings["data"] = str(data)
    if base:
        settings["init_from"] = str(base)
    if resume:
        return
    if not base:
        raise TinyGPTError(usage)
    problem = arch_problem(RunDir(base).require(make=make_base.format(base=base)).read_config().model.arch)
    if problem:
        raise TinyGPTError(f"{base} is {problem}")
    if not data:
        raise TinyGPTError(needs_data)
    settings["out"] = str(out) if out else str(Path("runs") / f"{RunDir(base).name}-{verb}")


def writes_replies(verb: str):
    """sft's and rl's check of the run they start from: a decoder-only GPT, which writes replies."""

    def arch_problem(arch):
        if arch in ("encoder", "encoder-decoder"):
            return (f"an {arch} model; tinygpt {verb} trains a decoder-only GPT that writes replies (a run of "
                    "tinygpt train with --arch gpt)")
        return None

    return arch_problem


STARTS_FROM = {"sft": "name the run to fine-tune as BASE_RUN (tinygpt sft BASE_RUN --data FILE), not --init-from",
               "reward": "name the run to start from as RUN (tinygpt reward RUN --data FILE), not --init-from",
               "rl": "name the run to train as SFT_RUN (tinygpt rl SFT_RUN --prompts FILE), not --init-from",
               "dpo": "name the run to train as SFT_RUN (tinygpt dpo SFT_RUN --data FILE), not --init-from"}


def kept_on_resume(asked: dict, begun):
    """A verb's own settings (RL's, DPO's) are those its run began with: a resume may repeat them, not change them."""
    changed = [name for name, value in asked.items() if value != getattr(begun, name)]
    if changed:
        raise TinyGPTError(f"cannot change {', '.join(changed)} when resuming; start a new run instead")


def refuse_init_from(verb: str, settings: dict):
    """A fine-tuning verb names the run it starts from as its argument, not as init_from."""
    if "init_from" in settings:
        raise TinyGPTError(STARTS_FROM[verb])


def sft(base: str = "", data: str = "", out: str = "", resume: str = "", config: str = "", overwrite: bool = False,
        log=None, on_step=None, started_at: float | None = None, **settings) -> TrainResult:
    """Fine-tune the run `base` on the conversations in `data` (`tinygpt sft`); the settings of
    `tinygpt train` (max_iters=200, lr=3e-4, ...). `resume`: continue the sft run in that directory."""
    refuse_init_from("sft", settings)

    from_base_run("sft", base, data, out, resume, settings, arch_problem=writes_replies("sft"),
                  make_base="tinygpt train --data TEXT --out {base}",
                  usage="name the trained run to fine-tune: tinygpt sft BASE_RUN --data FILE",
                  needs_data="pass the conversations to learn from: --data FILE.jsonl (or a folder of them)")
    model_cfg, train_cfg, out_dir, _ = resolve("", config, settings, resume)

    def prepare(saved):
        return SupervisedFineTuning.prepare(train_cfg, model_cfg.block_size, RunDir(out_dir), bool(resume),
                                            saved.data.get("sha256") if saved else None)

    return launch(model_cfg, train_cfg, out_dir, prepare, verb="sft", resume=bool(resume), overwrite=overwrite,
                  log=log, on_step=on_step, started_at=started_at)


def reward(base: str = "", data: str = "", out: str = "", resume: str = "", config: str = "", overwrite: bool = False,
           log=None, on_step=None, started_at: float | None = None, **settings) -> TrainResult:
    """Train a reward model on the trunk of the run `base` with the preference pairs in `data`
    (`tinygpt reward`); the settings of `tinygpt train` (max_iters=200, lr=3e-4, ...). `resume`: continue
    the reward run in that directory."""
    refuse_init_from("reward", settings)
    if coerce("sample_tokens", settings.get("sample_tokens", 0)):
        raise TinyGPTError("a reward model scores text and writes none; leave out --sample-tokens")
    settings["sample_tokens"] = 0
    if coerce("lora_rank", settings.get("lora_rank", 0)):
        raise TinyGPTError("a reward model trains its new scoring head whole, and LoRA adapts a language model "
                           "(train --init-from, sft, dpo, rl); leave out lora_rank")

    def arch_problem(arch):
        if arch != "gpt":
            return (f"a {arch} model; a reward model starts from a GPT's trunk (a run of `tinygpt train` or "
                    "`tinygpt sft`)")
        return None

    from_base_run("reward", base, data, out, resume, settings, arch_problem=arch_problem,
                  make_base="tinygpt train --data TEXT --out {base}",
                  usage="name the trained run to start from: tinygpt reward RUN --data FILE",
                  needs_data="pass the preference pairs to learn from: --data FILE.jsonl (or a folder of them)")
    model_cfg, train_cfg, out_dir, _ = resolve("", config, settings, resume)
    # The trunk of the base's GPT under a scalar head: nothing is tied to the dropped language-model head.
    model_cfg = dataclasses.replace(model_cfg, arch="reward", tie_weights=False)

    def prepare(saved):
        return PreferencePairs.prepare(train_cfg, model_cfg.block_size, RunDir(out_dir), bool(resume),
                                       saved.data.get("sha256") if saved else None)

    return launch(model_cfg, train_cfg, out_dir, prepare, verb="reward", resume=bool(resume), overwrite=overwrite,
                  log=log, on_step=on_step, started_at=started_at)


def rl(sft_run: str = "", prompts: str = "", reward: str = "", out: str = "", resume: str = "", config: str = "",
       overwrite: bool = False, log=None, on_step=None, started_at: float | None = None, **settings) -> TrainResult:
    """Reinforcement learning of the sft run `sft_run` on the prompts in `prompts` against `reward`
    (`tinygpt rl`); the RL settings (algorithm="grpo", group_size=8, ...; RLConfig) and those of
    `tinygpt train` (max_iters=200, lr=1e-4, ...). `resume`: continue the rl run in that directory,
    with the RL settings it began with."""
    refuse_init_from("rl", settings)
    asked = {name: settings.pop(name) for name in list(settings) if name in RL_FIELDS}
    if reward:
        asked["reward"] = str(reward)

    from_base_run("rl", sft_run, prompts, out, resume, settings, arch_problem=writes_replies("rl"),
                  make_base="tinygpt sft BASE_RUN --data CHATS.jsonl --out {base}",
                  usage="name the sft run to train: tinygpt rl SFT_RUN --prompts FILE --reward SPEC",
                  needs_data="pass the prompts to reply to: --prompts FILE.jsonl (or a folder of them)")
    if resume:  # the RL settings it began with
        rl_cfg = RLConfig(**RunDir(resume).resumable_by("rl").data["rl"])
        kept_on_resume(asked, rl_cfg)
    else:
        rl_cfg = RLConfig(**asked)
        load_reward(rl_cfg.reward)  # a bad --reward fails before anything else is read
    model_cfg, train_cfg, out_dir, _ = resolve("", config, settings, resume)

    def prepare(saved):
        return ReinforcementLearning.prepare(train_cfg, rl_cfg, model_cfg.block_size, RunDir(out_dir), bool(resume),
                                             saved.data if saved else None)

    return launch(model_cfg, train_cfg, out_dir, prepare, verb="rl", resume=bool(resume), overwrite=overwrite,
                  log=log, on_step=on_step, started_at=started_at)


def dpo(sft_run: str = "", data: str = "", out: str = "", resume: str = "", config: str = "", overwrite: bool = False,
        log=None, on_step=None, started_at: float | None = None, **settings) -> TrainResult:
    """Direct Preference Optimization of the run `sft_run` on the preference pairs in `data`, against
    `sft_run` frozen (`tinygpt dpo`); the DPO settings (beta=0.1, loss_type="sigmoid"; DPOConfig) and
    those of `tinygpt train` (max_iters=200, lr=3e-4, ...). `resume`: continue the dpo run in that
    directory, with the DPO settings it began with."""
    refuse_init_from("dpo", settings)
    asked = {name: settings.pop(name) for name in list(settings) if name in DPO_FIELDS}
    from_base_run("dpo", sft_run, data, out, resume, settings, arch_problem=writes_replies("dpo"),
                  make_base="tinygpt sft BASE_RUN --data CHATS.jsonl --out {base}",
                  usage="name the sft run to train: tinygpt dpo SFT_RUN --data PAIRS.jsonl",
                  needs_data="pass the preference pairs to learn from: --data FILE.jsonl (or a folder of them)")
    if resume:  # the DPO settings it began with
        saved = RunDir(resume).resumable_by("dpo").data
        dpo_cfg = DPOConfig(**saved["dpo"])
        kept_on_resume({name: coerce_dpo(name, value) for name, value in asked.items()}, dpo_cfg)
    else:
        dpo_cfg = DPOConfig(**{name: coerce_dpo(name, value) for name, value in asked.items()}).validate()
    model_cfg, train_cfg, out_dir, _ = resolve("", config, settings, resume)

    def prepare(saved):
        return DirectPreference.prepare(train_cfg, dpo_cfg, model_cfg.block_size, RunDir(out_dir), bool(resume),
                                        saved.data if saved else None)

    return launch(model_cfg, train_cfg, out_dir, prepare, verb="dpo", resume=bool(resume), overwrite=overwrite,
                  log=log, on_step=on_step, started_at=started_at)


def coerce_dpo(name: str, value):
    """A DPO setting given as text (a flag) or a number (Python), as its type: beta a float, loss_type a string."""
    kind = type(DPO_FIELDS[name].default)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise TinyGPTError(f"{name} must be {'a number' if kind is float else 'a string'}, got {value!r}") from None
