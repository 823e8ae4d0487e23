"""Issue 26, target 2: what a 3-minute budget reaches with other tokens than characters, in nats a character.

    python benchmarks/budget_tokenizers.py --json benchmarks/results/budget_tokenizers.json
    python benchmarks/budget_tokenizers.py --variants 'char:;bpe512:--tokenizer bpe --vocab-size 512'
    python benchmarks/budget_tokenizers.py --runs-dir DIR --scored-only   # score runs trained before

Each variant is `tinygpt train --preset speedrun-cpu --time-budget 3m` with its own flags, one after the other
in processes of their own (nothing else should run: a time budget's steps depend on the machine's speed). A
token's loss says nothing across tokenizers, so every run is then scored by `tinygpt eval --data` on the same
text: the end of tiny Shakespeare from the latest point where any run's validation split begins (each run's
split is the last tenth of its own tokens, so this text is held out from all of them), in bits a character,
reported in nats a character (x ln 2: a char run's validation loss).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("char:;"
            "bpe512:--tokenizer bpe --vocab-size 512;"
            "bpe768:--tokenizer bpe --vocab-size 768;"
            "bpe1024:--tokenizer bpe --vocab-size 1024;"
            "bpe512-dropout0.1:--tokenizer bpe --vocab-size 512 --dropout 0.1;"
            "bpe512-n_embd128:--tokenizer bpe --vocab-size 512 --n-embd 128;"
            "bpe512-n_embd160:--tokenizer bpe --vocab-size 512 --n-embd 160;"
            "bpe512-n_embd128-3layers:--tokenizer bpe --vocab-size 512 --n-embd 128 --n-layer 3;"
            "bpe512-n_embd128-4layers:--tokenizer bpe --vocab-size 512 --n-embd 128 --n-layer 4;"
            "bpe512-n_embd128-6layers:--tokenizer bpe --vocab-size 512 --n-embd 128 --n-layer 6;"
            "bpe512-n_embd160-3layers:--tokenizer bpe --vocab-size 512 --n-embd 160 --n-layer 3;"
            "bpe512-n_embd160-4layers:--tokenizer bpe --vocab-size 512 --n-embd 160 --n-layer 4;"
            "bpe512-n_embd192-3layers:--tokenizer bpe --vocab-size 512 --n-embd 192 --n-layer 3")


def text_path() -> Path:
    data = Path(os.environ.get("TINYGPT_DATA_DIR", ROOT.parent / "shared" / "data"))
    return data / "tinyshakespeare.txt"


def val_start(run: Path, text: str) -> int:
    """The character where the run's validation split begins (its tokens after train_tokens)."""
    config = json.loads((run / "config.json").read_text())
    if config["train"]["tokenizer"] == "char":
        return config["data"]["train_tokens"]
    from tokenizers import Tokenizer

    encoding = Tokenizer.from_file(str(run / "tokenizer.json")).encode(text)
    return encoding.offsets[config["data"]["train_tokens"]][0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=VARIANTS, help="'name:flags;name:flags;...' (default: the table's)")
    ap.add_argument("--budget", default="3m")
    ap.add_argument("--runs-dir", default=None, help="where the runs go (default: a temporary directory)")
    ap.add_argument("--scored-only", action="store_true",
                    help="train nothing: score runs already in --runs-dir, one directory per variant name")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="budget_tokenizers_"))
    text = text_path().read_text()
    results = {}
    for spec in args.variants.split(";"):
        if ":" not in spec:
            raise SystemExit(f"budget_tokenizers: a variant is NAME:FLAGS (FLAGS may be empty), got {spec!r}")
        name, flags = spec.split(":", 1)
        out = runs_dir / name
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        if not args.scored_only:
            cmd = [sys.executable, "-m", "tinygpt", "train", "--preset", "speedrun-cpu", "--time-budget",
                   args.budget, "--out", str(out), "--overwrite", "--no-progress", *flags.split()]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"{name} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
        elif not (out / "metrics.jsonl").is_file():
            raise SystemExit(f"budget_tokenizers: --scored-only, but {out} holds no run")
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        config = json.loads((out / "config.json").read_text())
        results[name] = {"flags": flags, "load_before": None if args.scored_only else load,
                         "wall_s": None if args.scored_only else time.perf_counter() - t0,
                         "steps": records[-1]["step"], "val_loss_a_token": records[-1]["val_loss"],
                         "params": config["num_params"], "val_tokens": config["data"]["val_tokens"]}
        print(f"{name}: {results[name]['steps']} steps, val {records[-1]['val_loss']:.4f} a token", flush=True)
    start = max(val_start(runs_dir / name, text) for name in results)
    common = runs_dir / "common.txt"
    common.write_text(text[start:])
    for name, row in results.items():
        ev = subprocess.run([sys.executable, "-m", "tinygpt", "eval", str(runs_dir / name), "--data", str(common),
                             "--json", "--checkpoint", "latest"], capture_output=True, text=True, check=True, cwd=ROOT)
        bits = json.loads(ev.stdout)["bits_per_char"]
        row.update(common_bits_per_char=bits, common_nats_per_char=bits * math.log(2))
    print(f"\nscored on the last {len(text) - start:,} characters of tiny Shakespeare (held out from every run)")
    print(f"{'variant':28s} {'params':>8s} {'steps':>6s} {'val a token':>12s} {'nats a char':>12s}")
    for name, row in results.items():
        print(f"{name:28s} {row['params']:8,d} {row['steps']:6d} {row['val_loss_a_token']:12.4f} "
              f"{row['common_nats_per_char']:12.4f}")
    if args.json:
        doc = {"budget": args.budget, "common_text_chars": len(text) - start, "common_text_start": start,
               "runs": results}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
