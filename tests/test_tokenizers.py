"""Tokenizers: text -> ids -> the same text, a vocabulary that survives a save, clear refusals.

The three kinds behave as a user expects: characters and byte-level BPE give back exactly the text
they were given, words give it back with single spaces, and a saved tokenizer.json rebuilds the very
same ids. A tokenizer made elsewhere (a Hugging Face file, the Hub, another run) is used as it is.
Text a model cannot represent is refused naming the offending characters or words. Special tokens
(a chat format's `<|user|>`, `<|end|>`) are one id each, after the old vocabulary, in every kind, and
survive a save and a training run.
"""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygpt
from tinygpt.config import TrainConfig
from tinygpt.config.presets import load_preset
from tinygpt.core.errors import TinyGPTError
from tinygpt.data import rhyme_text
from tinygpt.tokenizers import (
    CharTokenizer,
    HFTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
    mark_sentence_ends,
    tokenizer_from_json,
    train_tokenizer,
)
from tinygpt.tokenizers.huggingface import _cut_at_line_starts

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


# ---- one interface ---------------------------------------------------------------------------------

@pytest.mark.parametrize("tokenizer, text", [
    (CHAR, "Speak, speak.\nhear me"),
    (WORD, "mary had a little lamb <END> its fleece"),
    (BPE, "mary had a little lamb, é 日本 🎉\n"),
])
def test_every_kind_is_a_tokenizer_that_encodes_a_corpus_as_an_array(tokenizer, text):
    assert isinstance(tokenizer, Tokenizer)
    ids = tokenizer.encode_array(text, np.int16)
    assert ids.dtype == np.int16 and ids.tolist() == tokenizer.encode(text)
    assert tokenizer.special_tokens == []


def test_a_token_is_found_by_its_spelling_in_the_vocabulary():
    assert (CHAR.token_to_id("h"), CHAR.token(CHAR.token_to_id("h")), CHAR.token_to_id("Z")) == (15, "h", None)
    assert (WORD.token_to_id("lamb"), WORD.token(16), WORD.token_to_id("dog")) == (16, "lamb", None)
    # Byte-level BPE spells a leading space 'Ġ' in its vocabulary; `token` shows the text itself.
    assert (BPE.token_to_id("Ġlamb"), BPE.token(271), BPE.token_to_id(" lamb")) == (271, " lamb", None)


def test_char_corpus_encoding_follows_a_hand_written_vocabulary_order():
    # A tokenizer.json made by hand need not list its characters sorted; the ids are still its own.
    tok = CharTokenizer(["b", "\n", "a"])
    assert tok.encode("ab\n") == [2, 0, 1]
    assert tok.encode_array("ab\n").tolist() == [2, 0, 1]


def test_an_empty_prompt_starts_from_a_line_or_sentence_break():
    assert CHAR.start_ids() == [CHAR.stoi["\n"]] == [0]
    assert CharTokenizer.train("a\tb\n").start_ids() == [1]  # the tab sorts before the newline
    assert CharTokenizer.train("ab").start_ids() == [0]  # no newline: the first character
    assert WordTokenizer(["a", "b", "<END>"], "<END>").start_ids() == [2]
    assert WordTokenizer(["a", "b"], "<END>").start_ids() == [0]  # its end token is not a word it knows
    assert WordTokenizer(["a", "b"]).start_ids() == [0]
    assert BPE.start_ids() == [BPE.token_to_id("Ċ")] and BPE.decode(BPE.start_ids()) == "\n"
    bert = HFTokenizer(bert_like_tokenizer())
    assert bert.encode("\n") == [] and bert.start_ids() == [0]  # its normaliser drops a bare newline


# ---- special tokens --------------------------------------------------------------------------------

CHAT = ["<|user|>", "<|assistant|>", "<|end|>"]


def with_chat_tokens(tokenizer):
    """A copy of `tokenizer` (the originals above stay as they are) with the chat tokens added."""
    copy = tokenizer_from_json(tokenizer.to_json())
    copy.add_special_tokens(CHAT)
    return copy


