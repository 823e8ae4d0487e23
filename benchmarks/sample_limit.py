"""Sampling at the memory limit (issue 26, item 4): batch-1 tokens/s of the lecture model in float32 and with
--quantize int8, against how fast this machine reads memory; and what int8 costs in loss.

    python benchmarks/sample_limit.py --json benchmarks/results/sample_limit.json     # speed (an idle machine)
    python benchmarks/sample_limit.py --what quality --run runs/speedrun            # the loss int8 costs
    python benchmarks/sample_limit.py --what rows --baseline-src OTHER_CHECKOUT/src # batches of a few rows
    python benchmarks/sample_limit.py --what products                                # the weight split alone

speed    the 10.8M-parameter lecture-shaped model (6 layers, 384 wide, block 256; random weights, seed 1337:
         speed does not depend on them), batch 1, 200 new tokens from a 1-token prompt, temperature 0.8,
         top-k 200, KV cache on (benchmarks/speed.py's figure 4), median of --repeats, threads by the
         trainer's rule. For each mode: tokens/s, the bytes of linear-layer weights read per token, and the
         rate that implies, next to the machine's own read rate: the best of --repeats sums over a float32
         tensor as big as the model's weights (43 MB; the memory limit the issue names) and over one of a
         quarter of that size. The float32 tokens are checked against the uncached decoder's (the lecture's
         sampler: every token re-runs the context) for the same seed; the int8 tokens are compared with them.
         Each sample alternates with one of the general path (the decode plan off, model/decode_plan.py), whose
         tokens must be the same.
rows     a few rows of different lengths at once, as a server's batch holds them (prompts of 1, 5, 9, ...
         tokens, 100 new tokens each, the lecture-shaped model): tokens/s for --row-counts, each a median of 3
         samples in a process of its own; with --baseline-src (another checkout's src/) the two versions'
         processes alternate, so both see the same minutes.
products the lecture model's 25 weight products alone for 1 to 128 rows: F.linear against ThreadedLinear's
         split of each weight among the threads (model/layers.py), interleaved in one process, median of 9
         rounds each; why the split stops at SPLIT_ROWS rows.
quality  on a trained run (--run): (a) the whole validation split's loss, float32 and int8 (more than 8 rows a
         product: the dequantized weights); (b) the loss of the split's first --tokens tokens scored one token
         at a time through the KV cache, in windows of block_size, as sampling runs them (one row a product:
         the int8 kernel, bfloat16 activations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_rate(n_bytes: int, repeats: int) -> float:
    """GB/s of summing a float32 tensor of n_bytes (best of repeats: the machine's rate, not its neighbours')."""
    import torch

    x = torch.ones(n_bytes // 4)
    x.sum()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            x.sum()
        best = min(best, (time.perf_counter() - t0) / 10)
    return n_bytes / best / 1e9


def linear_bytes(model) -> int:
    """Bytes of every linear layer's weight (what one token at batch 1 reads), as stored."""
    import torch.nn as nn

    from tinygpt.model.quantize import Int8Linear

    total = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
        elif isinstance(m, Int8Linear):
            total += m.weight_int8.numel() + m.scale.numel() * m.scale.element_size()
    return total


def lecture_model():
    """The 10.8M-parameter lecture-shaped model (6 layers, 384 wide, block 256, 65 tokens; random weights, seed
    1337: speed does not depend on them), in eval mode, with torch's threads set by the trainer's rule (as
    `tinygpt sample` sets them)."""
    import torch

    from tinygpt.config import build_configs
    from tinygpt.config.presets import load_preset
    from tinygpt.core.devices import choose_threads
    from tinygpt.model import build_model

    torch.set_num_threads(choose_threads(0))
    cfg, _ = build_configs(load_preset("lecture")["settings"])
    cfg.vocab_size = 65
    torch.manual_seed(1337)
    return build_model(cfg).eval()


