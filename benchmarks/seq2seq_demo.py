"""The encoder-decoder on the built-in dates task, against a decoder-only GPT, and cached decoding (issue 14).

    python benchmarks/seq2seq_demo.py                 # seeds 0 1 2 (~10 minutes on 2 busy cores)
    python benchmarks/seq2seq_demo.py --seeds 0

For each seed, side by side on the same machine:

- the encoder-decoder: `tinygpt train --preset seq2seq-demo --seed S` (1000 steps), timed; held-out
  exact match of greedy `translate` on the 500 dates it never trained on;
- a decoder-only GPT with about the same parameter count (5 blocks of 64 against 2 + 2), trained on the
  same 4,500 training pairs written as text lines `SOURCE=TARGET`, with a time budget equal to the
  encoder-decoder's own measured training time (so: the same CPU time, on the same machine, one thread
  each); held-out exact match of greedy `sample` from `\\nSOURCE=` up to the line's end. For the first
  seed, the same GPT also trained LONGER (5) times as long, to see how far the gap is from closing.

Then, on the first seed's encoder-decoder, decoding speed in target tokens per second over 100
held-out sources, one at a time and as one batch: the encoder run once (what `translate` does) or
re-run at every step, each with and without the self-attention KV cache, and whether all four write
the same tokens. Results go to benchmarks/results/seq2seq_demo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import tinygpt
from tinygpt.core.tokens import BOS, EOS
from tinygpt.data.dates import HELD_OUT, date_pairs, exact_match
from tinygpt.generation.sampling import SamplingConfig
from tinygpt.generation.translate import translate_ids

HERE = Path(__file__).resolve().parent
LONGER = 5  # the first seed's decoder-only GPT is also trained this many times as long
GPT = dict(n_layer=5, n_head=4, n_embd=64, block_size=32, tokenizer="char", batch_size=32, lr=2e-3,
           warmup_iters=50, threads=1, eval_interval=100000, sample_tokens=0, val_fraction=0.0)


def quiet(line):
    return None


def encoder_decoder(seed: int, folder: Path) -> dict:
    out = folder / f"seq2seq-{seed}"
    result = tinygpt.train(preset="seq2seq-demo", seed=seed, out=str(out), progress=False, log=quiet)
    run = tinygpt.load(out)
    held = date_pairs()[-HELD_OUT:]
    outputs = run.translate([s for s, _ in held], max_new_tokens=24)
    return {"params": result.num_params, "train_s": round(result.elapsed_s, 1), "steps": result.step,
            "val_loss": result.best_val_loss, "exact_match": exact_match(outputs, [t for _, t in held]),
            "wrong": [(s, o) for (s, t), o in zip(held, outputs) if o != t][:5], "out": str(out)}


def decoder_only(seed: int, seconds: float, folder: Path, name: str = "gpt") -> dict:
    text = folder / "dates-as-text.txt"
    text.write_text("".join(f"{s}={t}\n" for s, t in date_pairs()[:-HELD_OUT]))
    out = folder / f"{name}-{seed}"
    result = tinygpt.train(data=str(text), out=str(out), seed=seed, time_budget=f"{seconds:.0f}s", progress=False,
                           log=quiet, **GPT)
    run = tinygpt.load(out)
    held = date_pairs()[-HELD_OUT:]
    outputs = [o.strip() for o in run.generate([f"\n{s}=" for s, _ in held], max_new_tokens=24, temperature=0.0,
                                                stop="\n")]
    return {"params": result.num_params, "train_s": round(result.elapsed_s, 1), "steps": result.step,
            "exact_match": exact_match(outputs, [t for _, t in held]),
            "wrong": [(s, o) for (s, t), o in zip(held, outputs) if o != t][:5]}


def decoding_speed(run_dir: str, n: int = 100, repeats: int = 3) -> dict:
    """Target tokens per second (median of `repeats`) for the n held-out sources, one at a time and as one
    batch, with the encoder run once or at every step, with and without the self-attention cache."""
    run = tinygpt.load(run_dir)
    bos, eos = run.tokenizer.token_to_id(BOS), run.tokenizer.token_to_id(EOS)
    sources = [run.encode(s) for s, _ in date_pairs()[-n:]]
    sampling = SamplingConfig(24, temperature=0.0)
    modes = {"encoder once, KV cache": {}, "encoder once, no cache": {"use_cache": False},
             "encoder every step, KV cache": {"encode_every_step": True},
             "encoder every step, no cache": {"use_cache": False, "encode_every_step": True}}
    result, tokens = {}, {}
    for batch in (1, n):
        speeds = {}
        for name, options in modes.items():
            rates = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                outs = []
                for start in range(0, n, batch):
                    outs += translate_ids(run.model, sources[start : start + batch], sampling, bos, eos, **options)
                count = sum(len(o) + 1 for o in outs)  # each target's tokens and its <|eos|>
                rates.append(count / (time.perf_counter() - t0))
            tokens[(batch, name)] = outs
            speeds[name] = round(statistics.median(rates), 1)
        result[f"batch {batch}"] = speeds
    same = len({str(t) for t in tokens.values()}) == 1
    return {"tokens_per_s": result, "same_tokens": same, "sources": n, "threads": torch.get_num_threads()}


def decoding_only(seed: int):
    path = HERE / "results" / "seq2seq_demo.json"
    doc = json.loads(path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        ed = encoder_decoder(seed, Path(tmp))
        doc["decoding"] = {**decoding_speed(ed["out"]), "load": round(os.getloadavg()[0], 2),
                           "command": f"python benchmarks/seq2seq_demo.py --decoding-only --seeds {seed}"}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["decoding"], indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--decoding-only", action="store_true", help="train the first seed's encoder-decoder and "
                        "measure decoding speed only, replacing that part of the results file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.decoding_only:
        return decoding_only(args.seeds[0])
    doc = {"command": "python benchmarks/seq2seq_demo.py --seeds " + " ".join(map(str, args.seeds)), "seeds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seed in args.seeds:
            load = os.getloadavg()[0]
            ed = encoder_decoder(seed, folder)
            gpt = decoder_only(seed, ed["train_s"], folder)
            doc["seeds"][seed] = {"encoder_decoder": ed, "decoder_only": gpt,
                                  "load": [round(load, 2), round(os.getloadavg()[0], 2)]}
            print(f"seed {seed}: encoder-decoder {ed['params']:,} params, {ed['steps']} steps in {ed['train_s']} s, "
                  f"exact match {ed['exact_match']:.1f}%; decoder-only {gpt['params']:,} params, {gpt['steps']} steps "
                  f"in {gpt['train_s']} s, exact match {gpt['exact_match']:.1f}%; load {doc['seeds'][seed]['load']}",
                  flush=True)
            if seed == args.seeds[0]:
                longer = decoder_only(seed, LONGER * ed["train_s"], folder, name="gpt-longer")
                doc["decoder_only_longer"] = {"times": LONGER, **longer}
                print(f"decoder-only with {LONGER}x the time: {longer['steps']} steps in {longer['train_s']} s, exact "
                      f"match {longer['exact_match']:.1f}%", flush=True)
                doc["decoding"] = decoding_speed(ed["out"])
                doc["decoding"]["load"] = round(os.getloadavg()[0], 2)
                print(f"decoding: {doc['decoding']}", flush=True)
    for kind in ("encoder_decoder", "decoder_only"):
        scores = [s[kind]["exact_match"] for s in doc["seeds"].values()]
        doc[f"{kind}_exact_match"] = {"min": min(scores), "median": statistics.median(scores), "max": max(scores)}
    (HERE / "results" / "seq2seq_demo.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "seeds"}, indent=1))


if __name__ == "__main__":
    main()
