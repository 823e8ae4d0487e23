"""Prompts to reply to, for reinforcement learning (`tinygpt rl`): TRL's prompt-only format.

One prompt per line, in either form:

    {"prompt": "what is 2 + 3?"}                                  # one user message
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 3?"}]}

The conversation must end where the assistant's reply begins, so its last message is not the
assistant's. Other keys are ignored (a verifiable reward may keep its answer there; it reads the
prompt's text). `--prompts` is one .jsonl file or a folder of them; a bad line is named by file:line.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import TinyGPTError
from ..tokenizers.chat_format import check_messages
from .jsonl import read_jsonl

SHAPE = '{"prompt": "..."} or {"prompt": [messages]} object'


@dataclass
class Prompt:
    """One prompt: the conversation to reply to, the text a reward function reads, and its line."""

    messages: list[dict]
    text: str  # the prompt as written, or a conversation's last message
    where: str


def read_prompts(spec: str) -> tuple[list[Prompt], str]:
    """Every prompt in `spec` (a file or a folder), and the sha256 of the files' bytes."""
    docs, sha256 = read_jsonl(spec, "prompt", SHAPE)
    return [parse_prompt(doc, where) for doc, where in docs], sha256


def parse_prompt(doc, where: str) -> Prompt:
    """One line's JSON document as a Prompt; anything else is a TinyGPTError starting with `where`."""
    if not isinstance(doc, dict) or "prompt" not in doc:
        raise TinyGPTError(f'{where}: expected an object with "prompt" (a string, or a list of messages)')
    prompt = doc["prompt"]
    try:
        if isinstance(prompt, str):
            if not prompt.strip():
                raise TinyGPTError("the prompt is empty")
            messages = check_messages([{"role": "user", "content": prompt}])
            return Prompt(messages, prompt, where)
        if not isinstance(prompt, list):
            raise TinyGPTError(f"the prompt must be a string or a list of messages, not {type(prompt).__name__}")
        messages = check_messages(prompt)
        if messages[-1]["role"] == "assistant":
            raise TinyGPTError("the prompt ends with an assistant message; end it where the reply begins (with the "
                               "user's message)")
        return Prompt(messages, messages[-1]["content"], where)
    except TinyGPTError as e:
        raise TinyGPTError(f"{where}: {e}") from None
