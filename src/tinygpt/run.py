"""A trained run, loaded from its directory: the Python face of `tinygpt sample` and `tinygpt eval`.

    run = tinygpt.load("runs/rhyme")
    print(run.generate("mary", max_new_tokens=12))
    print(run.evaluate()["val_loss"])
    print(run.chat([{"role": "user", "content": "hi"}]))     # a run fine-tuned by `tinygpt sft`
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .checkpoint import load_weights_into
from .config import ModelConfig
from .errors import TinyGPTError
from .generation import Decoder, Row, SamplingConfig, TextStream, stream_rows
from .model import build_model
from .rundir import RunConfig, RunDir
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

    def require_text_model(self, what: str):
        """A reward run scores texts; it cannot continue one. Say so in one line."""
        if self.model_config.arch == "reward":
            raise TinyGPTError(f"{self.dir} is a reward model: it scores a text with one number and writes none, "
                               f"so it cannot {what}; score with `tinygpt eval {self.dir}` or "
                               "tinygpt.load(RUN).model.score(ids, lengths)")

    def start_ids(self, prompt: str) -> list[int]:
        """Token ids to start from; an empty prompt starts where the tokenizer says a text starts
        (a line break, or the word model's sentence end)."""
        ids = self.tokenizer.encode(prompt) if prompt else []
        return ids or self.tokenizer.start_ids()

    def generate(self, prompt: str | list[str] = "", max_new_tokens: int = 100, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, stop=(), num_samples: int = 1,
                 seed: int | list[int] | None = None, use_cache: bool = True, stream=None, sampling=None):
        """Continue `prompt`; returns its completion, a string.

        A list of prompts returns a list of completions, sampled together in one batch, each the
        one that prompt gives alone with its seed. num_samples > 1 returns that many samples (a
        list, or a list of such lists for a list of prompts); sample j uses seed + j, so the first
        sample is the single-sample result.
        stop: a string, or strings, that end a sample (the stop string itself is not returned).
        seed: one for every prompt, or a list of one per prompt; None uses torch's global generator.
        sampling: instead of the knob arguments, a SamplingConfig, or a list of one per prompt (a
        server batching requests that ask for different knobs).
        stream: called as stream(text_piece) with the first sample's new text as it is produced.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        pieces = self.stream(prompts, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop,
                             num_samples, seed, use_cache, sampling)
        texts = [[] for _ in range(len(prompts) * num_samples)]
        for row, piece in pieces:
            texts[row].append(piece)
            if stream is not None and row == 0:
                stream(piece)
        outs = ["".join(t) for t in texts]
        if num_samples > 1:
            outs = [outs[i : i + num_samples] for i in range(0, len(outs), num_samples)]
        return outs[0] if isinstance(prompt, str) else outs

    def stream(self, prompt: str | list[str] = "", max_new_tokens: int = 100, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, stop=(), num_samples: int = 1,
               seed: int | list[int] | None = None, use_cache: bool = True, sampling=None):
        """Continue `prompt` piece by piece: an iterator over text pieces as they are produced.

        `"".join(run.stream(...))` is `run.generate(...)` with the same arguments (see there). No
        piece ends halfway through a character or inside what may still become a stop string. A
        list of prompts (or num_samples > 1) yields (row, piece) pairs instead, every row in one
        batch; row i * num_samples + j is sample j of prompt i.
        """
        self.require_text_model("generate text")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)

        def per_prompt(name, value, kind) -> list:  # one value for every prompt, or a list of one each
            if isinstance(value, kind):
                return [value] * len(prompts)
            if not isinstance(value, (list, tuple)) or len(value) != len(prompts) \
                    or not all(isinstance(v, kind) for v in value):
                raise TinyGPTError(f"{name} must be one value or a list of one per prompt "
                                   f"({len(prompts)} prompts), got {value!r}")
            return list(value)

        if not all(isinstance(p, str) for p in prompts):
            raise TinyGPTError(f"prompt must be a string or a list of strings, got {prompt!r}")
        knobs = SamplingConfig(max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                               [stop] if isinstance(stop, str) else list(stop))
        if sampling is not None and knobs != SamplingConfig():
            raise TinyGPTError("give the sampling knobs as arguments or as sampling=, not both")
        configs = per_prompt("sampling", knobs if sampling is None else sampling, SamplingConfig)
        for config in configs:
            config.validate()
        if num_samples < 1:
            raise TinyGPTError(f"num_samples must be at least 1, got {num_samples}")
        seeds = per_prompt("seed", seed, (int, type(None)))
        rows, streams = [], []
        for text, config, first_seed in zip(prompts, configs, seeds):
            ids = self.start_ids(text)
            # A word model with no prompt starts after a sentence end, which decoding joins with a space.
            lead = " " if self.tokenizer.kind == "word" and not text.strip() else ""
            for j in range(num_samples):
                generator = None
                if first_seed is not None:
                    generator = torch.Generator(device=self.device).manual_seed(first_seed + j)
                rows.append(Row(ids, config, generator))
                streams.append(TextStream(self.tokenizer, ids, config.stop, drop_lead=lead))
        pieces = stream_rows(Decoder(self.model, rows, use_cache), streams)
        if isinstance(prompt, str) and num_samples == 1:
            return (piece for _, piece in pieces)
        return pieces

    def chat(self, messages: list[dict], stream=None, **knobs) -> str:
        """The assistant's reply to `messages` (`[{"role": "system" | "user" | "assistant", "content": ...}]`),
        rendered through the run's chat template; it ends where the model ends its turn (`<|end|>`).

        knobs: the sampling knobs of `generate` (max_new_tokens, temperature, top_k, top_p,
        repetition_penalty, seed, use_cache). stream: called with each piece of the reply as it comes.
        """
        from .chat.reply import reply_pieces

        pieces = []
        for piece in reply_pieces(self, messages, **knobs):
            pieces.append(piece)
            if stream is not None:
                stream(piece)
        return "".join(pieces)

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
