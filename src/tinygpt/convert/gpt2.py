"""GPT-2 in Hugging Face's layout, both ways: a checkpoint becomes a run (`tinygpt import`), and a run
that fits GPT-2 becomes a checkpoint (`tinygpt export --to hf`, convert/hf_export.py).

    tinygpt import hf:openai-community/gpt2 --out runs/gpt2     # from the Hub
    tinygpt import path/to/folder --out runs/mine              # config.json, model.safetensors, tokenizer.json

GPT-2 is this package's GPT with every switch set its way: biases everywhere (the query/key/value
projection too, not the tied head), learned positions, LayerNorm, GELU's tanh approximation and
an output head tied to the token embedding. Its checkpoints store the linear layers as `Conv1D`,
(in, out), the transpose of a `Linear` weight. One name table (`tensor_names`) says where each of
our tensors lives in a GPT-2 checkpoint and in a GGUF file (llama.cpp's `gpt2` architecture), so
import, export and the GGUF writer cannot disagree. Only safetensors weights are read (never a
pickle), and an imported run is an ordinary run: sample it, inspect it, evaluate it on a file, or
fine-tune it with `tinygpt train --init-from`.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig, TrainConfig
from ..config.model import EXPORT_ACTIVATIONS, gpt2_misfits  # noqa: F401 (the writers import it from here)
from ..core.errors import TinyGPTError
from ..core.hub import hub_name, one_line, quiet
from ..model import build_model
from ..store.checkpoint import load_tensors, load_weights_into
from ..store.rundir import RunConfig, RunDir
from ..tokenizers import load_tokenizer

FILES = ("config.json", "model.safetensors", "tokenizer.json")
# GPT-2's activation names: the tanh approximation (several spellings), the exact GELU, ReLU.
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu",
               "relu": "relu"}
HF_PREFIX = "transformer."  # GPT2LMHeadModel's name for the trunk; the head is lm_head outside it
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which tinygpt's norms use; GPT-2's too


@dataclass(frozen=True)
class TensorName:
    """Where one tensor lives: tinygpt's checkpoint, GPT-2's (Hugging Face), llama.cpp's gpt2 GGUF."""

    ours: str
    hf: str  # without HF_PREFIX
    gguf: str
    conv1d: bool = False  # GPT-2 stores it as Conv1D, (in, out): the transpose of ours and GGUF's (out, in)


#          ours                 GPT-2 (Hugging Face)   GGUF (llama.cpp gpt2)   Conv1D in GPT-2
_TRUNK = (("tok_emb.weight",    "wte.weight",          "token_embd.weight"),
          ("pos_emb.weight",    "wpe.weight",          "position_embd.weight"),
          ("ln_f.weight",       "ln_f.weight",         "output_norm.weight"),
          ("ln_f.bias",         "ln_f.bias",           "output_norm.bias"))
_BLOCK = (("ln1.weight",        "ln_1.weight",         "attn_norm.weight"),
          ("ln1.bias",          "ln_1.bias",           "attn_norm.bias"),
          ("attn.qkv.weight",   "attn.c_attn.weight",  "attn_qkv.weight",      True),
          ("attn.qkv.bias",     "attn.c_attn.bias",    "attn_qkv.bias"),
          ("attn.proj.weight",  "attn.c_proj.weight",  "attn_output.weight",   True),
          ("attn.proj.bias",    "attn.c_proj.bias",    "attn_output.bias"),
          ("ln2.weight",        "ln_2.weight",         "ffn_norm.weight"),
          ("ln2.bias",          "ln_2.bias",           "ffn_norm.bias"),
          ("mlp.fc.weight",     "mlp.c_fc.weight",     "ffn_up.weight",        True),
          ("mlp.fc.bias",       "mlp.c_fc.bias",       "ffn_up.bias"),
          ("mlp.proj.weight",   "mlp.c_proj.weight",   "ffn_down.weight",      True),
          ("mlp.proj.bias",     "mlp.c_proj.bias",     "ffn_down.bias"))
_HEAD = TensorName("lm_head.weight", "lm_head.weight", "output.weight")


