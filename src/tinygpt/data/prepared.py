"""Token files for text that outgrows memory: `tinygpt prepare` writes them once, training reads windows.

    prepared = prepare("big.txt", "data/big", tokenizer="bpe", vocab_size=8192)   # tinygpt prepare
    prepared = PreparedData.open("data/big")        # None for anything that is not a prepared folder
    train = prepared.train_tokens()                 # (N_train,) ids of train.bin, read a window at a time
    val = prepared.val_tokens()                     # (N_val,), read whole (whole=False: a window at a time)

A prepared folder holds
- `train.bin` and `val.bin`: the token ids one after another, little-endian uint16 (uint32 for a
  vocabulary past 65,536 tokens), nanoGPT's layout;
- `tokenizer.json`, the tokenizer that made them;
- `prepared.json`: where the text came from, the settings, and each file's token count and sha256.
  It is written last, so a folder without it is an unfinished prepare.

The ids are the ones `tinygpt train --data big.txt` computes in memory, split by the same rule (the
last `val_fraction` of the tokens validate), so a run on the prepared folder trains on the same
numbers. Preparing reads the text twice, a block at a time: once to build the tokenizer (a char or
word vocabulary from all of it; BPE from its first `tokenizer_sample` characters), once to encode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core import lock
from ..core.errors import TinyGPTError
from ..tokenizers import (
    CharTokenizer,
    WordTokenizer,
    bpe_shortfall,
    load_tokenizer,
    mark_sentence_ends,
    train_tokenizer,
)
from .sources import line_blocks, stream_text

META = "prepared.json"
FORMAT = "tinygpt-tokens"
VERSION = 1
REQUIRED = ("dtype", "train_tokens", "val_tokens", "sha256", "characters", "tokenizer", "vocab_size",
            "sentence_end", "val_fraction")
TOKENIZER_SAMPLE = 100_000_000  # characters BPE is trained on: enough for a vocabulary, not the whole web
VERIFY_BYTES = 256 << 20  # token files up to this are hashed at start (PreparedData.verify)
_VERIFIED: set[tuple] = set()  # the folders this process has verified, by their files' paths, sizes and times
# prepared.json's keys and their JSON types (an int is a float; a bool is neither)
TYPES = {"dtype": str, "train_tokens": int, "val_tokens": int, "sha256": str, "characters": int, "tokenizer": str,
         "vocab_size": int, "sentence_end": str, "val_fraction": float, "tokenizer_tokens": int, "files_sha256": dict}
DTYPES = ("<u2", "<u4")


@dataclass
class PreparedData:
    path: Path
    meta: dict

    @classmethod
    def open(cls, spec: str | Path) -> PreparedData | None:
        """The prepared folder `spec`, checked (prepared.json's keys, the files' sizes and sha256s: see
        `verify`); None when `spec` is not one (a text file, 'rhyme', ...)."""
        path = Path(str(spec))
        if not path.exists():
            _name_the_part(path)
        if not path.is_dir():
            return None
        meta_path = path / META
        if not meta_path.is_file():
            if (path / "train.bin").is_file():
                raise TinyGPTError(f"{path} has train.bin but no {META}: its prepare did not finish; run "
                                   "`tinygpt prepare` again")
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TinyGPTError(f"{meta_path} is not valid JSON ({e}); run `tinygpt prepare` again") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise TinyGPTError(f"{meta_path} is not a tinygpt prepared-data file")
        if missing := [key for key in REQUIRED if key not in meta]:
            raise TinyGPTError(f"{meta_path} lacks {', '.join(missing)}; run `tinygpt prepare` again")
        _check_types(meta, meta_path)
        if meta.get("version", 0) > VERSION:
            raise TinyGPTError(f"{meta_path} was written by a newer tinygpt (format {meta['version']}); upgrade")
        data = cls(path, meta)
        for split in ("train", "val"):
            expected = meta[f"{split}_tokens"] * np.dtype(meta["dtype"]).itemsize
            file = path / f"{split}.bin"
            if (file.stat().st_size if file.is_file() else -1) != expected:
                raise TinyGPTError(f"{file} should hold {meta[f'{split}_tokens']:,} tokens ({expected:,} bytes) but "
                                   f"{'is missing' if not file.is_file() else f'has {file.stat().st_size:,} bytes'}; "
                                   "run `tinygpt prepare` again")
        data.verify()
        return data

    def verify(self):
        """The files are the ones prepared.json describes: the sha256 of each, when the folder's token files
        hold at most VERIFY_BYTES (hashing runs at about 0.9 GB/s here, so 256 MiB costs a start 0.3 s, once
        per process); past that only tokenizer.json's, and the ids are checked against the vocabulary as
        each window is read (TokenFile), so that a 10 GB folder does not cost every start 11 s."""
        files = [self.path / name for name in ("train.bin", "val.bin", "tokenizer.json")]
        if not files[2].is_file():
            raise TinyGPTError(f"{files[2]} is missing; put it back, or run `tinygpt prepare` again")
        stamp = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
        if stamp in _VERIFIED:
            return
        recorded = self.meta.get("files_sha256") or {}
        whole = sum(size for _, size, _ in stamp[:2]) <= VERIFY_BYTES
        sums = {f.name: _sha256(f) for f in files if whole or f.name == "tokenizer.json"}
        for name, digest in sums.items():
            if name in recorded and recorded[name] != digest:
                if name == "tokenizer.json":
                    raise TinyGPTError(f"{self.path / name} is not the tokenizer {self.path} was prepared with (its "
                                       f"sha256 differs from the one {META} records); put the original back, or run "
                                       "`tinygpt prepare` again")
                raise TinyGPTError(f"{self.path / name} is damaged: its sha256 differs from the one {META} records; "
                                   "run `tinygpt prepare` again")
        combined = hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()
        if not recorded and len(sums) == 3 and combined != self.meta["sha256"]:  # written before files_sha256
            raise TinyGPTError(f"the files of {self.path} do not match the sha256 {META} records: one is damaged or "
                               "was replaced; run `tinygpt prepare` again")
        _VERIFIED.add(stamp)

    @property
    def vocabulary(self) -> int | None:
        """How many ids the tokenizer has (every id in the files is below it), as prepared.json records."""
        return self.meta.get("tokenizer_tokens")

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def tokenizer(self):
        return load_tokenizer(self.path / "tokenizer.json")

    def require_tokenizer(self, tokenizer, owner: str, tokenizer_path):
        """Refuse tokens made by another tokenizer than `owner`'s (`tokenizer`, saved at `tokenizer_path`)."""
        if tokenizer.to_json() != self.tokenizer().to_json():
            raise TinyGPTError(f"{self.path} was prepared with another tokenizer than {owner}'s; prepare the text "
                               f"again with --tokenizer {tokenizer_path}")

    def train_tokens(self) -> TokenFile:
        """(N_train,) ids of train.bin, read where a batch asks: nothing of the file stays in memory."""
        return TokenFile(self.path / "train.bin", self.meta["dtype"], self.vocabulary)

    def val_tokens(self, whole: bool = True) -> torch.Tensor | TokenFile:
        """(N_val,) ids of val.bin: read into memory, or (whole=False) read a window at a time as evaluations
        ask, so that memory does not grow with the split."""
        if not whole:
            return TokenFile(self.path / "val.bin", self.meta["dtype"], self.vocabulary)
        ids = np.fromfile(self.path / "val.bin", dtype=self.meta["dtype"])
        _check_ids(ids, self.vocabulary, self.path / "val.bin", 0)
        return torch.from_numpy(ids)

    def describe(self) -> dict:
        """What config.json records about the data (as describe_corpus does for a text)."""
        m = self.meta
        return {"name": self.name, "sha256": m["sha256"], "characters": m["characters"],
                "tokens": m["train_tokens"] + m["val_tokens"], "prepared": str(self.path)}

    def settings(self) -> dict:
        """The training settings the folder fixes: the tokenizer and the split."""
        m = self.meta
        return {"tokenizer": m["tokenizer"], "vocab_size": m["vocab_size"], "sentence_end": m["sentence_end"],
                "val_fraction": m["val_fraction"]}


