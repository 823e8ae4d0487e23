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

from dataclasses import dataclass

from ..core.errors import TinyGPTError
from ..tokenizers.chat_format import check_messages
from .jsonl import read_jsonl

SHAPE = '{"prompt": ..., "chosen": ..., "rejected": ...} object (the prompt may be left out)'


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


def read_pairs(spec: str) -> tuple[list[Pair], str]:
    """Every pair in `spec` (a file or a folder), and the sha256 of the files' bytes."""
    docs, sha256 = read_jsonl(spec, "preference pair", SHAPE)
    return [parse_pair(doc, where) for doc, where in docs], sha256


def hold_out(n_pairs: int, val_fraction: float, reported: str) -> tuple[int, list[str]]:
    """How many of the last pairs are held out for validation (a reward model's or DPO's), at least one left
    to train on, and the note when there are too few to hold out any (`reported`: what the evaluations
    then report on the training pairs)."""
    n_val = int(n_pairs * val_fraction)
    notes = []
    if val_fraction and not n_val:
        notes.append(f"{n_pairs} pair(s) are too few to hold out {val_fraction:g} of them: no validation split (the "
                     f"{reported} reported are on the training pairs)")
    return min(n_val, n_pairs - 1), notes


def parse_pair(doc, where: str) -> Pair:
    """One line's JSON document as a Pair; one that is not is a TinyGPTError starting with `where`."""
    try:
        prompt, chosen, rejected = _parts(doc)
    except TinyGPTError as e:
        raise TinyGPTError(f"{where}: {e}") from None
    return Pair(prompt, chosen, rejected, where)


def _parts(doc) -> tuple[str, str | list[dict], str | list[dict]]:
    """(prompt, chosen, rejected) of one JSON document: plain texts, or "" and two whole conversations."""
    if not isinstance(doc, dict) or "chosen" not in doc or "rejected" not in doc:
        raise TinyGPTError(f"expected one {SHAPE} per line")
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
