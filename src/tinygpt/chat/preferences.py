"""Preference pairs on disk: JSON Lines in TRL's preference format (what `tinygpt reward` learns from).

One pair per line: a prompt, the reply people preferred and the one they did not.

    {"prompt": "mary had a", "chosen": " little lamb", "rejected": " big dog"}            # plain text
    {"prompt": [{"role": "user", "content": "..."}],                                     # conversational
     "chosen": [{"role": "assistant", "content": "..."}], "rejected": [{"role": "assistant", ...}]}
    {"chosen": [...the whole conversation...], "rejected": [...]}                       # implicit prompt
    {"chosen": "mary had a little lamb", "rejected": "mary had a big dog"}              # implicit, plain

Plain text is scored as written: the prompt's tokens, then the reply's. A pair is conversational
when any of its parts is a list of messages; a string part is then one message (a prompt: the
user's; a reply: the assistant's), and the conversation is written through the run's chat template.
With a prompt, each reply holds only assistant messages; without one, each reply is a whole
conversation that ends with the assistant's message. Other keys are ignored.

`--data` is one .jsonl file or a folder: every .jsonl file under it, sorted by path. Blank lines
are skipped. A bad line is one error naming its file and line number.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import TinyGPTError
from .template import check_messages

FORMAT = '{"prompt": ..., "chosen": ..., "rejected": ...} object per line (the prompt may be left out)'


@dataclass
class Pair:
    """One preference: the prompt and the two replies, as text (plain) or as messages (conversational;
    the prompt's messages come first in `chosen` and `rejected` then), and where the line is."""

    prompt: str
    chosen: str | list[dict]
    rejected: str | list[dict]
    where: str

    @property
    def conversational(self) -> bool:
        return isinstance(self.chosen, list)


def pair_files(spec: str) -> list[Path]:
    """The .jsonl files `spec` names: itself, or every one under a folder (sorted by path)."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
        if not files:
            raise TinyGPTError(f"{path} is a folder with no .jsonl files; pass a JSON Lines file of preference pairs "
                               "or a folder of them")
        return files
    if not path.is_file():
        raise TinyGPTError(f"preference file {path} does not exist; pass a .jsonl file with one {FORMAT}")
    return [path]


def read_pairs(spec: str) -> tuple[list[Pair], str]:
    """Every pair in `spec` (a file or a folder), and the sha256 of the files' bytes."""
    digest = hashlib.sha256()
    pairs = []
    for path in pair_files(spec):
        raw = path.read_bytes()
        digest.update(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise TinyGPTError(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x}); convert the file to "
                               "UTF-8") from None
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                pairs.append(parse_pair(line, f"{path}:{number}"))
    if not pairs:
        raise TinyGPTError(f"{spec} holds no preference pairs (every line is blank); add one {FORMAT}")
    return pairs, digest.hexdigest()


def parse_pair(line: str, where: str) -> Pair:
    """One line as a Pair; a line that is not one is a TinyGPTError starting with `where`."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        raise TinyGPTError(f"{where}: not valid JSON ({e.msg}, column {e.colno}); each line must be one JSON "
                           "object") from None
    try:
        prompt, chosen, rejected = _parts(doc)
    except TinyGPTError as e:
        raise TinyGPTError(f"{where}: {e}") from None
    return Pair(prompt, chosen, rejected, where)


def _parts(doc) -> tuple[str, str | list[dict], str | list[dict]]:
    """(prompt, chosen, rejected) of one JSON document: plain texts, or "" and two whole conversations."""
    if not isinstance(doc, dict) or "chosen" not in doc or "rejected" not in doc:
        raise TinyGPTError(f"expected one {FORMAT}")
    prompt = doc.get("prompt", "")
    parts = (prompt, doc["chosen"], doc["rejected"])
    for name, value in zip(("prompt", "chosen", "rejected"), parts):
        if not isinstance(value, (str, list)):
            raise TinyGPTError(f"the {name} must be a string or a list of messages, got {type(value).__name__}")
    if not any(isinstance(part, list) for part in parts):
        for name in ("chosen", "rejected"):
            if not doc[name].strip():
                raise TinyGPTError(f"the {name} reply is empty; give it some text or drop the line")
        if doc["chosen"] == doc["rejected"]:
            raise TinyGPTError("the chosen and rejected replies are the same, so the pair prefers nothing; drop it")
        return prompt, doc["chosen"], doc["rejected"]

    context = _messages(prompt, "user", "prompt") if prompt else []
    replies = []
    for name in ("chosen", "rejected"):
        reply = _messages(doc[name], "assistant", name)
        if context:
            wrong = [m.get("role") for m in reply if isinstance(m, dict) and m.get("role") != "assistant"]
            if wrong:
                raise TinyGPTError(f"the {name} reply holds a {wrong[0]!r} message; with a prompt, a reply is the "
                                   "assistant's messages only")
        try:
            conversation = check_messages(context + reply)
        except TinyGPTError as e:
            raise TinyGPTError(f"the {name} conversation: {e}") from None
        if conversation[-1]["role"] != "assistant":
            raise TinyGPTError(f"the {name} conversation ends with a {conversation[-1]['role']!r} message; it must "
                               "end with the assistant's reply that is scored")
        replies.append(conversation)
    if replies[0] == replies[1]:
        raise TinyGPTError("the chosen and rejected replies are the same, so the pair prefers nothing; drop it")
    return "", replies[0], replies[1]


def _messages(value, role: str, name: str) -> list:
    """A part of a conversational pair: a string (one message of `role`) or a non-empty list of messages."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if value:
        return value
    raise TinyGPTError(f"the {name} is an empty list; give it at least one message")
