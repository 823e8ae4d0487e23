"""A run's tokenizer as Hugging Face files: `tokenizer.json` (the `tokenizers` format) and
`tokenizer_config.json`, encoding and decoding exactly as tinygpt does.

- char: a WordLevel model whose words are single characters, after a pre-tokenizer that isolates
  every character (newlines and other whitespace included); the Fuse decoder joins them back.
- word: a WordLevel model over the words, after a pre-tokenizer that removes runs of whitespace, the
  characters `str.split()` splits at and no others; without a decoder, `tokenizers` joins tokens
  with single spaces, as `WordTokenizer.decode` does.
- BPE and pretrained tokenizers are Hugging Face files already and keep their own, except for a
  post-processor that adds tokens around every input (BERT's [CLS] ... [SEP]): tinygpt reads text
  as one stream without them, so the export drops it and `tokenizer(text)` gives tinygpt's ids.

Special tokens become added tokens, matched in the text as written (before any normaliser). The
word tokenizer knows one only as a whole word, so there it must not touch a letter or digit on
either side (`single_word`). The decoding settings that would change the text are off
(`clean_up_tokenization_spaces`).

BOS and EOS (`bos_token`, `eos_token` in tokenizer_config.json) are what a client that scores text
puts before it (lm-evaluation-harness takes the BOS id, else the EOS id). They follow tinygpt's one
rule (`Tokenizer.boundary_tokens`): tinygpt has no BOS token, but a sample with an empty prompt starts
from `tokenizer.start_ids()`, a line break (char, BPE) or the sentence-end word (word; `<END>` in the
tutorial), so when that is one id it is the BOS. The EOS is the chat format's end token `<|end|>` for
a run that has one, otherwise that same start token: a text starts after a line break, so a line
break is where one ends. Both are set, because a client that reads `bos_token_id or eos_token_id`
skips a BOS of id 0 (the char vocabulary's line break).

transformers makes any BOS or EOS that is not already an added token a special one, which
`decode(..., skip_special_tokens=True)` would drop: a line break dropped from every text. So an
ordinary token named BOS or EOS is written as a non-special added token (`marks`), keeping its id and
its text, and tokenizer_config.json's empty `added_tokens_decoder` keeps transformers 5 from adding
tokenizer.json's added tokens a second time (which makes the named ones special). An added token is
matched in the text before the tokenizer's own splitting. That changes nothing for a character, nor
for a word with whitespace around it; it does for a word glued to punctuation ('a,' in a vocabulary
that also holds 'a', as for the special tokens), and for byte-level BPE, whose line break is spelt
'Ċ': the letter Ċ (U+010A, Maltese) written in a text becomes a line break.
"""

from __future__ import annotations

import json

# str.isspace() is true for 29 characters, all below U+3001 (checked over every code point).
PYTHON_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def hf_tokenizer(tokenizer, marks=()):
    """The `tokenizers.Tokenizer` that encodes and decodes as `tokenizer` (a tinygpt tokenizer) does;
    `marks`: ids to be named BOS/EOS, which stay ordinary tokens (see the module docstring)."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFModel

    if tokenizer.kind not in ("char", "word"):  # a Hugging Face tokenizer: its own file
        hf = HFModel.from_str(json.dumps(tokenizer.to_json()))
        if hf.post_processor is not None and hf.post_processor.num_special_tokens_to_add(False):
            hf.post_processor = None
        add_marks(hf, marks, single_word=False)
        return hf
    vocab = {tokenizer.token(i): i for i in range(tokenizer.vocab_size)}
    hf = HFModel(models.WordLevel(vocab, unk_token=None))  # an unknown character or word is an error, as in tinygpt
    if tokenizer.kind == "char":
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one piece per character
        hf.decoder = decoders.Fuse()
    else:
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(f"[{PYTHON_WHITESPACE}]+"), behavior="removed")
    single_word = tokenizer.kind == "word"
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False, single_word=single_word)
                           for t in tokenizer.special_tokens])
    add_marks(hf, marks, single_word)
    return hf


def add_marks(hf, marks, single_word: bool):
    """Make the tokens of ids `marks` added tokens (so transformers takes them as they are), not special."""
    from tokenizers import AddedToken

    added = hf.get_added_tokens_decoder()  # id -> AddedToken: special tokens are named already
    hf.add_tokens([AddedToken(hf.id_to_token(i), special=False, normalized=False, single_word=single_word)
                   for i in dict.fromkeys(marks) if i not in added])


def tokenizer_config(block_size: int, chat_template: str | None, bos_token: str | None,
                     eos_token: str | None) -> dict:
    """tokenizer_config.json: the class to load, the context length, BOS and EOS, the chat template."""
    doc = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": block_size,
           "clean_up_tokenization_spaces": False, "model_input_names": ["input_ids", "attention_mask"],
           # Empty: the added tokens are tokenizer.json's, as written. Without this key transformers 5 reads
           # them from there and adds each again, making a BOS or EOS among them special (see `add_marks`).
           "added_tokens_decoder": {}}
    if bos_token is not None:
        doc["bos_token"] = bos_token
    if eos_token is not None:
        doc["eos_token"] = eos_token
    if chat_template is not None:
        doc["chat_template"] = chat_template
    return doc
