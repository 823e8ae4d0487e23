"""The Hugging Face Hub: names written hf:NAME, and quiet downloads.

Tokenizers (`--tokenizer hf:gpt2`) and GPT-2 checkpoints (`tinygpt import hf:openai-community/gpt2`)
can come from the Hub. Its client logs a warning for every retry of a failed request; tinygpt
reports a failure in one line of its own instead.
"""

from __future__ import annotations

import contextlib
import logging

PREFIX = "hf:"


def one_line(error: Exception) -> str:
    """The client's error message, which can run over several lines, as one."""
    return " ".join(str(error).split())


def hub_name(spec: str) -> str | None:
    """NAME for 'hf:NAME', else None."""
    return spec[len(PREFIX):] if spec.startswith(PREFIX) else None


@contextlib.contextmanager
def quiet():
    """Silence the Hub client's retry warnings for the duration (errors still raise)."""
    # Its logging module sets the level when first imported, so it is imported before quieting.
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import logging as hub_logging  # noqa: F401
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
