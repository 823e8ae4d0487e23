"""Long samples: what the context shift (`--context-shift`, context="shift") costs in quality and buys in speed.

    python benchmarks/context_shift.py                          # train two models, then quality and speed
    python benchmarks/context_shift.py --what quality           # the deterministic part only (~20 min, 2 cores)
    python benchmarks/context_shift.py --run runs/a --run runs/b --what quality
    python benchmarks/context_shift.py --what speed --json speed.json    # tokens/s only: on an idle machine

Past block_size, exact mode reads a row's last block_size tokens, re-run for every token; shift mode
keeps the newer half of a full window and decodes on from it with the cache, so what it reads cycles
between block_size // 2 and block_size tokens (generation/decoder.py). Every figure runs through the
library's own Decoder:

quality  two models trained here (unless --run): speedrun-cpu's recipe (RECIPE: rotary positions, block 64,
         234,144 parameters) and the same with learned positions, each for --max-iters steps (no time
         budget: the same weights on any machine). On each:
         (a) teacher-forced: tiny Shakespeare's validation split cut into --segments rows, each row fed its
             own text token by token; the mean loss of every prediction past a row's first block_size
             tokens, with the context each mode reads. A rotary model also with "rerun": the shift's
             windows run from scratch (what the learned-position model does; its cached keys turned back
             instead are what shift mode does).
         (b) free-running: from the validation split's first block_size tokens, --free tokens sampled with
             each mode (seeds 0..--seeds-1, temperature --temperature), each sample scored by the model
             in exact mode: its mean loss per sampled token (lower: text the model finds likelier).
speed    the 10.8M-parameter lecture-shaped model (block 256, random weights: speed does not depend on
         them), batch 1, --speed-tokens new tokens from a 1-token prompt in each mode, KV cache on,
         median of --repeats (benchmarks/speed.py's `sample_speed`); and 200 tokens, inside the context,
         for comparison. Timings mean something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# speedrun-cpu's recipe as committed on 2026-11-22 (234,144 parameters with rotary positions), pinned here rather
# than read from the preset, so that these figures stay put while the preset is tuned; a fixed number of steps
# instead of its 20 s budget, so the same weights on any machine.
RECIPE = dict(data="shakespeare", tokenizer="char", block_size=64, n_embd=96, n_head=4, n_layer=2, dropout=0.0,
              bias=False, norm="rmsnorm", qk_norm=True, activation="relu2", zero_init_proj=True, optimizer="muon",
              muon_lr=0.02, lr=3e-3, batch_size=32, lr_schedule="wsd", warmup_iters=20, cooldown_frac=0.4,
              min_lr=1e-4, eval_interval=1000, eval_max_tokens=8192, eval_iters=0, time_budget="")
RUNS = {"rope": {"pos_emb": "rope"}, "learned": {"pos_emb": "learned"}}  # the recipe and its learned-position twin


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="quality,speed", help="quality, speed or both (default: quality,speed)")
    ap.add_argument("--run", action="append", default=[], metavar="RUN",
                    help="measure this run instead of training two (repeatable; a char-level tiny Shakespeare run)")
    ap.add_argument("--max-iters", type=int, default=500, help="training steps of each model (default: 500)")
    ap.add_argument("--segments", type=int, default=32, help="rows the validation split is cut into (default: 32)")
    ap.add_argument("--tokens", type=int, default=0, help="teacher-force only the split's first N tokens (default: "
                    "0 = all of it)")
    ap.add_argument("--free", type=int, default=2000, help="tokens sampled past the context (default: 2000)")
    ap.add_argument("--seeds", type=int, default=16, help="free-running samples per mode (default: 16)")
    ap.add_argument("--temperature", type=float, default=1.0, help="of the free-running samples (default: 1.0)")
    ap.add_argument("--speed-tokens", type=int, default=2000, help="tokens per timed sample (default: 2000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed samples per mode; the median (default: 3)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    args = ap.parse_args(argv)
    what = set(args.what.split(","))
    if not what <= {"quality", "speed"}:
        ap.error(f"--what takes quality, speed or both, got {args.what!r}")

    report = {"command": "python benchmarks/context_shift.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if "quality" in what:
        report["quality"] = quality(args)
    if "speed" in what:
        report["speed"] = speed(args.speed_tokens, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


# ---- quality ------------------------------------------------------------------------------------------------

def quality(args) -> list[dict]:
    import torch

    import tinygpt

    paths = args.run or train_models(args.max_iters)  # with the threads tinygpt train chooses
    torch.set_num_threads(1)  # the same sums on any machine, however busy (and a small model needs no more)
    results = []
    for path in paths:
        run = tinygpt.load(path, device="cpu")
        cfg = run.model_config
        val = validation_ids(run)
        modes = ["exact", "shift"] + (["rerun"] if cfg.pos_emb == "rope" else [])
        result = {"run": str(path), "pos_emb": cfg.pos_emb, "block_size": cfg.block_size,
                  "params": run.model.num_params(), "teacher_forced": {}, "free_running": {}}
        segments = cut(val[: args.tokens or None], args.segments)
        block = cfg.block_size
        forced = {mode: forced_losses(run.model, segments, mode) for mode in modes}
        exact = [x for row in forced["exact"][0] for x in row[block:]]  # predictions past each row's first block
        for mode, (losses, lengths) in forced.items():
            past = [x for row in losses for x in row[block:]]
            result["teacher_forced"][mode] = {"loss": statistics.fmean(past), "predictions": len(past)}
            if mode == "exact":
                continue
            # The shift's predictions by how much they read, beside exact mode's (block tokens) of the same tokens.
            read = [n for row in lengths for n in row[block:]]
            by_context = result["teacher_forced"][mode]["by_context"] = {}
            for low, high in ((block // 2, 3 * block // 4), (3 * block // 4, block + 1)):
                which = [j for j, n in enumerate(read) if low <= n < high]
                by_context[f"{low}-{high - 1}"] = {"loss": statistics.fmean(past[j] for j in which),
                                                   "exact": statistics.fmean(exact[j] for j in which),
                                                   "predictions": len(which)}
        prompt = val[:block]
        for mode in modes:
            samples = sample(run.model, prompt, mode, args.free, args.seeds, args.temperature)
            scored, _ = forced_losses(run.model, samples, "exact")  # each sample's tokens as exact mode predicts them
            own, _ = forced_losses(run.model, samples, mode)  # as the mode that wrote them does: how sure it was
            new = len(prompt) - 1  # the losses of the sampled tokens start here
            per_seed = [statistics.fmean(row[new:]) for row in scored]
            result["free_running"][mode] = {"loss": statistics.fmean(per_seed), "per_seed": per_seed,
                                            "own_loss": statistics.fmean(x for row in own for x in row[new:]),
                                            "text": run.tokenizer.decode(samples[0][len(prompt) :][:300])}
        print_quality(result, args)
        results.append(result)
    return results


def train_models(max_iters: int) -> list[str]:
    """RECIPE with rotary and with learned positions, max_iters steps each, in a temporary folder."""
    import tinygpt

    folder = Path(tempfile.mkdtemp(prefix="context-shift-"))
    paths = []
    for name, extra in RUNS.items():
        out = folder / name
        print(f"training {out} ({name} positions, {max_iters} steps)", flush=True)
        tinygpt.train(out=str(out), max_iters=max_iters, progress=False, sample_tokens=0, log=lambda line: None,
                      **RECIPE, **extra)
        paths.append(str(out))
    return paths


def validation_ids(run) -> list[int]:
    """The run's held-out split, as its evaluation reads it."""
    from tinygpt.data import encode_corpus, held_out, read_corpus

    cfg = run.config.train
    text = read_corpus(cfg.data, run.tokenizer.kind, cfg.sentence_end)
    split, ids = held_out(encode_corpus(run.tokenizer, text), cfg.val_fraction, run.model_config.block_size)
    assert split == "val", f"{run.dir} held nothing out"
    return ids.tolist()


