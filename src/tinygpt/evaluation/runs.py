"""`tinygpt eval RUN`: a finished run measured by what it learnt, one function per kind of run.

    report = evaluate_run(run)                         # a loaded Run: its held-out split
    report = evaluate_run(run, data="other.txt")       # all of another file of the same kind

| run made by                          | measured on its held-out split (or all of `data`)              |
| ------------------------------------ | ---------------------------------------------------------------- |
| tinygpt train (a GPT)                | loss per token, bits per character, perplexity: an exact pass   |
| tinygpt train --arch encoder         | loss on hidden tokens, the same tokens its training hid          |
| tinygpt train --arch encoder-decoder | loss per target token, bits per character, greedy exact match    |
| tinygpt sft                          | loss on the assistant's tokens of the held-out conversations     |
| tinygpt reward                       | pairwise accuracy and loss on the held-out preference pairs      |
| tinygpt rl                           | mean reward of greedy replies to the held-out prompts            |
| tinygpt dpo                          | preference accuracy and mean margin on the held-out pairs        |

Every kind finds its held-out part the way its training did (the objective's own `prepare`, on the
run's settings), and refuses a file that changed since, whose held-out part is no longer known.
`data` replaces the run's file and holds nothing out (split "all"); a run that held nothing out is
measured on what it trained on (split "train").
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from ..config.dpo import DPOConfig
from ..config.rl import RLConfig
from ..core.errors import TinyGPTError
from ..core.tokens import MASK
from ..data import PreparedData, encode_corpus, first_tokens, held_out, read_corpus, subset_windows
from ..data.dates import exact_match
from ..data.pairs import read_pairs
from ..model import build_model
from ..objectives.dpo import DirectPreference
from ..objectives.masked import masked_loss
from ..objectives.preference_pairs import PreferencePairs
from ..objectives.rl import ReinforcementLearning
from ..objectives.sft import SupervisedFineTuning, reply_loss
from ..objectives.translation import encode_pairs, target_loss
from ..store.checkpoint import load_weights_into
from ..store.rundir import RunDir
from ..training.losses import bits_per_char, split_loss
from ..training.runtime import Runtime

LONG_PASS_S = 30.0  # a pass predicted to take longer is announced, with how to score a subset instead


def evaluate_run(run, data: str | None = None, batch_size: int = 64, max_tokens: int = 0, log=None) -> dict:
    """What `tinygpt eval` reports for `run` (a loaded Run), by its kind (the table above).

    max_tokens (a language model): score at most this many tokens, the fixed subset a training run's final
    evaluation scores (batches.subset_windows); 0 = all. log(line): told how long a long pass will take."""
    arch, verb = run.model_config.arch, run.config.verb
    kind = arch if arch in ("encoder", "encoder-decoder") else verb
    if kind == "train":
        return language_model(run, data, batch_size, max_tokens, log)
    return EVALUATORS[kind](run, data)


def _settings(run, data: str | None):
    """The run's training settings, or those settings reading all of `data` instead of the run's file."""
    cfg = run.config.train
    return cfg if data is None else dataclasses.replace(cfg, data=str(data), val_fraction=0.0)


def _unchanged(run, data: str | None, sha256: str, what: str, files: str = ""):
    """The run's own file must be the one it trained on, or which part it held out is not known."""
    if data is None and sha256 != run.config.data.get("sha256"):
        raise TinyGPTError(f"the {what} ({run.config.train.data}) changed since {run.dir} was trained, so which "
                           f"were held out is not known; evaluate on a file of {files or what} with --data FILE")


def _split(held_out_some: bool, data: str | None) -> str:
    return "val" if held_out_some else ("all" if data is not None else "train")


# ---- a language model: an exact pass -------------------------------------------------------------------

def language_model(run, data: str | None, batch_size: int = 64, max_tokens: int = 0, log=None) -> dict:
    """A GPT's exact loss over its validation split (a prepared folder's val.bin, or the end of its text),
    or over all of the text `data`."""
    train_cfg = run.config.train
    prepared = PreparedData.open(data if data is not None else train_cfg.data) if (data or train_cfg.data) else None
    if prepared is None and data is None and run.config.data.get("prepared"):
        raise TinyGPTError(f"{run.dir} was trained on the prepared data {train_cfg.data}, which is no longer there; "
                           "evaluate it on a text or a prepared folder with --data")
    if prepared is not None:
        prepared.require_tokenizer(run.tokenizer, str(run.dir), RunDir(run.dir).tokenizer_path)
        return _score_tokens(run, "val", prepared.val_tokens(whole=False), batch_size, max_tokens, log)
    if data is None and not train_cfg.data:
        raise TinyGPTError(f"{run.dir} has no training text of its own (it was imported); "
                           "evaluate it on a file with --data FILE")
    text = read_corpus(data if data is not None else train_cfg.data, run.tokenizer.kind, train_cfg.sentence_end)
    ids = encode_corpus(run.tokenizer, text)  # (N,)
    if data is None:
        split_name, tokens = held_out(ids, train_cfg.val_fraction, run.model_config.block_size)
    else:
        split_name, tokens = "all", ids
    if len(tokens) < 2:
        raise TinyGPTError("the evaluation text is shorter than 2 tokens; there is nothing to predict")
    return _score_tokens(run, split_name, tokens, batch_size, max_tokens, log)


