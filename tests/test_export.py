"""`tinygpt export`: a run taken to Hugging Face transformers and to llama.cpp's GGUF, with its numbers.

transformers here is the real library (the test extra), loading from local folders only. Runs are
trained for a few steps (every tokenizer kind, both forms: plain GPT-2 and the speedrun recipe's
custom code), or written with random weights, every bias and gain included, for configurations
whose conversions need numbers far from zero to be checked (folded scales, zero biases, the
teaching configurations).
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait for the network

import gguf  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.cli import main  # noqa: E402
from tinygpt.config import ModelConfig, TrainConfig  # noqa: E402
from tinygpt.convert.gguf_export import byte_alphabet  # noqa: E402
from tinygpt.convert.gpt2 import gpt2_form_state, gpt2_misfits, tensor_names  # noqa: E402
from tinygpt.core.errors import TinyGPTError  # noqa: E402
from tinygpt.data import rhyme_text  # noqa: E402
from tinygpt.model import build_model  # noqa: E402
from tinygpt.store.rundir import RunConfig, RunDir  # noqa: E402
from tinygpt.tokenizers import CharTokenizer, WordTokenizer  # noqa: E402
from tinygpt.tokenizers.chat_format import CHAT_TOKENS, ChatFormat, default_template  # noqa: E402

TEXT = rhyme_text() * 2 + "héllo wörld, ça va? 日本語 ✓\n"
TRAIN = dict(n_layer=1, n_head=2, n_embd=16, block_size=32, batch_size=4, max_iters=15, eval_interval=15,
             threads=1, progress=False, sample_tokens=0)
SPEEDRUN = dict(preset="speedrun-cpu", time_budget="", n_embd=32, n_head=2, n_layer=1, block_size=32, batch_size=4,
                max_iters=15, eval_interval=15, eval_max_tokens=512, threads=1, progress=False, sample_tokens=0)
# Settings that GPT-2 holds, a different way for each tokenizer: folded scale, zero biases, untied heads...
GPT2_SETTINGS = {
    "char": dict(bias=False, attn_scale="n_embd", activation="gelu_tanh", tie_weights=True, norm="handwritten"),
    "word": dict(bias=True, head_bias=False, qkv_bias=False, activation="relu"),
    "bpe": dict(bias=True, head_bias=False, qkv_bias=True, activation="gelu_tanh", tie_weights=True),
    "pretrained": dict(bias=False, activation="gelu", attention="heads"),
}
PROMPTS = {"char": "mary had a", "word": "mary had a", "bpe": "mary had a", "pretrained": "mary had a"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export-data")
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    # Tokenizers with the chat tokens, handed to training as files (as another run's tokenizer.json would be).
    char = CharTokenizer.train(TEXT)
    char.add_special_tokens(CHAT_TOKENS)
    (folder / "char.json").write_text(json.dumps(char.to_json()), encoding="utf-8")
    word = WordTokenizer.train(TEXT)
    word.add_special_tokens(CHAT_TOKENS)
    (folder / "word.json").write_text(json.dumps(word.to_json()), encoding="utf-8")
    (folder / "pretrained.json").write_text(wordpiece_tokenizer().to_str(), encoding="utf-8")
    return folder


def wordpiece_tokenizer():
    """A BERT-style tokenizer.json made elsewhere: lower-casing WordPiece that adds [CLS] ... [SEP]."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator([TEXT], trainers.WordPieceTrainer(vocab_size=150, special_tokens=["[UNK]", "[CLS]",
                                                                                            "[SEP]"],
                                                              show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok


def tokenizer_spec(kind, corpus):
    return {"char": str(corpus / "char.json"), "word": str(corpus / "word.json"), "bpe": "bpe",
            "pretrained": str(corpus / "pretrained.json")}[kind]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    """trained(kind, form) -> a run trained for a few steps (once per module)."""
    runs = {}

    def get(kind, form):
        if (kind, form) not in runs:
            out = tmp_path_factory.mktemp(f"{kind}-{form}") / "run"
            settings = dict(SPEEDRUN) if form == "custom" else dict(TRAIN, **GPT2_SETTINGS[kind])
            tinygpt.train(data=str(corpus / "text.txt"), tokenizer=tokenizer_spec(kind, corpus), vocab_size=300,
                          out=str(out), **settings)
            tokenizer = RunDir(out).read_tokenizer()
            if set(CHAT_TOKENS) <= set(tokenizer.special_tokens):
                RunDir(out).write_chat_template(default_template(tokenizer))
            runs[kind, form] = out
        return runs[kind, form]

    return get


