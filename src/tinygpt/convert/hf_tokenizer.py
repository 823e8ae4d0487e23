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
"""

from __future__ import annotations

import json

# str.isspace() is true for 29 characters, all below U+3001 (checked over every code point).
PYTHON_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def hf_tokenizer(tokenizer):
    """The `tokenizers.Tokenizer` that encodes and decodes as `tokenizer` (a tinygpt tokenizer) does."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFModel

    if tokenizer.kind not in ("char", "word"):  # a Hugging Face tokenizer: its own file
        hf = HFModel.from_str(json.dumps(tokenizer.to_json()))
        if hf.post_processor is not None and hf.post_processor.num_special_tokens_to_add(False):
            hf.post_processor = None
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
    return hf


def tokenizer_config(tokenizer, block_size: int, chat_template: str | None, eos_token: str | None) -> dict:
    """tokenizer_config.json: the class to load, the context length, the chat template and its end token."""
    doc = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": block_size,
           "clean_up_tokenization_spaces": False, "model_input_names": ["input_ids", "attention_mask"]}
    if eos_token is not None:
        doc["eos_token"] = eos_token
    if chat_template is not None:
        doc["chat_template"] = chat_template
    return doc
