"""Lesson: from a text file to the batches a GPT trains on, as the lecture does it on tiny Shakespeare.

Run it with `tinygpt lesson data` (or `--data FILE` for your own text) and read along. Every step
uses tinygpt's own pieces (the char tokenizer, the 90/10 split, the batch sampler), so what it
prints is what `tinygpt train` does with the text:

1. The text, and its vocabulary: the sorted set of the characters in it (65 for tiny Shakespeare).
2. A tokenizer: each character becomes its index in the vocabulary (`encode`), and back (`decode`).
3. The whole text as one long tensor of ids.
4. The split: the first 90% trains, the last 10% validates. The validation text is never trained
   on, so its loss says whether the model learnt something general or memorised the training text.
5. A block of block_size + 1 ids holds block_size examples: every prefix predicts its next id.
6. A batch: batch_size random blocks at once, with targets shifted by one; under the lecture's seed
   1337 it is exactly the lecture's batch.
7. The untrained bigram model (a vocab x vocab table of next-character scores) on that batch: its
   loss against ln(vocab_size), what guessing uniformly would score.
8. The tutorial's word-level version of the same on the nursery rhyme: words instead of characters.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import TinyGPTError
from ..data import encode_corpus, load_corpus, random_batch, read_text_file, split_ids
from ..tokenizers import CharTokenizer, WordTokenizer, mark_sentence_ends

SEED = 1337  # the lecture's
BATCH_SIZE, BLOCK_SIZE = 4, 8  # the lecture's first batch
VAL_FRACTION = 0.1
SAMPLE = "hii there"  # the lecture's encode/decode example
WORD_BLOCK_SIZE = 6  # the tutorial's context of 6 words
SHOWN_CHARACTERS = 120


def _words(ids, tokenizer) -> str:
    return " ".join(tokenizer.token(i) for i in ids)


def run(out=print, data: str | None = None) -> dict:
    """Print the lesson step by step and return its numbers. data: a text file instead of tiny Shakespeare."""
    name = "tiny Shakespeare" if data is None else str(data)
    text = load_corpus("shakespeare") if data is None else read_text_file(data)
    need = int((BLOCK_SIZE + 2) / (1 - VAL_FRACTION)) + 1
    if len(text) < need:
        raise TinyGPTError(f"the data lesson needs a text of at least {need} characters; {data} has {len(text)}")

    # ---- 1. The text and its vocabulary --------------------------------------------------------
    out(f"1. The text: {name}, {len(text):,} characters. It begins:")
    shown = text[:SHOWN_CHARACTERS]
    for line in (shown.rsplit("\n", 1)[0] if "\n" in shown else shown).splitlines():  # whole lines
        out(f"     {line}")
    tokenizer = CharTokenizer.train(text)  # the sorted set of its characters
    vocab = "".join(tokenizer.chars)
    out(f"   its vocabulary, the sorted set of its characters: {tokenizer.vocab_size} of them")
    out(f"     {vocab!r}")

    # ---- 2. encode and decode -------------------------------------------------------------------
    sample = SAMPLE if set(SAMPLE) <= set(vocab) else text[: len(SAMPLE)]
    encoded = tokenizer.encode(sample)
    decoded = tokenizer.decode(encoded)
    out("")
    out("2. A tokenizer turns each character into its index in the vocabulary, and back:")
    out(f"     encode({sample!r}) = {encoded}")
    out(f"     decode({encoded}) = {decoded!r}")

    # ---- 3. The whole text as ids ---------------------------------------------------------------
    ids = encode_corpus(tokenizer, text).long()  # (N,)
    out("")
    out(f"3. The whole text encoded: a tensor of shape {tuple(ids.shape)}; its first 20 ids:")
    out(f"     {ids[:20].tolist()}")

    # ---- 4. The split -----------------------------------------------------------------------------
    splits = split_ids(ids, VAL_FRACTION, BLOCK_SIZE)
    train, val = splits.train, splits.val
    out("")
    out(f"4. The first 90% trains ({len(train):,} ids), the last 10% validates ({len(val):,} ids).")
    out("   The model never trains on the validation text, so its loss there says whether it learnt")
    out("   how such text goes or only memorised the training text: memorising is not learning.")

    # ---- 5. One block holds block_size examples ---------------------------------------------------
    block = train[: BLOCK_SIZE + 1]  # (T + 1,)
    examples = [(block[: t + 1].tolist(), block[t + 1].item()) for t in range(BLOCK_SIZE)]
    out("")
    out(f"5. The first {BLOCK_SIZE + 1} training ids, {block.tolist()}, hold {BLOCK_SIZE} examples: every prefix")
    out("   predicts the id after it, so the model learns to predict from 1 up to block_size ids of context:")
    for context, target in examples:
        out(f"     when input is {context} the target: {target}")

    # ---- 6. A batch -------------------------------------------------------------------------------
    # tinygpt's sampler draws the lecture's torch.randint(len(data) - block_size, (batch_size,)) from
    # its own generator; seeded with 1337 it draws what the lecture's torch.manual_seed(1337) does.
    x, y = random_batch(train, BATCH_SIZE, BLOCK_SIZE, torch.Generator().manual_seed(SEED))  # (B, T), (B, T)
    out("")
    out(f"6. A batch: {BATCH_SIZE} random blocks of {BLOCK_SIZE} at once (seed {SEED}), targets shifted by one.")
    out(f"   inputs {tuple(x.shape)}:")
    for row in x.tolist():
        out(f"     {row}")
    out(f"   targets {tuple(y.shape)}:")
    for row in y.tolist():
        out(f"     {row}")
    out(f"   {BATCH_SIZE * BLOCK_SIZE} examples in all; the first row's last: input {x[0].tolist()} "
        f"({tokenizer.decode(x[0].tolist())!r}) -> target {y[0, -1].item()} ({tokenizer.decode([y[0, -1].item()])!r})")

    # ---- 7. The untrained bigram ------------------------------------------------------------------
    torch.manual_seed(SEED)  # the lecture seeds again before it builds the model
    table = nn.Embedding(tokenizer.vocab_size, tokenizer.vocab_size)  # row i: the scores of what follows id i
    with torch.no_grad():
        logits = table(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, tokenizer.vocab_size), y.view(-1)).item()
        whole = F.cross_entropy(table(train[:-1]), train[1:]).item()  # every training position at once
    uniform = math.log(tokenizer.vocab_size)
    out("")
    out(f"7. The untrained bigram model, a {tokenizer.vocab_size} x {tokenizer.vocab_size} table of next-character"
        f" scores, on this batch: loss {loss:.4f}")
    out(f"   guessing uniformly would score -ln(1/{tokenizer.vocab_size}) = ln {tokenizer.vocab_size} = {uniform:.2f}.")
    out("   It is higher because the random initial scores (unit Gaussians) are not all equal: each row")
    out("   already prefers some characters, at random, so the right one usually gets less than its fair share;")
    out(f"   for such scores the expected loss is about ln {tokenizer.vocab_size} + 1/2 = {uniform + 0.5:.2f}"
        f" (over the whole training split: {whole:.4f}). Training brings it down.")

    # ---- 8. The tutorial's word-level version -------------------------------------------------------
    words_text = mark_sentence_ends(load_corpus("rhyme"), "<END>") if data is None else text
    words = WordTokenizer.train(words_text, end_token="<END>" if data is None else "")
    word_ids = encode_corpus(words, words_text).long()  # (N_words,)
    window = word_ids[: WORD_BLOCK_SIZE + 1]  # (T + 1,)
    inputs, targets = window[:-1].tolist(), window[1:].tolist()
    out("")
    where = "the nursery rhyme (the tutorial's: ' <END>' after each line)" if data is None else name
    out(f"8. The same with words, as the tutorial does on {where}: {len(word_ids):,} words,"
        f" {words.vocab_size} distinct. Its first window of {WORD_BLOCK_SIZE}:")
    out(f"     inputs  {inputs}  {_words(inputs, words)}")
    out(f"     targets {targets}  {_words(targets, words)}")
    out("   the targets are the inputs shifted by one word: each word is trained to predict the next.")

    return {
        "characters": len(text),
        "vocab": vocab,
        "vocab_size": tokenizer.vocab_size,
        "sample": sample,
        "encoded": encoded,
        "decoded": decoded,
        "train_tokens": len(train),
        "val_tokens": len(val),
        "first_block": block.tolist(),
        "examples": [{"context": c, "target": t} for c, t in examples],
        "batch_inputs": x,
        "batch_targets": y,
        "bigram_loss": loss,
        "bigram_loss_whole_train": whole,
        "uniform_loss": uniform,
        "words": len(word_ids),
        "word_vocab_size": words.vocab_size,
        "word_inputs": inputs,
        "word_targets": targets,
    }


if __name__ == "__main__":
    run()
