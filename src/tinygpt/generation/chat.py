"""The assistant's reply to a conversation, from a run that has a chat format (`tinygpt chat`, `run.chat`).

The conversation is rendered through the run's chat_template.jinja with the generation prompt
(`<|assistant|>`), and the reply is sampled until the model ends its turn: `<|end|>`, or another
role's token, which would begin a turn that is not the assistant's.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..core.errors import TinyGPTError
from ..core.tokens import CHAT_TOKENS
from ..store.rundir import RunDir
from ..tokenizers.chat_format import ChatFormat


def run_chat_format(run) -> ChatFormat:
    """The chat format of a loaded run, from its chat_template.jinja."""
    rundir = RunDir(run.dir)
    template = rundir.read_chat_template()
    if template is None:
        raise TinyGPTError(f"{run.dir} has no chat template ({rundir.chat_template_path.name}): it was not fine-tuned "
                           f"on conversations; do that first with `tinygpt sft {run.dir} --data FILE.jsonl`")
    return ChatFormat(run.tokenizer, template, origin=str(rundir.chat_template_path))


def reply_pieces(run, messages: list[dict], chat: ChatFormat | None = None, **knobs) -> Iterator[str]:
    """The reply to `messages`, piece by piece as it is sampled, without the whitespace around it.

    knobs: `run.stream`'s (max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,
    use_cache, context); the chat tokens are the stop strings.
    """
    chat = chat or run_chat_format(run)
    prompt = chat.render(messages, add_generation_prompt=True)
    trim = ReplyTrim()
    for piece in run.stream(prompt, stop=CHAT_TOKENS, **knobs):
        piece = trim.push(piece)
        if piece:
            yield piece


class ReplyTrim:
    """A reply's pieces without the whitespace around the reply: `push(piece)` returns what can be shown.

    Leading whitespace is dropped; whitespace is passed on only once more text follows it, so the
    reply never ends in it (what is still held back when the reply ends is simply not shown).
    """

    def __init__(self):
        self.started = False
        self.space = ""

    def push(self, piece: str) -> str:
        if not self.started:
            piece = piece.lstrip()
            self.started = bool(piece)
        text = self.space + piece
        core = text.rstrip()
        self.space = text[len(core) :]
        return core