# Each kind with a conversation written in the text it knows: the parts, how they are joined, and
# the text once the special tokens are skipped.
CONVERSATIONS = {
    "char": (CHAR, ["<|user|>", "hear me", "<|end|>", "\n", "<|assistant|>", "Speak, speak.", "<|end|>"], "",
             "hear me\nSpeak, speak."),
    "word": (WORD, ["<|user|>", "mary had a little lamb", "<|end|>", "<|assistant|>", "its fleece <END>",
                    "<|end|>"], " ", "mary had a little lamb its fleece <END>"),
    "bpe": (BPE, ["<|user|>", "mary had a little lamb", "<|end|>", "\n", "<|assistant|>", " é 日本 🎉", "<|end|>"],
            "", "mary had a little lamb\n é 日本 🎉"),
}


@pytest.mark.parametrize("kind", CONVERSATIONS)
def test_special_tokens_are_one_id_each_after_the_old_vocabulary(kind):
    old, parts, gap, plain = CONVERSATIONS[kind]
    tok = tokenizer_from_json(old.to_json())
    V = old.vocab_size
    assert tok.add_special_tokens(CHAT) == [V, V + 1, V + 2]
    assert (tok.vocab_size, tok.special_tokens) == (V + 3, CHAT)
    assert [tok.token_to_id(t) for t in CHAT] == [V, V + 1, V + 2]
    assert [tok.token(i) for i in (V, V + 1, V + 2)] == CHAT
    text = gap.join(parts)
    ids = tok.encode(text)
    special = dict(zip(CHAT, range(V, V + 3)))
    # Each special token is its one id; the text between them has the ids it had before.
    assert ids == [i for part in parts for i in ([special[part]] if part in special else old.encode(part))]
    assert tok.encode_array(text).tolist() == ids
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == plain


def test_a_pretrained_tokenizer_gets_special_tokens_after_its_own():
    tok = HFTokenizer(bert_like_tokenizer())
    assert tok.special_tokens == ["[UNK]", "[CLS]", "[SEP]"]  # the file's own, made when it was trained
    assert tok.add_special_tokens(CHAT) == [120, 121, 122]
    ids = tok.encode("<|user|>Mary had a little lamb<|end|>")
    assert ids == [120, *tok.encode("Mary had a little lamb"), 122]  # still no [CLS]/[SEP] around it
    # WordPiece joins its tokens with spaces and lower-cases; the special tokens keep their spelling.
    assert tok.decode(ids) == "<|user|> mary had a little lamb <|end|>"
    assert tok.decode(ids, skip_special_tokens=True) == "mary had a little lamb"
    assert tok.special_tokens == ["[UNK]", "[CLS]", "[SEP]", *CHAT]


CHAR_CHAT = with_chat_tokens(CHAR)
BPE_CHAT = with_chat_tokens(BPE)


def strip_chat(text: str) -> str:
    for token in CHAT:
        text = text.replace(token, "")
    return text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(CHAT) | st.text(alphabet=CHAR.chars, max_size=12), max_size=12))
def test_char_texts_mixing_special_tokens_round_trip(parts):
    text = "".join(parts)
    ids = CHAR_CHAT.encode(text)
    assert ids == [i for part in parts for i in ([CHAR_CHAT.stoi[part]] if part in CHAT else CHAR.encode(part))]
    assert CHAR_CHAT.encode_array(text).tolist() == ids
    assert CHAR_CHAT.decode(ids) == text
    assert CHAR_CHAT.decode(ids, skip_special_tokens=True) == strip_chat(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted(WORD.stoi) + CHAT), max_size=30), st.sampled_from([" ", "\n", " \t "]))
def test_word_texts_mixing_special_tokens_round_trip(words, gap):
    tok = with_chat_tokens(WORD)
    ids = tok.encode(gap.join(words))
    assert ids == [tok.stoi[w] for w in words]
    assert [i for i, w in zip(ids, words) if w not in CHAT] == [WORD.stoi[w] for w in words if w not in CHAT]
    assert all(i >= WORD.vocab_size for i, w in zip(ids, words) if w in CHAT)
    assert tok.decode(ids) == " ".join(words)
    assert tok.decode(ids, skip_special_tokens=True) == " ".join(w for w in words if w not in CHAT)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(CHAT) | st.text(max_size=20), max_size=10))
