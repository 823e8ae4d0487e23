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

from ..data import eval_windows, random_batch
from ..errors import TinyGPTError
from .distributed import padding, turns


@torch.no_grad()
def split_loss(model, data: torch.Tensor, block_size: int, device, batch_size: int = 64,
               max_tokens: int = 0, autocast=None, shard: tuple[int, int] = (0, 1), lockstep: bool = False):
    """(sum of token losses in nats, number of tokens) over `data`.

    `shard` = (rank, world_size) splits the windows across processes; add the results up. `lockstep`:
    every process runs as many forwards (FSDP; distributed.turns).
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    batches = [(x_all, y_all, i) for x_all, y_all in eval_windows(data, block_size, max_tokens)
               for i in range(0, len(x_all), batch_size)]
    for j, counts in turns(len(batches), *shard, lockstep):
        x_all, y_all, i = batches[j]
        x = x_all[i : i + batch_size].to(device)  # (b, T)
        y = y_all[i : i + batch_size].to(device)  # (b, T)
        with autocast() if autocast else torch.autocast(device_type="cpu", enabled=False):
            logits, _ = model(x)  # (b, T, V)
        if counts:
            total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
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


def evaluate_run(run, data: str | None = None, batch_size: int = 64) -> dict:
    """`tinygpt eval`, by the kind of run (the verb that made it, config.json's data.verb): a language
    model's exact loss over its validation split, or over all of the text `data`; an SFT run's loss
    on the assistant's tokens of its held-out conversations (sft_eval.py); a reward run's pairwise
    accuracy on its held-out pairs (reward.py); an rl run's mean reward of greedy replies to its held-out
    prompts (rl.py). `data` is then a file of conversations, pairs or prompts."""
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
        return _evaluate_tokens(run, "val", prepared.val_tokens(), batch_size)
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
    return _evaluate_tokens(run, split_name, tokens, batch_size)


def _evaluate_tokens(run, split_name: str, tokens: torch.Tensor, batch_size: int) -> dict:
    """The exact loss over `tokens` (N,), with bits per character and perplexity."""
    block = run.model_config.block_size
    total, count = split_loss(run.model, tokens, block, run.device, batch_size)
    n_chars = len(run.tokenizer.decode(tokens[1:].tolist()))
    loss = total / count
    return {"split": split_name, "val_loss": loss, "tokens": count, "characters": n_chars,
            "bits_per_char": bits_per_char(total, n_chars), "perplexity": float(torch.tensor(loss).exp())}
