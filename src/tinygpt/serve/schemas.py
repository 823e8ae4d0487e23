"""The request bodies of the OpenAI API that `tinygpt serve` speaks, as pydantic models.

Fields keep OpenAI's names and ranges; tinygpt adds `top_k` and `repetition_penalty` (Hugging Face's
knobs). A field the server does not know is refused by name rather than ignored, so a misspelled
knob never silently does nothing. Types are strict: "0.5" is not a temperature.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

MAX_STOP = 16  # OpenAI allows 4; the lm-evaluation-harness's tasks may send more (their stops and the EOS)
MAX_PROMPTS = 256  # prompts in one /v1/completions request (the harness batches them as a list)


class _Body(BaseModel):
    # No NaN or Infinity either (JSON has neither, but a lenient client may send them).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StreamOptions(_Body):
    include_usage: bool = False


class Sampling(_Body):
    """The knobs both endpoints share."""

    model: str
    max_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)  # choice j draws from seed + j: within torch's range
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # Sent as 0 by some clients; tinygpt's penalty is repetition_penalty, so only 0 is accepted.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _penalties(cls, value):
        if value != 0.0:
            raise ValueError("tinygpt has no presence or frequency penalty; use repetition_penalty instead "
                             "(Hugging Face's: 1.0 is off, 1.2 makes a token already in the text less likely)")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings")
        if any(s == "" for s in stops):
            raise ValueError("a stop string cannot be empty")
        return stops

    @property
    def stops(self) -> list[str]:
        return list(self.stop or [])


class CompletionRequest(Sampling):
    """A prompt is text or token ids; a list of them is several prompts, answered as choices in order
    (prompt i's choice j has index i * n + j), as OpenAI's API allows."""

    prompt: Annotated[str | list[int] | list[str] | list[list[int]], WithJsonSchema({"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_PROMPTS},
        {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
         "minItems": 1, "maxItems": MAX_PROMPTS}]})]
    logprobs: int | None = Field(None, ge=0, le=20)  # the k likeliest alternatives of each token
    echo: bool = False  # the prompt first, its tokens scored (with logprobs): how the harness measures text

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, prompt):
        """One clear refusal for each wrong shape, rather than pydantic's error for each branch of the union."""
        shapes = "text, a list of token ids, or a list of either"
        if isinstance(prompt, str):
            return prompt
        if not isinstance(prompt, list) or not prompt:
            raise ValueError(f"give a prompt: {shapes}")
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return prompt
        if len(prompt) > MAX_PROMPTS:
            raise ValueError(f"at most {MAX_PROMPTS} prompts in one request")
        for p in prompt:
            ids = isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
            if not (isinstance(p, str) or ids):
                raise ValueError("each prompt of a list must be text or a list of token ids (at least one id)")
        return prompt

    @property
    def prompts(self) -> list[str | list[int]]:
        """Each prompt: text or token ids."""
        if isinstance(self.prompt, str) or isinstance(self.prompt[0], int):
            return [self.prompt]
        return list(self.prompt)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, content):
        """One clear refusal for every content that is not text (an image part, a number...), rather than
        pydantic's error for each branch of the union."""
        if isinstance(content, str):
            return content
        rule = "only text content is supported: a string, or a list of parts {'type': 'text', 'text': '...'}"
        if not isinstance(content, list):
            raise ValueError(f"{rule} ({type(content).__name__} was sent)")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise ValueError(f"{rule} (a part of type {kind!r} was sent)")
            if not isinstance(part.get("text"), str):
                raise ValueError(f"{rule} (a text part without a string 'text')")
        return content

    def as_dict(self) -> dict:
        """The message as tinygpt's chat format takes it ('developer' is OpenAI's new name for 'system')."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)  # the newer name of max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class InsideRequest(_Body):
    """POST /inside (serve/inside.py): a text to look inside the model with."""

    text: str = Field(min_length=1, max_length=1 << 16)
    model: str | None = None
    layer: Annotated[int, Field(ge=1)] | None = None  # only this layer's attention maps (1 = the first block)
    millionths: bool = False  # the weights as whole millionths: half the JSON (what the playground asks for)