def speed(args) -> dict:
    import torch

    from tinygpt.generation import SamplingConfig, generate_ids
    from tinygpt.model.quantize import quantize_int8

    sampling = SamplingConfig(max_new_tokens=args.tokens, temperature=0.8, top_k=200)
    prompt = torch.zeros((1, 1), dtype=torch.long)
    out = {"load_before": os.getloadavg()[0], "new_tokens": args.tokens}
    tokens = {}
    for mode in ("float32", "int8"):
        model = lecture_model()
        if mode == "int8":
            quantize_int8(model)
        generate_ids(model, prompt, SamplingConfig(max_new_tokens=8), torch.Generator().manual_seed(0))  # warm-up
        seconds, general = [], []
        for _ in range(args.repeats):  # the decode plan and the general path, alternating: the same minutes
            t0 = time.perf_counter()
            ids = generate_ids(model, prompt, sampling, torch.Generator().manual_seed(0))
            seconds.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            general_ids = sample_general_path(model, prompt[0].tolist(), sampling)
            general.append(time.perf_counter() - t0)
        tokens[mode] = ids[0].tolist()
        s, g = statistics.median(seconds), statistics.median(general)
        weights = linear_bytes(model)
        out[mode] = {"seconds": seconds, "tokens_per_s": args.tokens / s, "weight_mb": weights / 1e6,
                     "implied_gb_per_s": weights * args.tokens / s / 1e9,
                     "general_path": {"seconds": general, "tokens_per_s": args.tokens / g,
                                      "same_tokens": general_ids == tokens[mode]}}
        if mode == "float32":
            plain = generate_ids(model, prompt, sampling, torch.Generator().manual_seed(0), use_cache=False)
            out[mode]["same_tokens_as_uncached"] = plain[0].tolist() == tokens[mode]
        print(f"  {mode:8s} {out[mode]['tokens_per_s']:6.0f} tokens/s  ({out[mode]['weight_mb']:.1f} MB of weights "
              f"a token: {out[mode]['implied_gb_per_s']:.1f} GB/s); without the decode plan "
              f"{args.tokens / g:.0f} tokens/s", flush=True)
    out["threads"] = torch.get_num_threads()  # lecture_model() set them
    same = sum(a == b for a, b in zip(tokens["float32"], tokens["int8"])) - 1  # the prompt's token is not sampled
    first = next((i for i, (a, b) in enumerate(zip(tokens["float32"], tokens["int8"])) if a != b), None)
    out["int8_tokens_equal_float32"] = {"equal": same, "of": args.tokens, "first_difference": first}
    fp32_mb = out["float32"]["weight_mb"] * 1e6
    out["read_rate_gb_per_s"] = {"float32_weights": read_rate(int(fp32_mb), args.repeats),
                                 "int8_weights": read_rate(int(out["int8"]["weight_mb"] * 1e6), args.repeats)}
    out["load_after"] = os.getloadavg()[0]
    return out


def sample_general_path(model, prompt: list[int], sampling) -> list[int]:
    """The same sample (seed 0) with the decode plan switched off: every step through the model's modules
    (model/cached.py), as before the plan existed. Returns the ids, prompt first."""
    import torch

    from tinygpt.generation.decoder import Decoder, Row

    decoder = Decoder(model, [Row(prompt, sampling, torch.Generator().manual_seed(0))])
    decoder.plan = None
    while not decoder.done:
        decoder.step()
    return decoder.ids[0]


