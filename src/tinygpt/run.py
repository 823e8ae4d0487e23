"""A trained run, loaded from its directory: the Python face of `tinygpt sample` and `tinygpt eval`.

    run = tinygpt.load("runs/rhyme")
    print(run.generate("mary", max_new_tokens=12))
    print(run.evaluate()["val_loss"])
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .checkpoint import load_weights_into
from .config import ModelConfig
from .errors import TinyGPTError
from .generate import SamplingConfig, TextStream, generate_ids
from .model import build_model
from .rundir import RunConfig, RunDir
from .tokenizers import HFTokenizer
from .training.devices import pick_device


class Run:
    """A model, its tokenizer and its settings, ready to sample and evaluate."""

    def __init__(self, run_dir: Path, model, tokenizer, config: RunConfig, device: torch.device):
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
        from .training.evaluation import evaluate_run

        return evaluate_run(self, data, batch_size)


def load(run_dir: str | Path, device: str = "auto", checkpoint: str = "best", attention: str | None = None,
         norm: str | None = None) -> Run:
    """Load a run directory written by `tinygpt train`.

    checkpoint: 'best' (model.safetensors) or 'latest' (checkpoints/latest.safetensors).
    attention, norm: run the saved weights on the other path of the same function, whichever path
    trained them: attention 'fused' or 'heads' (one module per head, as taught); norm 'layernorm'
    or 'handwritten' (the lecture's own LayerNorm).
    """
    run = RunDir(run_dir)
    config = run.read_config()
    model_cfg = _choose_path(config.model, attention, norm)
    tokenizer = run.read_tokenizer()
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise TinyGPTError(f"{run.tokenizer_path} has {tokenizer.vocab_size} tokens but the model expects "
                           f"{model_cfg.vocab_size}; the run directory is inconsistent")
    dev = pick_device(device)
    model = build_model(model_cfg)
    state, path = run.read_weights(checkpoint)
    load_weights_into(model, state, path)
    model.to(dev).eval()
    return Run(run.path, model, tokenizer, config, dev)


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
