"""A trained run, loaded from its directory: the Python face of `tinygpt sample` and `tinygpt eval`.

    run = tinygpt.load("runs/rhyme")
    print(run.generate("mary", max_new_tokens=12))
    print(run.evaluate()["val_loss"])
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .checkpoint import load_tensors, load_weights_into
from .config import ModelConfig, model_config_from_dict
from .data import encode_corpus, load_corpus, split_ids
from .devices import pick_device
from .errors import TinyGPTError
from .evaluate import bits_per_char, split_loss
from .generate import SamplingConfig, TextStream, generate_ids
from .model import build_model
from .tokenizers import HFTokenizer, load_tokenizer, mark_sentence_ends


def read_run_config(run_dir: Path) -> dict:
    """The parsed config.json of a run directory, with a clear error if the directory is not a run."""
    if not run_dir.exists():
        raise TinyGPTError(f"run directory {run_dir} does not exist; train one with `tinygpt train --out {run_dir}`")
    if not run_dir.is_dir():
        raise TinyGPTError(f"{run_dir} is a file, not a tinygpt run directory")
    path = run_dir / "config.json"
    if not path.is_file():
        raise TinyGPTError(f"{run_dir} is not a tinygpt run directory (it has no config.json)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TinyGPTError(f"{path} is not valid JSON ({e}); the run directory is damaged") from None
    if not isinstance(doc, dict) or "model" not in doc or "train" not in doc:
        raise TinyGPTError(f"{path} is not a tinygpt run config (no model/train sections)")
    return doc


class Run:
    """A model, its tokenizer and its settings, ready to sample and evaluate."""

    def __init__(self, run_dir: Path, model, tokenizer, config: dict, device: torch.device):
        self.dir = run_dir
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.device = device

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def start_ids(self, prompt: str) -> list[int]:
        """Token ids to start from; an empty prompt starts from a line/sentence break."""
        if prompt:
            ids = self.tokenizer.encode(prompt)
            if ids:
                return ids
        tok = self.tokenizer
        if getattr(tok, "end_token", "") and tok.end_token in tok.stoi:
            return [tok.stoi[tok.end_token]]
        if tok.kind == "char":
            return [tok.stoi.get("\n", 0)]
        if isinstance(tok, HFTokenizer):
            return tok.encode("\n") or [0]
        return [0]

    def generate(self, prompt: str = "", max_new_tokens: int = 100, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, stop=(), num_samples: int = 1,
                 seed: int | None = None, use_cache: bool = True, stream=None):
        """Continue `prompt`; returns a string (num_samples=1) or a list of strings.

        stop: strings that end a sample (the stop string itself is not returned).
        stream: called as stream(text_piece) with new text as it is produced (num_samples=1 only).
        """
        sampling = SamplingConfig(max_new_tokens, temperature, top_k, top_p, repetition_penalty, list(stop)).validate()
        if num_samples < 1:
            raise TinyGPTError(f"num_samples must be at least 1, got {num_samples}")
        prompt_ids = self.start_ids(prompt)
        no_words = self.tokenizer.kind == "word" and not prompt.strip()  # starts from the sentence-end token
        texts = TextStream(self.tokenizer, prompt_ids, sampling.stop, drop_lead=" " if no_words else "")
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        idx = torch.tensor([prompt_ids] * num_samples, dtype=torch.long, device=self.device)
        done = [False] * num_samples
        shown = [""]

        def on_token(ids):
            for i in range(num_samples):
                if not done[i]:
                    text, hit = texts.completion(ids[i].tolist())
                    done[i] = hit
            if stream is not None:
                text, hit = texts.completion(ids[0].tolist())
                visible = texts.printable(text, hit)
                if len(visible) > len(shown[0]):
                    stream(visible[len(shown[0]):])
                    shown[0] = visible
            return all(done)

        ids = generate_ids(self.model, idx, sampling, generator, use_cache, on_token)
        outs = [texts.completion(row.tolist())[0] for row in ids]
        if stream is not None and len(outs[0]) > len(shown[0]):
            stream(outs[0][len(shown[0]):])
        return outs[0] if num_samples == 1 else outs

    def evaluate(self, data: str | None = None, batch_size: int = 64) -> dict:
        """Exact loss over the whole validation split (or over all of `data` if given)."""
        train_cfg = self.config["train"]
        if data is None and not train_cfg["data"]:
            raise TinyGPTError(f"{self.dir} has no training text of its own (it was imported); "
                               "evaluate it on a file with --data FILE")
        if data is None:
            text = load_corpus(train_cfg["data"])
        else:
            text = load_corpus(data)
        if train_cfg.get("sentence_end") and self.tokenizer.kind == "word":
            text = mark_sentence_ends(text, train_cfg["sentence_end"])
        ids = encode_corpus(self.tokenizer, text)  # (N,)
        block = self.model.config.block_size
        if data is None and train_cfg["val_fraction"] > 0:
            splits = split_ids(ids, train_cfg["val_fraction"], block)
            split_name, tokens = ("val", splits.val) if splits.val is not None else ("train", splits.train)
        else:
            split_name, tokens = ("all" if data is not None else "train"), ids
        if len(tokens) < 2:
            raise TinyGPTError("the evaluation text is shorter than 2 tokens; there is nothing to predict")
        total, count = split_loss(self.model, tokens, block, self.device, batch_size)
        n_chars = len(self.tokenizer.decode(tokens[1:].tolist()))
        loss = total / count
        return {"split": split_name, "val_loss": loss, "tokens": count, "characters": n_chars,
                "bits_per_char": bits_per_char(total, n_chars), "perplexity": float(torch.tensor(loss).exp())}


def load(run_dir: str | Path, device: str = "auto", checkpoint: str = "best", attention: str | None = None,
         norm: str | None = None) -> Run:
    """Load a run directory written by `tinygpt train`.

    checkpoint: 'best' (model.safetensors) or 'latest' (checkpoints/latest.safetensors).
    attention, norm: run the saved weights on the other path of the same function, whichever path
    trained them: attention 'fused' or 'heads' (one module per head, as taught); norm 'layernorm'
    or 'handwritten' (the lecture's own LayerNorm).
    """
    run_dir = Path(run_dir)
    doc = read_run_config(run_dir)
    model_cfg = _choose_path(model_config_from_dict(doc["model"]), attention, norm)
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise TinyGPTError(f"{run_dir}/tokenizer.json has {tokenizer.vocab_size} tokens but the model expects "
                           f"{model_cfg.vocab_size}; the run directory is inconsistent")
    dev = pick_device(device)
    model = build_model(model_cfg)
    if checkpoint == "latest":
        from .checkpoint import load_checkpoint

        path = run_dir / "checkpoints" / "latest.safetensors"
        state = load_checkpoint(path)["model"]
    else:
        path = run_dir / "model.safetensors"
        state, _ = load_tensors(path)
    load_weights_into(model, state, path)
    model.to(dev).eval()
    return Run(run_dir, model, tokenizer, doc, dev)


def _choose_path(cfg: ModelConfig, attention: str | None, norm: str | None) -> ModelConfig:
    """The same model computed another way; only switches that keep the function are allowed."""
    if attention is not None:
        if attention not in ("fused", "heads"):
            raise TinyGPTError(f"attention must be fused or heads, got {attention!r}")
        cfg = dataclasses.replace(cfg, attention=attention)
    if norm is not None:
        same = ("layernorm", "handwritten")
        if norm not in same or cfg.norm not in same:
            raise TinyGPTError(f"norm can only switch between layernorm and handwritten (one function, two codes); "
                               f"this run uses {cfg.norm!r}, asked for {norm!r}")
        cfg = dataclasses.replace(cfg, norm=norm)
    return cfg
