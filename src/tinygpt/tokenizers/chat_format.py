"""The chat format: four special tokens and a Jinja chat template in Hugging Face's convention.

A conversation is a list of messages `{"role": "system" | "user" | "assistant", "content": text}`.
The template writes each message as its role's token, its text and `<|end|>`:

    <|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>Hello!<|end|>

Asked for a generation prompt, it ends with `<|assistant|>`: the model writes the reply and ends it
with `<|end|>`. The word tokenizer knows a special token only as a whole word, so for it spaces
surround every token:

    <|user|> mary had <|end|> <|assistant|> a little lamb <|end|>

A run keeps its template as `chat_template.jinja`, the Jinja source any Hugging Face tool reads
(`messages`, `add_generation_prompt`); `ChatFormat` renders through it, and the ids a model trains
on are exactly `tokenizer.encode(template.render(messages))`.
"""

from __future__ import annotations

from string import Template

from ..core.errors import TinyGPTError
from ..core.tokens import CHAT_TOKENS, END, ROLE_TOKENS, ROLES

# $sep is filled in once, when a run gets its template: the saved file is plain Jinja.
_TEMPLATE = Template("""\
{#- tinygpt's chat format: each message is its role's token, its text, then <|end|>.
    With add_generation_prompt the text ends with <|assistant|>, for the model to write the reply. -#}
{%- for message in messages -%}
    {%- if message['role'] not in ['system', 'user', 'assistant'] -%}
        {{- raise_exception("unknown role '" ~ message['role'] ~ "'; use system, user or assistant") -}}
    {%- endif -%}
    {{- '<|' ~ message['role'] ~ '|>$sep' ~ message['content'] ~ '$sep<|end|>$sep' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>$sep' -}}
{%- endif -%}
""")


def default_template(tokenizer) -> str:
    """The Jinja source of the chat template for `tokenizer`'s kind (spaces around tokens for words)."""
    return _TEMPLATE.substitute(sep=" " if tokenizer.kind == "word" else "")


def check_messages(messages) -> list[dict]:
    """`messages` if it is a conversation the format can write; otherwise the one-line error naming
    the message at fault (1-based) and the fix."""
    if not isinstance(messages, list) or not messages:
        raise TinyGPTError("a conversation must be a non-empty list of {\"role\": ..., \"content\": ...} messages")
    for n, message in enumerate(messages, 1):
        if not isinstance(message, dict) or "role" not in message:
            raise TinyGPTError(f"message {n} is not an object with a role and a content")
        role = message["role"]
        if role not in ROLES:
            raise TinyGPTError(f"message {n} has the unknown role {role!r}; use system, user or assistant")
        content = message.get("content")
        if not isinstance(content, str):
            raise TinyGPTError(f"message {n} ({role}) has no text: its content must be a string")
        if not content.strip():
            raise TinyGPTError(f"message {n} ({role}) is empty; give it some text or leave it out")
        for token in CHAT_TOKENS:
            if token in content:
                raise TinyGPTError(f"message {n} ({role}) contains the chat token {token}; remove it "
                                   "(the chat format reserves it)")
    return messages


def _raise_exception(message: str):
    raise TinyGPTError(f"the chat template refused the conversation: {message}")


class ChatFormat:
    """A tokenizer that has the chat tokens, and the template that renders conversations for it.

        chat = ChatFormat.new(tokenizer)             # adds the tokens, takes the default template
        text = chat.render(messages, add_generation_prompt=True)
        ids, trained = chat.encode(messages)         # trained[i]: ids[i] is an assistant token to learn
    """

    def __init__(self, tokenizer, template: str, origin: str = "the chat template"):
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        missing = [t for t in CHAT_TOKENS if t not in tokenizer.special_tokens]
        if missing:
            raise TinyGPTError(f"the tokenizer has no chat token(s) {', '.join(missing)}; make the format with "
                               "ChatFormat.new(tokenizer), which adds them")
        self.tokenizer = tokenizer
        self.source = template
        # Sandboxed, as Hugging Face renders templates: a template read from a run directory cannot run code.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        try:
            self._template = env.from_string(template)
        except TemplateError as e:
            raise TinyGPTError(f"{origin} is not a valid Jinja template ({e}); fix it or delete it") from None
        self.origin = origin
        self.role_ids = {role: tokenizer.token_to_id(token) for role, token in ROLE_TOKENS.items()}
        self.end_id = tokenizer.token_to_id(END)

    @classmethod
    def new(cls, tokenizer, template: str | None = None, origin: str = "the chat template") -> "ChatFormat":
        """Add the chat tokens to `tokenizer` (after its vocabulary; ids it has keep their meaning) and
        render with `template`, or the default template for its kind."""
        tokenizer.add_special_tokens(CHAT_TOKENS)
        return cls(tokenizer, template if template is not None else default_template(tokenizer), origin)

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The text of `messages`, through the template."""
        from jinja2 import TemplateError

        check_messages(messages)
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt)
        except TemplateError as e:
            raise TinyGPTError(f"{self.origin} failed to render a conversation ({e}); fix the template") from None

    def encode(self, messages: list[dict], train: list[bool] | None = None) -> tuple[list[int], list[bool]]:
        """The ids of the rendered conversation, and for each id whether it is a target to learn.

        Targets are every token of an assistant message after its `<|assistant|>`, its `<|end|>`
        included; `train` (one flag per message, default: every assistant message) picks which
        assistant messages count. The rest (system and user turns, role tokens) is context.
        """
        ids = self.tokenizer.encode(self.render(messages))
        replies = [m for m in messages if m["role"] == "assistant"]
        train = [m["role"] == "assistant" for m in messages] if train is None else train
        learn = [flag for m, flag in zip(messages, train) if m["role"] == "assistant"]
        assistant, trained, inside, k = self.role_ids["assistant"], [], False, 0
        for i in ids:
            if i == assistant:
                inside, k = k < len(learn) and learn[k], k + 1
                trained.append(False)
                continue
            trained.append(inside)
            if i == self.end_id:
                inside = False
        if k != len(replies) or inside:
            raise TinyGPTError(f"{self.origin} does not write each assistant message as <|assistant|> ... <|end|> "
                               "(so its reply tokens cannot be found); use the default template")
        return ids, trained

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The ids a reply is generated from: the conversation so far, then `<|assistant|>`."""
        return self.tokenizer.encode(self.render(messages, add_generation_prompt=True))