def cut(ids: list[int], rows: int) -> list[list[int]]:
    """ids in `rows` consecutive pieces of one length (the few left over dropped)."""
    n = len(ids) // rows
    return [ids[i * n : (i + 1) * n] for i in range(rows)]


def decoder_for(model, rows, mode: str):
    """A Decoder reading what `mode` reads: exact, shift, or rerun (the shift's windows run from scratch)."""
    from tinygpt.generation import Decoder

    context = "exact" if mode == "exact" else "shift"
    return Decoder(model, rows, use_cache=mode != "rerun", context=context)


def forced_losses(model, texts: list[list[int]], mode: str) -> tuple[list[list[float]], list[list[int]]]:
    """Teacher forcing through the Decoder: each row is fed its text, and each of its tokens after the first
    scored (-log p) as `mode` predicts it. Returns the losses of each text's tokens 1..n-1, and how many
    tokens each of those predictions read."""
    import torch

    from tinygpt.generation import Row, SamplingConfig

    decoder = decoder_for(model, [Row(t[:1], SamplingConfig(len(t) - 1)) for t in texts], mode)
    block = model.config.block_size
    losses, lengths = [[] for _ in texts], [[] for _ in texts]

    def forced(live, logits):  # in place of the decoder's choice: the text's own next token
        logp = torch.log_softmax(logits.float(), dim=-1)  # (len(live), V)
        tokens = [texts[i][len(decoder.ids[i])] for i in live]
        chosen = logp[torch.arange(len(live)), torch.tensor(tokens)].tolist()
        for i, value in zip(live, chosen):
            losses[i].append(-value)
            lengths[i].append(min(len(decoder.ids[i]) - decoder.starts[i], block))
        return tokens

    decoder._choose = forced
    while not decoder.done:
        decoder.step()
    return losses, lengths


