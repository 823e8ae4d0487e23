"""Tokenizers: text <-> lists of integer ids.

Three kinds, one interface (`encode`, `decode`, `vocab_size`, `token`, `save`):

- `CharTokenizer`: every distinct character is a token (the lecture's tokenizer).
- `WordTokenizer`: whitespace-separated words (the nursery-rhyme tutorial's tokenizer).
- `BPETokenizer`: byte-level BPE trained with Hugging Face `tokenizers`; it can encode any text.

Every run directory holds a `tokenizer.json`. For BPE it is the Hugging Face file itself; for our
own kinds it is a small JSON document with a `"tinygpt_tokenizer"` key, so `load_tokenizer` can tell
them apart and rebuild exactly the same vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import TinyGPTError


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of characters in the corpus."""

    kind = "char"

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            shown = ", ".join(repr(c) for c in unknown[:10])
            raise TinyGPTError(
                f"the text has {len(unknown)} character(s) this model never saw in training: {shown}; "
                "remove them or train on text that contains them") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    def token(self, i: int) -> str:
        return self.chars[i]

    def to_json(self) -> dict:
        return {"tinygpt_tokenizer": "char", "vocab": self.chars}


MAX_WORDS_SHOWN = 200  # in the unknown-word error


class WordTokenizer:
    """One token per whitespace-separated word; decoding joins words with single spaces.

    `end_token` (e.g. "<END>") is the tutorial's sentence-end marker. It is an ordinary word of the
    vocabulary; `mark_sentence_ends` puts it after every line of a corpus before training.
    """

    kind = "word"

    def __init__(self, words: list[str], end_token: str = ""):
        self.words = list(words)
        self.end_token = end_token
        self.stoi = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def train(cls, text: str, end_token: str = "") -> "WordTokenizer":
        return cls(sorted(set(text.split())), end_token)

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        words = text.split()
        unknown = [w for w in dict.fromkeys(words) if w not in self.stoi]
        if unknown:
            # A large vocabulary would make the one-line error unreadable; show its start and say how many.
            shown = " ".join(self.words[:MAX_WORDS_SHOWN])
            more = f" ... ({len(self.words) - MAX_WORDS_SHOWN} more)" if len(self.words) > MAX_WORDS_SHOWN else ""
            raise TinyGPTError(
                f"unknown word(s) {', '.join(repr(w) for w in unknown[:10])}; "
                f"this model knows only: {shown}{more}")
        return [self.stoi[w] for w in words]

    def decode(self, ids) -> str:
        return " ".join(self.words[i] for i in ids)

    def token(self, i: int) -> str:
        return self.words[i]

    def to_json(self) -> dict:
        return {"tinygpt_tokenizer": "word", "vocab": self.words, "end_token": self.end_token}


def mark_sentence_ends(text: str, end_token: str) -> str:
    """The tutorial's corpus convention: ' <END>' after each non-empty line, lines joined by spaces."""
    return " ".join(f"{line.strip()} {end_token}" for line in text.splitlines() if line.strip())


class BPETokenizer:
    """Byte-level BPE (as in GPT-2) trained on the corpus with Hugging Face `tokenizers`."""

    kind = "bpe"

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
            show_progress=False,
        )
        # Train on lines so that a huge single-line file does not become one giant "sentence".
        tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def decode(self, ids) -> str:
        return self.hf.decode(list(ids))

    def token(self, i: int) -> str:
        # Show the bytes the token stands for, not the byte-level alphabet's stand-in characters.
        return self.hf.decode([i])

    def to_json(self) -> dict:
        return json.loads(self.hf.to_str())


Tokenizer = CharTokenizer | WordTokenizer | BPETokenizer


def train_tokenizer(kind: str, text: str, vocab_size: int = 512, end_token: str = "") -> Tokenizer:
    """A tokenizer of `kind` ('char', 'word' or 'bpe') built from the training text."""
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "word":
        return WordTokenizer.train(text, end_token)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    raise TinyGPTError(f"unknown tokenizer {kind!r}; choose char, word or bpe")


def tokenizer_from_json(doc: dict) -> Tokenizer:
    """Rebuild a tokenizer from its JSON document: ours (char, word) or a Hugging Face BPE file."""
    kind = doc.get("tinygpt_tokenizer")
    if kind == "char":
        return CharTokenizer(doc["vocab"])
    if kind == "word":
        return WordTokenizer(doc["vocab"], doc.get("end_token", ""))
    from tokenizers import Tokenizer as HFTokenizer

    return BPETokenizer(HFTokenizer.from_str(json.dumps(doc)))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer saved in a run's tokenizer.json, with a clear error if it is missing or damaged."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return tokenizer_from_json(doc)
    except FileNotFoundError:
        raise TinyGPTError(f"{path} is missing; is this a tinygpt run directory?") from None
    except Exception as e:  # a corrupted file can fail in json or inside tokenizers
        raise TinyGPTError(f"{path} is not a valid tokenizer file ({type(e).__name__}: {e})") from None