def tensor_names(n_layer: int, tied: bool) -> list[TensorName]:
    """Every tensor of a GPT-2-shaped model, under each format's name (a tied head is not stored)."""
    names = [TensorName(*row) for row in _TRUNK]
    for i in range(n_layer):
        names += [TensorName(f"blocks.{i}.{r[0]}", f"h.{i}.{r[1]}", f"blk.{i}.{r[2]}", *r[3:]) for r in _BLOCK]
    return names if tied else [*names, _HEAD]


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


# ---------------------------------------------------------------------- import: GPT-2 -> tinygpt


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
    if hf.get("layer_norm_epsilon", LAYER_NORM_EPS) != LAYER_NORM_EPS:
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
                      tie_weights=hf.get("tie_word_embeddings", True), activation=activation,
                      mlp_ratio=inner // n_embd, norm="layernorm", pos_emb="learned", attn_scale="head_size")
    return cfg.validate()


def gpt2_state(tensors: dict[str, torch.Tensor], n_layer: int, tied: bool = True) -> dict[str, torch.Tensor]:
    """GPT-2's tensors under our names; its Conv1D weights (in, out) transposed to (out, in)."""
    tensors = {k.removeprefix(HF_PREFIX): v for k, v in tensors.items()}
    state = {}
    for name in tensor_names(n_layer, tied):
        t = tensors[name.hf]
        state[name.ours] = t.t().contiguous() if name.conv1d else t  # (in, out) -> (out, in)
    return state


# ---------------------------------------------------------------------- export: tinygpt -> GPT-2


def gpt2_form_state(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A run's tensors (canonical layout, our names) as GPT-2 computes them: every tensor of
    `tensor_names` present, float32, the biases it lacks as zeros, the attention scale in the queries.

    GPT-2 divides attention scores by sqrt(head_size). The lecture's 1/sqrt(n_embd) scale is the same
    function with the query weights and bias multiplied by sqrt(head_size / n_embd), since the scores
    are linear in the query.
    """
    C = cfg.n_embd
    out = {k: v.detach().float().clone() for k, v in state.items()}
    for name in tensor_names(cfg.n_layer, cfg.tie_weights):
        if name.ours not in out and name.ours.endswith(".bias"):  # bias false: GPT-2's biases, all zero
            rows = out[name.ours.removesuffix(".bias") + ".weight"].shape[0]
            out[name.ours] = torch.zeros(rows)
    if cfg.attn_scale == "n_embd":
        fold = math.sqrt(cfg.head_size / C)
        for i in range(cfg.n_layer):
            out[f"blocks.{i}.attn.qkv.weight"][:C] *= fold  # (3C, C): the query rows first
            out[f"blocks.{i}.attn.qkv.bias"][:C] *= fold
    return out


def hf_gpt2_config(cfg: ModelConfig, special_ids: dict[str, int]) -> dict:
    """GPT-2's config.json for a run that fits (gpt2_misfits is empty); special_ids: bos/eos/pad ids."""
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
            "n_inner": cfg.mlp_ratio * cfg.n_embd, "activation_function": EXPORT_ACTIVATIONS[cfg.activation],
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
            "layer_norm_epsilon": LAYER_NORM_EPS, "initializer_range": 0.02, "scale_attn_weights": True,
            "tie_word_embeddings": cfg.tie_weights, "use_cache": True, "torch_dtype": "float32",
            "bos_token_id": special_ids.get("bos"), "eos_token_id": special_ids.get("eos"),
            "pad_token_id": special_ids.get("pad")}


def hf_gpt2_tensors(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of GPT2LMHeadModel's model.safetensors, from a run's canonical state."""
    full = gpt2_form_state(cfg, state)
    out = {}
    for name in tensor_names(cfg.n_layer, cfg.tie_weights):
        t = full[name.ours]
        key = name.hf if name is _HEAD else HF_PREFIX + name.hf
        out[key] = t.t().contiguous() if name.conv1d else t  # (out, in) -> Conv1D's (in, out)
    return out


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
        state = gpt2_state(tensors, model_cfg.n_layer, model_cfg.tie_weights)
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
