"""GPT-2 checkpoints made elsewhere become runs: the same function, then everything a run can do.

The checkpoints here are made by the tests in Hugging Face's layout (config.json, Conv1D weights in
model.safetensors, tokenizer.json), and GPT-2's forward pass is written out below from its
definition, independently of tinygpt's model, as the reference the import must match.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import tinygpt
from tinygpt.cli import main
from tinygpt.convert.gpt2 import import_gpt2
from tinygpt.core.errors import TinyGPTError
from tinygpt.data import rhyme_text
from tinygpt.tokenizers import HFTokenizer

N_LAYER, N_HEAD, N_EMBD, N_POSITIONS = 2, 2, 16, 32


def make_checkpoint(folder, prefix="", **config_changes):
    """A random GPT-2 in Hugging Face's files; returns its tensors (without the prefix)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = HFTokenizer.train(rhyme_text(), 300)
    (folder / "tokenizer.json").write_text(tokenizer.hf.to_str(), encoding="utf-8")
    V, C = tokenizer.vocab_size, N_EMBD
    g = torch.Generator().manual_seed(0)

    def rand(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    t = {"wte.weight": rand(V, C), "wpe.weight": rand(N_POSITIONS, C), "ln_f.weight": 1 + rand(C), "ln_f.bias": rand(C)}
    for i in range(N_LAYER):
        h = f"h.{i}."
        t.update({h + "ln_1.weight": 1 + rand(C), h + "ln_1.bias": rand(C), h + "ln_2.weight": 1 + rand(C),
                  h + "ln_2.bias": rand(C),
                  h + "attn.c_attn.weight": rand(C, 3 * C), h + "attn.c_attn.bias": rand(3 * C),  # Conv1D: (in, out)
                  h + "attn.c_proj.weight": rand(C, C), h + "attn.c_proj.bias": rand(C),
                  h + "mlp.c_fc.weight": rand(C, 4 * C), h + "mlp.c_fc.bias": rand(4 * C),
                  h + "mlp.c_proj.weight": rand(4 * C, C), h + "mlp.c_proj.bias": rand(C)})
    stored = {prefix + k: v for k, v in t.items()}
    for i in range(N_LAYER):  # the causal-mask buffer older GPT-2 files carry: not a weight
        stored[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, N_POSITIONS, N_POSITIONS))
    if prefix:
        stored["lm_head.weight"] = t["wte.weight"].clone()  # the tied head, saved again
    save_file(stored, str(folder / "model.safetensors"))
    config = {"model_type": "gpt2", "vocab_size": V, "n_positions": N_POSITIONS, "n_embd": C, "n_layer": N_LAYER,
              "n_head": N_HEAD, "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
              **config_changes}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return t


