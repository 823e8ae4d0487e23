"""The two tokenizers whose vocabulary is a list built from the training text, id = position:

- `CharTokenizer`: every distinct character is a token (the lecture's tokenizer).
- `WordTokenizer`: whitespace-separated words (the nursery-rhyme tutorial's tokenizer).

Special tokens not already in the list are appended after it. Their tokenizer.json is a small JSON
document with a `"tinygpt_tokenizer"` key naming the kind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.errors import TinyGPTError
from .base import Tokenizer, special_pattern


class ListTokenizer(Tokenizer):
    """A vocabulary list `itos` (id -> token) and its inverse `stoi`; decoding joins tokens with `sep`."""

    sep = ""

    def __init__(self, vocab: list[str], special_tokens: Sequence[str] = ()):
        self.itos = list(vocab)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self._special: dict[str, int] = {}
        self._pattern = None  # cuts text around the special tokens; None while there are none
        self.add_special_tokens(special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        skip = set(self._special.values()) if skip_special_tokens else ()
        return self.sep.join(self.itos[i] for i in ids if i not in skip)

    def token(self, i: int) -> str:
        return self.itos[i]

    def token_to_id(self, token: str) -> int | None:
        return self.stoi.get(token)

    @property
    def special_tokens(self) -> list[str]:
        return sorted(self._special, key=self._special.get)

    def _add_special_token(self, token: str) -> int:
        i = self.stoi.get(token)
        if i is None:
            i = len(self.itos)
            self.itos.append(token)
            self.stoi[token] = i
        if token not in self._special:
            self._special[token] = i
            self._pattern = special_pattern(self._special)
        return i


class CharTokenizer(ListTokenizer):
    """One token per character; the vocabulary `chars` is the sorted set of characters in the corpus."""

    kind = "char"

    def __init__(self, chars: list[str], special_tokens: Sequence[str] = ()):
        self.chars = list(chars)
        super().__init__(self.chars, special_tokens)

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        pieces = self._pattern.split(text) if self._pattern else [text]  # characters, special, characters...
        ids = []
        try:
            for k, piece in enumerate(pieces):
                if k % 2:
                    ids.append(self.stoi[piece])
                else:
                    ids += [self.stoi[c] for c in piece]
        except KeyError:
            raise self._unknown_characters("".join(pieces[0::2])) from None
        return ids

    def _unknown_characters(self, text: str) -> TinyGPTError:
        unknown = sorted({c for c in text if c not in self.stoi})
        shown = ", ".join(repr(c) for c in unknown[:10])
        return TinyGPTError(f"the text has {len(unknown)} character(s) this model never saw in training: {shown}; "
                            "remove them or train on text that contains them")

    def encode_array(self, text: str, dtype=np.int64, chunk: int = 1 << 22) -> np.ndarray:
        """`encode` for a whole corpus, vectorised: (N,) ids of `dtype`, no Python int per character.

        The characters between special tokens are encoded together, and the special tokens' ids
        inserted where they stood.
        """
        if self._pattern is None:
            return self._encode_characters(text, dtype, chunk)
        pieces = self._pattern.split(text)
        ids = self._encode_characters("".join(pieces[0::2]), dtype, chunk)  # (N - S,)
        at = np.cumsum([len(p) for p in pieces[0:-1:2]], dtype=np.int64)  # (S,) where each special token stood
        return np.insert(ids, at, [self.stoi[s] for s in pieces[1::2]])  # (N,)

    def _encode_characters(self, text: str, dtype, chunk: int) -> np.ndarray:
        """(N,) ids of `text`'s characters, each found by binary search among the vocabulary's code
        points. The text goes through in chunks of `chunk` characters, so the temporaries stay near
        100 MB whatever its size: 100 MB of text takes a few seconds."""
        points = np.array([ord(c) for c in self.chars], dtype=np.uint32)  # (V,)
        order = np.argsort(points, kind="stable")  # (V,) the identity for a trained (sorted) vocabulary
        vocab = points[order]  # (V,) ascending
        out = np.empty(len(text), dtype=dtype)  # (N,)
        for start in range(0, len(text), chunk):
            piece = text[start : start + chunk]
            wanted = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)  # (n,) one code point per char
            at = np.minimum(np.searchsorted(vocab, wanted), len(vocab) - 1)  # (n,)
            if (vocab[at] != wanted).any():
                raise self._unknown_characters(piece)
            out[start : start + len(piece)] = order[at]
        return out

    def start_ids(self) -> list[int]:
        return [self.stoi.get("\n", 0)]

    def to_json(self) -> dict:
        return {"tinygpt_tokenizer": "char", "vocab": self.chars, "special_tokens": self.special_tokens}


MAX_WORDS_SHOWN = 200  # in the unknown-word error


class WordTokenizer(ListTokenizer):
    """One token per whitespace-separated word; decoding joins words with single spaces.

    `end_token` (e.g. "<END>") is the tutorial's sentence-end marker. It is an ordinary word of the
    vocabulary; `mark_sentence_ends` puts it after every line of a corpus before training. A special
    token is a word too: it is recognised only where whitespace surrounds it.
    """

    kind = "word"
    sep = " "

    def __init__(self, words: list[str], end_token: str = "", special_tokens: Sequence[str] = ()):
        self.words = list(words)
        self.end_token = end_token
        super().__init__(self.words, special_tokens)

    @classmethod
    def train(cls, text: str, end_token: str = "") -> "WordTokenizer":
        return cls(sorted(set(text.split())), end_token)

    def encode(self, text: str) -> list[int]:
        words = text.split()
        unknown = [w for w in dict.fromkeys(words) if w not in self.stoi]
        if unknown:
            # A large vocabulary would make the one-line error unreadable; show its start and say how many.
            shown = " ".join(self.itos[:MAX_WORDS_SHOWN])
            more = f" ... ({len(self.itos) - MAX_WORDS_SHOWN} more)" if len(self.itos) > MAX_WORDS_SHOWN else ""
            raise TinyGPTError(
                f"unknown word(s) {', '.join(repr(w) for w in unknown[:10])}; "
                f"this model knows only: {shown}{more}")
        return [self.stoi[w] for w in words]

    def start_ids(self) -> list[int]:
        if self.end_token and self.end_token in self.stoi:
            return [self.stoi[self.end_token]]
        return [0]

    def to_json(self) -> dict:
        return {"tinygpt_tokenizer": "word", "vocab": self.words, "end_token": self.end_token,
                "special_tokens": self.special_tokens}


def mark_sentence_ends(text: str, end_token: str) -> str:
    """The tutorial's corpus convention: ' <END>' after each non-empty line, lines joined by spaces."""
    return " ".join(f"{line.strip()} {end_token}" for line in text.splitlines() if line.strip())
