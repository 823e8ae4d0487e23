"""What both writers of `tinygpt export` share: the run read and checked (`read_source`), the --out rule
(`check_out`: nothing is overwritten unless forced, never the run itself; `default_out`), and what
they report (`Exported`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import ModelConfig, to_dict
from ..core.errors import TinyGPTError

# ModelConfig's settings the exports carry (modeling_tinygpt.py computes every one), and those that
# do not change the function: a run with any other setting away from its default is refused.
COMPUTED = ("arch", "vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "qkv_bias",
            "head_bias", "norm", "residual", "attn_proj", "mlp_ratio", "mlp_proj", "activation", "attn_scale",
            "pos_emb", "rope_base", "qk_norm", "tie_weights")
SAME_FUNCTION = ("attention", "init", "zero_init_proj")  # a path to the same numbers, or where training started
LANGUAGE_MODELS = ("gpt", "bigram")


@dataclass
class Exported:
    """What an export wrote: `path`, its `form` (gpt2, custom or gguf), and for the custom form the
    settings GPT-2 cannot hold (`reasons`); `notes` are things worth knowing about the result."""

    path: Path
    form: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Source:
    """A run read for export: its directory, model (on the CPU, eval mode), tokenizer and chat template."""

    run_dir: Path
    config: ModelConfig
    model: object
    tokenizer: object
    chat_template: str | None

    def state(self):
        return {k: v.float() for k, v in self.model.canonical_state_dict().items()}

    def special_ids(self) -> dict[str, int]:
        """bos: the id an empty prompt starts from (when it is one id); eos: the chat format's end token."""
        from ..core.tokens import END

        ids = {}
        start = self.tokenizer.start_ids()
        if len(start) == 1:
            ids["bos"] = start[0]
        if self.chat_template is not None and END in self.tokenizer.special_tokens:
            ids["eos"] = self.tokenizer.token_to_id(END)
        return ids


def read_source(run_dir) -> Source:
    """The run at `run_dir`, checked to be a language model this export can describe."""
    from ..app.run import load
    from ..store.rundir import RunDir

    run = RunDir(run_dir).require()
    cfg = run.read_config().model
    if cfg.arch in ("encoder", "encoder-decoder"):
        raise TinyGPTError(f"{run} is an {cfg.arch} model, not a decoder-only language model: the GPT-2 and GGUF "
                           "formats export writes hold only those; use the run with tinygpt itself")
    if cfg.arch not in LANGUAGE_MODELS:
        raise TinyGPTError(f"{run} is a {cfg.arch} model, not a language model; export writes GPT and bigram "
                           "language models")
    defaults = ModelConfig()
    unknown = [k for k, v in to_dict(cfg).items()
               if k not in COMPUTED + SAME_FUNCTION and v != getattr(defaults, k)]
    if unknown:
        raise TinyGPTError(f"{run} uses setting(s) the export does not know how to write: {', '.join(unknown)}")
    loaded = load(run.path, device="cpu")
    return Source(run.path, cfg, loaded.model, loaded.tokenizer, run.read_chat_template())


def check_out(out: Path, run_dir: Path, force: bool, folder: bool):
    """Refuse an --out that would overwrite something, unless forced; never the run itself."""
    if out.resolve() == Path(run_dir).resolve():
        raise TinyGPTError(f"{out} is the run directory itself; choose another --out")
    if not out.exists():
        return
    if folder and not out.is_dir():
        raise TinyGPTError(f"{out} is a file; --to hf writes a folder, choose another --out")
    if not folder and out.is_dir():
        raise TinyGPTError(f"{out} is a folder; --to gguf writes one file, name it (e.g. {out / 'model.gguf'})")
    if not force and (not folder or any(out.iterdir())):
        what = "already exists" if not folder else "already exists and is not empty"
        raise TinyGPTError(f"{out} {what}; pass --force to overwrite it, or choose another --out")


def default_out(run_dir, to: str) -> Path:
    """Beside the run: runs/NAME-hf for transformers, runs/NAME.gguf for llama.cpp."""
    run = Path(run_dir)
    run = run if run.name else run.resolve()  # "." has no name of its own
    return run.with_name(f"{run.name}-hf" if to == "hf" else f"{run.name}.gguf")