def _score_tokens(run, split_name: str, tokens, batch_size: int, max_tokens: int = 0, log=None) -> dict:
    """The exact loss over `tokens` (N,) (ids, or a TokenFile), or over its fixed subset of at most
    `max_tokens` predictions, with bits per character and perplexity."""
    block, cfg = run.model_config.block_size, run.config.train
    windows = subset_windows(len(tokens), block, first_tokens(len(tokens), block, cfg.eval_max_tokens), max_tokens)
    wanted = sum(length for _, length in windows)
    whole = wanted == len(tokens) - 1 and not hasattr(tokens, "windows")
    progress = {"chars": 0, "scored": 0, "started": time.perf_counter(), "told": False}

    def on_batch(y):  # (b, T): count the characters predicted, and say early how long a long pass takes
        if not whole:
            progress["chars"] += sum(len(run.tokenizer.decode(row)) for row in y.tolist())
        progress["scored"] += y.numel()
        seconds = time.perf_counter() - progress["started"]
        if log is not None and not progress["told"] and seconds > 1.0:
            progress["told"] = True
            left = seconds / progress["scored"] * (wanted - progress["scored"])
            if left > LONG_PASS_S:
                hint = "" if max_tokens else (f"; --max-tokens {cfg.final_eval_tokens} scores the fixed subset a "
                                              "training run's final evaluation scores")
                log(f"scoring {wanted:,} tokens of the {split_name} split takes about {_duration(left)} more on "
                    f"this machine (Ctrl-C stops it){hint}")

    total, count = split_loss(run.model, tokens, block, run.device, batch_size, windows=windows, on_batch=on_batch)
    # Characters of the predicted tokens: decoded together for a whole split in memory, else window by window.
    n_chars = len(run.tokenizer.decode(tokens[1:].tolist())) if whole else progress["chars"]
    loss = total / count
    return {"split": split_name, "loss": loss, "tokens": count, "characters": n_chars,
            "bits_per_char": bits_per_char(total, n_chars), "perplexity": float(torch.tensor(loss).exp())}


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 10 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"


# ---- the other kinds ------------------------------------------------------------------------------------

def encoder(run, data: str | None = None) -> dict:
    """The loss on hidden tokens of an encoder's validation split (or of all of `data`), the same tokens
    hidden as its training's evaluations hid (seed + 1)."""
    cfg = run.config.train
    text = read_corpus(data if data is not None else cfg.data, run.tokenizer.kind, cfg.sentence_end)
    ids = encode_corpus(run.tokenizer, text)  # (N,)
    block = run.model_config.block_size
    split, tokens = held_out(ids, cfg.val_fraction, block) if data is None else ("all", ids)
    total, count = masked_loss(run.model, tokens, block, run.tokenizer.token_to_id(MASK), cfg.mask_fraction,
                               cfg.seed + 1, Runtime.local(run.device))
    loss = total / max(count, 1)
    return {"split": split, "loss": loss, "tokens": count, "perplexity": math.exp(loss)}


def encoder_decoder(run, data: str | None = None, exact: bool = True) -> dict:
    """On an encoder-decoder's held-out pairs (or every pair of `data`): the loss per target token, bits per
    target character and (exact) the share of greedy translations equal to their target."""
    cfg = _settings(run, data)
    pairs, sha256 = read_pairs(cfg.data)
    _unchanged(run, data, sha256, "pairs")
    n_val = min(int(len(pairs) * cfg.val_fraction), len(pairs) - 1)
    chosen = pairs[len(pairs) - n_val:] if n_val else pairs
    source_tokenizer = run.source_tokenizer if run.source_tokenizer is not run.tokenizer else None
    rows = encode_pairs(run.tokenizer, chosen, run.model_config.block_size, source_tokenizer)
    total, count = target_loss(run.model, rows, Runtime.local(run.device))
    chars = sum(len(p.target) + 1 for p in chosen)  # each target's characters and its end
    result = {"split": _split(bool(n_val), data), "loss": total / count, "tokens": count, "pairs": len(chosen),
              "characters": chars, "bits_per_char": bits_per_char(total, chars), "perplexity": math.exp(total / count)}
    if exact:
        outputs = []
        for start in range(0, len(chosen), 256):
            outputs += run.translate([p.source for p in chosen[start : start + 256]], max_new_tokens=rows[2].shape[1])
        result["exact_match"] = exact_match(outputs, [p.target for p in chosen])
    return result


