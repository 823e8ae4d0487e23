"""Text in, batches out: finding corpora, splitting them, and cutting training windows.

A corpus is named by a path (a file, or a folder whose .txt files are joined) or by one of two
built-in names:
- `rhyme`: the 16-sentence "Mary had a little lamb" corpus shipped inside the package;
- `shakespeare`: tiny Shakespeare, looked up in $TINYGPT_DATA_DIR, then the user's cache
  directory, and otherwise downloaded once from its public home (and checked by sha256).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .errors import TinyGPTError

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_FILE = "tinyshakespeare.txt"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tinygpt"


def rhyme_text() -> str:
    """The nursery-rhyme corpus, one sentence per line."""
    return resources.files("tinygpt").joinpath("resources/rhyme.txt").read_text(encoding="utf-8")


def shakespeare_path(download: bool = True) -> Path:
    """Where tiny Shakespeare is on this machine, downloading it to the cache if allowed and needed."""
    candidates = []
    if os.environ.get("TINYGPT_DATA_DIR"):
        candidates.append(Path(os.environ["TINYGPT_DATA_DIR"]) / SHAKESPEARE_FILE)
    cached = cache_dir() / SHAKESPEARE_FILE
    candidates.append(cached)
    for path in candidates:
        if path.is_file():
            return path
    where = f"put {SHAKESPEARE_FILE} in $TINYGPT_DATA_DIR or at {cached}"
    if not download:
        raise TinyGPTError(f"tiny Shakespeare not found; {where}")
    try:
        with urllib.request.urlopen(SHAKESPEARE_URL, timeout=30) as response:
            payload = response.read()
    except (OSError, http.client.HTTPException) as e:  # offline, refused, timed out, cut off mid-way
        raise TinyGPTError(f"tiny Shakespeare not found and could not be downloaded ({e}); {where}") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise TinyGPTError(f"downloaded tiny Shakespeare has sha256 {digest}, expected {SHAKESPEARE_SHA256}; {where}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".part")
    tmp.write_bytes(payload)
    os.replace(tmp, cached)
    return cached


def read_text_file(path: str | Path, what: str = "data file") -> str:
    """Read a UTF-8 text (a training text, or `what` else), explaining every way it can be unusable."""
    path = Path(path)
    if not path.exists():
        names = ", 'rhyme' or 'shakespeare'" if what == "data file" else ""
        raise TinyGPTError(f"{what} {path} does not exist; pass a UTF-8 text file{names}")
    if path.is_dir():
        raise TinyGPTError(f"{path} is a directory; pass a UTF-8 text file")
    raw = path.read_bytes()
    if not raw.strip():
        raise TinyGPTError(f"{what} {path} is empty; it needs some text")
    if b"\x00" in raw:
        raise TinyGPTError(f"{what} {path} looks binary (it contains NUL bytes); pass a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TinyGPTError(
            f"{what} {path} is not valid UTF-8 (bad byte at offset {e.start}); "
            "convert it, e.g. iconv -f latin1 -t utf-8") from None


def load_corpus(spec: str) -> str:
    """The text named by `spec`: 'rhyme', 'shakespeare', a file, or a folder of .txt files."""
    if spec == "rhyme":
        return rhyme_text()
    if spec == "shakespeare":
        return read_text_file(shakespeare_path())
    if Path(spec).is_dir():
        return read_text_folder(Path(spec))
    return read_text_file(spec)


def read_text_folder(folder: Path) -> str:
    """Every .txt file under `folder` (sorted by path, so the text is the same on every machine),
    joined by blank lines."""
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise TinyGPTError(f"{folder} is a folder with no .txt files; pass a UTF-8 text file or a folder of them")
    return "\n\n".join(read_text_file(p).strip("\n") for p in files) + "\n"


def corpus_name(spec: str) -> str:
    """A short name for the text: the built-in name, or the file's (folder's) name without suffix."""
    return spec if spec in ("rhyme", "shakespeare") else Path(spec).resolve().stem


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_corpus(tokenizer, text: str) -> torch.Tensor:
    """The whole text as token ids, (N,), in the smallest integer type that holds the vocabulary.

    A corpus of 100M tokens takes 200 MB as int16 instead of 800 MB as int64 (plus, through a
    Python list, another 800 MB of pointers); batches are widened to int64 as they are cut.
    """
    dtype = np.int16 if tokenizer.vocab_size <= np.iinfo(np.int16).max else np.int32
    if hasattr(tokenizer, "encode_array"):
        return torch.from_numpy(tokenizer.encode_array(text, dtype))
    return torch.from_numpy(np.asarray(tokenizer.encode(text), dtype=dtype))


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
    limit = len(train) - 1 if val is None or not val_windows else min(len(train), len(val)) - 1
    if block_size > limit:
        which = "text" if val is None else "training split" if len(train) - 1 == limit else "validation split"
        notes.append(f"block_size reduced from {block_size} to {limit}: the {which} has only {limit + 1} tokens")
        block_size = limit
    return Splits(train, val, block_size, notes)


def random_batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator):
    """`batch_size` random windows of `block_size` tokens and the same windows shifted by one.

    Returns int64 x, y of shape (B, T). Offsets come from `generator` so a resumed run draws the same
    batches.
    """
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    x = data[ix[:, None] + offsets].long()  # (B, T)
    y = data[ix[:, None] + offsets + 1].long()  # (B, T)
    return x, y


def eval_windows(data: torch.Tensor, block_size: int, max_tokens: int = 0):
    """Non-overlapping windows covering the split once, in order, for an exact loss.

    Every token after the first is predicted exactly once; the last window is shorter when the
    split does not divide evenly. Yields x, y of shape (1 or many, T).
    """
    n = len(data) - 1
    if max_tokens:
        n = min(n, max_tokens)
    full = n // block_size
    if full:
        x = data[: full * block_size].view(full, block_size)  # (W, T)
        y = data[1 : full * block_size + 1].view(full, block_size)  # (W, T)
        yield x.long(), y.long()
    rest = n - full * block_size
    if rest:
        start = full * block_size
        yield data[start : start + rest][None].long(), data[start + 1 : start + rest + 1][None].long()  # (1, rest)
