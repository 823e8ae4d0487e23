"""vLLM's tokenizer endpoints, which the lm-evaluation-harness probes to tokenize as the model does.

    GET  /tokenizer_info[?model=NAME]           -> {"eos_token", "bos_token", "model_max_length", ...}
    POST /tokenize    {"prompt": "text"}        -> {"tokens": [ids], "count", "max_model_len"}
    POST /detokenize  {"tokens": [ids]}         -> {"prompt": "text"}

They sit at the server's root, beside /v1 (which is OpenAI's), where vLLM has them. The harness's
`local-completions` client finds them from its base_url and then sends prompts as token ids, so its
context/continuation split and its windows are tinygpt's tokens; without them it would look the
model's name up on the Hugging Face Hub. `model` may be left out when one model is served.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .schemas import _Body


class TokenizeRequest(_Body):
    prompt: str
    model: str | None = None
    add_special_tokens: bool = False  # tinygpt adds none: a text is read as it is written


class DetokenizeRequest(_Body):
    tokens: list[Annotated[int, Field(ge=0)]] = Field(max_length=1 << 16)
    model: str | None = None


def tokenizer_info(run, chat_format) -> dict:
    """What /tokenizer_info says of a run's tokenizer: its boundary tokens (see Tokenizer.boundary_tokens),
    context length and chat template, under transformers' names."""
    bos, eos = run.tokenizer.boundary_tokens(chat=chat_format is not None)
    return {"tokenizer_class": "tinygpt", "kind": run.tokenizer.kind, "vocab_size": run.model_config.vocab_size,
            "bos_token": bos, "eos_token": eos, "pad_token": None, "unk_token": None,
            "model_max_length": run.model_config.block_size,
            "chat_template": chat_format.source if chat_format is not None else None}
