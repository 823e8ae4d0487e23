"""`tinygpt prepare`: tokenise a text too big for memory into files that training reads a window at a time."""

from __future__ import annotations


def add_parsers(sub):
    p = sub.add_parser("prepare", help="tokenise a big text (or a dataset) once into token files that "
                       "`tinygpt train --data DIR` reads a window at a time",
                       description="Read SOURCE a block at a time and write DIR/train.bin, val.bin, tokenizer.json "
                       "and prepared.json. SOURCE: a UTF-8 text file, a folder of .txt files, 'rhyme' or "
                       "'shakespeare'; or documents: .jsonl, .json, .parquet, .csv or .arrow files (or a folder "
                       "of them), or hf:NAME[:CONFIG], a Hugging Face Hub dataset, streamed.")
    p.add_argument("source", metavar="SOURCE", help="the text to tokenise")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    p.add_argument("--tokenizer", default="char", help="char, word or bpe (built from the text), the path of a "
                   "tokenizer.json, or hf:NAME (default: char)")
    p.add_argument("--vocab-size", type=int, default=512, help="vocabulary size for --tokenizer bpe (default: 512)")
    p.add_argument("--sentence-end", default="", help="word tokenizer: mark the end of each line with this token")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="the end of the tokens held out for validation (default: 0.1, as tinygpt train)")
    p.add_argument("--text-field", default="text", help="documents: the column that holds the text (default: text)")
    p.add_argument("--split", default="train", help="documents: the dataset split to read (default: train)")
    p.add_argument("--separator", default="\n\n",
                   help="documents: the text put between two documents (default: a blank line; e.g. "
                        "'<|endoftext|>' for GPT-2's tokenizer)")
    p.add_argument("--tokenizer-sample", type=int, default=100_000_000, metavar="CHARS",
                   help="--tokenizer bpe: train it on the text's first CHARS characters (default: 100M)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=prepare)


def prepare(args) -> int:
    import numpy as np

    from ..data.prepared import prepare as write

    log = None if args.quiet else print
    data = write(args.source, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                 sentence_end=args.sentence_end, val_fraction=args.val_fraction, text_field=args.text_field,
                 split=args.split, separator=args.separator, tokenizer_sample=args.tokenizer_sample, log=log)
    m = data.meta
    print(f"prepared {m['characters']:,} characters as {m['train_tokens']:,} train / {m['val_tokens']:,} val tokens "
          f"({m['tokenizer']} tokenizer, {m['tokenizer_tokens']:,} tokens, {np.dtype(m['dtype']).name}) in "
          f"{m['seconds']}s; saved in {data.path}")
    print(f"next: tinygpt train --data {data.path} ...")
    return 0