def test_bpe_texts_mixing_special_tokens_round_trip(parts):
    text = "".join(parts)
    ids = BPE_CHAT.encode(text)
    assert [ids.count(300 + k) for k in range(3)] == [text.count(t) for t in CHAT]
    assert BPE_CHAT.decode(ids) == text
    assert BPE_CHAT.decode(ids, skip_special_tokens=True) == strip_chat(text)
    assert BPE_CHAT.encode(strip_chat(text)) == BPE.encode(strip_chat(text))  # ordinary text: the old ids


def test_the_longest_special_token_wins_where_two_start_together():
    tok = CharTokenizer.train("ab")
    assert tok.add_special_tokens(["<s>", "<s>>"]) == [2, 3]
    assert tok.encode("a<s>>b<s>") == [0, 3, 1, 2]
    assert tok.encode_array("a<s>>b<s>").tolist() == [0, 3, 1, 2]


def test_text_outside_the_vocabulary_is_still_named_beside_special_tokens():
    with pytest.raises(TinyGPTError, match=r"1 character\(s\) this model never saw in training: 'Z'"):
        CHAR_CHAT.encode("<|user|>hear Zeus<|end|>")
    with pytest.raises(TinyGPTError, match=r"1 character\(s\) this model never saw in training: 'Z'"):
        CHAR_CHAT.encode_array("<|user|>hear Zeus<|end|>")
    with pytest.raises(TinyGPTError, match=r"unknown word\(s\) 'lamb<\|end\|>'"):
        with_chat_tokens(WORD).encode("mary had a lamb<|end|>")  # a special word stands alone


@pytest.mark.parametrize("old", [CHAR, WORD, BPE], ids=["char", "word", "bpe"])
def test_adding_a_special_token_twice_returns_its_id_and_keeps_the_vocabulary(old):
    tok = with_chat_tokens(old)
    assert tok.add_special_tokens(["<|end|>", "<|user|>"]) == [old.vocab_size + 2, old.vocab_size]
    assert (tok.vocab_size, tok.special_tokens) == (old.vocab_size + 3, CHAT)


def test_a_word_already_in_the_vocabulary_becomes_special_with_its_own_id(tmp_path):
    tok = tokenizer_from_json(WORD.to_json())
    assert tok.add_special_tokens(["<END>"]) == [WORD.stoi["<END>"]]
    assert (tok.vocab_size, tok.special_tokens) == (35, ["<END>"])
    ids = tok.encode("mary had a little lamb <END>")
    assert ids == WORD.encode("mary had a little lamb <END>")
    assert tok.decode(ids, skip_special_tokens=True) == "mary had a little lamb"
    reloaded = save_and_reload(tok, tmp_path)
    assert (reloaded.vocab_size, reloaded.special_tokens, reloaded.encode("lamb <END>")) == (
        35, ["<END>"], WORD.encode("lamb <END>"))


@pytest.mark.parametrize("tokens, message", [
    ([""], "a special token must be a non-empty string, got ''"),
    ([None], "a special token must be a non-empty string, got None"),
    (["<|user|>", "<|end of turn|>"], "the special token '<|end of turn|>' contains whitespace; use one without"),
    (["<|end|>\n"], "the special token '<|end|>\\\\n' contains whitespace"),
    ("<|end|>", "add_special_tokens takes a list of strings, got the string '<|end|>'; write \\['<|end|>'\\]"),
])
@pytest.mark.parametrize("old", [CHAR, WORD, BPE], ids=["char", "word", "bpe"])
def test_a_bad_special_token_is_refused_and_nothing_is_added(old, tokens, message):
    tok = tokenizer_from_json(old.to_json())
    with pytest.raises(TinyGPTError, match=message.replace("|", "\\|")):
        tok.add_special_tokens(tokens)
    assert (tok.vocab_size, tok.special_tokens) == (old.vocab_size, [])


