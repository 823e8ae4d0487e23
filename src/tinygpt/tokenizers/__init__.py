"""Tokenizers: text <-> lists of integer ids, one interface (`base.Tokenizer`) for every kind.

Three kinds built from the training text:

- `CharTokenizer`: every distinct character is a token (the lecture's tokenizer).
- `WordTokenizer`: whitespace-separated words (the nursery-rhyme tutorial's tokenizer).
- `HFTokenizer` trained as byte-level BPE with Hugging Face `tokenizers`; it can encode any text.

and any tokenizer made elsewhere: a Hugging Face `tokenizer.json` file, one fetched from the Hub as
`hf:NAME`, or another tinygpt run's `tokenizer.json` (`pretrained_tokenizer`).

Every run directory holds a `tokenizer.json`. For Hugging Face tokenizers it is their own file; for
our own kinds it is a small JSON document with a `"tinygpt_tokenizer"` key, so `load_tokenizer` can
tell them apart and rebuild exactly the same vocabulary, special tokens included.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import TinyGPTError
from ..core.hub import hub_name, one_line, quiet
from .base import Tokenizer
from .huggingface import HFTokenizer
from .simple import MAX_WORDS_SHOWN, CharTokenizer, WordTokenizer, mark_sentence_ends

__all__ = ["MAX_WORDS_SHOWN", "CharTokenizer", "HFTokenizer", "Tokenizer", "WordTokenizer", "bpe_shortfall",
           "load_tokenizer",
           "mark_sentence_ends", "pretrained_tokenizer", "tokenizer_from_json", "train_tokenizer"]


def bpe_shortfall(asked: int, got: int) -> str:
    """Why a BPE tokenizer trained for `asked` tokens has fewer (''): its merges never join two words, so
    once every word of the text is one token nothing is left to merge."""
    if got >= asked:
        return ""
    return (f"the BPE tokenizer has {got:,} tokens, not the {asked:,} asked for: by then every word of the text "
            "is one token and nothing is left to merge (a longer or more varied text gives more)")


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
    """Rebuild a tokenizer from its JSON document: ours (char, word) or a Hugging Face file. A document
    written before special tokens existed has none, and every id it had."""
    kind = doc.get("tinygpt_tokenizer")
    if kind == "char":
        return CharTokenizer(doc["vocab"], doc.get("special_tokens", []))
    if kind == "word":
        return WordTokenizer(doc["vocab"], doc.get("end_token", ""), doc.get("special_tokens", []))
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
