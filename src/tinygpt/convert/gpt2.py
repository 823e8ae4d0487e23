"""GPT-2 from elsewhere: a Hugging Face checkpoint becomes a tinygpt run directory.

    tinygpt import hf:openai-community/gpt2 --out runs/gpt2     # from the Hub
    tinygpt import path/to/folder --out runs/mine              # config.json, model.safetensors, tokenizer.json

GPT-2 is this package's GPT with every switch set its way: biases everywhere (the query/key/value
projection too, not the tied head), learned positions, LayerNorm, GELU's tanh approximation and
an output head tied to the token embedding. Its checkpoints store the linear layers as `Conv1D`,
(in, out), the transpose of a `Linear` weight; importing transposes them and renames the rest.
Only safetensors weights are read (never a pickle), and the result is an ordinary run: sample it,
inspect it, evaluate it on a file, or fine-tune it with `tinygpt train --init-from`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..checkpoint import load_tensors, load_weights_into
from ..config import ModelConfig, TrainConfig
from ..errors import TinyGPTError
from ..model import build_model
from ..rundir import RunConfig, RunDir
from ..tokenizers import load_tokenizer
from .hub import hub_name, one_line, quiet

FILES = ("config.json", "model.safetensors", "tokenizer.json")
# GPT-2's activation names for the tanh approximation (and the exact GELU some conversions use).
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu"}


def fetch(spec: str) -> Path:
    """The folder holding a checkpoint's files: `spec` itself, or for hf:NAME a download from the Hub."""
    name = hub_name(spec)
    if name is None:
        folder = Path(spec)
        if not folder.is_dir():
            raise TinyGPTError(f"{spec} is not a folder; pass a folder with {', '.join(FILES)}, or hf:NAME")
        return folder
    try:
        import huggingface_hub

        with quiet():
            return Path(huggingface_hub.snapshot_download(name, allow_patterns=list(FILES)))
    except Exception as e:  # no network, an unknown or gated repository, no huggingface_hub
        raise TinyGPTError(f"cannot download {name!r} from the Hugging Face Hub ({type(e).__name__}: "
                           f"{one_line(e)}); check the name and the connection, or download its files and pass "
                           "their folder") from None


def gpt2_config(hf: dict, source: str) -> ModelConfig:
    """Our settings for a GPT-2 config.json, refusing what this GPT does not compute."""
    if not isinstance(hf, dict) or hf.get("model_type") != "gpt2":
        kind = hf.get("model_type") if isinstance(hf, dict) else None
        raise TinyGPTError(f"{source} holds a {kind!r} model; only GPT-2 checkpoints (model_type gpt2) "
                           "can be imported")
    missing = [k for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head") if k not in hf]
    if missing:
        raise TinyGPTError(f"{source}: config.json has no {', '.join(missing)}; is it a GPT-2 config?")
    unsupported = [k for k in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn") if hf.get(k)]
    if hf.get("scale_attn_weights") is False:
        unsupported.append("scale_attn_weights false")
    if hf.get("layer_norm_epsilon", 1e-5) != 1e-5:
        unsupported.append(f"layer_norm_epsilon {hf['layer_norm_epsilon']}")
    activation = ACTIVATIONS.get(hf.get("activation_function", "gelu_new"))
    if activation is None:
        unsupported.append(f"activation_function {hf['activation_function']}")
    n_embd = hf["n_embd"]
    inner = hf.get("n_inner") or 4 * n_embd
    if inner % n_embd:
        unsupported.append(f"n_inner {inner} (not a multiple of n_embd {n_embd})")
    if unsupported:
        raise TinyGPTError(f"{source}: this GPT-2 variant is not supported ({', '.join(unsupported)})")
    cfg = ModelConfig(vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
                      n_head=hf["n_head"], n_embd=n_embd, dropout=0.0, bias=True, qkv_bias=True, head_bias=False,
                      tie_weights=True, activation=activation, mlp_ratio=inner // n_embd, norm="layernorm",
                      pos_emb="learned", attn_scale="head_size")
    return cfg.validate()


def gpt2_state(tensors: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """GPT-2's tensors under our names; its Conv1D weights (in, out) transposed to (out, in)."""
    tensors = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    state = {"tok_emb.weight": tensors["wte.weight"], "pos_emb.weight": tensors["wpe.weight"],
             "ln_f.weight": tensors["ln_f.weight"], "ln_f.bias": tensors["ln_f.bias"]}
    for i in range(n_layer):
        theirs, ours = f"h.{i}.", f"blocks.{i}."
        for a, b in (("ln_1", "ln1"), ("ln_2", "ln2")):
            state[ours + b + ".weight"] = tensors[theirs + a + ".weight"]
            state[ours + b + ".bias"] = tensors[theirs + a + ".bias"]
        for a, b in (("attn.c_attn", "attn.qkv"), ("attn.c_proj", "attn.proj"), ("mlp.c_fc", "mlp.fc"),
                     ("mlp.c_proj", "mlp.proj")):
            state[ours + b + ".weight"] = tensors[theirs + a + ".weight"].t().contiguous()  # (in, out) -> (out, in)
            state[ours + b + ".bias"] = tensors[theirs + a + ".bias"]
    return state


def import_gpt2(spec: str, out: str | Path) -> Path:
    """Write a run directory at `out` holding the GPT-2 checkpoint `spec` (a folder or hf:NAME)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TinyGPTError(f"{out} already exists and is not an empty folder; choose another --out")
    folder = fetch(spec)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise TinyGPTError(f"{spec} has no {', '.join(missing)}; a GPT-2 checkpoint needs {', '.join(FILES)} "
                           "(weights only as safetensors)")
    try:
        hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TinyGPTError(f"{folder / 'config.json'} is not valid JSON ({e})") from None
    model_cfg = gpt2_config(hf, spec)
    tokenizer = load_tokenizer(folder / "tokenizer.json")
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise TinyGPTError(f"{spec}: its tokenizer has {tokenizer.vocab_size} tokens but the model "
                           f"{model_cfg.vocab_size}")
    tensors, _ = load_tensors(folder / "model.safetensors")
    model = build_model(model_cfg)
    try:
        state = gpt2_state(tensors, model_cfg.n_layer)
    except KeyError as e:
        raise TinyGPTError(f"{folder / 'model.safetensors'} has no tensor {e.args[0]}; is it a GPT-2 checkpoint?"
                           ) from None
    load_weights_into(model, {k: v.float() for k, v in state.items()}, folder / "model.safetensors")

    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    train = TrainConfig(data="", tokenizer=str(folder / "tokenizer.json"), val_fraction=0.0)
    config = RunConfig(model=model_cfg, train=train, imported_from=spec, num_params=model.num_params(),
                       data={"name": "", "notes": [f"imported from {spec}; it has no training text"]})
    shutil.copyfile(folder / "tokenizer.json", run.tokenizer_path)
    run.write_weights(model, {"imported_from": spec})
    run.write_config(config)
    return run.path