def cached_loss(model, ids, block: int) -> float:
    """Mean loss of ids (1-D) predicted one token at a time through the KV cache, in windows of block tokens."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, block):
            window = ids[start : start + block + 1]
            cache = model.new_cache(1)
            for i in range(len(window) - 1):
                logits, _ = model(window[i : i + 1].view(1, 1), cache=cache)  # (1, 1, V)
                total += F.cross_entropy(logits[0, -1:].float(), window[i + 1 : i + 2]).item()
                count += 1
    return total / count


def quality(args) -> dict:
    import tinygpt
    from tinygpt.data import load_corpus, split_ids

    out = {}
    for mode in ("none", "int8"):
        run = tinygpt.load(args.run, quantize=mode)
        whole = run.evaluate()["loss"]
        cfg = run.config.train
        text = load_corpus(cfg.data)
        val = split_ids(run.tokenizer.encode(text), cfg.val_fraction, run.model_config.block_size).val
        stepped = cached_loss(run.model, val[: args.loss_tokens].long(), run.model_config.block_size)
        name = "float32" if mode == "none" else "int8"
        out[name] = {"whole_split_loss": whole, "one_token_at_a_time_loss": stepped}
        print(f"  {name:8s} whole split {whole:.5f}   first {args.loss_tokens:,} tokens one at a time {stepped:.5f}",
              flush=True)
    out["difference"] = {k: out["int8"][k] - out["float32"][k] for k in out["float32"]}
    out["run"] = str(args.run)
    return out


def rows_speed(n_rows: int, repeats: int) -> float:
    """tokens/s of n_rows rows of different lengths sampled together (median of repeats), in this process."""
    import torch

    from tinygpt.generation import SamplingConfig
    from tinygpt.generation.decoder import Decoder, Row

    model = lecture_model()
    sampling = SamplingConfig(max_new_tokens=100, temperature=0.8, top_k=200)

    def sample() -> float:
        rows = [Row(list(range(1 + 4 * i)), sampling, torch.Generator().manual_seed(i)) for i in range(n_rows)]
        decoder = Decoder(model, rows)
        t0 = time.perf_counter()
        while not decoder.done:
            decoder.step()
        return n_rows * 100 / (time.perf_counter() - t0)

    sample()  # warm-up
    return statistics.median(sample() for _ in range(repeats))


def products(args) -> dict:
    import torch
    import torch.nn.functional as F

    from tinygpt.model.layers import SPLIT_ROWS, split_product, split_weight

    model = lecture_model()
    n = torch.get_num_threads()
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features % n == 0]
    splits = [split_weight(m.weight, m.bias, n) for m in layers]

    def median_ms(plain, split) -> tuple[float, float]:
        """Median ms of each, in alternating rounds of 10 calls: a busy machine slows both alike."""
        plain(), split()
        times = ([], [])
        for _ in range(9):
            for f, kept in zip((plain, split), times):
                t0 = time.perf_counter()
                for _ in range(10):
                    f()
                kept.append((time.perf_counter() - t0) / 10 * 1000)
        return statistics.median(times[0]), statistics.median(times[1])

    out = {"threads": n, "products": len(layers), "split_rows": SPLIT_ROWS, "load_before": os.getloadavg()[0]}
    with torch.inference_mode():
        for rows in (1, 2, 4, 8, 16, 32, 64, 128):
            xs = [torch.randn(rows, m.in_features) for m in layers]
            plain, split = median_ms(lambda xs=xs: [F.linear(x, m.weight, m.bias) for x, m in zip(xs, layers)],
                                     lambda xs=xs: [split_product(x, *w) for x, w in zip(xs, splits)])
            out[rows] = {"f_linear_ms": plain, "split_ms": split}
            print(f"  {rows:4d} rows: F.linear {plain:.2f} ms, split {split:.2f} ms: {plain / split:.2f}x", flush=True)
    out["load_after"] = os.getloadavg()[0]
    return out


def rows(args) -> dict:
    import subprocess

    versions = {"this code": str(ROOT / "src")}
    if args.baseline_src:
        versions["baseline"] = str(Path(args.baseline_src).resolve())
    out = {"load_before": os.getloadavg()[0], "versions": versions}
    for n in (int(x) for x in args.row_counts.split(",")):
        for name, src in versions.items():  # alternating: each version's process right after the other's
            env = {**os.environ, "PYTHONPATH": src}
            child = subprocess.run([sys.executable, __file__, "--child-rows", str(n)], env=env, check=True,
                                   capture_output=True, text=True)
            out.setdefault(name, {})[n] = float(child.stdout.strip().splitlines()[-1])
        print(f"  {n:3d} rows: " + "   ".join(f"{name} {out[name][n]:.0f} tokens/s" for name in versions), flush=True)
    out["load_after"] = os.getloadavg()[0]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="speed", help="speed, rows, products, quality, comma-separated (default: speed)")
    ap.add_argument("--row-counts", default="1,4,16", help="rows: the batch sizes (default: 1,4,16)")
    ap.add_argument("--baseline-src", default=None, metavar="DIR",
                    help="rows: another checkout's src/, its processes alternating with this code's")
    ap.add_argument("--child-rows", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--run", default=None, help="a trained char-level tiny Shakespeare run (quality)")
    ap.add_argument("--tokens", type=int, default=200, help="new tokens per sample (default: 200)")
    ap.add_argument("--repeats", type=int, default=5, help="timed samples per mode (default: 5)")
    ap.add_argument("--loss-tokens", type=int, default=4096, help="quality (b): tokens scored one at a time")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("TINYGPT_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    if args.child_rows:  # one version's measurement, in a process of its own (rows)
        print(rows_speed(args.child_rows, 3))
        return 0
    what = set(args.what.split(","))
    report = {}
    if "speed" in what:
        print("batch-1 sampling, lecture-shaped model", flush=True)
        report["speed"] = speed(args)
    if "products" in what:
        print("the lecture model's weight products alone, F.linear against the split among the threads", flush=True)
        report["products"] = products(args)
    if "rows" in what:
        print("a few rows of different lengths at once, lecture-shaped model", flush=True)
        report["rows"] = rows(args)
    if "quality" in what:
        if not args.run:
            raise SystemExit("sample_limit: --what quality needs --run RUN (a trained char-level Shakespeare run)")
        print(f"what int8 costs in loss, {args.run}", flush=True)
        report["quality"] = quality(args)
    if args.json:
        path = Path(args.json)
        previous = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**previous, **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