# ---- special tokens in tokenizer.json and in a run -------------------------------------------------

@pytest.mark.parametrize("kind", CONVERSATIONS)
def test_special_tokens_survive_a_saved_tokenizer(kind, tmp_path):
    old, parts, gap, _ = CONVERSATIONS[kind]
    tok = with_chat_tokens(old)
    text = gap.join(parts)
    for reloaded in (tokenizer_from_json(tok.to_json()), save_and_reload(tok, tmp_path)):
        assert type(reloaded) is type(tok)
        assert (reloaded.vocab_size, reloaded.special_tokens) == (old.vocab_size + 3, CHAT)
        assert reloaded.encode(text) == tok.encode(text)
        assert reloaded.decode(tok.encode(text)) == text


def test_our_tokenizer_json_lists_the_special_tokens_after_the_vocabulary_it_had():
    doc = with_chat_tokens(CHAR).to_json()
    assert doc == {"tinygpt_tokenizer": "char", "vocab": CHAR.chars, "special_tokens": CHAT}
    doc = with_chat_tokens(WORD).to_json()
    assert doc == {"tinygpt_tokenizer": "word", "vocab": WORD.words, "end_token": "<END>", "special_tokens": CHAT}


def test_a_tokenizer_json_from_before_special_tokens_loads_with_the_same_ids(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"tinygpt_tokenizer": "char", "vocab": CHAR.chars}), encoding="utf-8")
    tok = load_tokenizer(path)
    assert (tok.vocab_size, tok.special_tokens, tok.encode("hear me")) == (30, [], CHAR.encode("hear me"))
    path.write_text(json.dumps({"tinygpt_tokenizer": "word", "vocab": WORD.words, "end_token": "<END>"}),
                    encoding="utf-8")
    tok = load_tokenizer(path)
    assert (tok.vocab_size, tok.special_tokens, tok.end_token) == (35, [], "<END>")
    assert tok.encode("mary had a little lamb <END>") == WORD.encode("mary had a little lamb <END>")


def test_hugging_face_reads_our_special_tokens_in_its_own_file(tmp_path):
    from tokenizers import Tokenizer as HFModel

    tok = with_chat_tokens(BPE)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tok.to_json()), encoding="utf-8")
    hf = HFModel.from_file(str(path))
    text = "<|user|>mary had a little lamb<|end|>"
    assert [hf.token_to_id(t) for t in CHAT] == [300, 301, 302]
    ids = tok.encode(text)
    assert ids == [300, *BPE.encode("mary had a little lamb"), 302]
    assert hf.encode(text, add_special_tokens=False).ids == ids
    assert hf.decode(ids, skip_special_tokens=False) == text
    assert hf.decode(ids) == "mary had a little lamb"  # Hugging Face skips special tokens by default


def save_chat_tokenizer(tok, folder):
    folder.mkdir()
    path = folder / "tokenizer.json"
    if isinstance(tok, HFTokenizer):
        tok.hf.save(str(path))  # as Hugging Face writes it
    else:
        path.write_text(json.dumps(tok.to_json()), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_special_tokens_survive_a_training_run(kind, tiny_corpus, tmp_path):
    text = tiny_corpus.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text) if kind == "char" else HFTokenizer.train(text, 280)
    V = tok.vocab_size
    assert tok.add_special_tokens(CHAT) == [V, V + 1, V + 2]
    path = save_chat_tokenizer(tok, tmp_path / "tok")
    out = tmp_path / "run"
    tinygpt.train(data=str(tiny_corpus), tokenizer=str(path), out=str(out), max_iters=2, n_layer=1, n_head=2,
                  n_embd=16, block_size=16, batch_size=4, threads=1, progress=False, sample_tokens=0)
    run = tinygpt.load(out)
    prompt = "<|user|>mary had a little lamb<|end|>\n<|assistant|>"
    assert run.model_config.vocab_size == V + 3
    assert run.tokenizer.special_tokens == CHAT
    assert run.tokenizer.encode(prompt) == tok.encode(prompt)
    assert [run.tokenizer.encode(t) for t in CHAT] == [[V], [V + 1], [V + 2]]
