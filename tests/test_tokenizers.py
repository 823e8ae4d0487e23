"""Tokenizers: text -> ids -> the same text, a vocabulary that survives a save, clear refusals.

The three kinds behave as a user expects: characters and byte-level BPE give back exactly the text
they were given, words give it back with single spaces, and a saved tokenizer.json rebuilds the very
same ids. A tokenizer made elsewhere (a Hugging Face file, the Hub, another run) is used as it is.
Text a model cannot represent is refused naming the offending characters or words.
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.config import TrainConfig
from tinygpt.data import rhyme_text
from tinygpt.errors import TinyGPTError
from tinygpt.presets import load_preset
from tinygpt.tokenizers import (
    CharTokenizer,
    HFTokenizer,
    WordTokenizer,
    _cut_at_line_starts,
    load_tokenizer,
    mark_sentence_ends,
    train_tokenizer,
)

CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
CHAR = CharTokenizer.train(CORPUS)
WORD = WordTokenizer.train(mark_sentence_ends(rhyme_text(), "<END>"), "<END>")
BPE = HFTokenizer.train(rhyme_text() + CORPUS, 300)


def save_and_reload(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tokenizer.to_json()), encoding="utf-8")
    return load_tokenizer(path)


# ---- characters ------------------------------------------------------------------------------------

def test_char_vocabulary_is_the_sorted_set_of_characters():
    assert CHAR.chars == sorted(set(CORPUS))
    assert CHAR.vocab_size == 30
    assert CHAR.encode("\n ") == [0, 1]  # newline sorts first, then space
    assert CHAR.decode(CHAR.encode("hear me")) == "hear me"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=sorted(set(CORPUS)), max_size=200))
def test_char_round_trip_of_any_text_within_the_vocabulary(text):
    ids = CHAR.encode(text)
    assert len(ids) == len(text)
    assert all(0 <= i < CHAR.vocab_size for i in ids)
    assert CHAR.decode(ids) == text


def test_unknown_characters_are_named_in_the_error():
    with pytest.raises(TinyGPTError) as e:
        CHAR.encode("hear me, Zeus!")
    message = str(e.value)
    assert "2 character(s)" in message and "'Z'" in message and "'!'" in message
    assert "'h'" not in message  # known characters are not blamed


UNICODE = CharTokenizer.train("abc é日本🎉\n\t\u0000\U0010ffff")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=UNICODE.chars, max_size=300))
def test_char_corpus_encoding_is_the_same_ids_vectorised(text):
    assert UNICODE.encode_array(text).tolist() == UNICODE.encode(text)


@pytest.mark.parametrize("text", ["hear me, Zeus!", "Z", "~ hear"])
def test_char_corpus_encoding_names_unknown_characters_too(text):
    with pytest.raises(TinyGPTError, match="character\\(s\\) this model never saw"):
        CHAR.encode_array(text)


# ---- words -----------------------------------------------------------------------------------------

def test_word_corpus_with_sentence_ends_has_the_tutorials_counts():
    # SPEC 1: 16 sentences, ' <END>' after each, joined by single spaces.
    text = mark_sentence_ends(rhyme_text(), "<END>")
    assert len(text.split()) == 106
    assert len(text) == 546
    assert WORD.vocab_size == 35
    assert "<END>" in WORD.stoi
    assert text.startswith("mary had a little lamb <END> little lamb little lamb <END>")
    assert text.endswith("to see a lamb at school <END>")


def test_rhyme_preset_sets_up_that_word_tokenizer():
    preset = load_preset("rhyme")["settings"]
    assert (preset["tokenizer"], preset["sentence_end"]) == ("word", "<END>")
    assert TrainConfig(tokenizer="word", sentence_end="<END>").validate().sentence_end == "<END>"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted(WORD.stoi)), max_size=30), st.sampled_from([" ", "  ", "\n", " \t "]))
def test_word_round_trip_gives_the_words_back_joined_by_single_spaces(words, gap):
    text = gap.join(words)
    ids = WORD.encode(text)
    assert len(ids) == len(words)
    assert WORD.decode(ids) == " ".join(words)


def test_unknown_words_are_named_and_the_vocabulary_listed():
    with pytest.raises(TinyGPTError) as e:
        WORD.encode("mary had a dog and a Cat")
    message = str(e.value)
    assert "'dog', 'Cat'" in message
    assert message.endswith("this model knows only: " + " ".join(sorted(WORD.stoi)))


def test_a_huge_vocabulary_is_listed_only_in_part():
    big = WordTokenizer([f"w{i}" for i in range(1000)])
    with pytest.raises(TinyGPTError) as e:
        big.encode("w1 nope")
    assert "'nope'" in str(e.value) and "... (800 more)" in str(e.value)
    assert len(str(e.value)) < 2000


# ---- byte-level BPE --------------------------------------------------------------------------------

def test_bpe_reaches_the_asked_vocabulary_and_compresses():
    assert BPE.vocab_size == 300
    assert len(BPE.encode(rhyme_text())) < len(rhyme_text().encode("utf-8")) / 2


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100))
def test_bpe_round_trip_of_arbitrary_unicode(text):
    # Every byte is in the base alphabet, so nothing is unknown, not even text never seen in training.
    assert BPE.decode(BPE.encode(text)) == text


def test_bpe_corpus_encoding_in_pieces_gives_the_ids_of_one_whole_encode():
    text = (CORPUS + rhyme_text()) * 20  # ~12 kB, cut into ~80 pieces below
    assert len(list(_cut_at_line_starts(text, 150))) > 50
    assert BPE.encode_array(text, piece=150).tolist() == BPE.encode(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab \n\t:", max_size=200), st.integers(1, 50))
def test_corpus_pieces_rebuild_the_text_and_are_cut_only_between_visible_characters(text, size):
    pieces = list(_cut_at_line_starts(text, size))
    assert "".join(pieces) == text
    for left, right in zip(pieces, pieces[1:]):
        assert left.endswith("\n") and not left[-2].isspace() and not right[0].isspace()


def test_bpe_token_shows_the_text_it_stands_for():
    ids = BPE.encode("mary had")
    assert "".join(BPE.token(i) for i in ids) == "mary had"


# ---- tokenizer.json --------------------------------------------------------------------------------

@pytest.mark.parametrize("tokenizer, text", [
    (CHAR, "Speak, speak.\nhear me"),
    (WORD, "mary had a little lamb <END> its fleece"),
    (BPE, "mary had a little lamb, é 日本 🎉\n"),
])
def test_saved_tokenizer_reloads_with_identical_encodings(tokenizer, text, tmp_path):
    reloaded = save_and_reload(tokenizer, tmp_path)
    assert type(reloaded) is type(tokenizer)
    assert reloaded.vocab_size == tokenizer.vocab_size
    assert reloaded.encode(text) == tokenizer.encode(text)
    assert reloaded.decode(tokenizer.encode(text)) == tokenizer.decode(tokenizer.encode(text))


def test_word_tokenizer_keeps_its_sentence_end_through_a_save(tmp_path):
    assert save_and_reload(WORD, tmp_path).end_token == "<END>"


def test_train_tokenizer_picks_the_kind_by_name():
    assert isinstance(train_tokenizer("char", "abc"), CharTokenizer)
    assert isinstance(train_tokenizer("word", "a b c"), WordTokenizer)
    assert isinstance(train_tokenizer("bpe", CORPUS, 260), HFTokenizer)
    with pytest.raises(TinyGPTError, match="unknown tokenizer 'sentencepiece': use char, word or bpe .* hf:NAME"):
        train_tokenizer("sentencepiece", "abc")


# ---- pretrained tokenizers -------------------------------------------------------------------------

def bert_like_tokenizer():
    """A BERT-style WordPiece tokenizer made the way such files are made: lower-casing, [CLS]/[SEP]
    added around every input by its post-processor."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator([rhyme_text(), CORPUS], trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[UNK]", "[CLS]", "[SEP]"], show_progress=False))
    specials = [(name, tok.token_to_id(name)) for name in ("[CLS]", "[SEP]")]
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=specials)
    return tok