class TokenFile:
    """A file of token ids that reads only what is asked, with one pread each: `len(f)`, `f[a:b]` ->
    (b - a,) ids, `f.windows(starts, n)` -> (B, n) int64 ids. A map of the file (np.memmap) would do the
    same reads, but every page it ever touched stays in the process's resident memory; these reads
    go through the page cache, which the kernel keeps or drops as it needs."""

    def __init__(self, path: Path, dtype: str, vocabulary: int | None = None):
        self.path, self.dtype, self.vocabulary = Path(path), np.dtype(dtype), vocabulary
        self._fd = os.open(self.path, os.O_RDONLY)
        self._len = os.fstat(self._fd).st_size // self.dtype.itemsize

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: slice) -> torch.Tensor:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("a TokenFile is read in contiguous slices (f[a:b]) or windows (f.windows)")
        start, stop, _ = index.indices(self._len)
        return torch.from_numpy(self._read(start, max(0, stop - start)))

    def windows(self, starts: torch.Tensor, length: int) -> torch.Tensor:
        """(B, length) int64: the `length` ids from each of the (B,) offsets `starts`."""
        return torch.from_numpy(np.stack([self._read(int(i), length) for i in starts]).astype(np.int64))

    def _read(self, start: int, count: int) -> np.ndarray:
        raw = os.pread(self._fd, count * self.dtype.itemsize, start * self.dtype.itemsize)
        ids = np.frombuffer(raw, dtype=self.dtype).copy()  # writable: torch takes it without a warning
        _check_ids(ids, self.vocabulary, self.path, start)
        return ids

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None


