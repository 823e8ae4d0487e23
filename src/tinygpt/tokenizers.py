"""Tokenizers: text <-> lists of integer ids.

Three kinds built from the training text, one interface (`encode`, `decode`, `vocab_size`, `token`,
`to_json`):

- `CharTokenizer`: every distinct character is a token (the lecture's tokenizer).
- `WordTokenizer`: whitespace-separated words (the nursery-rhyme tutorial's tokenizer).
- `HFTokenizer` trained as byte-level BPE with Hugging Face `tokenizers`; it can encode any text.

and any tokenizer made elsewhere: a Hugging Face `tokenizer.json` file (GPT-2's, a BERT WordPiece,
a SentencePiece Unigram converted by `tokenizers`...), one fetched from the Hub as `hf:NAME`, or
another tinygpt run's `tokenizer.json` (`pretrained_tokenizer`).

Every run directory holds a `tokenizer.json`. For Hugging Face tokenizers it is their own file; for
our own kinds it is a small JSON document with a `"tinygpt_tokenizer"` key, so `load_tokenizer` can
tell them apart and rebuild exactly the same vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import TinyGPTError
from .hub import hub_name, one_line, quiet


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

    def encode_array(self, text: str, dtype=np.int64, chunk: int = 1 << 22) -> np.ndarray:
        """`encode` for a whole corpus, vectorised: (N,) ids of `dtype`, no Python int per character.

        Characters sort by code point, so each one's id is its position among the vocabulary's code
        points (a binary search). The text goes through in chunks of `chunk` characters, so the
        temporaries stay near 100 MB whatever its size: 100 MB of text takes a few seconds.
        """
        vocab = np.array([ord(c) for c in self.chars], dtype=np.uint32)  # (V,) ascending
        out = np.empty(len(text), dtype=dtype)  # (N,)
        for start in range(0, len(text), chunk):
            piece = text[start : start + chunk]
            points = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)  # (n,) one code point per char
            ids = np.minimum(np.searchsorted(vocab, points), len(vocab) - 1)  # (n,)
            if (vocab[ids] != points).any():
                self.encode(piece)  # raises the error naming the unknown characters
            out[start : start + len(piece)] = ids
        return out

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


class HFTokenizer:
    """A Hugging Face `tokenizers` model: byte-level BPE trained here (as in GPT-2), or a pretrained one.

    `kind` is its model's family in lower case: "bpe", "wordpiece", "unigram" or "wordlevel".
    Special tokens a pretrained tokenizer adds around each input (BERT's [CLS] ... [SEP]) are left
    out: the corpus and the prompts are continuous text, not separate sentences.
    """

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.kind = type(hf_tokenizer.model).__name__.lower()

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "HFTokenizer":
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
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_array(self, text: str, dtype=np.int64, piece: int = 1 << 18, batch: int = 8) -> np.ndarray:
        """`encode` for a whole corpus: (N,) ids of `dtype`, in pieces encoded in parallel.

        One `encode` of a big text keeps every token's string and offsets: 3.4 GB for 20 MB of text.
        Pieces of about `piece` characters keep only their ids. They are cut between a line break
        and a line that starts with a visible character, after a visible one ("...:\nBefore"),
        where byte-level BPE's pre-tokenizer cuts too, so byte-level BPE (ours, GPT-2's) gives the
        ids of one whole `encode`; a pretrained tokenizer that marks the start of its input (the
        SentencePiece "▁") may differ at the cuts.
        """
        pieces = list(_cut_at_line_starts(text, piece))
        out = []
        for i in range(0, len(pieces), batch):
            for enc in self.hf.encode_batch(pieces[i : i + batch], add_special_tokens=False):
                out.append(np.asarray(enc.ids, dtype=dtype))
        return np.concatenate(out) if out else np.empty(0, dtype=dtype)

    def decode(self, ids) -> str:
        return self.hf.decode(list(ids))

    def token(self, i: int) -> str:
        # Show the bytes the token stands for, not the byte-level alphabet's stand-in characters.
        return self.hf.decode([i])

    def to_json(self) -> dict:
        return json.loads(self.hf.to_str())


def _cut_at_line_starts(text: str, size: int):
    """Pieces of `text` of about `size` characters (longer where no cut fits), cut only right after
    a line break that has a visible character on each side."""
    start = 0
    while len(text) - start > size:
        cut = text.find("\n", start + size)
        while cut != -1 and not (cut + 1 < len(text) and not text[cut - 1].isspace() and not text[cut + 1].isspace()):
            cut = text.find("\n", cut + 1)
        if cut == -1:
            break
        yield text[start : cut + 1]
        start = cut + 1
    yield text[start:]


Tokenizer = CharTokenizer | WordTokenizer | HFTokenizer


def train_tokenizer(kind: str, text: str, vocab_size: int = 512, end_token: str = "") -> Tokenizer:
    """The tokenizer `kind` names: built from the training text ('char', 'word' or 'bpe' with
    `vocab_size` tokens), or pretrained (a tokenizer.json path or hf:NAME; see pretrained_tokenizer)."""
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "word":
        return WordTokenizer.train(text, end_token)
    if kind == "bpe":
        return HFTokenizer.train(text, vocab_size)
    return pretrained_tokenizer(kind)


def pretrained_tokenizer(spec: str) -> Tokenizer:
    """A tokenizer made elsewhere: `hf:NAME` from the Hugging Face Hub (e.g. hf:gpt2), or a path to a
    tokenizer.json (a Hugging Face file, or another tinygpt run's)."""
    name = hub_name(spec)
    if name is not None:
        from tokenizers import Tokenizer as HFModel

        try:
            with quiet():
                return HFTokenizer(HFModel.from_pretrained(name))
        except Exception as e:  # no network, an unknown name, a gated repository...
            raise TinyGPTError(f"cannot get the tokenizer {name!r} from the Hugging Face Hub ({type(e).__name__}: "
                               f"{one_line(e)}); check the name and the connection, or pass the path of its "
                               "tokenizer.json") from None
    path = Path(spec)
    if not path.is_file():
        raise TinyGPTError(f"unknown tokenizer {spec!r}: use char, word or bpe (trained on your text), the path "
                           "of a tokenizer.json, or hf:NAME for one from the Hugging Face Hub")
    return load_tokenizer(path)


def tokenizer_from_json(doc: dict) -> Tokenizer:
    """Rebuild a tokenizer from its JSON document: ours (char, word) or a Hugging Face file."""
    kind = doc.get("tinygpt_tokenizer")
    if kind == "char":
        return CharTokenizer(doc["vocab"])
    if kind == "word":
        return WordTokenizer(doc["vocab"], doc.get("end_token", ""))
    from tokenizers import Tokenizer as HFModel

    return HFTokenizer(HFModel.from_str(json.dumps(doc)))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer in a tokenizer.json (a run's, or a Hugging Face file), with a clear error if it is
    missing or damaged."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return tokenizer_from_json(doc)
    except FileNotFoundError:
        raise TinyGPTError(f"{path} is missing; is this a tinygpt run directory?") from None
    except Exception as e:  # a corrupted file can fail in json or inside tokenizers
        raise TinyGPTError(f"{path} is not a valid tokenizer file ({type(e).__name__}: {e})") from None
