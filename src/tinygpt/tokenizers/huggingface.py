"""A Hugging Face `tokenizers` model: byte-level BPE trained here (as in GPT-2), or any pretrained one
(GPT-2's, a BERT WordPiece, a SentencePiece Unigram converted by `tokenizers`...).

Its tokenizer.json is Hugging Face's own file; special tokens go into it through the library's
added tokens, so any program that reads such files sees the same ids.
"""

from __future__ import annotations

import json

import numpy as np

from .base import Tokenizer


class HFTokenizer(Tokenizer):
    """`kind` is its model's family in lower case: "bpe", "wordpiece", "unigram" or "wordlevel".

    Special tokens a pretrained tokenizer adds around each input (BERT's [CLS] ... [SEP]) are left
    out: the corpus and the prompts are continuous text, not separate sentences. A special token
    written in the text is still its one id.
    """

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.kind = type(hf_tokenizer.model).__name__.lower()

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "HFTokenizer":
        from tokenizers import Tokenizer as HFModel
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = HFModel(models.BPE())
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
        SentencePiece "▁") may differ at the cuts. No special token spans a cut: none holds a space.
        """
        pieces = list(_cut_at_line_starts(text, piece))
        out = []
        for i in range(0, len(pieces), batch):
            for enc in self.hf.encode_batch(pieces[i : i + batch], add_special_tokens=False):
                out.append(np.asarray(enc.ids, dtype=dtype))
        return np.concatenate(out) if out else np.empty(0, dtype=dtype)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token(self, i: int) -> str:
        # Show the bytes the token stands for, not the byte-level alphabet's stand-in characters.
        return self.hf.decode([i], skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        """The id of the vocabulary entry `token`, spelled as the file spells it: byte-level BPE
        writes a leading space as 'Ġ' ('Ġlamb')."""
        return self.hf.token_to_id(token)

    @property
    def special_tokens(self) -> list[str]:
        added = self.hf.get_added_tokens_decoder()  # id -> AddedToken
        return [added[i].content for i in sorted(added) if added[i].special]

    def _add_special_token(self, token: str) -> int:
        from tokenizers import AddedToken

        if token not in self.special_tokens:
            # normalized=False: matched in the text as written, before a lower-casing normaliser.
            self.hf.add_special_tokens([AddedToken(token, special=True, normalized=False)])
        return self.hf.token_to_id(token)

    def start_ids(self) -> list[int]:
        return self.encode("\n") or [0]

    def to_json(self) -> dict:
        return json.loads(self.hf.to_str())


def cuts_cleanly(text: str, newline: int) -> bool:
    """Whether `text` may be cut just after the line break at index `newline`: a visible character on
    each side, where byte-level BPE's pre-tokenizer cuts too, so pieces encode as the whole does."""
    return 0 < newline < len(text) - 1 and not text[newline - 1].isspace() and not text[newline + 1].isspace()


def _cut_at_line_starts(text: str, size: int):
    """Pieces of `text` of about `size` characters (longer where no cut fits), cut only where
    `cuts_cleanly` allows."""
    start = 0
    while len(text) - start > size:
        cut = text.find("\n", start + size)
        while cut != -1 and not cuts_cleanly(text, cut):
            cut = text.find("\n", cut + 1)
        if cut == -1:
            break
        yield text[start : cut + 1]
        start = cut + 1
    yield text[start:]