def prepare(source: str, out: str | Path, tokenizer: str = "char", vocab_size: int = 512, sentence_end: str = "",
            val_fraction: float = 0.1, text_field: str = "text", split: str = "train", separator: str = "\n\n",
            tokenizer_sample: int = TOKENIZER_SAMPLE, block_chars: int | None = None, log=print) -> PreparedData:
    """Tokenise the text `source` (see sources.stream_text) into the folder `out`; returns it opened."""
    from .corpus import corpus_name

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "prepared data" if (out / META).is_file() else "files"
        raise TinyGPTError(f"{out} already holds {what}; choose another --out (or remove it)")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 1 <= vocab_size <= 1 << 31:
        raise TinyGPTError(f"vocab_size must be a whole number from 1 to {1 << 31:,}, got {vocab_size!r}")
    if tokenizer == "bpe" and vocab_size < 257:  # what training on the folder would refuse (TrainConfig)
        raise TinyGPTError(f"--vocab-size for a byte-level BPE must be at least 257, got {vocab_size}")
    if not 0 < val_fraction < 1:
        # Training scores the validation split (and as much of the training split) at every evaluation.
        raise TinyGPTError(f"val_fraction must be in (0, 1), got {val_fraction}: prepared data keeps a validation "
                           "split for training to measure (a big text needs little: 0.001 of 1B tokens is 1M)")
    started = time.perf_counter()
    word_marker = sentence_end if tokenizer == "word" else ""

    def blocks():  # the source's text, cut where tokenizing in pieces changes nothing
        return line_blocks(stream_text(source, text_field, split, separator), **({"size": block_chars} if block_chars
                                                                                 else {}))

    def as_read(block: str) -> str:  # as the tokenizer reads it (pipeline.read_corpus)
        return mark_sentence_ends(block, word_marker) if word_marker else block

    tok = _build_tokenizer(tokenizer, lambda: map(as_read, blocks()), vocab_size, word_marker, tokenizer_sample, log)
    dtype = np.dtype("<u2") if tok.vocab_size <= 1 << 16 else np.dtype("<u4")
    part = out.with_name(out.name + ".part")  # built aside, renamed when whole: no half folder looks done
    if part.exists():  # an interrupted prepare's, unless one is still writing it (then refused, naming it)
        _take_part(part)
        lock.release(part / lock.LOCK_FILE)
        shutil.rmtree(part)
    part.mkdir(parents=True)
    try:
        _take_part(part)
        written = _write(part, blocks, as_read, tok, dtype, val_fraction, log)
    except BaseException as e:  # a bad row further on, Ctrl-C, a full disk: no half-written folder stays
        lock.release(part / lock.LOCK_FILE)
        shutil.rmtree(part, ignore_errors=True)
        if isinstance(e, OSError) and e.errno and e.filename is None:  # a write refused: name the folder
            raise OSError(e.errno, e.strerror, str(out)) from None
        raise
    meta = {"format": FORMAT, "version": VERSION, "source": str(source), "name": corpus_name(str(source)),
            "tokenizer": tokenizer, "vocab_size": vocab_size, "tokenizer_tokens": tok.vocab_size,
            "sentence_end": sentence_end, "val_fraction": val_fraction, "text_field": text_field, "split": split,
            "separator": separator, "dtype": dtype.str, **written, "seconds": round(time.perf_counter() - started, 1)}
    (part / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if out.exists():
        out.rmdir()  # an empty folder was allowed
    (part / lock.LOCK_FILE).unlink()  # held until the folder has its name: no second prepare takes it meanwhile
    os.replace(part, out)
    lock.release(part / lock.LOCK_FILE)
    return PreparedData(out, meta)


def _write(part: Path, blocks, as_read, tok, dtype, val_fraction: float, log=None) -> dict:
    """train.bin, val.bin and tokenizer.json in `part`; returns their counts and checksums."""
    characters, total = 0, 0
    with open(part / "train.bin", "wb") as f:
        for block in blocks():
            ids = tok.encode_array(as_read(block), dtype)
            f.write(ids.tobytes())
            characters, total = characters + len(block), total + len(ids)
            if log is not None:
                log(f"  {characters:,} characters -> {total:,} tokens")
    if total < 3:
        raise TinyGPTError(f"the text is only {total} token(s); it needs at least 3 to learn anything")
    # The split rule of pipeline.split_ids: the last val_fraction of the tokens, counted the same way.
    n_val = total - int(total * (1 - val_fraction))
    if n_val < 2:
        raise TinyGPTError(f"{val_fraction} of the text's {total:,} tokens is {n_val}, too few to validate on (2 at "
                           "least); raise --val-fraction, or train on the text itself with tinygpt train --data")
    n_train = total - n_val
    tail = np.memmap(part / "train.bin", dtype=dtype, mode="r", offset=n_train * dtype.itemsize)
    (part / "val.bin").write_bytes(tail.tobytes())
    del tail
    os.truncate(part / "train.bin", n_train * dtype.itemsize)
    (part / "tokenizer.json").write_text(json.dumps(tok.to_json(), ensure_ascii=False), encoding="utf-8")
    sums = {name: _sha256(part / name) for name in ("train.bin", "val.bin", "tokenizer.json")}
    return {"characters": characters, "train_tokens": n_train, "val_tokens": n_val,
            "sha256": hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest(), "files_sha256": sums}


def _build_tokenizer(kind: str, blocks, vocab_size: int, end_token: str, sample: int, log):
    """The tokenizer `kind` makes of the text: a char or word vocabulary from all of it (one pass),
    BPE trained on its first `sample` characters, or a pretrained one."""
    if kind == "char":
        chars = set()
        for block in blocks():
            chars.update(block)
        return CharTokenizer(sorted(chars))
    if kind == "word":
        words = set()
        for block in blocks():
            words.update(block.split())
        return WordTokenizer(sorted(words), end_token)
    if kind == "bpe":
        taken, size = [], 0
        for block in blocks():
            taken.append(block[: sample - size])
            size += len(taken[-1])
            if size >= sample:
                break
        if log is not None:
            log(f"training a BPE tokenizer of up to {vocab_size:,} tokens on {size:,} characters")
        tokenizer = train_tokenizer("bpe", "".join(taken), vocab_size)
        if log is not None and (short := bpe_shortfall(vocab_size, tokenizer.vocab_size)):
            log(f"  {short}")
        return tokenizer
    return train_tokenizer(kind, "", vocab_size)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _take_part(part: Path):
    """Hold OUT.part's lock while this process writes it: a second prepare into OUT is refused, naming it."""
    if lock.take(part / lock.LOCK_FILE, str(part)):
        lock.claim(part / lock.LOCK_FILE)


def _name_the_part(path: Path):
    """`path` does not exist: if `path`.part does, say so (a prepare was interrupted, or is still running)."""
    part = path.with_name(path.name + ".part")
    if not part.is_dir():
        return
    try:
        taken = lock.take(part / lock.LOCK_FILE, str(part))
    except lock.Busy as e:
        raise TinyGPTError(f"{path} does not exist yet: {e.holder} is preparing it in {part}; wait for it to "
                           "finish") from None
    except OSError:
        taken = False
    if taken:
        lock.release(part / lock.LOCK_FILE)
    raise TinyGPTError(f"{path} does not exist, but {part} does: a `tinygpt prepare` into it was interrupted; run it "
                       "again (it starts over)")


def _check_types(meta: dict, meta_path: Path):
    """Each key of prepared.json of its JSON type, the dtype one tinygpt writes."""
    for key, kind in TYPES.items():
        if key not in meta:
            continue
        value = meta[key]
        ok = (not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else kind)
              and not (kind is int and value < 0))
        if not ok:
            raise TinyGPTError(f"{meta_path}: {key} should be {'a mapping' if kind is dict else kind.__name__}, got "
                               f"{json.dumps(value)[:40]}; the file is damaged: run `tinygpt prepare` again")
    if meta["dtype"] not in DTYPES:
        raise TinyGPTError(f"{meta_path}: dtype should be one of {', '.join(DTYPES)}, got {meta['dtype']!r}; the "
                           "file is damaged: run `tinygpt prepare` again")


def _check_ids(ids: np.ndarray, vocabulary: int | None, path: Path, start: int):
    """Every id of `ids` (read from `path` at token `start`) below the tokenizer's `vocabulary`."""
    if vocabulary is None or not len(ids) or int(ids.max()) < vocabulary:
        return
    at = int(np.argmax(ids >= vocabulary))
    raise TinyGPTError(f"{path} holds the id {int(ids[at])} at token {start + at:,}, past the tokenizer's "
                       f"{vocabulary:,} ids: the file is damaged; run `tinygpt prepare` again")
