"""Where a run can go: `export(run_dir, to, out)` picks the writer for the format.

    hf    a folder for Hugging Face transformers (convert/hf_export.py)
    gguf  one file for llama.cpp and the tools built on it (convert/gguf_export.py)

What the two writers share (the run read and checked, the --out rule, the report) is source.py. A LoRA
run exports its merged weights, as it loads (model/lora.py), and the report says so.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import TinyGPTError
from ..store.rundir import RunDir
from .source import default_out

FORMATS = {"hf": "a folder for Hugging Face transformers", "gguf": "one GGUF file for llama.cpp"}


def export(run_dir, to: str = "hf", out=None, force: bool = False):
    """Write the run at `run_dir` in format `to` at `out` (default: `default_out`); an `out` that
    exists and is not empty is refused unless `force`. Returns what was written (`Exported`)."""
    if to not in FORMATS:
        raise TinyGPTError(f"unknown export format {to!r}; choose " +
                           " or ".join(f"{name} ({what})" for name, what in FORMATS.items()))
    out = Path(out) if out is not None else default_out(run_dir, to)
    if to == "hf":
        from .hf_export import export_hf

        done = export_hf(run_dir, out, force)
    else:
        from .gguf_export import export_gguf

        done = export_gguf(run_dir, out, force)
    run = RunDir(run_dir)
    if run.read_config().train.lora_rank:  # a LoRA run: what it loads, and so what it exports, is its merged weights
        done.notes.append(f"the LoRA adapters are merged into these weights; {run.adapter_dir} holds them alone, in "
                          "PEFT's format, for the export of the run they adapt")
    return done
