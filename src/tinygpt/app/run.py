"""A trained run, loaded from its directory: the Python face of `tinygpt sample` and `tinygpt eval`.

    run = tinygpt.load("runs/rhyme")
    print(run.generate("mary", max_new_tokens=12))
    print(run.evaluate()["loss"])
    print(run.chat([{"role": "user", "content": "hi"}]))     # a run fine-tuned by `tinygpt sft`
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..config import ModelConfig
from ..core.devices import pick_device
from ..core.errors import TinyGPTError
from ..generation import SamplingConfig
from ..generation.complete import complete, start_ids
from ..model import build_model
from ..model.lora import merge_lora
from ..model.quantize import check_quantize, quantize_int8
from ..store.checkpoint import load_weights_into
from ..store.rundir import RunConfig, RunDir


class Run:
    """A model, its tokenizer and its settings, ready to sample and evaluate."""

    def __init__(self, run_dir: Path, model, tokenizer, config: RunConfig, device: torch.device,
                 source_tokenizer=None):
        self.dir = run_dir
        self.model = model
        self.tokenizer = tokenizer
        self.source_tokenizer = source_tokenizer or tokenizer  # an encoder-decoder's sources may have their own
        self.config = config
        self.device = device
        self.quantize = "none"  # or int8: load(quantize=...) stored the linear layers' weights so

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def require_text_model(self, what: str):
        """A reward run scores texts, an encoder fills gaps, an encoder-decoder translates: none continues
        a text. Say so in one line."""
        arch = self.model_config.arch
        if arch == "reward":
            raise TinyGPTError(f"{self.dir} is a reward model: it scores a text with one number and writes none, "
                               f"so it cannot {what}; score with `tinygpt eval {self.dir}` or "
                               "tinygpt.load(RUN).model.score(ids, lengths)")
        if arch == "encoder":
            raise TinyGPTError(f"{self.dir} is an encoder: it sees a text both ways and fills in hidden tokens, so it "
                               f"cannot {what}; try tinygpt fill {self.dir} --prompt 'some <mask> text'")
        if arch == "encoder-decoder":
            raise TinyGPTError(f"{self.dir} is an encoder-decoder: it writes a target for a source, so it cannot "
                               f"{what}; try tinygpt translate {self.dir} --source TEXT")

    def fill(self, prompt: str, top_k: int = 5) -> list[dict]:
        """The likeliest tokens, with probabilities, for each <mask> in `prompt` (an encoder run): a list of
        {"position", "top": [{"token", "id", "prob"}, ...]}, one per <mask>."""
        from ..generation.fill import fill_masks

        if self.model_config.arch != "encoder":
            what = ("an encoder-decoder: it writes a target for a source" if self.model_config.arch == "encoder-decoder"
                    else f"a {self.model_config.arch} model: it reads a text from the left only")
            raise TinyGPTError(f"{self.dir} is {what} and has no <mask> token to fill; train an encoder "
                               "(tinygpt train --arch encoder --data FILE) to fill masks")
        return fill_masks(self.model, self.tokenizer, prompt, top_k)

    def translate(self, source: str | list[str], max_new_tokens: int = 100, temperature: float = 0.0,
                  top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, num_beams: int = 1,
                  seed: int | None = None, use_cache: bool = True):
        """The target an encoder-decoder run writes for `source` (a list: one each, decoded in one batch).

        Greedy at temperature 0 (the default), sampled otherwise (source i draws from seed + i), or
        beam search with num_beams > 1 (greedy scoring: the sampling knobs must stay off).
        """
        from ..core.tokens import BOS, EOS
        from ..generation.beam import beam_search
        from ..generation.translate import translate_ids

        if self.model_config.arch != "encoder-decoder":
            kind = "an encoder" if self.model_config.arch == "encoder" else f"a {self.model_config.arch} model"
            raise TinyGPTError(f"{self.dir} is {kind}, not an encoder-decoder: it has no source to translate from; "
                               "train one with tinygpt train --arch encoder-decoder --data PAIRS (or continue text "
                               "with tinygpt sample)")
        sources = [source] if isinstance(source, str) else list(source)
        if not sources or not all(isinstance(s, str) for s in sources):
            raise TinyGPTError(f"source must be a string or a list of strings, got {source!r}")
        sampling = SamplingConfig(max_new_tokens, temperature, top_k, top_p, repetition_penalty).validate()
        if num_beams < 1:
            raise TinyGPTError(f"num_beams must be at least 1, got {num_beams}")
        ids = []
        for text in sources:
            if not text.strip():
                raise TinyGPTError("a source is empty; give the text to translate")
            ids.append(self.source_tokenizer.encode(text))
            if len(ids[-1]) > self.model_config.block_size:
                raise TinyGPTError(f"the source {text[:40]!r} is {len(ids[-1])} tokens, longer than the model's "
                                   f"context ({self.model_config.block_size}); shorten it")
        bos, eos = self.tokenizer.token_to_id(BOS), self.tokenizer.token_to_id(EOS)
        if num_beams > 1:
            if (temperature, top_k, top_p, repetition_penalty) != (0.0, 0, 1.0, 1.0):
                raise TinyGPTError("beam search keeps the likeliest targets; leave the sampling knobs (temperature, "
                                   "top_k, top_p, repetition_penalty) at their defaults with num_beams > 1")
            outs = [beam_search(self.model, s, num_beams, max_new_tokens, bos, eos) for s in ids]
        else:
            generators = None
            if seed is not None:
                generators = [torch.Generator(device=self.device).manual_seed(seed + i) for i in range(len(ids))]
            outs = translate_ids(self.model, ids, sampling, bos, eos, generators, use_cache)
        texts = [self.tokenizer.decode(o, skip_special_tokens=True) for o in outs]
        return texts[0] if isinstance(source, str) else texts

    def start_ids(self, prompt: str) -> list[int]:
        """Token ids to start from; an empty prompt starts where the tokenizer says a text starts."""
        return start_ids(self.tokenizer, prompt)

    def generate(self, prompt: str | list[str] = "", max_new_tokens: int = 100, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, stop=(), num_samples: int = 1,
                 seed: int | list[int] | None = None, use_cache: bool = True, stream=None, sampling=None,
                 context: str = "exact"):
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
        context: what a text longer than the model's block_size reads: "exact", its last block_size
        tokens, re-run for every new token; "shift", once they are full, only the newer half of them,
        run once, then cached (much faster, a little less context: generation/decoder.py).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        pieces = self.stream(prompts, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop,
                             num_samples, seed, use_cache, sampling, context)
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
               seed: int | list[int] | None = None, use_cache: bool = True, sampling=None, context: str = "exact"):
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
        pieces = complete(self.model, self.tokenizer, prompts, configs, seeds, num_samples, use_cache, context)
        if isinstance(prompt, str) and num_samples == 1:
            return (piece for _, piece in pieces)
        return pieces

    def chat(self, messages: list[dict], stream=None, **knobs) -> str:
        """The assistant's reply to `messages` (`[{"role": "system" | "user" | "assistant", "content": ...}]`),
        rendered through the run's chat template; it ends where the model ends its turn (`<|end|>`).

        knobs: the sampling knobs of `generate` (max_new_tokens, temperature, top_k, top_p,
        repetition_penalty, seed, use_cache, context). stream: called with each piece of the reply as it comes.
        """
        from ..generation.chat import reply_pieces

        pieces = []
        for piece in reply_pieces(self, messages, **knobs):
            pieces.append(piece)
            if stream is not None:
                stream(piece)
        return "".join(pieces)

    def evaluate(self, data: str | None = None, batch_size: int = 64, max_tokens: int = 0, log=None) -> dict:
        """What `tinygpt eval` reports: for a language model, {"split", "loss", "tokens", "characters",
        "bits_per_char", "perplexity"}, an exact pass over the whole validation split ("val"; "train" for a
        run that held none out; "all" of `data` if given). max_tokens: a fixed subset of at most that many
        tokens instead (what training's final evaluation scores of a long split). log(line): told how long a
        long pass will take."""
        from ..evaluation import evaluate_run

        return evaluate_run(self, data, batch_size, max_tokens, log)


def load(run_dir: str | Path, device: str = "auto", checkpoint: str = "best", attention: str | None = None,
         norm: str | None = None, quantize: str | None = None) -> Run:
    """Load a run directory written by `tinygpt train`.

    checkpoint: 'best' (model.safetensors) or 'latest' (checkpoints/latest.safetensors). A LoRA run loads
    as any run: its adapters merged into the weights they adapt.
    attention, norm: run the saved weights on the other path of the same function, whichever path
    trained them: attention 'fused' or 'heads' (one module per head, as taught); norm 'layernorm'
    or 'handwritten' (the lecture's own LayerNorm).
    quantize: 'int8' stores the linear layers' weights as int8 for generating and scoring (model/quantize.py);
    'none' (the default) keeps the float32 weights as trained.
    """
    quantize = check_quantize(quantize)
    run = RunDir(run_dir)
    config = run.read_config()
    model_cfg = _choose_path(config.model, attention, norm)
    tokenizer = run.read_tokenizer()
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise TinyGPTError(f"{run.tokenizer_path} has {tokenizer.vocab_size} tokens but the model expects "
                           f"{model_cfg.vocab_size}; the run directory is inconsistent")
    source_tokenizer = run.read_source_tokenizer()
    if source_tokenizer is not None and source_tokenizer.vocab_size != model_cfg.source_vocab_size:
        raise TinyGPTError(f"{run.source_tokenizer_path} has {source_tokenizer.vocab_size} tokens but the model "
                           f"expects {model_cfg.source_vocab_size}; the run directory is inconsistent")
    dev = pick_device(device)
    model = build_model(model_cfg)
    state, path = run.read_weights(checkpoint)
    if config.train.lora_rank:  # a LoRA run's checkpoints hold base and adapters apart (model.safetensors: merged)
        state = merge_lora(state, config.train.lora_scaling)
    load_weights_into(model, state, path)
    model.to(dev).eval()
    loaded = Run(run.path, model, tokenizer, config, dev, source_tokenizer)
    if quantize == "int8":
        quantize_int8(model)
        loaded.quantize = quantize
    return loaded


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