def random_run(path, tokenizer, **settings):
    """A run directory holding random weights: every weight, bias and gain drawn away from zero."""
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, **dict(dict(n_layer=2, n_head=2, n_embd=16, block_size=24),
                                                            **settings)).validate()
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.3)
            if ".ln" in f".{name}" and name.endswith("weight"):
                p.add_(1.0)  # norm gains near one
    run = RunDir(path).create()
    run.write_tokenizer(tokenizer)
    run.write_weights(model)
    run.write_config(RunConfig(model=cfg, train=TrainConfig(data="", tokenizer=tokenizer.kind, val_fraction=0.0),
                               num_params=model.num_params()))
    return path


def load_hf(folder, form):
    """What a transformers user writes; trust_remote_code only for the custom-code form."""
    remote = {"trust_remote_code": True} if form == "custom" else {}
    return AutoModelForCausalLM.from_pretrained(folder, **remote), AutoTokenizer.from_pretrained(folder, **remote)


def export_cli(run, to, out, capsys, *extra):
    assert main(["export", str(run), "--to", to, "--out", str(out), *extra]) == 0
    return capsys.readouterr().out


def greedy_cli(run, prompt, n, capsys):
    assert main(["sample", str(run), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", str(n)]) == 0
    return capsys.readouterr().out.removesuffix("\n")


def assert_same_model(run_dir, folder, form, prompt, capsys, new_tokens=12):
    """transformers' logits equal tinygpt's (<= 1e-4, float32), and greedy generate gives `tinygpt sample
    --temperature 0`'s text; returns the largest logit difference."""
    run = tinygpt.load(run_dir, device="cpu")
    model, tok = load_hf(folder, form)
    ids = run.encode(prompt)
    assert tok(prompt)["input_ids"] == ids  # the exported tokenizer gives tinygpt's ids
    g = torch.Generator().manual_seed(1)
    every = torch.randint(0, run.model_config.vocab_size, (2, run.model_config.block_size), generator=g)
    with torch.no_grad():
        diff = max((run.model(x)[0] - model(x).logits).abs().max().item() for x in (torch.tensor([ids]), every))
    assert diff <= 1e-4
    out = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False)
    assert out.shape[1] == len(ids) + new_tokens
    assert tok.decode(out[0]) == greedy_cli(run_dir, prompt, new_tokens, capsys)
    return diff


@pytest.mark.parametrize("form", ["gpt2", "custom"])
@pytest.mark.parametrize("kind", ["char", "word", "bpe", "pretrained"])
def test_transformers_computes_the_trained_runs_logits_and_greedy_tokens(trained, tmp_path, capsys, kind, form):
    run = trained(kind, form)
    printed = export_cli(run, "hf", tmp_path / "hf", capsys)
    files = sorted(p.name for p in (tmp_path / "hf").iterdir())
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    if form == "gpt2":
        assert "as GPT2LMHeadModel: plain transformers, no custom code" in printed
        assert config["architectures"] == ["GPT2LMHeadModel"] and "auto_map" not in config
        assert "modeling_tinygpt.py" not in files
    else:  # the speedrun recipe: every one of its levers is named as the reason
        assert ("because GPT-2 cannot hold: rotary positions (pos_emb rope); RMSNorm (norm rmsnorm); QK-norm "
                "(qk_norm); activation relu2 (GPT-2 has gelu_tanh, gelu, relu)") in printed
        assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_tinygpt.TinyGPTForCausalLM"
        assert "modeling_tinygpt.py" in files
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= set(files)
    model, _ = load_hf(tmp_path / "hf", form)
    assert type(model).__name__ == ("GPT2LMHeadModel" if form == "gpt2" else "TinyGPTForCausalLM")
    assert_same_model(run, tmp_path / "hf", form, PROMPTS[kind], capsys)


@pytest.mark.parametrize("settings, form", [
    (dict(bias=True, qkv_bias=True, head_bias=False, activation="gelu_tanh", tie_weights=True), "gpt2"),  # GPT-2
    (dict(bias=False, attn_scale="n_embd", activation="relu", norm="handwritten", attention="heads"), "gpt2"),
    (dict(n_head=1, residual=False, norm="none", attn_proj=False, mlp_ratio=0, attn_scale="n_embd"), "custom"),
    (dict(residual=False, norm="none", attn_proj=False, mlp_ratio=1, mlp_proj=False, attn_scale="n_embd"), "custom"),
    (dict(bias=True, head_bias=True, tie_weights=True, activation="gelu"), "custom"),  # a tied head with a bias
    (dict(bias=False, norm="rmsnorm", pos_emb="rope", qk_norm=True, activation="relu2", rope_base=100.0), "custom"),
    (dict(arch="bigram"), "custom"),
], ids=["gpt2", "lecture-scale-no-bias", "lecture-1head", "lecture-ffwd", "head-bias-tied", "speedrun", "bigram"])
def test_every_configuration_exports_with_its_numbers(tmp_path, capsys, settings, form):
    run = random_run(tmp_path / "run", CharTokenizer.train(TEXT), **settings)
    export_cli(run, "hf", tmp_path / "hf", capsys)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == \
        ("gpt2" if form == "gpt2" else "tinygpt")
    # GPT-2's learned positions end at block_size (24); the custom form slides its window on, as tinygpt does.
    assert_same_model(run, tmp_path / "hf", form, "mary had", capsys, new_tokens=16 if form == "gpt2" else 40)


def test_the_custom_form_handles_a_left_padded_batch_and_labels(trained, tmp_path, capsys):
    run = tinygpt.load(trained("char", "custom"), device="cpu")
    export_cli(run.dir, "hf", tmp_path / "hf", capsys)
    model, _ = load_hf(tmp_path / "hf", "custom")
    short, long = run.encode("it"), run.encode("mary had a lamb")
    pad = len(long) - len(short)
    ids = torch.tensor([[0] * pad + short, long])
    mask = torch.tensor([[0] * pad + [1] * len(short), [1] * len(long)])
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        alone = run.model(torch.tensor([short]))[0][0]
    assert (logits[0, pad:] - alone).abs().max() <= 1e-5  # a padded row is its unpadded self
    assert (logits[1] - run.model(torch.tensor([long]))[0][0]).abs().max() <= 1e-5
    x = torch.tensor([long])
    with torch.no_grad():  # labels as transformers takes them (shifted inside): tinygpt's training loss
        assert model(x, labels=x).loss.item() == pytest.approx(run.model(x[:, :-1], x[:, 1:])[1].item(), abs=1e-5)


@pytest.mark.parametrize("kind, text", [
    ("char", "<|user|>héllo wörld, ça va?<|end|>\n<|assistant|>日本語 ✓<|end|>"),
    ("word", "<|user|> mary  had\ta little\nlamb <|end|> <|assistant|> 日本語 ✓ <|end|>"),
    ("bpe", "mary had a little lamb, ça va? 日本語 ✓\n\n"),
    ("pretrained", "mary had a little lamb, ça va?"),
])
def test_the_exported_tokenizer_encodes_and_decodes_as_tinygpt(trained, tmp_path, capsys, kind, text):
    run = tinygpt.load(trained(kind, "gpt2"), device="cpu")
    export_cli(run.dir, "hf", tmp_path / "hf", capsys)
    _, tok = load_hf(tmp_path / "hf", "gpt2")
    ids = run.tokenizer.encode(text)
    assert tok(text)["input_ids"] == ids  # no [CLS]/[SEP] around a pretrained tokenizer's text either
    assert tok.decode(ids) == run.tokenizer.decode(ids)
    assert tok.decode(ids, skip_special_tokens=True) == run.tokenizer.decode(ids, skip_special_tokens=True)
    if kind in ("char", "word"):
        assert tok.decode(ids) == (text if kind == "char" else " ".join(text.split()))
        assert tok.convert_ids_to_tokens(ids[:1]) == ["<|user|>"]


@pytest.mark.parametrize("kind", ["char", "word"])
def test_the_chat_template_and_its_end_token_go_with_the_export(trained, tmp_path, capsys, kind):
    run = tinygpt.load(trained(kind, "gpt2"), device="cpu")
    export_cli(run.dir, "hf", tmp_path / "hf", capsys)
    _, tok = load_hf(tmp_path / "hf", "gpt2")
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "mary had"}]
    chat = ChatFormat(run.tokenizer, RunDir(run.dir).read_chat_template())
    assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        chat.render(messages, add_generation_prompt=True)
    end = run.tokenizer.token_to_id("<|end|>")
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert (tok.eos_token, tok.eos_token_id, generation["eos_token_id"]) == ("<|end|>", end, end)


