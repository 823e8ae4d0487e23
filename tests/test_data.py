"""Data: finding tiny Shakespeare, the lecture's 90/10 split, tiny corpora, batches and exact eval windows."""

import hashlib
import http.client
import io
import urllib.error

import pytest
import torch

import tinygpt.data.corpus as data
from tinygpt.core.errors import TinyGPTError
from tinygpt.data import encode_corpus, eval_windows, random_batch, shakespeare_path, split_ids
from tinygpt.tokenizers import CharTokenizer, WordTokenizer

# ---- where tiny Shakespeare comes from --------------------------------------------------------------


@pytest.fixture
def no_shakespeare_anywhere(tmp_path, monkeypatch):
    """An empty $TINYGPT_DATA_DIR and an empty cache directory; returns (data_dir, cache_file)."""
    data_dir, cache_home = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir()
    monkeypatch.setenv("TINYGPT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    return data_dir, cache_home / "tinygpt" / "tinyshakespeare.txt"


def fake_download(monkeypatch, payload: bytes | None):
    """Make urlopen return `payload`, or fail like an offline machine when it is None; count the calls."""
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        if payload is None:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        return io.BytesIO(payload)

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    return calls


def test_data_dir_wins_over_the_cache(no_shakespeare_anywhere, monkeypatch):
    data_dir, cached = no_shakespeare_anywhere
    cached.parent.mkdir(parents=True)
    cached.write_text("from the cache\n")
    calls = fake_download(monkeypatch, None)
    assert shakespeare_path() == cached
    (data_dir / "tinyshakespeare.txt").write_text("from the data dir\n")
    assert shakespeare_path() == data_dir / "tinyshakespeare.txt"
    assert calls == []  # nothing is downloaded while a copy exists


def test_offline_without_a_copy_gives_one_error_saying_where_to_put_the_file(no_shakespeare_anywhere, monkeypatch):
    _, cached = no_shakespeare_anywhere
    calls = fake_download(monkeypatch, None)
    with pytest.raises(TinyGPTError) as e:
        data.load_corpus("shakespeare")
    message = str(e.value)
    assert len(calls) == 1 and calls[0].endswith("tinyshakespeare/input.txt")
    assert "could not be downloaded" in message and "Name or service not known" in message
    assert f"put tinyshakespeare.txt in $TINYGPT_DATA_DIR or at {cached}" in message
    assert "\n" not in message


def test_a_download_cut_off_mid_way_is_the_same_clear_error(no_shakespeare_anywhere, monkeypatch):
    _, cached = no_shakespeare_anywhere

    class CutOff(io.BytesIO):
        def read(self, *args):
            raise http.client.IncompleteRead(b"First Cit", 1_115_385)

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: CutOff())
    with pytest.raises(TinyGPTError, match="could not be downloaded .IncompleteRead"):
        shakespeare_path()
    assert not cached.exists()


def test_a_download_with_the_wrong_sha256_is_refused_and_not_cached(no_shakespeare_anywhere, monkeypatch):
    _, cached = no_shakespeare_anywhere
    fake_download(monkeypatch, b"<html>captive portal</html>")
    with pytest.raises(TinyGPTError) as e:
        shakespeare_path()
    wrong = hashlib.sha256(b"<html>captive portal</html>").hexdigest()
    assert f"has sha256 {wrong}, expected {data.SHAKESPEARE_SHA256}" in str(e.value)
    assert not cached.exists()


def test_a_good_download_is_cached_and_used_from_then_on(no_shakespeare_anywhere, monkeypatch):
    _, cached = no_shakespeare_anywhere
    payload = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
    monkeypatch.setattr(data, "SHAKESPEARE_SHA256", hashlib.sha256(payload).hexdigest())
    calls = fake_download(monkeypatch, payload)
    assert shakespeare_path() == cached
    assert cached.read_bytes() == payload
    assert shakespeare_path() == cached
    assert len(calls) == 1
    assert not list(cached.parent.glob("*.part"))  # the temporary download name is gone


def test_shakespeare_has_the_lectures_size_and_vocabulary(shakespeare_file):
    text = data.load_corpus("shakespeare")
    assert len(text) == 1_115_394
    assert len(set(text)) == 65
    assert hashlib.sha256(shakespeare_file.read_bytes()).hexdigest() == data.SHAKESPEARE_SHA256


def test_shakespeare_splits_90_10_exactly_as_the_lecture(shakespeare_file):
    text = data.load_corpus("shakespeare")
    ids = CharTokenizer.train(text).encode(text)
    splits = split_ids(ids, 0.1, 256)
    n = int(0.9 * len(ids))  # the lecture's own expression
    assert (len(splits.train), len(splits.val)) == (n, len(ids) - n) == (1_003_854, 111_540)
    assert splits.train.tolist()[-5:] == ids[n - 5 : n] and splits.val.tolist()[:5] == ids[n : n + 5]
    assert splits.block_size == 256 and splits.notes == []


# ---- splitting and tiny corpora ----------------------------------------------------------------------

def test_a_folder_of_text_files_is_one_corpus_in_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("second\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first\n\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a .txt file", encoding="utf-8")
    assert data.load_corpus(str(tmp_path)) == "first\n\nsecond\n"
    assert data.corpus_name(str(tmp_path)) == tmp_path.name


def test_a_bad_file_in_a_folder_is_named(tmp_path):
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(TinyGPTError, match="latin1.txt is not valid UTF-8"):
        data.load_corpus(str(tmp_path))


