"""SFT's training throughput against pretraining's, for the same model (issue 11: within 15%).

    python benchmarks/sft_throughput.py                  # 7 rounds of 300 steps each (~5 minutes on 2 cores)
    python benchmarks/sft_throughput.py --rounds 3 --steps 40

The model is `tinygpt demo assistant`'s (char-level, block_size 48, 2 layers of 96), with the same
optimizer (AdamW) and batch size for both. Pretraining reads the demo's documents; SFT reads its
conversations (every training question answered), each row padded to the batch's longest.

Tokens per second are timed between optimizer steps (`on_step`), leaving out start-up and
evaluations: pretraining counts B x block_size tokens a step, SFT the conversations' own tokens
(not the padding); a third run gives SFT as many rows as make pretraining's tokens a step. The runs
take turns, in alternating order round by round, so a change in the machine's load hits each; the
ratio is taken per round, and its median is reported with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class StepClock:
    """Tokens and time between the `skip`-th optimizer step and the last (warm-up left out)."""

    def __init__(self, skip: int):
        self.skip, self.marks = skip, []

    def __call__(self, trainer):
        if trainer.step >= self.skip:
            self.marks.append((time.perf_counter(), trainer.progress.tokens))

    def rate(self) -> float:
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


def main():
    import torch

    import tinygpt
    from tinygpt.demo.arithmetic import World
    from tinygpt.demo.assistant import Recipe, write_jsonl

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=str(HERE / "results" / "sft_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    recipe, world = Recipe(), World(seed=0, size=Recipe().size)
    folder = Path(tempfile.mkdtemp(prefix="sft-throughput-"))
    documents = folder / "documents.txt"
    documents.write_text(world.documents(recipe.document_copies), encoding="utf-8")
    conversations = write_jsonl(folder / "sft.jsonl", world.conversations(world.train))
    common = dict(batch_size=args.batch_size, max_iters=args.steps, eval_interval=args.steps + 1, lr=1e-3,
                  threads=1, device="cpu", progress=False, sample_tokens=0, log=lambda line: None)
    base = tinygpt.train(data=str(documents), **recipe.model, **dict(common, max_iters=1), out=str(folder / "base"))
    first = tinygpt.sft(str(base.out_dir), data=str(conversations), **dict(common, max_iters=0), out=str(folder / "n"))
    info = tinygpt.load(first.out_dir).config.data
    mean_length = info["train_tokens"] / info["train_conversations"]

    rounds = []
    for k in range(args.rounds):
        load = os.getloadavg()[0]
        clocks = {"pretrain": StepClock(skip=5), "sft": StepClock(skip=5), "sft_same": StepClock(skip=5)}
        # The same tokens a step as pretraining: per-step costs (the optimizer, Python) weigh the same.
        rows = round(args.batch_size * recipe.model["block_size"] / mean_length)
        names = list(clocks) if k % 2 == 0 else list(clocks)[::-1]  # alternating, so a drift in load hits each
        for name in names:
            out = str(folder / f"{name}-{k}")
            if name == "pretrain":
                tinygpt.train(data=str(documents), **recipe.model, **common, out=out, on_step=clocks[name])
            else:
                batch = dict(common, batch_size=rows) if name == "sft_same" else common
                tinygpt.sft(str(base.out_dir), data=str(conversations), **batch, out=out, on_step=clocks[name])
        pre, fine, same = clocks["pretrain"], clocks["sft"], clocks["sft_same"]
        rounds.append({"pretrain_tokens_per_s": pre.rate(), "sft_tokens_per_s": fine.rate(),
                       "ratio": fine.rate() / pre.rate(), "sft_rows_for_same_tokens": rows,
                       "sft_same_tokens_per_s": same.rate(), "ratio_same_tokens": same.rate() / pre.rate(),
                       "load": [load, os.getloadavg()[0]]})
        print(f"round {k}: pretraining {pre.rate():,.0f} tokens/s, sft {fine.rate():,.0f} tokens/s "
              f"(ratio {fine.rate() / pre.rate():.3f}), sft at {rows} rows {same.rate():,.0f} tokens/s "
              f"(ratio {same.rate() / pre.rate():.3f}) (load {load:.1f})", flush=True)

    result = {
        "command": "python benchmarks/sft_throughput.py " + f"--rounds {args.rounds} --steps {args.steps}",
        "machine": f"{os.cpu_count()} CPU cores, one thread",
        "model": recipe.model, "batch_size": args.batch_size, "steps_per_round": args.steps,
        "conversations": info["train_conversations"], "mean_conversation_tokens": mean_length,
        "block_size": recipe.model["block_size"], "rounds": rounds,
        "median_pretrain_tokens_per_s": statistics.median(r["pretrain_tokens_per_s"] for r in rounds),
        "median_sft_tokens_per_s": statistics.median(r["sft_tokens_per_s"] for r in rounds),
        "median_ratio": statistics.median(r["ratio"] for r in rounds),
        "target": "sft within 15% of pretraining: ratio >= 0.85",
    }
    result["met"] = result["median_ratio"] >= 0.85
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"median ratio sft / pretraining: {result['median_ratio']:.3f} "
          f"({'met' if result['met'] else 'NOT met'}: target >= 0.85); conversations average "
          f"{mean_length:.1f} tokens of a {recipe.model['block_size']}-token context")


if __name__ == "__main__":
    main()
