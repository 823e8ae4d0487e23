"""`tinygpt export RUN --to hf --out DIR`: a folder Hugging Face transformers loads, with tinygpt's numbers.

    DIR/
      config.json              the model's settings (GPT-2's, or tinygpt's with an auto_map)
      generation_config.json   the token ids generation starts and ends with; greedy by default
      model.safetensors        the weights, float32
      tokenizer.json           the tokenizer in the `tokenizers` format (char and word included)
      tokenizer_config.json    its class, context length, chat template
      modeling_tinygpt.py      only in the custom-code form

Two forms. A run whose settings GPT-2's architecture computes exactly (convert/gpt2.py:
`gpt2_misfits` is empty) becomes a plain `GPT2LMHeadModel`, no code attached: biases it lacks are
written as zeros, the lecture's 1/sqrt(n_embd) attention scale is folded into the query weights,
its activation and tied or untied head carried over. Any other run carries `modeling_tinygpt.py`
(transformers' `auto_map` convention) and loads with `trust_remote_code=True`; the result says which
settings made it so.
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
    ids = src.special_ids()
    tokenizer = hf_tokenizer(src.tokenizer)
    eos_token = src.tokenizer.token(ids["eos"]) if "eos" in ids else None
    tok_config = tokenizer_config(src.tokenizer, cfg.block_size, src.chat_template, eos_token)
    generation = {k + "_token_id": v for k, v in ids.items()}
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


def custom_config(cfg: ModelConfig, special_ids: dict[str, int]) -> dict:
    """config.json for modeling_tinygpt.py: tinygpt's settings and transformers' auto_map."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k in COMPUTED}
    return {"architectures": ["TinyGPTForCausalLM"], "model_type": "tinygpt",
            "auto_map": {"AutoConfig": "modeling_tinygpt.TinyGPTConfig",
                         "AutoModelForCausalLM": "modeling_tinygpt.TinyGPTForCausalLM"},
            **settings, "use_cache": False, "torch_dtype": "float32", "tinygpt_version": __version__,
            **{k + "_token_id": v for k, v in special_ids.items()}}