def test_split_keeps_order_first_part_trains_last_part_validates():
    splits = split_ids(list(range(1000)), 0.1, 8)
    assert splits.train.tolist() == list(range(900))
    assert splits.val.tolist() == list(range(900, 1000))
    assert splits.train.dtype == torch.long  # a plain list comes in as int64


@pytest.mark.parametrize("vocab, dtype", [(65, torch.int16), (40_000, torch.int32)])
def test_a_corpus_is_stored_compactly_and_batches_come_out_as_int64(vocab, dtype):
    tokenizer = WordTokenizer([f"w{i:05d}" for i in range(vocab)])
    text = " ".join(f"w{i % vocab:05d}" for i in range(0, 7 * vocab, 7))
    ids = encode_corpus(tokenizer, text)
    assert ids.dtype == dtype and ids.tolist() == tokenizer.encode(text)
    splits = split_ids(ids, 0.1, 8)
    x, y = random_batch(splits.train, 4, 8, torch.Generator().manual_seed(0))
    assert x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    for x, y in eval_windows(splits.val, 8):
        assert x.dtype == y.dtype == torch.long


def test_val_fraction_zero_trains_on_everything():
    splits = split_ids(list(range(50)), 0.0, 8)
    assert splits.val is None and len(splits.train) == 50 and splits.notes == []


def test_a_context_longer_than_the_text_is_shortened_with_a_note():
    splits = split_ids(list(range(12)), 0.0, 64)
    assert splits.block_size == 11
    assert splits.notes == ["block_size reduced from 64 to 11: the text has only 12 tokens"]


def test_a_text_too_short_to_hold_out_validation_trains_on_all_of_it_with_a_note():
    splits = split_ids(list(range(10)), 0.1, 4)  # 10% of 10 tokens is 1: no window to validate on
    assert splits.val is None and len(splits.train) == 10 and splits.block_size == 4
    assert splits.notes == ["the corpus (10 tokens) is too short to hold out a validation split; "
                            "validating on the training text"]


def test_a_short_validation_split_keeps_the_context_when_scored_exactly():
    # An exact pass scores 20 validation tokens in one shorter window; the context stays 64.
    splits = split_ids(list(range(200)), 0.1, 64)
    assert (len(splits.train), len(splits.val), splits.block_size) == (180, 20, 64)
    assert splits.notes == []


def test_a_short_validation_split_shortens_the_context_for_random_window_estimates():
    splits = split_ids(list(range(200)), 0.1, 64, val_windows=True)
    assert (len(splits.train), len(splits.val), splits.block_size) == (180, 20, 19)
    assert splits.notes == ["block_size reduced from 64 to 19: the validation split has only 20 tokens"]
    x, _ = random_batch(splits.val, 8, splits.block_size, torch.Generator().manual_seed(0))
    assert x.shape == (8, 19)


def test_a_short_training_split_shortens_the_context_with_a_note():
    splits = split_ids(list(range(30)), 0.1, 64)
    assert (len(splits.train), len(splits.val), splits.block_size) == (27, 3, 26)
    assert splits.notes == ["block_size reduced from 64 to 26: the training split has only 27 tokens"]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_tokens_are_refused(n):
    with pytest.raises(TinyGPTError, match=f"the corpus is only {n} token"):
        split_ids(list(range(n)), 0.1, 8)


def test_three_tokens_are_enough():
    splits = split_ids([0, 1, 2], 0.1, 8)
    assert splits.block_size == 2
    x, y = random_batch(splits.train, 4, splits.block_size, torch.Generator().manual_seed(0))
    assert x.tolist() == [[0, 1]] * 4 and y.tolist() == [[1, 2]] * 4


# ---- batches --------------------------------------------------------------------------------------

def test_random_batch_is_windows_and_the_same_windows_shifted_by_one():
    tokens = torch.arange(100, 400)
    x, y = random_batch(tokens, 16, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 8) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    starts = x[:, 0] - 100
    for row, start in zip(x, starts):
        assert torch.equal(row, tokens[start : start + 8])  # each row is a contiguous window
    assert torch.equal(y[:, -1], x[:, -1] + 1)


def test_random_batch_reaches_the_last_token_and_repeats_with_the_seed():
    tokens = torch.arange(10)
    x, y = random_batch(tokens, 500, 8, torch.Generator().manual_seed(1))
    assert set(x[:, 0].tolist()) == {0, 1}  # the only two windows that fit
    assert y.max().item() == 9
    x2, _ = random_batch(tokens, 500, 8, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)


@pytest.mark.parametrize("n, block, max_tokens", [(101, 10, 0), (100, 10, 0), (11, 10, 0), (2, 10, 0),
                                                  (1000, 7, 50)])
def test_eval_windows_predict_every_token_exactly_once(n, block, max_tokens):
    tokens = torch.arange(n) * 3
    pieces = list(eval_windows(tokens, block, max_tokens))
    xs = torch.cat([x.flatten() for x, _ in pieces])
    ys = torch.cat([y.flatten() for _, y in pieces])
    predicted = min(n - 1, max_tokens) if max_tokens else n - 1
    assert torch.equal(ys, tokens[1 : predicted + 1])  # every target once, in order
    assert torch.equal(xs, tokens[:predicted])  # each from the token just before it
    assert all(x.size(1) <= block for x, _ in pieces)