def test_a_hugging_face_tokenizer_file_is_used_as_it_is(tmp_path):
    hf = bert_like_tokenizer()
    path = tmp_path / "bert" / "tokenizer.json"
    path.parent.mkdir()
    hf.save(str(path))
    tok = train_tokenizer(str(path), "text it must not be trained on", vocab_size=999)
    assert isinstance(tok, HFTokenizer) and tok.kind == "wordpiece"
    assert tok.vocab_size == hf.get_vocab_size()
    # The same ids the file gives, without the [CLS]/[SEP] it adds around a sentence.
    assert tok.encode("Mary had a little lamb") == hf.encode("Mary had a little lamb").ids[1:-1]
    assert tok.decode(tok.encode("Mary had a little lamb")) == "mary had a little lamb"
    assert save_and_reload(tok, tmp_path).encode("its fleece") == tok.encode("its fleece")


def test_another_runs_tokenizer_is_reused(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(CHAR.to_json()), encoding="utf-8")
    tok = train_tokenizer(str(path), "zzz")
    assert isinstance(tok, CharTokenizer) and tok.chars == CHAR.chars


def test_a_hub_tokenizer_is_fetched_by_name(monkeypatch):
    from tokenizers import Tokenizer

    asked = []

    def from_pretrained(name, *args, **kwargs):
        asked.append(name)
        return BPE.hf

    monkeypatch.setattr(Tokenizer, "from_pretrained", staticmethod(from_pretrained))
    tok = train_tokenizer("hf:gpt2", "text")
    assert asked == ["gpt2"]
    assert tok.kind == "bpe" and tok.encode("mary had") == BPE.encode("mary had")


def test_a_hub_tokenizer_that_cannot_be_fetched_is_one_clear_error(monkeypatch):
    from tokenizers import Tokenizer

    def offline(name, *args, **kwargs):
        raise Exception("Model \"no-such/tokenizer\" on the Hub doesn't have a tokenizer")

    monkeypatch.setattr(Tokenizer, "from_pretrained", staticmethod(offline))
    with pytest.raises(TinyGPTError) as e:
        train_tokenizer("hf:no-such/tokenizer", "text")
    message = str(e.value)
    assert "cannot get the tokenizer 'no-such/tokenizer' from the Hugging Face Hub" in message
    assert "doesn't have a tokenizer" in message and "pass the path of its tokenizer.json" in message


def test_a_missing_or_damaged_tokenizer_file_is_named(tmp_path):
    path = tmp_path / "tokenizer.json"
    with pytest.raises(TinyGPTError, match="tokenizer.json is missing"):
        load_tokenizer(path)
    path.write_text('{"tinygpt_tokenizer": "char", "vo', encoding="utf-8")
    with pytest.raises(TinyGPTError, match="tokenizer.json is not a valid tokenizer file"):
        load_tokenizer(path)
