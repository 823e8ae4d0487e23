"""Text -> ids -> splits: the one pipeline that training, `tinygpt eval` and later tools share.

    text = read_corpus("shakespeare", tokenizer.kind, sentence_end="")   # marked up for a word tokenizer
    ids = encode_corpus(tokenizer, text)                                  # (N,) int16/int32
    splits = split_ids(ids, val_fraction=0.1, block_size=256)             # the one split rule
    name, tokens = held_out(ids, val_fraction=0.1, block_size=256)       # what an evaluation scores

The split rule and the sentence-end rule live here and nowhere else, so "the validation split"
means the same thing to the trainer and to `tinygpt eval`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import TinyGPTError
from ..tokenizers import mark_sentence_ends
from .corpus import corpus_name, fingerprint, load_corpus


def read_corpus(spec: str, tokenizer_kind: str, sentence_end: str = "") -> str:
    """The text named by `spec`, as the tokenizer reads it: with the tutorial's sentence-end marker
    after every line when a word tokenizer uses one (`sentence_end`), else as it is."""
    text = load_corpus(spec)
    if sentence_end and tokenizer_kind == "word":
        text = mark_sentence_ends(text, sentence_end)
    return text


def describe_corpus(spec: str, text: str, ids: torch.Tensor) -> dict:
    """What config.json records about the data: its name, fingerprint and size."""
    return {"name": corpus_name(spec), "sha256": fingerprint(text), "characters": len(text), "tokens": len(ids)}


def encode_corpus(tokenizer, text: str) -> torch.Tensor:
    """The whole text as token ids, (N,), in the smallest integer type that holds the vocabulary.

    A corpus of 100M tokens takes 200 MB as int16 instead of 800 MB as int64 (plus, through a
    Python list, another 800 MB of pointers); batches are widened to int64 as they are cut.
    """
    dtype = np.int16 if tokenizer.vocab_size <= np.iinfo(np.int16).max else np.int32
    return torch.from_numpy(tokenizer.encode_array(text, dtype))


@dataclass
class Splits:
    """Token ids of the training and validation text, and the context length they allow."""

    train: torch.Tensor  # (N_train,) integer ids (int16 or int32 from encode_corpus)
    val: torch.Tensor | None  # (N_val,) likewise, or None when training on all of the text
    block_size: int
    notes: list[str]  # what was adjusted to make a small corpus trainable, for the user


def split_ids(ids, val_fraction: float, block_size: int, val_windows: bool = False) -> Splits:
    """The first (1 - val_fraction) of the ids train, the rest validate (the lecture's 90/10 split).

    A tiny corpus still trains when it can: the context is shortened to fit the training text, and
    validation is dropped when the held-out part cannot hold a single prediction. `val_windows`: the
    validation loss is estimated from random full windows (eval_iters > 0), so the context must fit
    in the validation split too; an exact pass scores a short split in a shorter window instead.
    Each adjustment is reported.
    """
    data = ids if isinstance(ids, torch.Tensor) else torch.tensor(ids, dtype=torch.long)  # (N,)
    notes = []
    if len(data) < 3:
        raise TinyGPTError(f"the corpus is only {len(data)} token(s); it needs at least 3 to learn anything")
    # The lecture (and nanoGPT) train on data[:int(0.9 * N)]: count the training part the same way.
    n_val = len(data) - int(len(data) * (1 - val_fraction)) if val_fraction > 0 else 0
    if val_fraction > 0 and n_val < 2:
        notes.append(f"the corpus ({len(data)} tokens) is too short to hold out a validation split; "
                     "validating on the training text")
        n_val = 0
    train, val = (data[: len(data) - n_val], data[len(data) - n_val:]) if n_val else (data, None)
    block_size, fitted = fit_context(len(train), None if val is None else len(val), block_size, val_windows)
    return Splits(train, val, block_size, notes + fitted)


def fit_context(n_train: int, n_val: int | None, block_size: int, val_windows: bool = False) -> tuple[int, list[str]]:
    """The context the splits allow (see split_ids), and a note when it had to be shortened."""
    limit = n_train - 1 if n_val is None or not val_windows else min(n_train, n_val) - 1
    if block_size <= limit:
        return block_size, []
    which = "text" if n_val is None else "training split" if n_train - 1 == limit else "validation split"
    return limit, [f"block_size reduced from {block_size} to {limit}: the {which} has only {limit + 1} tokens"]




def held_out(ids: torch.Tensor, val_fraction: float, block_size: int) -> tuple[str, torch.Tensor]:
    """The split an evaluation of a trained run scores: its validation split, or (when it trained on
    all of its text) the training text. Returns the split's name and its ids."""
    if val_fraction > 0:
        splits = split_ids(ids, val_fraction, block_size)
        if splits.val is not None:
            return "val", splits.val
        return "train", splits.train
    return "train", ids

