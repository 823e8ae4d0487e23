"""Conversations on disk: JSON Lines in the formats users already have (TRL's and OpenAI's).

One conversation per line, in either form:

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", ...}, {"role": "assistant", ...}]}
    {"prompt": "...", "completion": "..."}          # or prompt/completion as lists of messages

A plain prompt is one user message and a plain completion one assistant message. In the messages
form every assistant message is learnt; in the prompt-completion form only the completion is (an
assistant turn inside the prompt, a few-shot example, is context). Other keys are ignored.

`--data` is one .jsonl file or a folder: every .jsonl file under it, sorted by path. Blank lines
are skipped. A bad line is one error naming its file and line number.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import TinyGPTError
from ..tokenizers.chat_format import check_messages
from .jsonl import read_jsonl


@dataclass
class Conversation:
    """The messages of one line, which of them are learnt, and where the line is ("file:line")."""

    messages: list[dict]
    train: list[bool]
    where: str


SHAPE = '{"messages": [...]} or {"prompt": ..., "completion": ...} object'


def read_conversations(spec: str) -> tuple[list[Conversation], str]:
    """Every conversation in `spec` (a file or a folder), and the sha256 of the files' bytes."""
    docs, sha256 = read_jsonl(spec, "conversation", SHAPE)
    return [parse_conversation(doc, where) for doc, where in docs], sha256


def parse_conversation(doc, where: str) -> Conversation:
    """One line's JSON document as a Conversation; one that is not is a TinyGPTError starting with `where`."""
    try:
        messages, train = _messages(doc)
    except TinyGPTError as e:
        raise TinyGPTError(f"{where}: {e}") from None
    if not any(m["role"] == "assistant" for m in messages):
        raise TinyGPTError(f"{where}: the conversation has no assistant message, so nothing to learn; add the "
                           "reply or drop the line")
    return Conversation(messages, train, where)


def _messages(doc) -> tuple[list, list[bool]]:
    """The messages of one JSON document and, per message, whether it is learnt."""
    if isinstance(doc, dict) and "messages" in doc:
        messages = check_messages(doc["messages"])
        return messages, [m["role"] == "assistant" for m in messages]
    if isinstance(doc, dict) and "prompt" in doc and "completion" in doc:
        prompt = _part(doc["prompt"], "user", "prompt")
        completion = _part(doc["completion"], "assistant", "completion")
        bad = [m.get("role") for m in completion if isinstance(m, dict) and m.get("role") != "assistant"]
        if bad:
            raise TinyGPTError(f"the completion holds a {bad[0]!r} message; a completion is the assistant's reply")
        return check_messages(prompt + completion), [False] * len(prompt) + [True] * len(completion)
    raise TinyGPTError('expected an object with "messages", or with "prompt" and "completion"')


def _part(value, role: str, name: str) -> list:
    """A prompt or completion: a string (one message of `role`) or a non-empty list of messages."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and value:
        return value
    raise TinyGPTError(f"the {name} must be a string or a non-empty list of messages")