def gpt2_reference_logits(t, ids):
    """GPT-2's forward pass from its definition: (T,) ids -> (T, V) logits."""
    T, C, hs = len(ids), N_EMBD, N_EMBD // N_HEAD
    x = t["wte.weight"][ids] + t["wpe.weight"][:T]  # (T, C)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(N_LAYER):
        h = f"h.{i}."
        a = F.layer_norm(x, (C,), t[h + "ln_1.weight"], t[h + "ln_1.bias"], 1e-5)
        q, k, v = (a @ t[h + "attn.c_attn.weight"] + t[h + "attn.c_attn.bias"]).split(C, dim=-1)  # (T, C) each
        q, k, v = (z.view(T, N_HEAD, hs).transpose(0, 1) for z in (q, k, v))  # (nh, T, hs)
        att = (q @ k.transpose(-2, -1) / math.sqrt(hs)).masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(0, 1).reshape(T, C)
        x = x + y @ t[h + "attn.c_proj.weight"] + t[h + "attn.c_proj.bias"]
        m = F.layer_norm(x, (C,), t[h + "ln_2.weight"], t[h + "ln_2.bias"], 1e-5)
        m = F.gelu(m @ t[h + "mlp.c_fc.weight"] + t[h + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ t[h + "mlp.c_proj.weight"] + t[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), t["ln_f.weight"], t["ln_f.bias"], 1e-5)
    return x @ t["wte.weight"].T  # the head is the token embedding


@pytest.mark.parametrize("prefix", ["", "transformer."])
@pytest.mark.parametrize("attention", ["fused", "heads"])
def test_an_imported_gpt2_computes_gpt2s_logits(tmp_path, prefix, attention):
    t = make_checkpoint(tmp_path / "gpt2", prefix)
    out = import_gpt2(str(tmp_path / "gpt2"), tmp_path / "run")
    run = tinygpt.load(out, attention=attention)
    ids = run.encode("mary had a little lamb, its fleece was white as snow")
    logits, _ = run.model(torch.tensor([ids]))
    assert (logits[0] - gpt2_reference_logits(t, torch.tensor(ids))).abs().max() < 1e-5
    cfg = run.model_config
    assert (cfg.qkv_bias, cfg.head_bias, cfg.tie_weights, cfg.activation) == (True, False, True, "gelu_tanh")


def test_an_imported_run_samples_evaluates_on_a_file_and_fine_tunes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_checkpoint(tmp_path / "gpt2")
    assert main(["import", str(tmp_path / "gpt2")]) == 0  # named after the folder by default
    assert "saved in runs/gpt2" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "gpt2")]) == 2  # and never over a run already there
    assert "runs/gpt2 already exists and is not an empty folder" in capsys.readouterr().err
    assert main(["sample", "runs/gpt2", "--prompt", "mary had", "--max-new-tokens", "5", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("mary had")
    assert main(["eval", "runs/gpt2"]) == 2
    assert "has no training text of its own (it was imported); evaluate it on a file with --data FILE" in \
        capsys.readouterr().err
    (tmp_path / "text.txt").write_text(rhyme_text() * 4, encoding="utf-8")
    before = tinygpt.load("runs/gpt2").evaluate(data="text.txt")["loss"]
    result = tinygpt.train(init_from="runs/gpt2", data="text.txt", out="runs/tuned", max_iters=20, eval_interval=20,
                           warmup_iters=0, lr=3e-3, batch_size=4, threads=1, progress=False, sample_tokens=0)
    after = tinygpt.load(result.out_dir).evaluate(data="text.txt")["loss"]
    assert after < before - 0.5  # random GPT-2 weights learn the rhyme


def test_hub_names_are_downloaded_with_only_the_files_needed(tmp_path, monkeypatch):
    import huggingface_hub

    make_checkpoint(tmp_path / "cache")
    calls = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    tinygpt.import_gpt2("hf:openai-community/gpt2", tmp_path / "run")  # the package-level entry point
    assert calls == [("openai-community/gpt2", ["config.json", "model.safetensors", "tokenizer.json"])]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["imported_from"] == "hf:openai-community/gpt2"


def test_a_hub_download_that_fails_is_one_clear_error(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise OSError("Name or service not known\nAn error happened while trying to locate the files")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(TinyGPTError, match="cannot download 'gpt2' from the Hugging Face Hub .*Name or service") as e:
        import_gpt2("hf:gpt2", tmp_path / "run")
    assert "\n" not in str(e.value)  # the client's message, on the error's one line


@pytest.mark.parametrize("change, message", [
    (dict(model_type="llama"), "holds a 'llama' model; only GPT-2 checkpoints"),
    (dict(activation_function="silu"), "not supported (activation_function silu)"),
    (dict(scale_attn_by_inverse_layer_idx=True), "not supported (scale_attn_by_inverse_layer_idx)"),
])
def test_what_this_gpt_does_not_compute_is_refused(tmp_path, change, message):
    make_checkpoint(tmp_path / "gpt2", **change)
    with pytest.raises(TinyGPTError, match=message.replace("(", "\\(").replace(")", "\\)")):
        import_gpt2(str(tmp_path / "gpt2"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_missing_files_and_a_used_directory_are_refused(tmp_path):
    make_checkpoint(tmp_path / "gpt2")
    (tmp_path / "gpt2" / "model.safetensors").unlink()
    with pytest.raises(TinyGPTError, match="has no model.safetensors; a GPT-2 checkpoint needs"):
        import_gpt2(str(tmp_path / "gpt2"), tmp_path / "run")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(TinyGPTError, match="already exists and is not an empty folder"):
        import_gpt2(str(tmp_path / "gpt2"), tmp_path / "used")
    with pytest.raises(TinyGPTError, match="already exists and is not an empty folder"):
        import_gpt2(str(tmp_path / "gpt2"), tmp_path / "used" / "notes.txt")


def test_a_config_without_the_model_shape_is_refused(tmp_path):
    make_checkpoint(tmp_path / "gpt2")
    config = json.loads((tmp_path / "gpt2" / "config.json").read_text())
    del config["n_embd"], config["n_head"]
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps(config))
    with pytest.raises(TinyGPTError, match="config.json has no n_embd, n_head; is it a GPT-2 config"):
        import_gpt2(str(tmp_path / "gpt2"), tmp_path / "run")