def test_a_gpt2_export_imports_back_with_the_same_logits(trained, tmp_path, capsys):
    original = tinygpt.load(trained("word", "gpt2"), device="cpu")  # untied, no query/key/value biases
    export_cli(original.dir, "hf", tmp_path / "hf", capsys)
    assert main(["import", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    back = tinygpt.load(tmp_path / "back", device="cpu")
    ids = torch.tensor([original.encode("mary had a little lamb its fleece was white")])
    assert back.encode("mary had a little lamb") == original.encode("mary had a little lamb")
    assert (back.model(ids)[0] - original.model(ids)[0]).abs().max() <= 1e-5
    assert back.model_config.tie_weights is False


def test_what_stops_a_plain_gpt2_export_is_named():
    assert gpt2_misfits(ModelConfig(bias=False, tie_weights=True, activation="gelu_tanh")) == []
    assert gpt2_misfits(ModelConfig()) == ["a bias on the output head (bias with head_bias)"]
    assert gpt2_misfits(ModelConfig(residual=False, norm="none", attn_proj=False, mlp_ratio=0, bias=False)) == [
        "no normalisation (norm none)", "no residual connections (residual false)",
        "no attention output projection (attn_proj false)", "no MLP (mlp_ratio 0)"]
    assert gpt2_misfits(ModelConfig(arch="bigram")) == ["arch bigram (not a GPT)"]


def test_a_gguf_file_reads_back_with_the_runs_tensors_and_tokenizer(trained, tmp_path, capsys):
    run = tinygpt.load(trained("char", "gpt2"), device="cpu")  # folded 1/sqrt(n_embd) scale, zero biases, tied
    printed = export_cli(run.dir, "gguf", tmp_path / "m.gguf", capsys)
    assert "(GGUF, llama.cpp's gpt2 architecture, float32)" in printed
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    meta = {k: f.contents() for k, f in reader.fields.items()}
    cfg = run.model_config
    assert {k: meta[k] for k in ("general.architecture", "gpt2.context_length", "gpt2.embedding_length",
                                 "gpt2.feed_forward_length", "gpt2.block_count", "gpt2.attention.head_count",
                                 "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token")} == {
        "general.architecture": "gpt2", "gpt2.context_length": 32, "gpt2.embedding_length": 16,
        "gpt2.feed_forward_length": 64, "gpt2.block_count": 1, "gpt2.attention.head_count": 2,
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.add_bos_token": False}
    assert meta["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert meta["tokenizer.chat_template"] == RunDir(run.dir).read_chat_template()
    assert meta["tokenizer.ggml.eos_token_id"] == run.tokenizer.token_to_id("<|end|>")
    expected = gpt2_form_state(cfg, run.model.canonical_state_dict())
    names = tensor_names(cfg.n_layer, cfg.tie_weights)
    assert [t.name for t in reader.tensors] == [n.gguf for n in names]
    for t, n in zip(reader.tensors, names):
        assert torch.equal(torch.from_numpy(t.data.copy()), expected[n.ours]), n.gguf
    assert not torch.equal(expected["blocks.0.attn.qkv.weight"], run.model.canonical_state_dict()[
        "blocks.0.attn.qkv.weight"])  # the lecture's scale went into the queries

    # The characters as byte-level BPE: GPT-2's alphabet, and merges that rebuild every character.
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert tokens[run.tokenizer.token_to_id("é")] == "Ã©" and tokens[run.tokenizer.token_to_id("\n")] == "Ċ"
    assert [tokens[i] for i, k in enumerate(types) if k == gguf.TokenType.CONTROL] == CHAT_TOKENS
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    for piece in (p for m in merges for p in m):  # tokenizers wants the halves of a character in its vocabulary
        vocab.setdefault(piece, len(vocab))  # (llama.cpp does not): ids past the run's, never in the output
    bpe = Tokenizer(models.BPE(vocab, merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens([AddedToken(t, special=True) for t in CHAT_TOKENS])
    text = "<|user|>héllo wörld, ça va?<|end|> 日本語 ✓\n"
    assert bpe.encode(text).ids == run.encode(text)
    assert bpe.decode(run.encode(text), skip_special_tokens=False) == text


def test_a_bpe_run_goes_to_gguf_with_its_vocabulary_and_merges(trained, tmp_path, capsys):
    run = tinygpt.load(trained("bpe", "gpt2"), device="cpu")
    printed = export_cli(run.dir, "gguf", tmp_path / "m.gguf", capsys)
    assert "llama.cpp takes id 11" in printed  # no end-of-text token: said, not hidden
    meta = {k: f.contents() for k, f in gguf.GGUFReader(tmp_path / "m.gguf").fields.items()}
    doc = run.tokenizer.to_json()
    assert meta["tokenizer.ggml.tokens"] == sorted(doc["model"]["vocab"], key=doc["model"]["vocab"].get)
    assert meta["tokenizer.ggml.merges"] == [" ".join(m) if isinstance(m, list) else m for m in doc["model"]["merges"]]
    assert meta["tokenizer.ggml.bos_token_id"] == run.tokenizer.start_ids()[0]


def test_the_byte_alphabet_is_gpt2s():
    from tokenizers import pre_tokenizers

    level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    alphabet = byte_alphabet()
    for c in ["a", " ", "\n", "\x00", "\x7f", "\xa0", "\xad", "é", "日", "😀"]:
        assert "".join(alphabet[b] for b in c.encode("utf-8")) == level.pre_tokenize_str(c)[0][0]


@pytest.mark.parametrize("kind, form, message", [
    ("word", "gpt2", "does not fit llama.cpp's GPT-2 model and tokenizers: activation relu (llama.cpp's gpt2 "
                     "computes GELU); a word tokenizer (llama.cpp has none that splits at whitespace"),
    ("pretrained", "gpt2", ": a WordPiece tokenizer with BertPreTokenizer pre-tokenizer (llama.cpp reads GPT-2's "
                           "byte-level BPE exactly, not this); --to hf takes every run"),
    ("char", "custom", "does not fit llama.cpp's GPT-2 model and tokenizers: rotary positions (pos_emb rope); RMSNorm"),
])
def test_runs_gguf_cannot_hold_are_refused_by_name(trained, tmp_path, capsys, kind, form, message):
    assert main(["export", str(trained(kind, form)), "--to", "gguf", "--out", str(tmp_path / "m.gguf")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing written


def test_relu_is_refused_for_gguf(tmp_path):
    run = random_run(tmp_path / "run", CharTokenizer.train(TEXT), bias=False, activation="relu")
    with pytest.raises(TinyGPTError, match=r"activation relu \(llama.cpp's gpt2 computes GELU\)"):
        tinygpt.export(run, to="gguf", out=tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_bad_export_requests_are_one_line_and_write_nothing(trained, tmp_path, capsys):
    run = trained("char", "gpt2")
    cases = [
        (["--to", "onnx", "--out", str(tmp_path / "a")], "unknown export format 'onnx'; choose hf (a folder for "
                                                          "Hugging Face transformers) or gguf"),
        (["--to", "hf", "--out", str(run)], "is the run directory itself; choose another --out"),
    ]
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    cases.append((["--to", "hf", "--out", str(tmp_path / "used")], "used already exists and is not empty; pass "
                                                                   "--force to overwrite it"))
    (tmp_path / "old.gguf").write_text("old")
    cases.append((["--to", "gguf", "--out", str(tmp_path / "old.gguf")], "old.gguf already exists; pass --force"))
    for args, message in cases:
        assert main(["export", str(run), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["export", str(tmp_path / "used"), "--to", "hf", "--out", str(tmp_path / "b")]) == 2
    assert "used is not a tinygpt run directory (it has no config.json)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.gguf", "used"]  # nothing new, nothing touched
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine" and (tmp_path / "old.gguf").read_text() == "old"

    # --force overwrites the export's own files and leaves the rest alone.
    export_cli(run, "hf", tmp_path / "used", capsys, "--force")
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine" and (tmp_path / "used" / "config.json").is_file()
    export_cli(run, "gguf", tmp_path / "old.gguf", capsys, "--force")
    assert gguf.GGUFReader(tmp_path / "old.gguf").fields["general.architecture"].contents() == "gpt2"


def test_export_from_python(trained, tmp_path):
    done = tinygpt.export(trained("char", "custom"), to="hf", out=tmp_path / "hf")
    assert (done.path, done.form) == (tmp_path / "hf", "custom")
    assert done.reasons[0] == "rotary positions (pos_emb rope)"
    default = tinygpt.export(trained("bpe", "gpt2"), to="gguf")  # beside the run
    assert default.path == trained("bpe", "gpt2").with_name("run.gguf") and default.path.is_file()
