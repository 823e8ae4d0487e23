"""Prepared token files (`tinygpt prepare`): text read a block at a time, tokenised once, mapped by training.

The ids must be exactly those of the in-memory path (the same tokenizer, the same split), whatever the
block size, so a run on a prepared folder computes what a run on the text computes.
"""

import json

import numpy as np
import pytest
import torch

import tinygpt
from tinygpt.cli import main
from tinygpt.data import (
    PreparedData,
    encode_corpus,
    load_corpus,
    random_batch,
    read_corpus,
    rhyme_text,
    shakespeare_path,
    split_ids,
)
from tinygpt.data.prepared import prepare
from tinygpt.data.sources import line_blocks
from tinygpt.tokenizers import train_tokenizer

TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=6, eval_interval=3, threads=1,
            progress=False, sample_tokens=0, log=lambda line: None)


def in_memory(spec, kind, vocab_size=512, sentence_end="", val_fraction=0.1):
    text = read_corpus(spec, kind, sentence_end)
    tokenizer = train_tokenizer(kind, text, vocab_size, sentence_end)
    splits = split_ids(encode_corpus(tokenizer, text), val_fraction, 10**9)
    return tokenizer, splits


@pytest.mark.parametrize("kind, spec, extra", [
    ("char", "shakespeare", {}),
    ("word", "rhyme", {"sentence_end": "<END>"}),
    ("bpe", "shakespeare", {"vocab_size": 300}),
])
def test_prepared_ids_are_the_in_memory_ids_whatever_the_block_size(tmp_path, kind, spec, extra):
    tokenizer, splits = in_memory(spec, kind, **extra)
    for block_chars in (None, 97, 5000):  # one block; blocks cut within lines; blocks of many lines
        out = tmp_path / f"{kind}-{block_chars}"
        data = prepare(spec, out, tokenizer=kind, block_chars=block_chars, log=None, **extra)
        assert data.tokenizer().to_json() == tokenizer.to_json()
        assert np.array_equal(data.train_tokens()[:].numpy(), splits.train.numpy())
        assert np.array_equal(data.val_tokens().numpy(), splits.val.numpy())
        assert data.meta["dtype"] == "<u2" and data.meta["characters"] == len(load_corpus(spec))


def test_line_blocks_cut_only_between_two_visible_characters():
    text = "ab\ncd\n\n ef\ngh\n" * 50
    blocks = list(line_blocks([text[i : i + 7] for i in range(0, len(text), 7)], size=20))
    assert "".join(blocks) == text and len(blocks) > 5
    for block in blocks[:-1]:
        assert block.endswith("\n") and not block[-2].isspace()
    assert list(line_blocks(["x" * 100], size=10)) == ["x" * 100]  # nowhere to cut: one block


def test_training_on_a_prepared_folder_gives_the_numbers_of_training_on_the_text(tmp_path):
    prepare("shakespeare", tmp_path / "shk", log=None)
    mapped = tinygpt.train(data=str(tmp_path / "shk"), out=str(tmp_path / "a"), **TINY)
    read = tinygpt.train(data="shakespeare", out=str(tmp_path / "b"), **TINY)
    records = [[json.loads(line) for line in (r.out_dir / "metrics.jsonl").read_text().splitlines()]
               for r in (mapped, read)]
    for a, b in zip(*records):
        assert (a["step"], a["train_loss"], a["val_loss"]) == (b["step"], b["train_loss"], b["val_loss"])
    saved = json.loads((mapped.out_dir / "config.json").read_text())
    assert saved["data"]["prepared"] == str(tmp_path / "shk") and saved["train"]["val_fraction"] == 0.1
    assert tinygpt.load(mapped.out_dir).evaluate() == tinygpt.load(read.out_dir).evaluate()
    (tmp_path / "shk").rename(tmp_path / "moved")
    with pytest.raises(tinygpt.TinyGPTError, match="trained on the prepared data .*shk, which is no longer there"):
        tinygpt.load(mapped.out_dir).evaluate()
    moved = tinygpt.load(mapped.out_dir).evaluate(str(tmp_path / "moved"))
    assert moved == tinygpt.load(read.out_dir).evaluate()  # --data FOLDER: its validation split


def test_a_run_on_prepared_data_resumes_exactly(tmp_path):
    prepare("rhyme", tmp_path / "rhyme", tokenizer="word", sentence_end="<END>", val_fraction=0.2, log=None)
    settings = {**TINY, "block_size": 8, "max_iters": 8, "eval_interval": 4}
    whole = tinygpt.train(data=str(tmp_path / "rhyme"), out=str(tmp_path / "whole"), **settings)
    tinygpt.train(data=str(tmp_path / "rhyme"), out=str(tmp_path / "part"), **{**settings, "max_iters": 4})
    resumed = tinygpt.train(resume=str(tmp_path / "part"), max_iters=8, progress=False, sample_tokens=0,
                            log=lambda line: None)
    assert resumed.val_loss == whole.val_loss and resumed.train_loss == whole.train_loss


def test_documents_from_jsonl_parquet_and_a_hub_style_name_are_joined_by_the_separator(tmp_path):
    pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [line for line in rhyme_text().splitlines() if line.strip()]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"id": i, "story": d}) + "\n" for i, d in enumerate(docs)),
                                         encoding="utf-8")
    (tmp_path / "shards").mkdir()
    for k in range(2):  # two parquet shards, read in name order
        pq.write_table(pa.table({"story": docs[k * 8 : (k + 1) * 8]}), tmp_path / "shards" / f"part-{k}.parquet")
    joined = "<|doc|>".join(docs)
    expected = encode_corpus(train_tokenizer("char", joined), joined).numpy()
    # hf:NAME goes to datasets.load_dataset(NAME, streaming=True), as a Hub name would; here NAME is a folder.
    for k, source in enumerate((tmp_path / "docs.jsonl", tmp_path / "shards", f"hf:{tmp_path / 'shards'}")):
        data = prepare(str(source), tmp_path / f"out-{k}", text_field="story", separator="<|doc|>",
                       val_fraction=0.25, log=None)
        got = np.concatenate([data.train_tokens()[:].numpy(), data.val_tokens().numpy()])
        assert np.array_equal(got, expected), source
        assert data.meta["characters"] == len(joined)


