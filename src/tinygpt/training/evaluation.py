"""Measuring a model: the exact loss over a whole split, an estimate from random batches, and
`tinygpt eval`'s report (loss, bits per character, perplexity) for a trained run.

The exact loss is one deterministic pass, no random batches.

Every token after the first is predicted once, from the non-overlapping `block_size` window it
falls in, so two evaluations of the same model on the same text always agree. Bits per character
divide the total loss (converted from nats to bits) by the number of characters predicted, which
makes models with different tokenizers comparable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data import first_tokens, pass_windows, random_batch, read_windows, subset_windows
from ..errors import TinyGPTError
from .distributed import padding, turns


@torch.no_grad()
def split_loss(model, data, block_size: int, device, batch_size: int = 64, max_tokens: int = 0, autocast=None,
               shard: tuple[int, int] = (0, 1), lockstep: bool = False, windows: list[tuple[int, int]] | None = None,
               on_batch=None):
    """(sum of token losses in nats, number of tokens) over `data` (ids, or a TokenFile).

    The windows of a pass over the first `max_tokens` predictions (all when 0), or `windows`, (start,
    length) pairs (a subset of a pass: batches.subset_windows); each batch is read when it is scored, so
    memory does not grow with the split. `shard` = (rank, world_size) splits the batches across
    processes; add the results up. `lockstep`: every process runs as many forwards (FSDP;
    distributed.turns). on_batch(y) sees each scored batch's targets (counting characters, timing).
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    windows = pass_windows(len(data), block_size, max_tokens) if windows is None else windows
    batches = []  # (starts, length): up to batch_size windows of one length
    for start, length in windows:
        if batches and batches[-1][1] == length and len(batches[-1][0]) < batch_size:
            batches[-1][0].append(start)
        else:
            batches.append(([start], length))
    for j, counts in turns(len(batches), *shard, lockstep):
        starts, length = batches[j]
        x, y = read_windows(data, torch.tensor(starts), length)  # (b, T) each
        x, y = x.to(device), y.to(device)
        with autocast() if autocast else torch.autocast(device_type="cpu", enabled=False):
            logits, _ = model(x)  # (b, T, V)
        if counts:
            total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
            if on_batch is not None:
                on_batch(y)
    model.train(was_training)
    return total, count


def bits_per_char(total_nats: float, n_chars: int) -> float:
    return total_nats / math.log(2) / max(n_chars, 1)


@torch.no_grad()
def estimate_loss(model, data: torch.Tensor, batch_size: int, block_size: int, n_batches: int, seed: int,
                  device, autocast, shard: tuple[int, int] = (0, 1), lockstep: bool = False):
    """(sum of batch mean losses, number of batches) over `n_batches` random batches.

    The batches come from their own generator seeded with `seed`, so every evaluation of a run
    scores the same batches; `shard` = (rank, world_size) gives each process its share.
    """
    rank, world = shard
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    for i in range(n_batches):
        x, y = random_batch(data, batch_size, block_size, gen)  # (B, T) each; drawn on every rank alike
        if i % world == rank:
            with autocast():
                _, loss = model(x.to(device), y.to(device))
            total, count = total + loss.item(), count + 1
        if i == 0:  # lockstep (FSDP): uncounted forwards, so that every process runs as many
            for _ in range(padding(n_batches, rank, world, lockstep)):
                with autocast():
                    model(x.to(device), y.to(device))
    model.train(was_training)
    return total, count


def evaluate_run(run, data: str | None = None, batch_size: int = 64, max_tokens: int = 0, log=None) -> dict:
    """`tinygpt eval`, by the kind of run (the verb that made it, config.json's data.verb): a language
    model's exact loss over its validation split, or over all of the text `data`; an SFT run's loss
    on the assistant's tokens of its held-out conversations (sft_eval.py); a reward run's pairwise
    accuracy on its held-out pairs (reward.py); an rl run's mean reward of greedy replies to its held-out
    prompts (rl.py). `data` is then a file of conversations, pairs or prompts.

    max_tokens (a language model): score at most this many tokens, the fixed subset a training run's final
    evaluation scores (batches.subset_windows); 0 = all. log(line): told how long a long pass will take."""
    verb = run.config.data.get("verb", "train")
    if run.model_config.arch == "encoder-decoder":
        from .seq2seq import evaluate_translation_run

        return evaluate_translation_run(run, data)
    if run.model_config.arch == "encoder":
        from .masked import evaluate_masked_run

        return evaluate_masked_run(run, data)
    if verb == "sft":
        from .sft_eval import evaluate_sft_run

        return evaluate_sft_run(run, data)
    if verb == "reward":
        from .reward import evaluate_reward_run

        return evaluate_reward_run(run, data)
    if verb == "rl":
        from .rl import evaluate_rl_run

        return evaluate_rl_run(run, data)
    from ..data import PreparedData, encode_corpus, held_out, read_corpus
    from ..rundir import RunDir

    train_cfg = run.config.train
    prepared = PreparedData.open(data if data is not None else train_cfg.data) if (data or train_cfg.data) else None
    if prepared is None and data is None and run.config.data.get("prepared"):
        raise TinyGPTError(f"{run.dir} was trained on the prepared data {train_cfg.data}, which is no longer there; "
                           "evaluate it on a text or a prepared folder with --data")
    if prepared is not None:
        prepared.require_tokenizer(run.tokenizer, str(run.dir), RunDir(run.dir).tokenizer_path)
        return _evaluate_tokens(run, "val", prepared.val_tokens(whole=False), batch_size, max_tokens, log)
    if data is None and not train_cfg.data:
        raise TinyGPTError(f"{run.dir} has no training text of its own (it was imported); "
                           "evaluate it on a file with --data FILE")
    text = read_corpus(data if data is not None else train_cfg.data, run.tokenizer.kind, train_cfg.sentence_end)
    ids = encode_corpus(run.tokenizer, text)  # (N,)
    block = run.model_config.block_size
    if data is None:
        split_name, tokens = held_out(ids, train_cfg.val_fraction, block)
    else:
        split_name, tokens = "all", ids
    if len(tokens) < 2:
        raise TinyGPTError("the evaluation text is shorter than 2 tokens; there is nothing to predict")
    return _evaluate_tokens(run, split_name, tokens, batch_size, max_tokens, log)


LONG_PASS_S = 30.0  # a pass predicted to take longer is announced, with how to score a subset instead


def _evaluate_tokens(run, split_name: str, tokens, batch_size: int, max_tokens: int = 0, log=None) -> dict:
    """The exact loss over `tokens` (N,) (ids, or a TokenFile), or over its fixed subset of at most
    `max_tokens` predictions, with bits per character and perplexity."""
    import time

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
