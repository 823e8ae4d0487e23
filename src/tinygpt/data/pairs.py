"""Source/target pairs for the encoder-decoder: JSON Lines or a two-column TSV, read one way.

    pairs, sha256 = read_pairs("pairs.jsonl")     # {"source": "...", "target": "..."} per line
    pairs, sha256 = read_pairs("pairs.tsv")       # source<TAB>target per line
    pairs, sha256 = read_pairs("dates")           # the built-in task (data/dates.py)
    pairs[0].source, pairs[0].target, pairs[0].where   # where: "pairs.tsv:3", for errors

A .jsonl file (or a folder of them) is JSON Lines; any other file is TSV. A line with a column
missing, a column that is not a string, or an empty source is one error naming its file and line.
Blank lines are skipped. The pairs keep their file order (the last val_fraction validate).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import TinyGPTError
from .corpus import read_text_file
from .jsonl import read_jsonl

BUILT_IN = ("dates",)
SHAPE = '{"source": ..., "target": ...} object'


@dataclass
class Pair:
    source: str
    target: str
    where: str  # "file:line" (or the built-in task's name and index)


def read_pairs(spec: str) -> tuple[list[Pair], str]:
    """Every pair `spec` holds, in order, and the sha256 of what was read."""
    if spec in BUILT_IN:
        from .dates import date_pairs

        pairs = [Pair(s, t, f"{spec}:{i + 1}") for i, (s, t) in enumerate(date_pairs())]
        return pairs, hashlib.sha256("\n".join(f"{p.source}\t{p.target}" for p in pairs).encode()).hexdigest()
    path = Path(spec)
    if path.suffix == ".jsonl" or path.is_dir():
        docs, sha256 = read_jsonl(spec, "source/target pair", SHAPE)
        pairs = [_from_json(doc, where) for doc, where in docs]
    else:
        text = read_text_file(path, what="pair file")
        sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        pairs = [_from_tsv(line, f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    for pair in pairs:
        if not pair.source.strip():
            raise TinyGPTError(f"{pair.where}: the source is empty; every pair needs a source to translate")
    return pairs, sha256


def _from_json(doc, where: str) -> Pair:
    if not isinstance(doc, dict):
        raise TinyGPTError(f"{where}: expected a {SHAPE}, got {type(doc).__name__}")
    for key in ("source", "target"):
        if key not in doc:
            raise TinyGPTError(f"{where}: the pair has no {key!r}; each line needs a {SHAPE}")
        if not isinstance(doc[key], str):
            raise TinyGPTError(f"{where}: {key!r} must be a string, got {type(doc[key]).__name__}")
    return Pair(doc["source"], doc["target"], where)


def _from_tsv(line: str, where: str) -> Pair:
    columns = line.split("\t")
    if len(columns) != 2:
        found = "no tab" if len(columns) == 1 else f"{len(columns)} columns"
        raise TinyGPTError(f"{where}: expected two tab-separated columns, source<TAB>target, found {found}")
    return Pair(columns[0], columns[1], where)