def sft(run, data: str | None = None) -> dict:
    """The mean loss per assistant token on an sft run's validation conversations (when it held none out,
    on its training conversations), or on every conversation in `data`."""
    objective = SupervisedFineTuning.prepare(_settings(run, data), run.model_config.block_size, RunDir(run.dir),
                                             resume=True)
    _unchanged(run, data, objective.data_info["sha256"], "conversations")
    if objective.has_validation:
        x, y = objective.val_x, objective.val_y
    else:
        x, y = objective.train_x, objective.train_y
    total, count = reply_loss(run.model, x, y, Runtime.local(run.device))
    loss = total / count
    return {"split": _split(objective.has_validation, data), "loss": loss, "tokens": count, "conversations": len(x),
            "perplexity": math.exp(loss)}


def reward_model(run, data: str | None = None) -> dict:
    """The loss and pairwise accuracy of a reward run on its held-out pairs (when it held none out, on its
    training pairs), or on every pair in `data`."""
    objective = PreferencePairs.prepare(_settings(run, data), run.model_config.block_size, RunDir(run.dir),
                                        resume=True)
    _unchanged(run, data, objective.data_info["sha256"], "preference pairs", "pairs")
    if objective.has_validation:
        picked = torch.arange(objective.n_train, objective.n_train + objective.n_val)
    else:
        picked = torch.arange(objective.n_train)
    total, right, count = objective.pair_results(run.model, picked, Runtime.local(run.device))
    return {"split": _split(objective.has_validation, data), "loss": total / count, "accuracy": right / count,
            "pairs": count}


def rl(run, data: str | None = None) -> dict:
    """The mean reward of an rl run's greedy replies to its held-out prompts (or to every prompt of `data`),
    scored by the reward it was trained against."""
    saved = run.config.data
    objective = ReinforcementLearning.prepare(_settings(run, data), RLConfig(**saved["rl"]),
                                              run.model_config.block_size, RunDir(run.dir), resume=True,
                                              saved=saved if data is None else None)
    objective.reward.check(objective.chat, objective.block_size)
    objective.reward.to(run.device)
    result = objective.evaluate(run.model, Runtime.local(run.device), final=True)
    return {"split": "val" if data is None and saved.get("held_out_prompts") else "all",
            "reward": result.losses["eval_reward"], "reply_tokens": result.losses["eval_reply_tokens"],
            "prompts": len(objective.eval_prompts), "reward_spec": objective.rl.reward}


def dpo(run, data: str | None = None) -> dict:
    """A dpo run's implicit-reward statistics on its held-out pairs (when it held none out, on its training
    pairs), or on every pair in `data`: against the reference it was trained against, the sft run, reloaded.
    accuracy: the share of pairs whose chosen reply gets the higher reward; margin: the mean difference."""
    saved = run.config.data
    objective = DirectPreference.prepare(_settings(run, data), DPOConfig(**saved["dpo"]), run.model_config.block_size,
                                         RunDir(run.dir), resume=True, saved=saved if data is None else None)
    base = RunDir(run.config.train.init_from)
    if not base.is_run():
        raise TinyGPTError(f"{run.dir} is scored against its reference, {base}, which is no longer there; put the sft "
                           "run back where it was trained from")
    state, path = base.read_weights("best")
    objective.saved_checksum = saved.get("reference_checksum", "")
    objective.check_reference(state)
    reference = build_model(run.model_config)
    load_weights_into(reference, state, path)
    runtime = Runtime.local(run.device)
    objective.score_reference(reference.to(run.device), runtime)
    n = objective.n_train
    picked = torch.arange(n, n + objective.n_val) if objective.has_validation else torch.arange(n)
    found = objective.pair_stats(run.model, picked, runtime)
    return {"split": _split(objective.has_validation, data), "loss": found["loss"],
            "accuracy": found["rewards/accuracies"], "margin": found["rewards/margins"],
            "chosen_reward": found["rewards/chosen"], "rejected_reward": found["rewards/rejected"],
            "pairs": len(picked), "beta": objective.dpo.beta}


# The kind of a run (its architecture, or the verb that made it) -> how `tinygpt eval` measures it.
EVALUATORS = {"encoder": encoder, "encoder-decoder": encoder_decoder, "sft": sft, "reward": reward_model, "rl": rl,
              "dpo": dpo}
