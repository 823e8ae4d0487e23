"""`tinygpt export RUN --to hf --out DIR`: a folder Hugging Face transformers loads, with tinygpt's numbers.

    DIR/
      config.json              the model's settings (GPT-2's, or tinygpt's with an auto_map), BOS and EOS ids
      generation_config.json   the token ids generation starts from and stops at
      model.safetensors        the weights, float32
      tokenizer.json           the tokenizer in the `tokenizers` format (char and word included)
      tokenizer_config.json    its class, context length, BOS and EOS tokens, chat template
      modeling_tinygpt.py      only in the custom-code form

Two forms. A run whose settings GPT-2's architecture computes exactly (convert/gpt2.py:
`gpt2_misfits` is empty) becomes a plain `GPT2LMHeadModel`, no code attached: biases it lacks are
written as zeros, the lecture's 1/sqrt(n_embd) attention scale is folded into the query weights,
its activation and tied or untied head carried over. Any other run carries `modeling_tinygpt.py`
(transformers' `auto_map` convention) and loads with `trust_remote_code=True`; the result says which
settings made it so.

The tokenizer and config.json name a BOS and an EOS (the start token, and `<|end|>` or else the start
token again: hf_tokenizer.py says why and how), so a client that scores text (lm-evaluation-harness)
has a token to put before it. generation_config.json stops only at `<|end|>`: `tinygpt sample` writes
on past a line break, and so does `generate`.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ..config import ModelConfig
from ..core.version import __version__
from ..store.checkpoint import atomic_save_tensors, atomic_write_bytes, atomic_write_json
from .gpt2 import gpt2_misfits, hf_gpt2_config, hf_gpt2_tensors
from .hf_tokenizer import hf_tokenizer, tokenizer_config
from .source import COMPUTED, Exported, check_out, read_source

MODELING_FILE = Path(__file__).with_name("modeling_tinygpt.py")  # copied beside the weights


def export_hf(run_dir, out, force: bool = False) -> Exported:
    """Write the run at `run_dir` as a transformers folder at `out` (see the module docstring)."""
    src = read_source(run_dir)
    out = Path(out)
    check_out(out, src.run_dir, force, folder=True)
    cfg = src.config
    reasons = gpt2_misfits(cfg)
    generation = {k + "_token_id": v for k, v in src.special_ids().items()}  # stops at <|end|> only
    ids = hf_special_ids(src)
    tokenizer = hf_tokenizer(src.tokenizer, marks=ids.values())
    named = {k: tokenizer.id_to_token(v) for k, v in ids.items()}
    tok_config = tokenizer_config(cfg.block_size, src.chat_template, named.get("bos"), named.get("eos"))
    if not reasons:
        form, config, tensors = "gpt2", hf_gpt2_config(cfg, ids), hf_gpt2_tensors(cfg, src.state())
    else:
        form, config, tensors = "custom", custom_config(cfg, ids), src.state()
        generation["use_cache"] = False  # modeling_tinygpt.py keeps no cache

    out.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(out / "model.safetensors", tensors, {"format": "pt"})
    atomic_write_bytes(out / "tokenizer.json", tokenizer.to_str(pretty=True).encode("utf-8"))
    atomic_write_json(out / "tokenizer_config.json", tok_config)
    atomic_write_json(out / "generation_config.json", generation)
    modeling = out / MODELING_FILE.name
    if form == "custom":
        shutil.copyfile(MODELING_FILE, modeling)
    elif modeling.exists():  # left by an earlier custom export into this folder (--force)
        modeling.unlink()
    atomic_write_json(out / "config.json", config)  # last: a folder without it is not a model
    return Exported(out, form, reasons)


def hf_special_ids(src) -> dict[str, int]:
    """The BOS and EOS ids of the tokenizer and config.json, by tinygpt's one rule for them
    (`Tokenizer.boundary_tokens`): BOS the start token, EOS the chat end token or else BOS again."""
    bos, eos = src.tokenizer.boundary_tokens(chat=src.chat_template is not None)
    start = src.tokenizer.start_ids()[0] if bos is not None else None  # the ids; boundary_tokens names texts
    ids = {"bos": start, "eos": start if eos == bos else src.tokenizer.token_to_id(eos)}
    return {k: v for k, v in ids.items() if v is not None}


def custom_config(cfg: ModelConfig, special_ids: dict[str, int]) -> dict:
    """config.json for modeling_tinygpt.py: tinygpt's settings and transformers' auto_map."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k in COMPUTED}
    return {"architectures": ["TinyGPTForCausalLM"], "model_type": "tinygpt",
            "auto_map": {"AutoConfig": "modeling_tinygpt.TinyGPTConfig",
                         "AutoModelForCausalLM": "modeling_tinygpt.TinyGPTForCausalLM"},
            **settings, "use_cache": False, "torch_dtype": "float32", "tinygpt_version": __version__,
            **{k + "_token_id": v for k, v in special_ids.items()}}
