"""What every tokenizer can do: text <-> ids, the vocabulary, special tokens, a JSON document.

Special tokens (a chat format's `<|user|>`, `<|end|>`) are whole tokens that text names literally:
wherever a text contains one's exact string, it becomes that one id, and decoding writes the string
back (or drops it, with `skip_special_tokens`). Adding one appends it after the vocabulary, so
every id a model was trained on keeps its meaning.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

import numpy as np

from ..core.errors import TinyGPTError
from ..core.tokens import END


class Tokenizer(ABC):
    """Text <-> lists of integer ids, over a vocabulary of `vocab_size` tokens."""

    kind: str  # "char", "word", or a Hugging Face model's family: "bpe", "wordpiece", "unigram"...

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The ids of `text`; text the vocabulary cannot represent raises TinyGPTError naming it."""

    def encode_array(self, text: str, dtype=np.int64) -> np.ndarray:
        """`encode` for a whole corpus: (N,) ids of `dtype`."""
        return np.asarray(self.encode(text), dtype=dtype)

    @abstractmethod
    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """The text of `ids`; special tokens are written as their strings unless skipped."""

    @abstractmethod
    def token(self, i: int) -> str:
        """The text token `i` stands for."""

    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """The id of the vocabulary entry `token`, or None if there is none."""

    @property
    @abstractmethod
    def special_tokens(self) -> list[str]:
        """The special tokens, in id order."""

    def add_special_tokens(self, tokens: list[str]) -> list[int]:
        """Make `tokens` special and return their ids. A new one is appended at the end of the
        vocabulary; one already in it (special or not) keeps its id, so no existing id changes."""
        if isinstance(tokens, str):
            raise TinyGPTError(f"add_special_tokens takes a list of strings, got the string {tokens!r}; "
                               f"write [{tokens!r}]")
        for token in tokens:
            if not isinstance(token, str) or not token:
                raise TinyGPTError(f"a special token must be a non-empty string, got {token!r}")
            if any(c.isspace() for c in token):
                raise TinyGPTError(f"the special token {token!r} contains whitespace; use one without, "
                                   "e.g. '<|end|>'")
        return [self._add_special_token(token) for token in tokens]

    @abstractmethod
    def _add_special_token(self, token: str) -> int:
        """Make one valid `token` special; its id."""

    def start_ids(self) -> list[int]:
        """The ids a sample starts from when its prompt is empty."""
        return [0]

    def boundary_tokens(self, chat: bool = False) -> tuple[str | None, str | None]:
        """(bos, eos) as other tools name them. bos: the token an empty prompt starts from (when it is one
        token: a line break, the word model's sentence end). eos: a chat model's `<|end|>`; otherwise bos
        again, since a text starts after a line break and so a line break is where one ends. The
        lm-evaluation-harness reads a document after bos (its prefix token) and stops generating at eos."""
        start = self.start_ids()
        bos = self.token(start[0]) if len(start) == 1 else None
        eos = END if chat and END in self.special_tokens else bos
        return bos, eos

    @abstractmethod
    def to_json(self) -> dict:
        """The document saved as a run's tokenizer.json, from which `tokenizer_from_json` rebuilds it."""


def special_pattern(tokens) -> re.Pattern | None:
    """A pattern whose `split` cuts a text around each special token, kept as its own piece: the
    pieces alternate ordinary text, special token, ordinary text... Of two tokens that start at the
    same place ('<s>' and '<s>>'), the longer one wins."""
    if not tokens:
        return None
    return re.compile("(" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) + ")")