def test_bad_sources_and_settings_are_one_line_each(tmp_path, capsys):
    pytest.importorskip("datasets")
    (tmp_path / "docs.jsonl").write_text('{"body": "hello"}\n', encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"fine text\n\xff\n")
    cases = [
        (["prepare", str(tmp_path / "docs.jsonl"), "--out", str(tmp_path / "a")],
         "has no column 'text' (its columns: body)"),
        (["prepare", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "b")],
         "is not valid UTF-8 (bad byte at offset 10)"),
        (["prepare", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "c")], "does not exist"),
        (["prepare", "rhyme", "--out", str(tmp_path / "d"), "--val-fraction", "0"], "val_fraction must be in (0, 1)"),
        (["prepare", "rhyme", "--out", str(tmp_path / "e"), "--tokenizer", "nope"], "unknown tokenizer 'nope'"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert not (tmp_path / argv[3]).exists() and not (tmp_path / (argv[3] + ".part")).exists()

    assert main(["prepare", "rhyme", "--out", str(tmp_path / "ok"), "--quiet"]) == 0
    assert "next: tinygpt train --data" in capsys.readouterr().out
    assert main(["prepare", "rhyme", "--out", str(tmp_path / "ok")]) == 2  # nothing already saved is touched
    assert "already holds prepared data" in capsys.readouterr().err
    for argv, message in [
        (["train", "--data", str(tmp_path / "ok"), "--tokenizer", "bpe"], "was prepared with tokenizer 'char'"),
        (["train", "--data", str(tmp_path / "ok"), "--val-fraction", "0.2"], "was prepared with val_fraction 0.1"),
        (["train", "--data", str(tmp_path / "ok"), "--arch", "encoder"], "an encoder reads its text itself"),
    ]:
        assert main(argv + ["--out", str(tmp_path / "run")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_prepare_that_fails_half_way_leaves_nothing_behind(tmp_path):
    pytest.importorskip("datasets")
    chars = prepare("rhyme", tmp_path / "chars", log=None)  # its tokenizer: no first pass over the documents
    (tmp_path / "docs.jsonl").write_text('{"text": "mary had"}\n{"text": 5}\n', encoding="utf-8")
    with pytest.raises(tinygpt.TinyGPTError, match="row 2's 'text' is int, not text"):
        prepare(str(tmp_path / "docs.jsonl"), tmp_path / "out", tokenizer=str(chars.path / "tokenizer.json"),
                log=None)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


def test_a_damaged_or_unfinished_folder_is_named_with_the_fix(tmp_path):
    data = prepare("rhyme", tmp_path / "ok", log=None)
    meta = json.loads((data.path / "prepared.json").read_text())
    (data.path / "prepared.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "train_tokens"}))
    with pytest.raises(tinygpt.TinyGPTError, match="prepared.json lacks train_tokens; run `tinygpt prepare` again"):
        PreparedData.open(data.path)
    (data.path / "prepared.json").write_text(json.dumps(meta))
    with open(data.path / "train.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(tinygpt.TinyGPTError, match="train.bin should hold .* tokens .* run `tinygpt prepare` again"):
        PreparedData.open(data.path)
    (data.path / "prepared.json").unlink()
    with pytest.raises(tinygpt.TinyGPTError, match="its prepare did not finish"):
        PreparedData.open(data.path)
    assert PreparedData.open(shakespeare_path()) is None and PreparedData.open("rhyme") is None


def test_fine_tuning_on_data_prepared_with_another_tokenizer_is_refused(tmp_path):
    base = tinygpt.train(data="rhyme", out=str(tmp_path / "base"), **TINY)
    prepare("rhyme", tmp_path / "words", tokenizer="word", log=None)
    with pytest.raises(tinygpt.TinyGPTError, match="prepared with another tokenizer than .*base's; prepare the text "
                                                   "again with --tokenizer .*base/tokenizer.json"):
        tinygpt.train(init_from=str(base.out_dir), data=str(tmp_path / "words"), out=str(tmp_path / "ft"), **TINY)
    same = prepare("rhyme", tmp_path / "chars", tokenizer=str(base.out_dir / "tokenizer.json"), log=None)
    tuned = tinygpt.train(init_from=str(base.out_dir), data=str(same.path), out=str(tmp_path / "ft2"), **TINY)
    assert tuned.step == 6


def test_a_token_file_reads_the_slices_and_windows_of_the_ids(tmp_path):
    data = prepare("shakespeare", tmp_path / "shk", log=None)
    ids = data.train_tokens()[:]  # (N,) all of it
    f = data.train_tokens()
    assert len(f) == len(ids) == data.meta["train_tokens"]
    assert torch.equal(f[10:20], ids[10:20]) and torch.equal(f[-5:], ids[-5:]) and len(f[5:5]) == 0
    starts = torch.tensor([0, 7, len(ids) - 9])
    assert torch.equal(f.windows(starts, 9), torch.stack([ids[i : i + 9] for i in starts]).long())
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for a, b in zip(random_batch(f, 4, 16, gen_a), random_batch(ids, 4, 16, gen_b)):
        assert torch.equal(a, b) and a.dtype == torch.int64