def sample(model, prompt: list[int], mode: str, new: int, seeds: int, temperature: float) -> list[list[int]]:
    """`seeds` samples of `new` tokens after `prompt`, one batch, seed j for sample j."""
    import torch

    from tinygpt.generation import Row, SamplingConfig

    rows = [Row(prompt, SamplingConfig(new, temperature=temperature), torch.Generator().manual_seed(j))
            for j in range(seeds)]
    decoder = decoder_for(model, rows, mode)
    while not decoder.done:
        decoder.step()
    return decoder.ids


def print_quality(r: dict, args):
    block = r["block_size"]
    print(f"\n{r['run']}: pos_emb {r['pos_emb']}, block_size {block}, {r['params']:,} parameters")
    tf = r["teacher_forced"]
    print(f"  (a) teacher-forced, {tf['exact']['predictions']:,} predictions past the first {block} tokens of "
          f"{args.segments} rows of the validation split: mean loss")
    for mode, v in tf.items():
        print(f"      {mode:<6} {v['loss']:.4f}  ({v['loss'] - tf['exact']['loss']:+.4f})")
        for tokens, q in v.get("by_context", {}).items():
            print(f"        reading {tokens} tokens: {q['loss']:.4f}, exact mode on the same predictions "
                  f"{q['exact']:.4f} ({q['predictions']:,} predictions)")
    fr = r["free_running"]
    print(f"  (b) free-running, {args.free} tokens x {args.seeds} seeds at temperature {args.temperature:g}, "
          "scored in exact mode: mean loss per token")
    for mode, v in fr.items():
        seeds = ", ".join(f"{x:.3f}" for x in v["per_seed"])
        print(f"      {mode:<6} {v['loss']:.4f}  ({v['loss'] - fr['exact']['loss']:+.4f}; scored by the mode that "
              f"wrote them {v['own_loss']:.4f}; seeds {seeds})")


# ---- speed ------------------------------------------------------------------------------------------------

def speed(new_tokens: int, repeats: int) -> dict:
    sys.path.insert(0, str(HERE))
    from speed import sample_speed

    out = {"inside": sample_speed(1, 200, repeats)}
    for context in ("exact", "shift"):
        out[context] = sample_speed(1, new_tokens, repeats, context)
    print(f"\nlecture-shaped model ({out['exact']['params']:,} parameters, block 256), batch 1, median of {repeats}, "
          f"{out['exact']['threads']} threads, load {out['exact']['load']:.2f}:")
    print(f"  200 tokens (inside the context): {out['inside']['tokens_per_s']:.1f} tokens/s")
    for context in ("exact", "shift"):
        print(f"  {new_tokens} tokens, {context:<5}: {out[context]['tokens_per_s']:.1f} tokens/s")
    return out


if __name__ == "__main__":
    sys.exit(main())
