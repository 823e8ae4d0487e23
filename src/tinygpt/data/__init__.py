"""Data: corpora on disk (corpus.py), text -> ids -> splits (pipeline.py), windows (batches.py); text
streamed a piece at a time (sources.py) into token files read a window at a time (prepared.py)."""

from .batches import eval_windows, first_tokens, pass_windows, random_batch, read_windows, subset_windows
from .corpus import (
    SHAKESPEARE_FILE,
    cache_dir,
    corpus_name,
    fingerprint,
    load_corpus,
    read_text_file,
    rhyme_text,
    shakespeare_path,
)
from .pipeline import Splits, describe_corpus, encode_corpus, fit_context, held_out, read_corpus, split_ids
from .prepared import PreparedData, prepare

__all__ = ["SHAKESPEARE_FILE", "PreparedData", "Splits", "cache_dir", "corpus_name", "describe_corpus", "encode_corpus",
           "eval_windows", "fingerprint", "first_tokens", "fit_context", "held_out", "load_corpus", "pass_windows",
           "prepare", "random_batch", "read_corpus", "read_text_file", "read_windows", "rhyme_text", "shakespeare_path",
           "split_ids", "subset_windows"]
