"""JSON Lines files of examples, read the one way every verb reads them.

    docs, sha256 = read_jsonl("prompts.jsonl", "prompt", '{"prompt": ...} object')
    for doc, where in docs: ...          # where: "prompts.jsonl:3", for errors naming the line

A spec is one .jsonl file or a folder: every .jsonl file under it, sorted by path. Blank lines are
skipped; a line that is not UTF-8 or not JSON is one error naming its file and line number.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..core.errors import TinyGPTError


def jsonl_files(spec: str, what: str, shape: str) -> list[Path]:
    """The .jsonl files `spec` names: itself, or every one under a folder (sorted by path).

    what: what a line holds ("prompt"); shape: what a line looks like, for the error messages.
    """
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
        if not files:
            raise TinyGPTError(f"{path} is a folder with no .jsonl files; pass a JSON Lines file of {what}s or a "
                               "folder of them")
        return files
    if not path.is_file():
        raise TinyGPTError(f"{what} file {path} does not exist; pass a .jsonl file with one {shape} per line")
    return [path]


def read_jsonl(spec: str, what: str, shape: str) -> tuple[list[tuple[object, str]], str]:
    """Every line of `spec` as (its JSON document, "file:line"), and the sha256 of the files' bytes."""
    digest = hashlib.sha256()
    docs = []
    for path in jsonl_files(spec, what, shape):
        raw = path.read_bytes()
        digest.update(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise TinyGPTError(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x}); convert the file to "
                               "UTF-8") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                docs.append((json.loads(line), where))
            except json.JSONDecodeError as e:
                raise TinyGPTError(f"{where}: not valid JSON ({e.msg}, column {e.colno}); each line must be one "
                                   "JSON object") from None
    if not docs:
        raise TinyGPTError(f"{spec} holds no {what}s (every line is blank); add one {shape} per line")
    return docs, digest.hexdigest()
